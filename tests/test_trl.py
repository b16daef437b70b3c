"""`vlod_core.trl`: vlod's rules inside TRL's DistillationTrainer equal vlod's own loop, train, and run data-parallel."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlod_core.data import Row, TrainingData, VQASet, split_rows
from vlod_core.sources import row_from_record
from vlod_core.trl import DecomposedDistillationConfig, DecomposedDistillationTrainer, trl_dataset

from family_pairs import family_pairs_fixture  # noqa: F401  (a session fixture)

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("trl_worker.py")
DECOMPOSITION = ("std", "lang", "vis", "vds", "lp", "preserve", "eta", "vds_q10", "vds_q50", "vds_q70", "vds_q90")
BATCH = 4


def _worker():
    spec = importlib.util.spec_from_file_location("trl_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _worker()


def _trainer(pair, out, rule, records, **overrides):
    from datasets import Dataset

    data = records if not isinstance(records, list) or isinstance(records[0], Row) else Dataset.from_list(records)
    overrides = {"per_device_train_batch_size": BATCH} | overrides
    return DecomposedDistillationTrainer(
        copy.deepcopy(pair.student),
        pair.teacher,
        worker.config(out, rule, **overrides),
        train_dataset=data,
        processing_class=pair.processor,
    )


# ------------------------------------------------------------------------------------------------- config


def test_config_takes_the_rule_and_refuses_what_vlod_refuses(tmp_path):
    config = DecomposedDistillationConfig(str(tmp_path), steering="vgs", eta="0.41", gamma=3.0, lam=0.1, use_cpu=True)
    steering = config.steering_config()
    assert (steering.rule, steering.eta, steering.gamma, steering.lam) == ("vgs", 0.41, 3.0, 0.1)
    assert steering.average == "token"  # TRL's normalisation
    with pytest.raises(ValueError, match="rule must be one of"):
        DecomposedDistillationConfig(str(tmp_path), steering="vgss", use_cpu=True)
    with pytest.raises(ValueError, match="reverse KL"):
        DecomposedDistillationConfig(str(tmp_path), beta=0.5, use_cpu=True)
    with pytest.raises(ValueError, match="ablation"):
        DecomposedDistillationConfig(str(tmp_path), ablation="crop", use_cpu=True)
    with pytest.raises(ValueError, match="eta"):
        DecomposedDistillationConfig(str(tmp_path), eta="fast", use_cpu=True)


def test_a_vlod_source_becomes_trl_records_that_read_back_as_the_same_rows(examples):
    rows = [Row(ex.image(), ex.question, ex.answer) for ex in examples]
    for source in (rows, VQASet(rows, "toy", "memory"), TrainingData.from_split(split_rows(rows), "toy")):
        dataset = trl_dataset(source)
        expected = rows if not isinstance(source, TrainingData) else split_rows(rows).train
        assert len(dataset) == len(expected)
        for record, row in zip(dataset, expected):
            assert record["prompt"][0]["content"][0]["type"] == "image"
            back = row_from_record(record)
            assert back.question == row.question
            assert list(back.load_image().getdata()) == list(row.load_image().getdata())  # PNG: lossless


def test_a_source_that_never_runs_out_needs_a_row_count():
    from vlod_core.toy.source import toy_data

    data = toy_data(eval_rows=2, show_rows=1)
    with pytest.raises(ValueError, match="never runs out"):
        trl_dataset(data)
    assert len(trl_dataset(data, rows=3)) == 3


# --------------------------------------------------------------------------------- equality with vlod's loop


def _fixed_batch(pair):
    """Toy rows and fixed student answers of different lengths (2-4 tokens), as tests/accelerate_worker.py."""
    from vlod_core.toy import world
    from vlod_core.toy.train import PromptCache

    examples = world.sample_examples(BATCH, seed=3)
    cache = PromptCache(pair.processor)
    responses = [cache.answer(ex.answer)[: 2 + i % 3] for i, ex in enumerate(examples)]
    records = [
        {
            "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ex.question}]}],
            "images": [ex.image()],
        }
        for ex in examples
    ]
    return [ex.image() for ex in examples], [ex.question for ex in examples], responses, records


def _trainer_step(trainer, records, responses):
    """TRL's batch for these records with the given answers in place of sampled ones; the loss and its gradient."""
    trainer._generate_single_turn = lambda *args, **kwargs: [list(r) for r in responses]
    inputs = trainer._generate_and_score_completions([dict(r) for r in records])
    trainer.model.train()
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    loss = trainer.compute_loss(trainer.model, inputs)
    return inputs, loss, torch.autograd.grad(loss, params, allow_unused=True), params


