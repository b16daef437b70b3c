"""Composed toy scenes (`vlod_core.toy.scenes`): the text form round-trips, bad texts say what is wrong, and the
answers a scene implies agree with the world's own answers."""

from __future__ import annotations

import numpy as np
import pytest

from vlod_core.toy import world
from vlod_core.toy.scenes import (
    SceneError,
    decode_scene,
    encode_scene,
    grammar_notes,
    reference_answer,
    scene_image,
)
from vlod_core.toy.world import SceneObject

SAMPLED = world.sample_examples(200, seed=11)


def in_reading_order(objects):
    return tuple(sorted(objects, key=lambda o: (o.row, o.col)))


def test_every_sampled_scene_round_trips():
    for example in SAMPLED:
        text = encode_scene(example.objects)
        assert decode_scene(text) == in_reading_order(example.objects)
        assert encode_scene(decode_scene(text)) == text
        assert np.array_equal(np.asarray(scene_image(decode_scene(text))), world.render(example.objects))


def test_the_text_is_canonical_whatever_the_order_case_and_spaces():
    scene = decode_scene(" R2C3-Square-Blue , r0c1-circle-red,")
    assert scene == (SceneObject("circle", "red", 0, 1), SceneObject("square", "blue", 2, 3))
    assert encode_scene(scene) == "r0c1-circle-red,r2c3-square-blue"
    assert decode_scene("") == () and encode_scene(()) == ""


@pytest.mark.parametrize(
    "text, says",
    [
        ("r0c1-circle", "is not an object"),
        ("circle-red", "is not an object"),
        ("r0c1-hexagon-red", "unknown shape 'hexagon'"),
        ("r0c1-circle-purple", "unknown colour 'purple'"),
        ("r4c0-circle-red", "rows and columns run from 0 to 3"),
        ("r0c9-circle-red", "rows and columns run from 0 to 3"),
        ("r1c1-circle-red,r1c1-square-blue", "two objects in one cell"),
        ("r0c0-circle-red," * 40, "at most"),
    ],
)
def test_a_bad_text_says_what_is_wrong(text, says):
    with pytest.raises(SceneError, match=says):
        decode_scene(text)


def test_a_bad_object_cannot_be_encoded_or_drawn():
    with pytest.raises(SceneError, match="not a toy object"):
        encode_scene([SceneObject("star", "red", 0, 0)])
    with pytest.raises(SceneError, match="two objects in one cell"):
        scene_image([SceneObject("circle", "red", 0, 0), SceneObject("cross", "blue", 0, 0)])


def test_reference_answers_agree_with_the_world():
    for example in SAMPLED:
        assert reference_answer(example.objects, example.question) == example.answer, example
    assert all(not grammar_notes(example.objects) for example in SAMPLED)


def test_ambiguous_or_unknown_questions_have_no_reference_answer():
    two_circles = decode_scene("r0c0-circle-red,r1c0-circle-blue")
    assert reference_answer(two_circles, "what color is the circle ?") is None  # which circle?
    assert reference_answer(two_circles, "which shape is leftmost ?") is None  # same column
    assert reference_answer(two_circles, "which shape is red ?") == "the circle"
    assert reference_answer(two_circles, "how many shapes are there ?") == "two shapes"
    assert reference_answer(two_circles, "is it a photo ?") is None
    notes = " ".join(grammar_notes(two_circles))
    assert "circle appears more than once" in notes and "leftmost" in notes
    assert "empty" in " ".join(grammar_notes(()))


def test_scene_changes_name_the_edited_cells():
    from vlod_core.toy.scenes import scene_changes

    before = decode_scene("r0c1-circle-red,r2c3-square-blue")
    after = decode_scene("r0c1-circle-blue,r2c3-square-blue,r3c0-cross-yellow")
    assert scene_changes(before, after) == [
        "row 1, column 2: red circle → blue circle",
        "row 4, column 1: nothing → yellow cross",
    ]
    assert scene_changes(after, after) == []
