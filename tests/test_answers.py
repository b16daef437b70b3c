"""Reasoning answers: the final-answer parser, Acc@1 / Acc@k / format errors from known answers (no model),
the settings reaching evaluation from the CLI, and the same metrics on the toy pair (slow)."""

from __future__ import annotations

import json
import types
import math
import statistics

import pytest
import torch

import vlod_core.evaluation as evaluation_module
from vlod_core import cli
from vlod_core.answers import compile_pattern, final_answer, is_correct
from vlod_core.data import DataSplit, Row, TrainingData, binomial_stderr
from vlod_core.distill import DistillConfig
from vlod_core.evaluation import EvalSet, Evaluation, generated_metrics, sample_seed, summarise
from vlod_core.experiments.plan import QUICK
from vlod_core.results import RunCardError, validate_card

CHAIN = r"<reason> there are two red shapes </reason> \boxed{two}"


# ---------------------------------------------------------------------------------------------------
# The parser


def test_a_chain_is_scored_by_its_boxed_answer():
    assert final_answer(CHAIN, "boxed") == "two"
    assert is_correct(CHAIN, r"<reason> count the red ones </reason> \boxed{Two.}", "boxed")
    assert not is_correct(CHAIN, r"\boxed{three}", "boxed")


def test_a_bare_answer_is_its_own_final_answer_without_a_pattern_and_a_format_error_with_boxed():
    assert final_answer("  It is   RED. ") == "it is red"
    assert is_correct("it is red", "It is red.")
    assert final_answer("two", "boxed") is None
    assert is_correct(CHAIN, "two", "boxed")  # a bare reference is taken whole


def test_an_empty_box_is_an_empty_answer_not_a_missing_one():
    assert final_answer(r"<reason> hmm </reason> \boxed{}", "boxed") == ""
    assert not is_correct(r"\boxed{}", r"\boxed{two}", "boxed")


def test_the_last_box_counts_and_one_level_of_inner_braces_is_kept():
    assert final_answer(r"first \boxed{3} then \boxed{5}", "boxed") == "5"
    assert final_answer(r"so \boxed{\frac{1}{2}}", "boxed") == r"\frac{1}{2}"


def test_a_chain_that_does_not_parse_has_no_final_answer_and_is_wrong():
    unfinished = "<reason> there are two red shapes </reason> two"
    assert final_answer(unfinished, "boxed") is None
    assert not is_correct(unfinished, CHAIN, "boxed")
    assert final_answer(r"\boxed{two", "boxed") is None  # an unclosed box


def test_a_users_regex_reads_its_first_group_else_the_whole_match():
    assert final_answer("reasoning ... Answer: Blue", r"Answer:\s*(\w+)") == "blue"
    assert final_answer("the answer is 42", r"\d+") == "42"


def test_a_bad_regex_is_a_one_line_value_error():
    with pytest.raises(ValueError, match="not a valid regular expression") as error:
        compile_pattern("(unclosed")
    assert "\n" not in str(error.value)
    assert compile_pattern(None) is None and compile_pattern("") is None


# ---------------------------------------------------------------------------------------------------
# Acc@1, Acc@k and format errors from a fake generator


class FakeGenerator:
    """Answers fixed per (context, draw): greedy answers, then one list per sampled draw."""

    def __init__(self, greedy: dict[str, list[str]], draws: dict[str, list[list[str]]]):
        self.greedy, self.draws, self.calls = greedy, draws, []

    def __call__(self, context, config, seed):
        self.calls.append((context, config.greedy, config.temperature, config.max_new_tokens, seed))
        if config.greedy:
            return self.greedy[context]
        draw = sum(1 for c in self.calls if c[0] == context and not c[1]) - 1
        return self.draws[context][draw]


def boxed(answer: str) -> str:
    return rf"<reason> look </reason> \boxed{{{answer}}}"


REFERENCES = [boxed("two"), boxed("red"), "circle", boxed("three")]
GREEDY = {
    "image": [boxed("two"), "red", boxed("circle"), boxed("four")],  # right, no box, right, wrong
    "ablated": [boxed("one"), boxed("red"), "<reason> unfinished", boxed("three")],  # wrong, right, no box, right
}
DRAWS = {  # k = 4 draws; per row right in: row 0: 4/4, row 1: 1/4, row 2: 0/4, row 3: 2/4
    "image": [
        [boxed("two"), boxed("red"), boxed("square"), boxed("three")],
        [boxed("two"), "red", boxed("circles"), boxed("three")],
        [boxed("two"), boxed("blue"), "circle", boxed("one")],
        [boxed("Two."), boxed("green"), boxed("x"), "three"],
    ],
    "ablated": [[boxed("one")] * 4] * 4,  # all wrong
}