def _vlod_step(pair, steering, images, questions, responses):
    """vlod's own single-process step on the same batch: the same calls `distill` makes, and the gradient it sets."""
    from vlod_core.engine import rollout
    from vlod_core.losses import per_token_losses
    from vlod_core.steering import objective, steered_gradients

    student = copy.deepcopy(pair.student).train()
    params = [p for p in student.parameters() if p.requires_grad]
    scored = rollout(pair, images, questions, responses=responses, student=student, student_grad=True)
    losses = per_token_losses(scored.four, steering.estimator, steering.detach_prior)
    terms = objective(steering, losses, scored.four.response_mask)
    if steering.steers and steering.eta == "auto":
        eta, grads = steered_gradients(terms, params)
    else:
        eta = 1.0 if not steering.steers else float(steering.eta)
        grads = torch.autograd.grad(terms.combined(eta), params, allow_unused=True)
    return float(terms.combined(eta).detach()), eta, grads


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["standard", "vgs"])
def test_loss_and_gradients_equal_vlods_distill_step(toy_pair, tmp_path, rule):
    from vlod_core.distill import DistillConfig, distill

    images, questions, responses, records = _fixed_batch(toy_pair)
    trainer = _trainer(toy_pair, tmp_path, rule, records)
    inputs, loss, grads, _ = _trainer_step(trainer, records, responses)
    loss = loss.detach()
    steering = trainer.steering

    # vlod's loop itself, one step on the same answers (no clipping: the record keeps the raw gradient norm)
    config = DistillConfig(steps=1, batch=BATCH, max_grad_norm=0, steering=steering, answer_examples=0)
    record = distill(
        toy_pair, config, rollouts=lambda step: (images, questions, responses), evaluate_model=False
    ).card.records[0]
    norm = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads if g is not None))
    loss_diff = abs(float(loss) - record["loss"])
    print(
        f"\n{rule}: |loss - distill's| = {loss_diff:.3g}, grad norm {norm:.6g} vs distill's {record['grad_norm']:.6g}"
    )
    assert loss_diff < 1e-5
    assert norm == pytest.approx(record["grad_norm"], rel=1e-5)
    assert trainer._eta == pytest.approx(record["eta"], rel=1e-5)

    # element by element, against the gradient vlod's step assigns
    ref_loss, ref_eta, ref_grads = _vlod_step(toy_pair, steering, images, questions, responses)
    differences = [
        float(((g if g is not None else 0) - (r if r is not None else 0)).abs().max())
        for g, r in zip(grads, ref_grads)
        if g is not None or r is not None
    ]
    scale = max(float(r.abs().max()) for r in ref_grads if r is not None)
    print(f"{rule}: max |grad - vlod's| = {max(differences):.3g} (largest gradient entry {scale:.3g})")
    assert abs(float(loss) - ref_loss) < 1e-5
    assert max(differences) <= 1e-5 * scale
    assert scale > 1e-3  # a batch that moves the student

    if rule == "standard":  # TRL's own reverse KL (its chunked loss, beta = 1) on the same batch
        from trl import DistillationTrainer

        trl_loss = DistillationTrainer.compute_loss(trainer, trainer.model, inputs)
        print(f"standard: |loss - TRL's reverse KL| = {abs(float(loss) - float(trl_loss.detach())):.3g}")
        assert float(trl_loss) == pytest.approx(float(loss), abs=1e-5)


