"""The reasoning world's questions and chains (`vlod_core.toy.reasoning`): right answers, two styles, lengths."""

from __future__ import annotations

import numpy as np
import pytest

from vlod_core.answers import final_answer
from vlod_core.toy import reasoning, world
from vlod_core.toy.reasoning import KINDS, STYLES
from vlod_core.toy.source import held_out_rows, max_new_tokens, toy_data

Obj = world.SceneObject


def _tokens(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def tokenizer():
    return reasoning.build_reasoning_tokenizer()


SCENE = (Obj("circle", "red", 0, 2), Obj("square", "blue", 1, 0), Obj("triangle", "green", 3, 3))


@pytest.mark.parametrize(
    "kind, expected",
    [
        # 3 shapes, red is there: 3 - 1; circle there, cross not: 1 + 0; the square is leftmost and blue.
        ("not_colour", {"how many shapes are not red ?": "two", "how many shapes are not yellow ?": "three"}),
        (
            "two_shapes",
            {"how many circles and crosses together ?": "one", "how many squares and circles together ?": "two"},
        ),
        ("leftmost_colour", {"what color is the leftmost shape ?": "blue"}),
        (
            "left_of",
            {"is the red shape left of the green shape ?": "yes", "is the green shape left of the blue shape ?": "no"},
        ),
    ],
)
def test_questions_answer_what_the_scene_shows(kind, expected):
    seen = {}
    for seed in range(200):
        q = reasoning.question(SCENE, kind, np.random.default_rng(seed))
        seen[q.text] = q.answer
    for text, answer in expected.items():
        assert seen.get(text) == answer, (text, seen.get(text))


@pytest.mark.parametrize("style", STYLES)
def test_every_chain_parses_to_its_answer_decoded_or_not(style, tokenizer):
    for ex in reasoning.sample_examples(200, seed=3, style=style):
        q_answer = final_answer(ex.answer, "boxed")
        decoded = tokenizer.decode(_tokens(tokenizer, ex.answer))
        assert "\\boxed{ " in decoded  # the word-level tokenizer decodes with spaces
        assert final_answer(decoded, "boxed") == q_answer
        assert tokenizer.unk_token_id not in _tokens(tokenizer, ex.answer + " " + ex.question)


def test_the_boxed_answer_is_the_question_answer():
    rng = np.random.default_rng(0)
    for kind in KINDS:
        objects = reasoning.sample_scene(rng, kind)
        q = reasoning.question(objects, kind, rng)
        for style in STYLES:
            assert final_answer(reasoning.chain(q, style, rng).text, "boxed") == q.answer


@pytest.mark.parametrize("style", STYLES)
def test_chains_are_20_to_60_tokens_and_mostly_language(style, tokenizer):
    examples = reasoning.sample_examples(400, seed=5, style=style)
    lengths = [len(_tokens(tokenizer, ex.answer)) for ex in examples]
    assert 20 <= min(lengths) and max(lengths) + 1 <= 60  # +1: the end-of-turn token
    assert max(lengths) + 1 <= reasoning.MAX_NEW_TOKENS
    rng = np.random.default_rng(1)
    for kind in KINDS:
        q = reasoning.question(reasoning.sample_scene(rng, kind), kind, rng)
        c = reasoning.chain(q, style, rng)
        assert 1 <= sum(c.visual) <= 0.25 * len(c.words)  # the image-read words are a minority


def test_visual_words_are_the_facts_read_off_the_image():
    scene = (Obj("square", "blue", 1, 0), Obj("circle", "red", 0, 2))
    rng = np.random.default_rng(0)
    while (q := reasoning.question(scene, "left_of", rng)).fields["c1"] != "blue":
        pass
    c = reasoning.chain(q, "teacher")
    assert [w for w, v in zip(c.words, c.visual) if v] == ["one", "three"]  # the columns, counted from 1


def test_the_styles_differ_in_phrasing_and_order():
    rng = np.random.default_rng(2)
    objects = (Obj("circle", "red", 0, 2), Obj("square", "blue", 1, 0))
    q = reasoning.question(objects, "not_colour", rng)
    teacher, student = reasoning.chain(q, "teacher"), reasoning.chain(q, "student")
    assert teacher.answer == student.answer
    assert teacher.text != student.text
    t_facts = [w for w, v in zip(teacher.words, teacher.visual) if v]
    s_facts = [w for w, v in zip(student.words, student.visual) if v]
    assert t_facts == s_facts[::-1]  # the same facts, read in the other order
    assert len(set(teacher.words) - set(student.words)) >= 3  # own connectives


def test_the_teacher_writes_its_own_style_and_has_read_the_students():
    """Each slot: the teacher's phrasing 70 % of the time, the student's the rest; the student never writes
    the teacher's phrasings."""
    own_opener = reasoning.OPENER[0]
    teacher = reasoning.sample_examples(1000, seed=7, style="teacher", gap=1.0)
    student = reasoning.sample_examples(1000, seed=7, style="student")
    share = np.mean([own_opener in ex.answer for ex in teacher])
    assert abs(share - (1 - reasoning.READ_SHARE)) < 0.04
    assert not any(own_opener in ex.answer for ex in student)
    students_second = reasoning.OPENER[1][1]
    # The teacher prefers the student's second phrasing, the student its first: not proportional.
    assert np.mean([students_second in ex.answer for ex in teacher]) > np.mean(
        [reasoning.OPENER[1][0] in ex.answer for ex in teacher]
    )
    assert np.mean([students_second in ex.answer for ex in student]) < 0.4
    first, second = (
        np.mean([reasoning.OPENER[1][i] in ex.answer for ex in reasoning.sample_examples(1000, 7, gap=0.0)])
        for i in (0, 1)
    )
    assert first > 2 * second  # gap 0: the teacher splits its reading share as the student does
    with pytest.raises(ValueError, match="style gap"):
        reasoning.teacher_split(2.0)


def test_reference_chains_are_deterministic_and_in_the_teachers_most_likely_style():
    a = reasoning.sample_examples(50, seed=11, reference=True)
    b = reasoning.sample_examples(50, seed=11, reference=True)
    assert [e.answer for e in a] == [e.answer for e in b]
    assert all(e.answer.startswith("<reason> " + reasoning.OPENER[0]) for e in a)


def test_left_of_needs_two_objects():
    with pytest.raises(ValueError, match="two objects"):
        reasoning.question((Obj("circle", "red", 0, 0),), "left_of", np.random.default_rng(0))
    rng = np.random.default_rng(0)
    assert all(len(reasoning.sample_scene(rng, "left_of")) >= 2 for _ in range(100))


def test_the_question_alone_gets_a_prior_not_the_answers():
    held = reasoning.sample_examples(500, seed=1, reference=True)
    prior = reasoning.prior_accuracy(held, reasoning.sample_examples(5000, seed=2, reference=True))
    assert 0.3 < prior < 0.7


def test_the_data_source_serves_reference_chains_and_says_its_length():
    rows = held_out_rows(8, "reasoning")
    assert all(final_answer(r.answer, "boxed") is not None and r.category in KINDS for r in rows)
    data = toy_data(8, world_name="reasoning")
    assert data.description["answer_pattern"] == "boxed"
    assert data.description["max_new_tokens"] == max_new_tokens("reasoning") == reasoning.MAX_NEW_TOKENS
    prompts = data.train.prompts(3, 4, seed=0)
    assert [r.question for r in prompts] == [r.question for r in data.train.prompts(3, 4, seed=0)]
    assert max_new_tokens("default") is None
    assert held_out_rows(3)[0].answer == toy_data(3).eval_rows[0].answer  # the default world as it was
    with pytest.raises(ValueError, match="unknown toy world"):
        held_out_rows(3, "nowhere")


def test_the_spec_name_toy_reasoning_locates_the_reasoning_pair(tmp_path, monkeypatch):
    """`toy.folders` maps "toy-reasoning" to $VLOD_HOME/toy-reasoning (already built here: nothing is trained)
    and leaves other names alone."""
    from vlod_core import toy
    from vlod_core.pair import PairSpec

    root = tmp_path / "toy-reasoning"
    for name in ("teacher", "student", "student_blind"):
        (root / name).mkdir(parents=True)
        (root / name / "model.safetensors").write_bytes(b"")
    (root / "card.json").write_text("{}")
    monkeypatch.setenv("VLOD_HOME", str(tmp_path))
    spec = PairSpec(teacher=toy.TOY_REASONING, student=toy.TOY_REASONING, student_variant="student_blind")
    assert toy.folders(spec) == (str(root / "teacher"), str(root / "student_blind"))
    assert toy.folders(PairSpec(teacher=toy.TOY_REASONING, student="some/folder")) == (
        str(root / "teacher"),
        "some/folder",
    )
    assert toy.folders(PairSpec(teacher="a", student="b")) is None
    assert not (tmp_path / "toy").exists()


def test_a_typed_question_about_a_composed_scene_gets_the_worlds_chain():
    """The scene builder's reference: each sampled question, typed back about its scene, gives the teacher's
    reference chain; a question with no single answer in a composed scene gets none."""
    for ex in reasoning.sample_examples(200, seed=11, reference=True):
        asked = reasoning.question_from_text(ex.objects, ex.question)
        assert asked is not None and reasoning.chain(asked, "teacher").text == ex.answer, ex
    two_red = (Obj("circle", "red", 0, 0), Obj("square", "red", 1, 2))
    assert reasoning.question_from_text(two_red, "is the red shape left of the blue shape ?") is None
    assert reasoning.question_from_text(two_red, "how many shapes are not red ?") is None  # red twice
    same_column = (Obj("circle", "red", 0, 1), Obj("square", "blue", 2, 1))
    assert reasoning.question_from_text(same_column, "what color is the leftmost shape ?") is None
    assert reasoning.question_from_text(SCENE, "what shape is red ?") is None  # the default world's question
    asked = reasoning.question_from_text(SCENE, "How many shapes are not red?")  # case and spacing as typed
    assert asked is not None and asked.answer == "two"
    questions = reasoning.scene_questions(SCENE)
    assert {reasoning.question_from_text(SCENE, q).kind for q in questions} == set(KINDS)
