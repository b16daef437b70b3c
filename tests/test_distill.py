"""The distillation loop: determinism, untouched shared models, learning, η, NaN safety, stopping, configs."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import vlod_core.distill as distill_module
from helpers import scoring_batch
from vlod_core.data import Row
from vlod_core.distill import DistillConfig, distill
from vlod_core.geometry import geometry_of_losses
from vlod_core.losses import token_kls
from vlod_core.sampling import GREEDY, generate
from vlod_core.scoring import score_four
from vlod_core.steering import SteeringConfig, average
from vlod_core.toy import world
from vlod_core.toy.source import toy_data
from vlod_core.toy.train import PromptCache

SMALL = {"batch": 4, "eval_examples": 16, "answer_examples": 0}


def _config(**kwargs) -> DistillConfig:
    return DistillConfig(**(SMALL | kwargs))


@pytest.fixture(scope="module")
def data():
    return toy_data(eval_rows=16, show_rows=2)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _identical(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _max_difference(a: dict, b: dict) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def _fixed(pair, examples, responses=None):
    """A fixed batch as a rollouts function: the same (images, questions, responses) every step."""
    cache = PromptCache(pair.processor)
    images, questions = [ex.image() for ex in examples], [ex.question for ex in examples]
    responses = responses or [cache.answer(ex.answer) for ex in examples]
    return lambda step: (images, questions, responses)


def _batch(pair, rollouts):
    images, questions, responses = rollouts(0)
    return scoring_batch(pair, images, questions, responses)


def _std_loss(pair, student, batch) -> float:
    with torch.no_grad():
        four = score_four(pair.teacher, student, batch, pair.vocab_size, pair.tokenizer.pad_token_id)
        return float(average(token_kls(four)["std"], four.response_mask))


def _without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


def test_same_seed_same_run(toy_pair, data):
    """On-policy rollouts, VGS with η measured: two runs agree exactly; another seed does not."""
    config = _config(steps=4, lr=1e-2, answer_examples=1, steering=SteeringConfig(rule="vgs"))
    first, second = distill(toy_pair, config, data), distill(toy_pair, config, data)
    assert len(first.card.records) == 4 and first.card.stopped is None
    assert _without_seconds(first.card.records) == _without_seconds(second.card.records)
    assert first.card.before == second.card.before and first.card.after == second.card.after
    assert first.card.answers_after == second.card.answers_after
    assert _identical(_state(first.student), _state(second.student))
    assert first.card.answers_after and "teacher_image" in first.card.answers_after[0]
    other = distill(toy_pair, _config(steps=4, lr=1e-2, seed=1, steering=SteeringConfig(rule="vgs")), data)
    assert [r["loss"] for r in other.card.records] != [r["loss"] for r in first.card.records]


def test_runs_on_one_evaluation_set_measure_the_student_before_training_once(toy_pair, monkeypatch):
    """The metrics before the first step are the shared student's: a second run on the same data (another rule,
    seed and rate: a paper check's worker) takes them from the first instead of evaluating again, and they equal
    a fresh evaluation of the student; a LoRA run is measured on its own."""
    from vlod_core.evaluation import EvalSet, evaluate

    data, calls = toy_data(eval_rows=16, show_rows=0), []
    real = distill_module.evaluate
    monkeypatch.setattr(distill_module, "evaluate", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    first = distill(toy_pair, _config(steps=1, lr=1e-2), data)
    assert len(calls) == 2  # before and after
    second = distill(toy_pair, _config(steps=1, lr=1e-3, seed=3, steering=SteeringConfig(rule="vgs")), data)
    assert len(calls) == 3 and second.card.before == first.card.before  # only its after
    eval_set = next(v for v in data.eval_sets.values() if isinstance(v, EvalSet))
    fresh = evaluate(toy_pair, eval_set, toy_pair.student, check_grounding=False)
    assert first.card.before == fresh.to_dict()
    lora = distill(toy_pair, _config(steps=1, lr=1e-2, lora_rank=2), data)
    assert len(calls) == 5 and lora.card.before == first.card.before  # the adapters start at zero


def test_the_metrics_before_training_reach_the_caller_before_its_first_step(toy_pair):
    """`on_start` gets the card's `before` once, ahead of every step's record: the app's live curve of a run
    that evaluates every 100 steps starts at step 0 instead of staying empty until step 100."""
    events = []
    result = distill(
        toy_pair,
        _config(steps=2, lr=1e-2),
        toy_data(eval_rows=8, show_rows=0),
        callback=lambda record: events.append(("step", record.step)),
        on_start=lambda before: events.append(("start", before)),
    )
    assert events == [("start", result.card.before), ("step", 1), ("step", 2)]
    assert "accuracy_image" in result.card.before


def test_shared_models_stay_bit_identical(toy_pair, data):
    student_before, teacher_before = _state(toy_pair.student), _state(toy_pair.teacher)
    student_mode, teacher_mode = toy_pair.student.training, toy_pair.teacher.training
    config = _config(steps=3, lr=1e-2, steering=SteeringConfig(rule="vgs_anchored", eta=0.5))
    result = distill(toy_pair, config, data)
    assert _identical(_state(toy_pair.student), student_before)
    assert _identical(_state(toy_pair.teacher), teacher_before)
    assert (toy_pair.student.training, toy_pair.teacher.training) == (student_mode, teacher_mode)
    assert not any(p.requires_grad for p in toy_pair.teacher.parameters())
    assert result.student is not toy_pair.student
    assert _max_difference(_state(result.student), student_before) > 1e-4  # while the copy did train


def test_standard_opd_lowers_the_loss_and_changes_answers(toy_pair):
    """Fixed teacher answers where the student disagrees: ℓStd falls and some greedy answer moves."""
    pool = world.sample_examples(48, seed=11)
    questions, images = [ex.question for ex in pool], [ex.image() for ex in pool]
    teacher_answers = generate(toy_pair.teacher, toy_pair.processor, questions, images, GREEDY)
    student_answers = generate(toy_pair.student, toy_pair.processor, questions, images, GREEDY)
    disagree = [i for i in range(len(pool)) if teacher_answers[i] != student_answers[i]][:4]
    assert len(disagree) == 4, "the small student should still disagree with the teacher somewhere"
    chosen = [pool[i] for i in disagree]
    rollouts = _fixed(toy_pair, chosen, [teacher_answers[i] for i in disagree])
    batch = _batch(toy_pair, rollouts)
    probes = [Row(ex.image(), ex.question) for ex in chosen]

    # lr 2e-3: high for AdamW on this tiny student (1e-2 makes it oscillate), so a dozen steps suffice.
    result = distill(toy_pair, _config(steps=12, lr=2e-3), rollouts=rollouts, probes=probes, evaluate_model=False)
    assert result.card.stopped is None
    before, after = _std_loss(toy_pair, toy_pair.student, batch), _std_loss(toy_pair, result.student, batch)
    assert after < 0.8 * before, (before, after)
    answers_after = generate(
        result.student, toy_pair.processor, [ex.question for ex in chosen], [ex.image() for ex in chosen], GREEDY
    )
    moved = [a != student_answers[i] for a, i in zip(answers_after, disagree)]
    assert any(moved)
    assert sum(a == teacher_answers[i] for a, i in zip(answers_after, disagree)) > 0  # towards the teacher
    assert [p["image"] for p in result.card.probe_before] != [p["image"] for p in result.card.probe_after]
    # The recorded ℓStd of the first step is the loss of the untouched student on that batch.
    assert result.card.records[0]["std"] == pytest.approx(before, rel=1e-4)


def test_eta_auto_is_measured_from_the_first_steps_gradients(toy_pair, examples):
    rollouts = _fixed(toy_pair, examples[:4])
    gamma = 2.0
    result = distill(
        toy_pair,
        _config(steps=1, steering=SteeringConfig(rule="vgs", gamma=gamma)),
        rollouts=rollouts,
        evaluate_model=False,
    )
    student = copy.deepcopy(toy_pair.student).train()
    params = [p for p in student.parameters() if p.requires_grad]
    batch = _batch(toy_pair, rollouts)

    def gradient(name):
        four = score_four(
            toy_pair.teacher, student, batch, toy_pair.vocab_size, toy_pair.tokenizer.pad_token_id, student_grad=True
        )
        grads = torch.autograd.grad(average(token_kls(four)[name], four.response_mask), params, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).double().flatten() for p, g in zip(params, grads)])

    g_std, g_vis = gradient("std"), gradient("vis")
    expected = float(g_std.norm() / (g_std + gamma * g_vis).norm())
    assert 0 < expected < 1.5
    assert result.card.records[0]["eta"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(("rule", "eta"), [("vgs", 0.41), ("lang_steer", 0.7), ("standard", "auto")])
def test_fixed_eta_is_recorded_and_scales_the_loss(toy_pair, examples, rule, eta):
    steering = SteeringConfig(rule=rule, eta=eta, gamma=2.0, lam=0.1)
    result = distill(
        toy_pair, _config(steps=2, steering=steering), rollouts=_fixed(toy_pair, examples[:4]), evaluate_model=False
    )
    for record in result.card.records:
        expected_eta = 1.0 if rule == "standard" else eta
        assert record["eta"] == expected_eta
        steer = {"vgs": record["vis"], "lang_steer": record["lang"], "standard": 0.0}[rule]
        unscaled = record["std"] + (2.0 * steer if rule != "standard" else 0.0)
        if rule == "vgs":
            unscaled += 0.1 * record["lp"]  # the LP term: λ · mean 1[VDS > Q0.7] · ℓLang
        if rule == "lang_steer":  # its preservation term (λ·ℓVis on high-VDS tokens) is not logged, only >= 0
            assert record["loss"] >= expected_eta * unscaled * (1 - 1e-6)
        else:
            assert record["loss"] == pytest.approx(expected_eta * unscaled, rel=1e-5)


def test_anchored_equals_vgs_on_the_first_step_then_differs(toy_pair, examples):
    rollouts = _fixed(toy_pair, examples[:4])
    runs = {
        rule: distill(
            toy_pair,
            _config(steps=3, lr=1e-2, steering=SteeringConfig(rule=rule, eta=0.5)),
            rollouts=rollouts,
            evaluate_model=False,
        )
        for rule in ("vgs", "vgs_anchored")
    }
    vgs, anchored = runs["vgs"].card.records, runs["vgs_anchored"].card.records
    assert len(anchored) == 3 and runs["vgs_anchored"].card.stopped is None
    # Step 1: the anchor is the initial student, which is the current one.
    for key in ("loss", "std", "vis", "lang"):
        assert anchored[0][key] == pytest.approx(vgs[0][key], rel=1e-4), key
    # Later the current student has moved and the anchored target has not.
    assert anchored[2]["vis"] != pytest.approx(vgs[2]["vis"], rel=1e-4)
    assert _max_difference(_state(runs["vgs"].student), _state(runs["vgs_anchored"].student)) > 1e-5


def _poison_objective(monkeypatch, at_call: int, kind: str):
    """Make the objective of one step non-finite: its value (`loss`) or only its gradient (`grad`)."""
    real = distill_module.objective
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        if calls["n"] == at_call:
            if kind == "loss":
                terms.std = terms.std * float("nan")
            else:  # a finite value whose gradient is 0 · ∞ = NaN
                terms.std = terms.std + 0.0 * torch.sqrt(terms.std - terms.std.detach())
        calls["n"] += 1
        return terms

    monkeypatch.setattr(distill_module, "objective", poisoned)


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_non_finite_step_stops_and_keeps_the_previous_student(toy_pair, examples, data, monkeypatch, kind):
    rollouts = _fixed(toy_pair, examples[:4])
    config = _config(steps=5, lr=1e-2, steering=SteeringConfig(rule="vgs", eta=0.5))
    reference = distill(
        toy_pair, _config(steps=2, lr=1e-2, steering=config.steering), rollouts=rollouts, evaluate_model=False
    )
    _poison_objective(monkeypatch, at_call=2, kind=kind)
    result = distill(toy_pair, config, data, rollouts=rollouts)
    assert result.card.stopped is not None
    assert ("loss" if kind == "loss" else "gradient") in result.card.stopped and "step 2" in result.card.stopped
    assert len(result.card.records) == 2
    state = _state(result.student)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert _identical(state, _state(reference.student))  # exactly the student after the last good step
    assert all(math.isfinite(result.card.after[k]) for k in ("accuracy_image", "accuracy_no_image"))


def test_should_stop_ends_the_run_early(toy_pair, examples):
    asked, seen = {"n": 0}, []

    def should_stop():
        asked["n"] += 1
        return asked["n"] > 2

    result = distill(
        toy_pair,
        _config(steps=10),
        rollouts=_fixed(toy_pair, examples[:4]),
        callback=seen.append,
        should_stop=should_stop,
        evaluate_model=False,
    )
    assert len(result.card.records) == 2 and [r.step for r in seen] == [1, 2]
    assert result.card.stopped and "2 steps" in result.card.stopped


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"steps": 0}, "steps"),
        ({"lr": 0.0}, "lr"),
        ({"lr": -1.0}, "lr"),
        ({"lr": 1e9}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"batch": 0}, "batch"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"weight_decay": float("nan")}, "weight_decay"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"eval_examples": 0}, "eval_examples"),
        ({"geometry_every": -1}, "geometry_every"),
        ({"ablation": "crop"}, "ablation"),
    ],
)
def test_invalid_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DistillConfig(**kwargs)


@pytest.mark.parametrize(("kwargs", "field"), [({"gamma": -2.0}, "gamma"), ({"lam": -0.01}, "lam")])
def test_invalid_steering_inside_distill_config(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DistillConfig(steering=SteeringConfig(rule="vgs", **kwargs))


def test_geometry_every_records_geometry(toy_pair, examples):
    rollouts = _fixed(toy_pair, examples[:4])
    config = _config(steps=1, geometry_every=1, geometry_bins=10, steering=SteeringConfig(rule="vgs", eta=0.5))
    result = distill(toy_pair, config, rollouts=rollouts, evaluate_model=False)
    record = result.card.records[0]
    geometry = record["geometry"]
    assert set(geometry) == {"global", "groups", "bins"}
    assert {"vision tower", "projector", "embeddings", "language layer 00"} <= set(geometry["groups"])
    assert len(geometry["bins"]) == 10
    assert sum(b["tokens"] for b in geometry["bins"]) == record["response_tokens"]
    for value in geometry["global"]["angles"].values():
        assert 0.0 <= value <= 180.0
    # Measured on this step's batch with the student after the step, i.e. the returned one.
    student = copy.deepcopy(result.student).train()
    batch = _batch(toy_pair, rollouts)
    four = score_four(
        toy_pair.teacher, student, batch, toy_pair.vocab_size, toy_pair.tokenizer.pad_token_id, student_grad=True
    )
    kls = token_kls(four)
    named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    expected = geometry_of_losses(named, kls, four.response_mask, bins=0).global_
    for name, norm in expected["norms"].items():
        assert geometry["global"]["norms"][name] == pytest.approx(norm, rel=1e-4)
    # No geometry unless asked.
    plain = distill(toy_pair, _config(steps=1, steering=config.steering), rollouts=rollouts, evaluate_model=False)
    assert plain.card.records[0]["geometry"] is None


def test_standard_scoring_image_only_between_decompositions_trains_the_same(toy_pair, data):
    every = distill(toy_pair, _config(steps=6, decompose_every=1), data, evaluate_model=False)
    sparse = distill(toy_pair, _config(steps=6, decompose_every=3), data, evaluate_model=False)
    logged = [r["step"] for r in sparse.card.records if not math.isnan(r["lang"])]
    assert logged == [1, 4]  # steps 0 and 3 (0-based) carry the image-free passes, the others do not
    for full, fast in zip(every.card.records, sparse.card.records):
        assert fast["std"] == pytest.approx(full["std"], abs=1e-5)  # the loss that is descended is the same
        if not math.isnan(fast["lang"]):
            assert fast["lang"] == pytest.approx(full["lang"], abs=1e-5)
    assert _max_difference(_state(every.student), _state(sparse.student)) < 1e-4


def test_steering_rules_always_score_both_contexts():
    vgs = _config(steps=4, decompose_every=3, steering=SteeringConfig(rule="vgs", eta=0.4))
    assert all(vgs.needs_ablated(step) for step in range(4))
    standard = _config(steps=4, decompose_every=3, geometry_every=2)
    assert [standard.needs_ablated(step) for step in range(4)] == [True, True, False, True]


def test_assembled_eta_gradient_equals_measuring_eta_then_a_backward_pass(toy_pair, examples):
    """The fast path (three VJPs that give η and the update) against the plain one (two VJPs, then backward)."""
    from vlod_core.steering import eta_from_gradients, objective, steered_gradients

    steering = SteeringConfig(rule="vgs", gamma=2.0, lam=0.5)  # a λ big enough for the LP gradient to matter
    batch = _batch(toy_pair, _fixed(toy_pair, examples[:4]))
    student = copy.deepcopy(toy_pair.student).train()
    params = [p for p in student.parameters() if p.requires_grad]

    def terms():
        four = score_four(
            toy_pair.teacher, student, batch, toy_pair.vocab_size, toy_pair.tokenizer.pad_token_id, student_grad=True
        )
        return objective(steering, token_kls(four), four.response_mask)

    eta, assembled = steered_gradients(terms(), params)
    plain = terms()
    g_std = torch.autograd.grad(plain.std, params, retain_graph=True, allow_unused=True)
    g_steer = torch.autograd.grad(plain.steer, params, retain_graph=True, allow_unused=True)
    zeros = [torch.zeros_like(p) for p in params]
    plain_eta = eta_from_gradients(
        [z if g is None else g for z, g in zip(zeros, g_std)], [z if g is None else g for z, g in zip(zeros, g_steer)]
    )
    plain.combined(plain_eta).backward()
    assert eta == pytest.approx(plain_eta, rel=1e-6) and 0 < eta < 1
    for param, fast in zip(params, assembled):
        expected = param.grad if param.grad is not None else torch.zeros_like(param)
        torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-7)
    assert plain.preserve is not None and float(plain.preserve) > 0


def test_lora_run_trains_only_adapters_and_leaves_every_base_weight_bit_identical(toy_pair, examples):
    shared = _state(toy_pair.student)
    flags = [p.requires_grad for p in toy_pair.student.parameters()]
    config = _config(steps=3, lr=1e-2, lora_rank=4, steering=SteeringConfig(rule="vgs"))
    result = distill(toy_pair, config, rollouts=_fixed(toy_pair, examples[:4]), evaluate_model=False)
    assert result.card.stopped is None and len(result.card.records) == 3
    trained = dict(result.student.named_parameters())
    adapters = {n: p for n, p in trained.items() if p.requires_grad}
    assert adapters and all("lora_" in n for n in adapters)
    assert any(float(p.detach().abs().max()) > 0 for n, p in adapters.items() if "lora_B" in n)  # B starts at 0
    base = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in result.student.state_dict().items()
    }
    for name, value in shared.items():  # the copy's frozen weights are the shared ones, untouched
        assert torch.equal(base[name], value), name
    assert _identical(_state(toy_pair.student), shared)
    assert [p.requires_grad for p in toy_pair.student.parameters()] == flags
    geometry = distill(
        toy_pair, _config(steps=1, lora_rank=4, geometry_every=1, geometry_bins=0), rollouts=_fixed(toy_pair, examples[:4]),
        evaluate_model=False,
    ).card.records[0]["geometry"]  # fmt: skip
    assert geometry["global"]["norms"]["std"] > 0  # over the adapters: the trainable parameters


def test_a_bf16_pair_trains_float32_master_weights_that_small_steps_move(vlod_home, examples):
    """AdamW at lr 1e-6 on bf16 weights rounds every update away; the private copy keeps float32 weights."""
    from vlod_core import toy
    from vlod_core.pair import PairSpec, load_pair

    spec = PairSpec(dtype="bfloat16", device="cpu")
    pair = load_pair(spec, toy.folders(spec))
    start = {k: v.float() for k, v in _state(pair.student).items()}
    result = distill(pair, _config(steps=2, lr=1e-6), rollouts=_fixed(pair, examples[:4]), evaluate_model=False)
    assert result.card.stopped is None and result.card.records[-1]["loss"] > 0
    assert {p.dtype for p in result.student.parameters()} == {torch.float32}
    moved = _max_difference(_state(result.student), start)
    assert 0 < moved < 1e-4  # moved, by about the learning rate
    assert next(pair.student.parameters()).dtype == torch.bfloat16  # the shared pair is as it was