@pytest.mark.slow
def test_a_prompt_vlod_would_score_differently_is_refused(toy_pair, tmp_path):
    _, _, responses, records = _fixed_batch(toy_pair)
    records = [
        dict(r, prompt=[{"role": "system", "content": [{"type": "text", "text": "be brief"}]}, *r["prompt"]])
        for r in records
    ]
    trainer = _trainer(toy_pair, tmp_path, "standard", records)
    with pytest.raises(ValueError, match="one user message"):
        _trainer_step(trainer, records, responses)


# -------------------------------------------------------------------------------------------------- training


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["standard", "vgs"])
def test_trains_the_toy_pair_from_a_trl_dataset_and_logs_the_decomposition(toy_pair, tmp_path, rule, caplog):
    calls = []

    class Watched(DecomposedDistillationTrainer):
        def teacher_grounding_warning(self, images, questions):
            calls.append(len(images))
            return "HOOK: the teacher ignores the image (test)"

    from datasets import Dataset
    from transformers import TrainerCallback

    class Reported(TrainerCallback):
        """What TensorBoard's, W&B's and trackio's callbacks are handed at each logging step."""

        logs = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

    records = worker.trl_records(12)
    trainer = Watched(
        copy.deepcopy(toy_pair.student),
        toy_pair.teacher,
        worker.config(tmp_path, rule, per_device_train_batch_size=BATCH, max_steps=3),
        train_dataset=Dataset.from_list(records),
        processing_class=toy_pair.processor,
        callbacks=[Reported()],
    )
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="vlod_core.trl"):
        trainer.train()
    steps = [h for h in trainer.state.log_history if "loss" in h]
    assert len(steps) == 3
    for logged in steps:
        values = {name: logged[f"vlod/{name}"] for name in DECOMPOSITION}
        assert all(math.isfinite(v) for v in values.values()), values
        assert values["vds_q10"] <= values["vds_q50"] <= values["vds_q70"] <= values["vds_q90"]
        # the logged loss is the rule's objective of the logged terms (one process, no accumulation)
        if rule == "standard":
            assert logged["loss"] == pytest.approx(values["std"], rel=1e-5) and values["eta"] == 1.0
        else:
            expected = values["eta"] * (values["std"] + 2.0 * values["vis"] + values["preserve"])
            assert logged["loss"] == pytest.approx(expected, rel=1e-4)
            assert values["preserve"] == pytest.approx(0.01 * values["lp"], rel=1e-5)
            assert 0 < values["eta"] < 1.5
    reported = [logs for logs in Reported.logs if "loss" in logs]
    assert [{k: v for k, v in logs.items() if k.startswith("vlod/")} for logs in reported] == [
        {k: v for k, v in logged.items() if k.startswith("vlod/")} for logged in steps
    ]
    moved = max(float((trainer.model.state_dict()[k] - v).abs().max()) for k, v in before.items())
    assert moved > 1e-4
    assert calls == [BATCH]  # the grounding hook runs once, at the first step, with that step's rows
    assert sum("ignores the image" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.slow
def test_standard_computes_the_image_free_passes_only_on_logged_steps(toy_pair, tmp_path):
    """`standard` descends ℓStd alone: the image-free passes run only for the steps whose metrics are logged."""
    from vlod_core import trl as vlod_trl

    contexts = []
    real = vlod_trl.build_scoring_batch

    def counting(prompts, responses, pad_id, which=None):
        contexts.append(which)
        return real(prompts, responses, pad_id, which)

    trainer = _trainer(toy_pair, tmp_path, "standard", worker.trl_records(12), max_steps=3, logging_steps=2)
    vlod_trl.build_scoring_batch = counting
    try:
        trainer.train()
    finally:
        vlod_trl.build_scoring_batch = real
    assert contexts == [("image",), ("image", "ablated"), ("image",)]
    logged = [h for h in trainer.state.log_history if "loss" in h]
    assert [h["step"] for h in logged] == [2] and math.isfinite(logged[0]["vlod/lang"])


@pytest.mark.slow
def test_trains_from_a_vlod_data_source(toy_pair, tmp_path):
    from vlod_core.toy.source import toy_data

    trainer = _trainer(toy_pair, tmp_path, "vgs", toy_data(eval_rows=2, show_rows=1), max_steps=2)
    assert len(trainer.train_dataset) == 2 * BATCH  # max_steps × the batch of one process
    trainer.train()
    assert all(math.isfinite(h["vlod/vis"]) for h in trainer.state.log_history if "loss" in h)


@pytest.mark.slow
def test_trains_a_qwen3_vl_layout_pair(family_pairs, tmp_path):
    """Qwen3-VL's processor (image grids, per-token type ids): TRL's prompt is the one vlod scores, and it trains."""
    trainer = _trainer(family_pairs.pair("qwen3_vl"), tmp_path, "vgs", worker.trl_records(4), max_steps=2,
                       per_device_train_batch_size=2, max_completion_length=4)  # fmt: skip
    trainer.train()
    steps = [h for h in trainer.state.log_history if "loss" in h]
    assert len(steps) == 2 and all(math.isfinite(h[f"vlod/{name}"]) for h in steps for name in DECOMPOSITION)


# ------------------------------------------------------------------------------------------- data-parallel


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_under_accelerate_launch_train_and_log(vlod_home, tmp_path):
    from safetensors.torch import load_file

    env = os.environ | {
        "VLOD_HOME": str(vlod_home),
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    # `--multi_gpu` with ACCELERATE_USE_CPU=1 goes through torchrun: two gloo processes (see test_accelerate.py)
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(WORKER), str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"accelerate launch failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    logs = [json.loads((tmp_path / f"log.{p}.json").read_text()) for p in range(2)]  # two processes ran
    students = [load_file(str(tmp_path / f"student.{p}.safetensors")) for p in range(2)]
    for log in logs:
        steps = [h for h in log if "loss" in h]
        assert len(steps) == worker.STEPS
        assert all(math.isfinite(h[f"vlod/{name}"]) for h in steps for name in DECOMPOSITION)
    # η is measured per process and averaged: one η for all; DDP keeps the two copies of the student equal
    assert [h["vlod/eta"] for h in logs[0] if "loss" in h] == [h["vlod/eta"] for h in logs[1] if "loss" in h]
    assert all(torch.equal(students[0][k], students[1][k]) for k in students[0])
    from vlod_core import toy
    from vlod_core.pair import PairSpec, load_pair

    initial = load_pair(PairSpec(device="cpu"), toy.folders(PairSpec())).student.state_dict()
    assert max(float((students[0][k] - initial[k]).abs().max()) for k in students[0]) > 1e-4


@pytest.mark.slow
def test_the_first_steps_check_warns_about_a_teacher_that_ignores_the_image(toy_pair, tmp_path):
    import dataclasses

    from test_grounding import zeroed
    from vlod_core.toy.source import held_out_rows

    rows = held_out_rows(8)
    images, questions = [row.load_image() for row in rows], [row.question for row in rows]
    records = worker.trl_records(4)
    assert _trainer(toy_pair, tmp_path / "a", "standard", records).teacher_grounding_warning(images, questions) is None
    blind = dataclasses.replace(toy_pair, teacher=zeroed(toy_pair.teacher))
    warning = _trainer(blind, tmp_path / "b", "standard", records).teacher_grounding_warning(images, questions)
    assert warning is not None and "ignores the image" in warning
