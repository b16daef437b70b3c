"""Evaluation against the teacher: the one-pass shortcuts against real generation, the metrics against a
direct computation, caching of the teacher's answers, and distillation on a user's rows raising agreement."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from PIL import Image, ImageDraw

import vlod_core.evaluation as evaluation_module
from vlod_core.data import Row, TrainingData, split_rows
from vlod_core.distill import DistillConfig, distill
from vlod_core.engine import rollout
from vlod_core.evaluation import EvalSet, evaluate, exact_match, normalise_whitespace, teacher_accuracy
from vlod_core.losses import kl
from vlod_core.pair import ModelPair
from vlod_core.sampling import SamplingConfig, decode, generate
from vlod_core.toy.source import held_out_rows

MAX_NEW = 6


@pytest.fixture(scope="module")
def rows():
    return held_out_rows(24)


def greedy_texts(model, pair, rows, with_image: bool) -> list[str]:
    images = [r.load_image() for r in rows] if with_image else [None] * len(rows)
    config = SamplingConfig(greedy=True, max_new_tokens=MAX_NEW)
    generated = generate(model, pair.processor, [r.question for r in rows], images, config)
    return [
        normalise_whitespace(decode(pair.tokenizer, ids)) + ("" if ids[-1] == pair.tokenizer.eos_token_id else "…")
        for ids in generated
    ]


def test_exact_match_shortcut_agrees_with_greedy_generation(toy_pair, rows):
    hits = exact_match(toy_pair.teacher, toy_pair.processor, rows, toy_pair.vocab_size)
    for context, with_image in (("image", True), ("ablated", False)):
        generated = generate(
            toy_pair.teacher,
            toy_pair.processor,
            [r.question for r in rows],
            [r.load_image() for r in rows] if with_image else [None] * len(rows),
            SamplingConfig(greedy=True, max_new_tokens=16),
        )
        eos = toy_pair.tokenizer.eos_token_id
        expected = [decode(toy_pair.tokenizer, ids) == r.answer and ids[-1] == eos for ids, r in zip(generated, rows)]
        assert hits[context].tolist() == expected
    assert hits["image"].any()  # the small teacher gets some right: the comparison is not all-False


def test_agreement_shortcut_equals_comparing_both_models_greedy_answers(toy_pair, rows):
    eval_set = EvalSet(rows, max_new_tokens=MAX_NEW)
    per_row = evaluation_module.per_row_metrics(toy_pair.student, toy_pair, eval_set)
    for suffix, with_image in (("image", True), ("no_image", False)):
        teacher = greedy_texts(toy_pair.teacher, toy_pair, rows, with_image)
        student = greedy_texts(toy_pair.student, toy_pair, rows, with_image)
        assert per_row[f"agreement_{suffix}"] == [float(t == s) for t, s in zip(teacher, student)]
    assert 0 < sum(per_row["agreement_image"]) < len(rows)  # neither vacuous nor trivial


def test_token_agreement_and_kl_equal_a_direct_computation(toy_pair, rows):
    eval_set = EvalSet(rows[:8], max_new_tokens=MAX_NEW)
    per_row = evaluation_module.per_row_metrics(toy_pair.student, toy_pair, eval_set)
    answers = eval_set.teacher_reference(toy_pair).answers["image"]
    with torch.no_grad():
        four = rollout(
            toy_pair, [r.load_image() for r in rows[:8]], [r.question for r in rows[:8]], responses=answers
        ).four
    mask = four.response_mask.double()
    per_token = kl(four.student_image.double(), four.teacher_image.double(), mask)
    expected_kl = (per_token.sum(-1) / mask.sum(-1)).tolist()
    matches = (four.student_image.argmax(-1) == four.response_ids).double() * mask
    expected_tokens = (matches.sum(-1) / mask.sum(-1)).tolist()
    assert per_row["kl_image"] == pytest.approx(expected_kl, abs=1e-5)
    assert per_row["token_agreement_image"] == pytest.approx(expected_tokens, abs=1e-6)


def test_a_model_against_itself_agrees_completely(toy_pair, rows):
    same = ModelPair(toy_pair.teacher, toy_pair.teacher, toy_pair.processor, toy_pair.spec, toy_pair.vocab_size)
    result = evaluate(same, EvalSet(rows[:12], max_new_tokens=MAX_NEW))
    for suffix in ("image", "no_image"):
        assert result[f"agreement_{suffix}"] == 1.0 and result[f"token_agreement_{suffix}"] == 1.0
        assert abs(result[f"kl_{suffix}"]) < 1e-5
        assert result.stderr[f"agreement_{suffix}"] == 0.0


def test_names_errors_and_categories_of_an_evaluation(toy_pair, rows):
    result = evaluate(toy_pair, EvalSet(rows, max_new_tokens=MAX_NEW))
    out = result.to_dict()
    for metric in ("agreement", "token_agreement", "kl", "accuracy"):
        for suffix in ("image", "no_image"):
            assert f"{metric}_{suffix}" in out and math.isfinite(out["stderr"][f"{metric}_{suffix}"])
    p = out["accuracy_image"]
    assert out["stderr"]["accuracy_image"] == pytest.approx(math.sqrt(p * (1 - p) / len(rows)))
    assert out["eval_rows"] == len(rows) and out["eval_seen_in_training"] is False
    categories = out["per_category"]["accuracy_image"]
    assert set(categories) == {r.category for r in rows}  # the toy world's question types, from the rows
    without_answers = [Row(r.image, r.question) for r in rows[:6]]
    bare = evaluate(toy_pair, EvalSet(without_answers, max_new_tokens=MAX_NEW)).to_dict()
    assert "accuracy_image" not in bare and "agreement_image" in bare  # absent, not 0
    assert teacher_accuracy(toy_pair, EvalSet(without_answers)) == {}
    teacher = teacher_accuracy(toy_pair, EvalSet(rows, max_new_tokens=MAX_NEW))
    assert 0 <= teacher["accuracy_no_image"] <= teacher["accuracy_image"] <= 1


def test_the_teachers_answers_are_computed_once_per_evaluation_set(toy_pair, rows, monkeypatch):
    calls = []
    real = evaluation_module.sample

    def counting(model, *args, **kwargs):
        calls.append(model is toy_pair.teacher)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(evaluation_module, "sample", counting)
    eval_set = EvalSet(rows[:10], max_new_tokens=MAX_NEW, batch_size=4)
    first = evaluate(toy_pair, eval_set)
    teacher_calls = sum(calls)
    assert teacher_calls == 2 * 3  # two contexts, three chunks
    second = evaluate(toy_pair, eval_set)
    assert sum(calls) == teacher_calls and first == second


def user_rows() -> list[Row]:
    """A user's own pictures: drawn here with PIL (not the toy renderer), at another size than 64x64."""
    colours = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 240), "yellow": (240, 210, 30)}
    scenes = [("circle", "red", 0, 0), ("square", "blue", 1, 2), ("circle", "green", 2, 1), ("square", "yellow", 3, 3)]
    rows = []
    for shape, colour, row, col in scenes:
        image = Image.new("RGB", (96, 96), (0, 0, 0))
        cell = 24
        box = (col * cell + 4, row * cell + 4, col * cell + cell - 4, row * cell + cell - 4)
        (ImageDraw.Draw(image).ellipse if shape == "circle" else ImageDraw.Draw(image).rectangle)(box, colours[colour])
        rows += [Row(image, f"what color is the {shape} ?"), Row(image, f"which shape is {colour} ?")]
    return rows