def test_acc1_and_format_errors_are_counted_apart():
    fake = FakeGenerator(GREEDY, DRAWS)
    out = generated_metrics(fake, REFERENCES, "boxed", samples=0, max_new_tokens=48)
    assert out["acc1_image"] == [1.0, 0.0, 1.0, 0.0]
    assert out["format_errors_image"] == [0.0, 1.0, 0.0, 0.0]  # the wrong box is wrong, not a format error
    assert out["acc1_no_image"] == [0.0, 1.0, 0.0, 1.0]
    assert out["format_errors_no_image"] == [0.0, 0.0, 1.0, 0.0]
    assert "acc_k_image" not in out
    assert [c[:2] for c in fake.calls] == [("image", True), ("ablated", True)]  # only the greedy answers


def test_acc_k_is_the_mean_over_rows_of_each_rows_share_of_right_samples_with_its_error_over_rows():
    fake = FakeGenerator(GREEDY, DRAWS)
    out = generated_metrics(fake, REFERENCES, "boxed", samples=4, max_new_tokens=48, seed=3, chunk=1)
    assert out["acc_k_image"] == [1.0, 0.25, 0.0, 0.5]
    assert out["acc_k_no_image"] == [0.0, 0.0, 0.0, 0.0]
    summary = summarise(out, [Row(None, "q", answer=r) for r in REFERENCES], False)
    shares = [1.0, 0.25, 0.0, 0.5]
    assert summary["acc_k_image"] == pytest.approx(statistics.fmean(shares))
    assert summary.stderr["acc_k_image"] == pytest.approx(statistics.stdev(shares) / math.sqrt(4))
    assert summary["acc1_image"] == 0.5
    assert summary.stderr["acc1_image"] == pytest.approx(binomial_stderr(0.5, 4))  # a rate: binomial
    assert summary["format_errors_no_image"] == 0.25
    # temperature 1, the set's length bound, a seed per draw shared by both contexts, greedy unseeded
    sampled = [c for c in fake.calls if not c[1]]
    assert {c[2] for c in sampled} == {1.0} and {c[3] for c in fake.calls} == {48}
    seeds = [c[4] for c in sampled if c[0] == "image"]
    assert seeds == [sample_seed(3, 1, j) for j in range(4)] == [c[4] for c in sampled if c[0] == "ablated"]
    assert len(set(seeds)) == 4 and all(c[4] is None for c in fake.calls if c[1])
    assert sample_seed(3, 2, 0) not in seeds and sample_seed(4, 1, 0) not in seeds  # other chunks, other seeds


def test_rows_without_a_reference_have_no_accuracy_but_do_have_a_format():
    greedy = {"image": [boxed("two"), "two"], "ablated": ["x", boxed("y")]}
    out = generated_metrics(FakeGenerator(greedy, {}), [None, boxed("two")], "boxed", 0, 16)
    assert math.isnan(out["acc1_image"][0]) and out["acc1_image"][1] == 0.0
    assert out["format_errors_image"] == [0.0, 1.0]


def test_without_a_pattern_acc_k_compares_whole_answers():
    greedy = {"image": ["Red.", "blue"], "ablated": ["red", "red"]}
    draws = {"image": [["red", "blue"], ["blue", "blue"]], "ablated": [["red", "red"], ["red", "red"]]}
    out = generated_metrics(FakeGenerator(greedy, draws), ["red", "blue"], None, 2, 8)
    assert out["acc1_image"] == [1.0, 1.0] and out["acc_k_image"] == [0.5, 1.0]
    assert not any(name.startswith("format_errors") for name in out)


def test_an_evaluation_set_checks_its_answer_settings():
    rows = [Row(None, "q", answer="a")]
    with pytest.raises(ValueError, match="regular expression"):
        EvalSet(rows, answer_pattern="[")
    for bad in (-1, 65, 2.0, True):
        with pytest.raises(ValueError, match="samples"):
            EvalSet(rows, samples=bad)
    assert not EvalSet(rows).generates and EvalSet(rows).settings() == {}
    chain = EvalSet(rows, answer_pattern="boxed", samples=8)
    assert chain.generates
    assert chain.settings() == {"eval_answer_pattern": "boxed", "eval_samples": 8, "eval_sample_temperature": 1.0}
    with pytest.raises(ValueError, match="regular expression"):
        DistillConfig(answer_pattern="(")
    with pytest.raises(ValueError, match="eval_samples"):
        DistillConfig(eval_samples=-1)


def card_with(block: dict) -> dict:
    return {
        "schema": "vlod.run_card/2",
        "config": {},
        "versions": {},
        "pair": {},
        "seconds": 1.0,
        "before": block,
        "after": {},
        "records": [],
    }


