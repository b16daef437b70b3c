"""Toy scenes a person composes: a compact text form for links, its checks, and the answers the world implies.

A scene is a tuple of `world.SceneObject`s, at most one per cell of the 4×4 grid. Its text form lists one
object per cell, `r<row>c<col>-<shape>-<colour>` joined by commas, rows and columns from 0, in reading
order (`r0c1-circle-red,r2c3-square-blue`): short enough for a URL, and the same scene always gives the same
text, so a link names one image. `decode_scene` says exactly what is wrong with a bad text (`SceneError`).

The world's own sampler draws scenes inside a narrower grammar (1–4 objects, each shape and colour at most
once, a unique leftmost column); a composed scene may leave it, and `grammar_notes` says how, since the toy
pair was never trained on such scenes. `reference_answer` is the right answer to one of the world's four
question templates about a scene, or None when the question is not one of them or is ambiguous there.
"""

from __future__ import annotations

import re

from PIL import Image

from vlod_core.toy.world import COLOURS, COUNT_WORDS, GRID, SHAPES, SceneObject, answer, render

MAX_TEXT = 16 * 24  # a full grid with the longest names, and some slack
_OBJECT = re.compile(r"r(\d+)c(\d+)-([a-z]+)-([a-z]+)")


class SceneError(ValueError):
    """A scene text that names no valid scene; the message says which part and why."""


def encode_scene(objects) -> str:
    """The compact text of a scene, in reading order (the same scene, the same text)."""
    check_scene(objects)
    ordered = sorted(objects, key=lambda o: (o.row, o.col))
    return ",".join(f"r{o.row}c{o.col}-{o.shape}-{o.colour}" for o in ordered)


def decode_scene(text: str) -> tuple[SceneObject, ...]:
    """The scene a text names (an empty text: an empty scene), in reading order; SceneError if it names none."""
    if not isinstance(text, str):
        raise SceneError(f"a scene is text, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise SceneError(f"a scene text is at most {MAX_TEXT} characters, got {len(text)}")
    objects = []
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        match = _OBJECT.fullmatch(part)
        if match is None:
            raise SceneError(f"{part!r} is not an object: write r<row>c<col>-<shape>-<colour>, e.g. r0c1-circle-red")
        row, col, shape, colour = int(match[1]), int(match[2]), match[3], match[4]
        if shape not in SHAPES:
            raise SceneError(f"{part!r}: unknown shape {shape!r} (choose from {', '.join(SHAPES)})")
        if colour not in COLOURS:
            raise SceneError(f"{part!r}: unknown colour {colour!r} (choose from {', '.join(COLOURS)})")
        objects.append(SceneObject(shape, colour, row, col))
    check_scene(objects)
    return tuple(sorted(objects, key=lambda o: (o.row, o.col)))


def check_scene(objects) -> None:
    """SceneError unless every object is a known shape and colour in its own cell of the grid."""
    seen = set()
    for obj in objects:
        where = f"r{obj.row}c{obj.col}"
        if not (0 <= obj.row < GRID and 0 <= obj.col < GRID):
            raise SceneError(f"{where}: rows and columns run from 0 to {GRID - 1}")
        if obj.shape not in SHAPES or obj.colour not in COLOURS:
            raise SceneError(f"{where}: {obj.colour} {obj.shape} is not a toy object")
        if (obj.row, obj.col) in seen:
            raise SceneError(f"{where}: two objects in one cell (a cell holds at most one)")
        seen.add((obj.row, obj.col))


def scene_image(objects) -> Image.Image:
    """The 64×64 image the toy world draws for a scene: exactly what the model is given."""
    check_scene(objects)
    return Image.fromarray(render(tuple(objects)))


def grammar_notes(objects) -> list[str]:
    """How a scene leaves the grammar the toy pair was trained on (empty when it stays inside)."""
    notes = []
    if not objects:
        notes.append("the scene is empty; the toy pair only ever saw one to four objects")
    elif len(objects) > len(COUNT_WORDS):
        notes.append(f"{len(objects)} objects; the toy pair only ever saw one to four")
    shapes, colours = [o.shape for o in objects], [o.colour for o in objects]
    for kind, names in (("shape", shapes), ("colour", colours)):
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            notes.append(f"{' and '.join(repeated)} appears more than once; each {kind} was unique in training")
    columns = sorted(o.col for o in objects)
    if len(columns) > 1 and columns[0] == columns[1]:
        notes.append("two objects share the leftmost column, so “which shape is leftmost ?” has no single answer")
    return notes


def reference_answer(objects, question: str) -> str | None:
    """The right answer to one of the world's question templates about this scene, else None."""
    words = question.strip().lower().rstrip("?").split()
    if len(words) == 5 and words[:4] == ["what", "color", "is", "the"]:
        found = [o for o in objects if o.shape == words[4]]
        return answer(objects, "colour", found[0]) if len(found) == 1 else None
    if words[:3] == ["which", "shape", "is"] and len(words) == 4:
        if words[3] == "leftmost":
            columns = sorted(o.col for o in objects)
            if not objects or (len(columns) > 1 and columns[0] == columns[1]):
                return None
            return answer(objects, "leftmost")
        found = [o for o in objects if o.colour == words[3]]
        return answer(objects, "shape", found[0]) if len(found) == 1 else None
    if words == ["how", "many", "shapes", "are", "there"] and 1 <= len(objects) <= len(COUNT_WORDS):
        return answer(objects, "count")
    return None


def describe_object(obj: SceneObject | None) -> str:
    return f"{obj.colour} {obj.shape}" if obj is not None else "nothing"


def scene_changes(before, after) -> list[str]:
    """The cells whose object differs between two scenes, in reading order, e.g. 'row 1, column 2: red
    circle → blue circle' (rows and columns counted from 1, as a person reads the grid)."""
    old = {(o.row, o.col): o for o in before}
    new = {(o.row, o.col): o for o in after}
    cells = sorted(cell for cell in old.keys() | new.keys() if old.get(cell) != new.get(cell))
    return [
        f"row {r + 1}, column {c + 1}: {describe_object(old.get((r, c)))} → {describe_object(new.get((r, c)))}"
        for r, c in cells
    ]