def test_distilling_on_a_users_rows_raises_agreement_with_the_teacher(toy_pair):
    split = split_rows(user_rows())
    assert split.seen_in_training  # 8 rows: too few to hold any out, and the card says so
    data = TrainingData.from_split(split, "my images", show=8)
    config = DistillConfig(steps=30, batch=8, lr=3e-3, eval_max_new_tokens=MAX_NEW, answer_examples=8)
    result = distill(toy_pair, config, data)
    before, after = result.card.before, result.card.after
    assert before["eval_rows"] == 8 and after["eval_seen_in_training"] is True
    assert "accuracy_image" not in after  # the user gave no answers
    assert after["kl_image"] < 0.7 * before["kl_image"], (before["kl_image"], after["kl_image"])
    assert after["agreement_image"] > before["agreement_image"], (before, after)
    assert len(result.card.answers_after) == 8 and all("teacher_image" in a for a in result.card.answers_after)
    assert result.card.data["name"] == "my images" and result.card.data["eval_seen_in_training"] is True


def test_several_samples_per_prompt_answer_each_prompt_k_times(toy_pair):
    from vlod_core.distill import data_rollouts

    data = TrainingData.from_split(split_rows(user_rows()), "my images")
    config = DistillConfig(steps=1, batch=8, samples_per_prompt=4)
    images, questions, responses = data_rollouts(data, config, process=0, processes=1)(0)
    assert len(questions) == 8 and len(set(questions)) == 2 and responses is None
    assert questions[:4] == [questions[0]] * 4
    result = distill(toy_pair, config, data, evaluate_model=False)
    assert result.card.records[0]["response_tokens"] > 0


def test_runs_on_the_same_data_share_the_teachers_answers(toy_pair, monkeypatch):
    from vlod_core.toy.source import toy_data

    calls = []
    real = evaluation_module.sample
    monkeypatch.setattr(
        evaluation_module,
        "sample",
        lambda model, *a, **k: calls.append(model is toy_pair.teacher) or real(model, *a, **k),
    )
    data = toy_data(eval_rows=8, show_rows=0)
    config = DistillConfig(steps=1, batch=4, eval_examples=8, answer_examples=0, eval_max_new_tokens=MAX_NEW)
    distill(toy_pair, config, data)
    first = sum(calls)
    distill(toy_pair, dataclasses.replace(config, seed=1), data)
    assert first > 0 and sum(calls) == first  # the second run asked the teacher nothing