def test_run_cards_carry_the_new_metrics_as_rates():
    block = Evaluation(
        {"acc1_image": 0.5, "acc_k_image": 0.4, "format_errors_image": 0.1},
        {"acc1_image": 0.1},
        10,
        settings={"eval_answer_pattern": "boxed", "eval_samples": 8},
    ).to_dict()
    assert block["eval_samples"] == 8 and block["eval_answer_pattern"] == "boxed"
    validate_card(card_with(block))
    for name in ("acc1_image", "acc_k_no_image", "format_errors_image"):
        with pytest.raises(RunCardError, match=name):
            validate_card(card_with({name: 1.5}))


# ---------------------------------------------------------------------------------------------------
# The CLI


def test_the_cli_flags_reach_the_evaluation(monkeypatch, capsys):
    seen = {}

    def fake_evaluate(pair, eval_set, progress=None, check_grounding=True):
        seen["set"] = eval_set
        return Evaluation({"acc1_image": 0.5}, {"acc1_image": 0.1}, len(eval_set), settings=eval_set.settings())

    monkeypatch.setattr(cli, "_load_pair", lambda args, training=False: object())
    monkeypatch.setattr(evaluation_module, "evaluate", fake_evaluate)
    monkeypatch.setattr(evaluation_module, "teacher_accuracy", lambda pair, eval_set: {})
    unchecked = types.SimpleNamespace(to_dict=dict)  # the grounding check has its own tests
    monkeypatch.setattr(cli, "_grounding", lambda args, pair, rows=None: unchecked)
    code = cli.main(["evaluate", "--eval-examples", "3", "--answer-pattern", "boxed", "--samples-k", "4", "--json"])
    assert code == 0
    assert seen["set"].answer_pattern == "boxed" and seen["set"].samples == 4
    student = json.loads(capsys.readouterr().out)["student"]
    assert student["acc1_image"] == 0.5 and student["eval_samples"] == 4

    args = cli.build_parser().parse_args(["distill", "--answer-pattern", r"Answer: (\w+)", "--samples-k", "2"])
    config = cli._distill_config(args, "standard", 0)
    assert config.answer_pattern == r"Answer: (\w+)" and config.eval_samples == 2
    assert cli._distill_config(cli.build_parser().parse_args(["distill"]), "standard", 0).answer_pattern is None


def test_experiments_carry_the_pattern_into_every_run(monkeypatch):
    import vlod_core.experiments as experiments

    seen = {}

    def fake_run(plan, *args, **kwargs):
        seen["plan"] = plan
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_located_pair", lambda args, training=False: (object(), None))
    monkeypatch.setattr(experiments, "run_experiments", fake_run)
    monkeypatch.setattr(cli, "_training_data", lambda args: TrainingData(None, [Row(None, "q", answer="a")]))
    assert cli.main(["experiments", "--quick", "--answer-pattern", "boxed", "--samples-k", "8", "--out", "x"]) == 130
    plan = seen["plan"]
    assert (plan.answer_pattern, plan.eval_samples) == ("boxed", 8)
    configs = [arm.config(plan, 0) for arm in plan.arms()]
    assert {(c.answer_pattern, c.eval_samples) for c in configs} == {("boxed", 8)}
    assert {(c.answer_pattern, c.eval_samples) for c in (a.config(QUICK, 0) for a in QUICK.arms())} == {(None, 0)}


