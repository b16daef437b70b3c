"""The procedural visual question-answering world the toy pair lives in.

Images are 64x64 pixels on a dark background, split into a 4x4 grid of 16-pixel cells with at most one
object per cell (one object per vision patch: the prototype found tiny towers learn far faster that way).
Questions ask about colour, shape, count and the leftmost object. The statistics are skewed on purpose so
that the question alone gets about half of the answers right (a real language prior) while the rest needs
the image: that gap is what decomposed distillation is about.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

IMAGE_SIZE = 64
CELL = 16
GRID = IMAGE_SIZE // CELL

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow")
COUNT_WORDS = ("one", "two", "three", "four")
QUESTION_TYPES = ("colour", "shape", "count", "leftmost")

RGB = {
    "red": (230, 45, 45),
    "green": (40, 200, 70),
    "blue": (60, 100, 245),
    "yellow": (240, 215, 40),
}
# Skews that give the question alone a real prior: each shape has a favourite colour, some shapes are
# more common than others, and two objects is the most common count.
SHAPE_WEIGHTS = np.array([0.4, 0.25, 0.2, 0.15])
FAVOURITE_COLOUR = {"circle": "red", "square": "blue", "triangle": "green", "cross": "yellow"}
FAVOURITE_PROBABILITY = 0.5
COUNT_WEIGHTS = np.array([0.15, 0.5, 0.2, 0.15])


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    row: int
    col: int


@dataclass(frozen=True)
class Example:
    """One (image, question, answer) triple; `answer` is the full reference response text."""

    objects: tuple[SceneObject, ...]
    question: str
    answer: str
    question_type: str

    def image(self) -> Image.Image:
        return Image.fromarray(render(self.objects))


def _sample_objects(rng: np.random.Generator) -> tuple[SceneObject, ...]:
    count = int(rng.choice(4, p=COUNT_WEIGHTS)) + 1
    shapes = rng.choice(len(SHAPES), size=count, replace=False, p=SHAPE_WEIGHTS)
    free_colours = list(COLOURS)
    while True:  # a unique leftmost column keeps the "leftmost" question well-posed
        cells = rng.choice(GRID * GRID, size=count, replace=False)
        cols = sorted(int(c) % GRID for c in cells)
        if count == 1 or cols[0] != cols[1]:
            break
    objects = []
    for shape_index, cell in zip(shapes, cells):
        shape = SHAPES[int(shape_index)]
        favourite = FAVOURITE_COLOUR[shape]
        if favourite in free_colours and rng.random() < FAVOURITE_PROBABILITY:
            colour = favourite
        else:
            colour = free_colours[int(rng.integers(len(free_colours)))]
        free_colours.remove(colour)
        objects.append(SceneObject(shape, colour, int(cell) // GRID, int(cell) % GRID))
    return tuple(objects)


def answer(objects: tuple[SceneObject, ...], kind: str, target: SceneObject | None = None) -> str:
    """The reference answer to a question of type `kind` about `objects` (`target`: the object a colour or
    shape question names); the one place the answers' wording lives."""
    if kind == "colour":
        return f"it is {target.colour}"
    if kind == "shape":
        return f"the {target.shape}"
    if kind == "count":
        n = len(objects)
        return f"{COUNT_WORDS[n - 1]} {'shape' if n == 1 else 'shapes'}"
    if kind == "leftmost":
        return f"the {min(objects, key=lambda o: o.col).shape}"
    raise ValueError(f"unknown question type {kind!r}; expected one of {QUESTION_TYPES}")


def _question(objects: tuple[SceneObject, ...], kind: str, rng: np.random.Generator) -> tuple[str, str]:
    if kind not in QUESTION_TYPES:
        raise ValueError(f"unknown question type {kind!r}; expected one of {QUESTION_TYPES}")
    target = objects[int(rng.integers(len(objects)))] if kind in ("colour", "shape") else None
    if kind == "colour":
        question = f"what color is the {target.shape} ?"
    elif kind == "shape":
        question = f"which shape is {target.colour} ?"
    elif kind == "count":
        question = "how many shapes are there ?"
    else:
        question = "which shape is leftmost ?"
    return question, answer(objects, kind, target)


def sample_examples(n: int, seed: int, type_weights: tuple[float, ...] | None = None) -> list[Example]:
    """`n` examples drawn deterministically from `seed`; question types in equal shares unless weighted."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        objects = _sample_objects(rng)
        if type_weights is None:
            kind = QUESTION_TYPES[i % len(QUESTION_TYPES)]
        else:
            kind = QUESTION_TYPES[int(rng.choice(len(QUESTION_TYPES), p=np.asarray(type_weights) / sum(type_weights)))]
        question, answer = _question(objects, kind, rng)
        examples.append(Example(objects, question, answer, kind))
    return examples


def _shape_mask(shape: str, size: int) -> np.ndarray:
    """A boolean (size, size) mask of one shape centred in its cell."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    c = size / 2
    if shape == "circle":
        return (x - c) ** 2 + (y - c) ** 2 <= (size * 0.38) ** 2
    if shape == "square":
        return (np.abs(x - c) <= size * 0.34) & (np.abs(y - c) <= size * 0.34)
    if shape == "triangle":
        top, bottom = size * 0.14, size * 0.86
        half_width = (y - top) / (bottom - top) * size * 0.4
        return (y >= top) & (y <= bottom) & (np.abs(x - c) <= half_width)
    if shape == "cross":
        arm = size * 0.13
        reach = size * 0.4
        return ((np.abs(x - c) <= arm) & (np.abs(y - c) <= reach)) | ((np.abs(y - c) <= arm) & (np.abs(x - c) <= reach))
    raise ValueError(f"unknown shape {shape!r}")


_MASKS = {shape: _shape_mask(shape, CELL) for shape in SHAPES}


def render(objects: tuple[SceneObject, ...]) -> np.ndarray:
    """A (64, 64, 3) uint8 image of the scene on a black background."""
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for obj in objects:
        cell = image[obj.row * CELL : (obj.row + 1) * CELL, obj.col * CELL : (obj.col + 1) * CELL]
        cell[_MASKS[obj.shape]] = RGB[obj.colour]
    return image


def language_prior_accuracy(examples: list[Example], reference: list[Example]) -> float:
    """Accuracy of the best question-only guesser fitted on `reference`: how far the prior alone goes."""
    counts: dict[str, dict[str, int]] = {}
    for ex in reference:
        counts.setdefault(ex.question, {}).setdefault(ex.answer, 0)
        counts[ex.question][ex.answer] += 1
    best = {q: max(answers, key=answers.get) for q, answers in counts.items()}
    return float(np.mean([best.get(ex.question) == ex.answer for ex in examples]))
