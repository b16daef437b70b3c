"""What a user types: questions, answers to score, and the numbers of a run. Each bad value is refused by name.

The loop's NaN stop is tested in tests/test_distill.py; here only the configs' range checks.
"""

from __future__ import annotations

import math

import pytest

from vlod_core.distill import DistillConfig
from vlod_core.inspection import inspect, unknown_words
from vlod_core.sampling import GREEDY, SamplingConfig
from vlod_core.steering import SteeringConfig
from vlod_core.text import MAX_QUESTION_CHARS, check_question

# --- questions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("question", ["", None, "   ", "\n\t  \r\n", "\u00a0\u2003"])
def test_empty_or_blank_question_is_refused(question):
    with pytest.raises(ValueError, match="question is empty"):
        check_question(question)


def test_question_is_stripped_without_a_note():
    assert check_question("  what color is the circle ?\n") == ("what color is the circle ?", [])


def test_ten_thousand_character_question_is_truncated_with_a_note():
    long_question = ("what color is the circle ? " * 400)[:10_000]
    assert len(long_question) == 10_000
    question, notes = check_question(long_question)
    assert len(question) == MAX_QUESTION_CHARS
    assert long_question.startswith(question)
    assert len(notes) == 1 and "10,000" in notes[0] and str(MAX_QUESTION_CHARS) in notes[0]


def test_question_at_the_limit_is_not_truncated():
    question, notes = check_question("a" * MAX_QUESTION_CHARS)
    assert len(question) == MAX_QUESTION_CHARS and notes == []


def test_truncated_long_question_still_runs_through_the_models(toy_pair, examples):
    """The longest allowed question overruns the toy models' 128 trained positions; it must still score."""
    question, _ = check_question("what color is the circle ? " * 400)
    result = inspect(toy_pair, examples[0].image(), question, sampling=SamplingConfig(max_new_tokens=3), seed=1)
    rows = result.decomposition.rows(0)
    assert rows and all(math.isfinite(row["std_kl"]) and math.isfinite(row["logratio"]) for row in rows)


# --- vocabulary -----------------------------------------------------------------------------------------------


def test_unknown_words_are_named_in_a_note(toy_pair, examples):
    result = inspect(toy_pair, examples[0].image(), "what color is the Zorblax quux ?", sampling=GREEDY, seed=0)
    notes = [note for note in result.notes if "vocabulary" in note]
    assert len(notes) == 1
    assert "Zorblax" in notes[0] and "quux" in notes[0]
    assert "color" not in notes[0] and "circle" not in notes[0]
    assert result.answers and result.decomposition.rows(0)  # unknown words do not stop the inspection


def test_unknown_words_in_a_typed_answer_are_named_too(toy_pair, examples):
    result = inspect(toy_pair, examples[0].image(), "what color is the circle ?", response="crimson", seed=0)
    assert any("crimson" in note for note in result.notes)


def test_known_words_give_no_note(toy_pair, examples):
    example = examples[0]
    assert unknown_words(toy_pair.tokenizer, f"{example.question} {example.answer}") == []
    result = inspect(toy_pair, example.image(), example.question, response=example.answer, seed=0)
    assert not any("vocabulary" in note for note in result.notes)


# --- typed answers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("response", ["", "   ", "\n"])
def test_empty_typed_answer_is_refused(toy_pair, examples, response):
    with pytest.raises(ValueError, match="empty"):
        inspect(toy_pair, examples[0].image(), "what color is the circle ?", response=response)


def test_typed_answer_is_scored_with_an_end_token(toy_pair, examples):
    result = inspect(toy_pair, examples[0].image(), "what color is the circle ?", response="red")
    ids = result.decomposition.ids[0][result.decomposition.mask[0]].tolist()
    assert ids[-1] == toy_pair.tokenizer.eos_token_id and len(ids) == 2


# --- numbers of a run -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(steps=0), "steps"),
        (dict(steps=-5), "steps"),
        (dict(steps=10**9), "steps"),
        (dict(batch=0), "batch"),
        (dict(batch=-1), "batch"),
        (dict(lr=0.0), "learning rate"),
        (dict(lr=-1e-3), "learning rate"),
        (dict(lr=1e9), "learning rate"),
        (dict(lr=float("nan")), "learning rate"),
        (dict(lr=float("inf")), "learning rate"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(max_grad_norm=-1.0), "max_grad_norm"),
        (dict(ablation="erase"), "ablation"),
        (dict(eval_examples=0), "eval_examples"),
        (dict(geometry_every=-1), "geometry_every"),
        (dict(eval_every=-1), "eval_every"),
        (dict(answer_examples=-1), "answer_examples"),
        (dict(samples_per_prompt=0), "samples_per_prompt"),
        (dict(batch=32, samples_per_prompt=5), "samples_per_prompt"),
        (dict(eval_max_new_tokens=0), "eval_max_new_tokens"),
    ],
)
def test_distill_config_refuses_bad_numbers_by_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DistillConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(gamma=-1.0), "gamma"),
        (dict(gamma=-1e-9), "gamma"),
        (dict(gamma=float("nan")), "gamma"),
        (dict(lam=-0.01), "lam"),
        (dict(lam=float("nan")), "lam"),
        (dict(eta=-0.5), "eta"),
        (dict(eta=0.0), "eta"),
        (dict(eta="fast"), "eta"),
        (dict(eta_every=0), "eta_every"),
        (dict(rule="vgs_turbo"), "rule"),
        (dict(estimator="guess"), "estimator"),
        (dict(average="median"), "average"),
        (dict(preserve_quantile=1.5), "quantile"),
    ],
)
def test_steering_config_refuses_bad_numbers_by_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SteeringConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens=10**6), "max_new_tokens"),
    ],
)
def test_sampling_config_refuses_bad_numbers_by_name(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SamplingConfig(**kwargs)


def test_boundary_values_are_accepted():
    DistillConfig(steps=1, batch=1, lr=1.0, max_grad_norm=0.0, eval_examples=1)
    SteeringConfig(rule="vgs", gamma=0.0, lam=0.0, eta=10)
    SamplingConfig(temperature=1e-3, top_p=1.0, max_new_tokens=1)
    SamplingConfig(greedy=True, temperature=0.0)