@pytest.mark.parametrize("command", ["evaluate", "distill", "compare", "experiments"])
def test_a_bad_pattern_is_one_line_and_exit_2_before_any_model_loads(command, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("loaded a pair for a bad pattern")

    monkeypatch.setattr(cli, "_load_pair", refuse)
    monkeypatch.setattr(cli, "_located_pair", refuse)
    assert cli.main([command, "--answer-pattern", "(x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("vlod: error: --answer-pattern is not a valid regular expression")
    assert not any("Traceback" in line for line in err)


# ---------------------------------------------------------------------------------------------------
# On the toy pair (its answers are bare, so chains as references test the parsing end to end)

BARE_OR_BOXED = r"(?:^|\\boxed\{)([^{}\\]*?)\}?$"  # a user's regex that reads a bare answer or a boxed one


@pytest.fixture(scope="module")
def rows():
    from vlod_core.toy.source import held_out_rows

    return held_out_rows(24)


def chained(rows):
    return [
        Row(r.image, r.question, rf"<reason> look at the shapes </reason> \boxed{{{r.answer}}}", None, r.category, r.label)
        for r in rows
    ]


@pytest.mark.slow
def test_on_the_toy_pair_final_answers_of_chain_references_match_the_teacher_forced_accuracy(toy_pair, rows):
    forced = evaluation_module.per_row_metrics(toy_pair.student, toy_pair, EvalSet(rows, max_new_tokens=8))
    parsed_set = EvalSet(chained(rows), max_new_tokens=8, answer_pattern=BARE_OR_BOXED)
    parsed = evaluation_module.per_row_metrics(toy_pair.student, toy_pair, parsed_set)
    for suffix in ("image", "no_image"):
        assert parsed[f"acc1_{suffix}"] == forced[f"accuracy_{suffix}"]  # greedy ≡ the teacher-forced shortcut
        assert parsed[f"accuracy_{suffix}"] == parsed[f"acc1_{suffix}"]
        assert parsed[f"format_errors_{suffix}"] == [0.0] * len(rows)
    assert 0 < sum(parsed["acc1_image"]) < len(rows)  # not all right or all wrong: the comparison says something


@pytest.mark.slow
def test_on_the_toy_pair_bare_answers_to_boxed_references_are_format_errors(toy_pair, rows):
    eval_set = EvalSet(chained(rows), max_new_tokens=8, answer_pattern="boxed")
    result = evaluation_module.evaluate(toy_pair, eval_set)
    for suffix in ("image", "no_image"):
        assert result[f"format_errors_{suffix}"] == 1.0
        assert result[f"accuracy_{suffix}"] == result[f"acc1_{suffix}"] == 0.0
    teacher = evaluation_module.teacher_accuracy(toy_pair, eval_set)
    assert teacher["format_errors_image"] == 1.0 and teacher["accuracy_image"] == 0.0
    plain = evaluation_module.teacher_accuracy(toy_pair, EvalSet(rows, max_new_tokens=8))
    assert plain["accuracy_image"] > 0.5 and "format_errors_image" not in plain


@pytest.mark.slow
def test_on_the_toy_pair_acc_k_is_reproducible_and_leaves_the_global_rng_alone(toy_pair, rows):
    rng = torch.get_rng_state()
    first = evaluation_module.evaluate(toy_pair, EvalSet(rows, max_new_tokens=8, samples=3))
    assert torch.equal(torch.get_rng_state(), rng)
    second = evaluation_module.evaluate(toy_pair, EvalSet(rows, max_new_tokens=8, samples=3))
    other_seed = evaluation_module.evaluate(toy_pair, EvalSet(rows, max_new_tokens=8, samples=3, seed=1))
    for suffix in ("image", "no_image"):
        assert first[f"acc_k_{suffix}"] == second[f"acc_k_{suffix}"]
        assert 0.0 <= first[f"acc_k_{suffix}"] <= 1.0 and first.stderr[f"acc_k_{suffix}"] > 0
    assert first["acc1_image"] == first["accuracy_image"]  # whole answers: greedy ≡ the teacher-forced shortcut
    assert first.to_dict()["eval_samples"] == 3
    assert any(first[k] != other_seed[k] for k in ("acc_k_image", "acc_k_no_image"))  # the seed drives the draws


@pytest.mark.slow
def test_the_default_evaluation_generates_nothing_and_keeps_its_names(toy_pair, rows, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the default evaluation generated the student's answers")

    monkeypatch.setattr(evaluation_module, "generated_metrics", refuse)
    result = evaluation_module.evaluate(toy_pair, EvalSet(rows, max_new_tokens=8))
    metrics = ("agreement", "token_agreement", "kl", "accuracy")
    assert set(result.values) == {f"{m}_{s}" for m in metrics for s in ("image", "no_image")}
    assert "eval_samples" not in result.to_dict() and "eval_answer_pattern" not in result.to_dict()


@pytest.mark.slow
def test_a_distillation_run_card_carries_acc1_acc_k_and_format_errors(toy_pair, rows):
    from vlod_core.distill import distill
    from vlod_core.results import RunCard

    split = DataSplit(chained(rows), chained(rows)[:8], False, "chains")
    data = TrainingData.from_split(split, "chains")
    config = DistillConfig(steps=2, batch=4, answer_pattern="boxed", eval_samples=2, eval_max_new_tokens=8)
    card = distill(toy_pair, config, data).card
    for block in (card.before, card.after):
        for name in ("acc1", "acc_k", "format_errors", "accuracy"):
            for suffix in ("image", "no_image"):
                assert 0.0 <= block[f"{name}_{suffix}"] <= 1.0 and f"{name}_{suffix}" in block["stderr"]
        assert block["eval_answer_pattern"] == "boxed" and block["eval_samples"] == 2
    assert card.config["answer_pattern"] == "boxed"
    loaded = RunCard.from_dict(json.loads(json.dumps(card.to_dict())))
    assert loaded.after["format_errors_image"] == card.after["format_errors_image"]
