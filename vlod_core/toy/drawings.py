"""Varied drawings of toy scenes: the same scene grammar, drawn many ways, so the pair is not tied to one renderer.

`world.render` is the one clean canonical drawing (held-out figures, shown samples). Training draws each scene
with jitter a class's own drawing would have: object size and position inside its cell, anti-aliased or
aliased edges, filled or outlined, colour around each named colour, small rotations (square, triangle,
cross; a circle has none to show), a background shade near black, mild noise and blur, and canvases of other
sizes brought to 64x64 by `to_model_size`, the resize an uploaded image gets from the processor. Shapes come
from a precomputed bank of sprites so varied drawing costs about what the clean one does.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from vlod_core.toy import world

CANVASES = (64, 96, 128)  # other sizes reach the model through `to_model_size`, like an upload
VARIANTS = 96  # sprites per (shape, canvas size) in the bank
ROTATING = frozenset({"square", "triangle", "cross"})
MAX_ROTATION = math.radians(15)
COLOUR_JITTER = 22  # standard deviation per channel, in 0-255 levels
RESAMPLE = Image.BICUBIC  # what the toy processor (SigLIP's) resizes with; a test checks they agree


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether unit coordinates (object radius 1, v down) fall inside `shape`: `world`'s proportions."""
    if shape == "circle":
        return u**2 + v**2 <= 1.0
    if shape == "square":
        return (np.abs(u) <= 0.9) & (np.abs(v) <= 0.9)
    if shape == "triangle":
        return (v >= -0.95) & (v <= 0.95) & (np.abs(u) <= (v + 0.95) / 1.9 * 1.05)
    if shape == "cross":
        return ((np.abs(u) <= 0.34) & (np.abs(v) <= 1.05)) | ((np.abs(v) <= 0.34) & (np.abs(u) <= 1.05))
    raise ValueError(f"unknown shape {shape!r}")


def sprite(shape: str, cell: int, rng: np.random.Generator) -> np.ndarray:
    """One (cell, cell) float alpha mask of `shape`, drawn with random size, offset, rotation, edges and fill."""
    radius = rng.uniform(0.55, 0.95) * cell / 2
    slack = max(0.0, cell / 2 - 1.05 * radius)
    cx, cy = cell / 2 + rng.uniform(-slack, slack), cell / 2 + rng.uniform(-slack, slack)
    angle = rng.uniform(-MAX_ROTATION, MAX_ROTATION) if shape in ROTATING else 0.0
    supersample = 4 if rng.random() < 0.6 else 1  # anti-aliased or hard edges
    outline = shape != "cross" and rng.random() < 0.25
    thickness = rng.uniform(0.2, 0.35)
    n = cell * supersample
    y, x = (np.mgrid[0:n, 0:n] + 0.5) / supersample
    dx, dy = (x - cx) / radius, (y - cy) / radius
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    mask = _inside(shape, u, v)
    if outline:
        mask &= ~_inside(shape, u / (1 - thickness), v / (1 - thickness))
    return mask.reshape(cell, supersample, cell, supersample).mean(axis=(1, 3)).astype(np.float32)


def to_model_size(image: Image.Image) -> Image.Image:
    """`image` at the toy model's input size, resized as the processor resizes an upload."""
    size = (world.IMAGE_SIZE, world.IMAGE_SIZE)
    return image if image.size == size else image.convert("RGB").resize(size, RESAMPLE)


@lru_cache(maxsize=None)
def sprite_bank(seed: int = 0) -> dict[str, np.ndarray]:
    """Per shape, (len(CANVASES) * VARIANTS, 16, 16) float32 alpha masks from `seed`.

    Sprites for the larger canvases are drawn at their cell size and brought to 16 px with the resize
    `to_model_size` applies to a whole canvas (one cell at a time: cheaper, and the same pixels up to the
    cell's border, where objects have a margin anyway).
    """
    rng = np.random.default_rng(seed)
    bank = {}
    for shape in world.SHAPES:
        sprites = []
        for canvas in CANVASES:
            cell = canvas // world.GRID
            for _ in range(VARIANTS):
                alpha = sprite(shape, cell, rng)
                if cell != world.CELL:
                    small = Image.fromarray(np.round(alpha * 255).astype(np.uint8)).resize((world.CELL,) * 2, RESAMPLE)
                    alpha = np.asarray(small, dtype=np.float32) / 255
                sprites.append(alpha)
        bank[shape] = np.stack(sprites)
        bank[shape].setflags(write=False)  # shared by every caller in the process: read-only
    return bank


@lru_cache(maxsize=None)
def _noise_bank() -> np.ndarray:
    """Unit Gaussian noise to crop from: drawing fresh noise per image would cost more than the drawing."""
    noise = np.random.default_rng(0).standard_normal((2 * world.IMAGE_SIZE, 2 * world.IMAGE_SIZE, 3)).astype(np.float32)
    noise.setflags(write=False)  # shared by every caller in the process: read-only
    return noise


def draw(objects: tuple[world.SceneObject, ...], rng: np.random.Generator) -> np.ndarray:
    """A (64, 64, 3) uint8 varied drawing of the scene, drawn from `rng`."""
    bank = sprite_bank()
    cell = world.CELL
    image = np.empty((world.IMAGE_SIZE, world.IMAGE_SIZE, 3), dtype=np.float32)
    image[:] = rng.uniform(0, 35) * (1 + rng.uniform(-0.3, 0.3, size=3))
    for obj in objects:
        alpha = bank[obj.shape][int(rng.integers(len(bank[obj.shape])))][..., None]
        colour = np.clip(np.asarray(world.RGB[obj.colour]) + rng.normal(0, COLOUR_JITTER, size=3), 0, 255)
        area = image[obj.row * cell : (obj.row + 1) * cell, obj.col * cell : (obj.col + 1) * cell]
        area += alpha * (colour.astype(np.float32) - area)
    if rng.random() < 0.5:
        y, x = rng.integers(world.IMAGE_SIZE, size=2)
        image += _noise_bank()[y : y + world.IMAGE_SIZE, x : x + world.IMAGE_SIZE] * rng.uniform(2, 8)
    out = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < 0.25:
        out = np.asarray(Image.fromarray(out).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8))))
    return out


def draw_many(scenes: list[tuple[world.SceneObject, ...]], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [draw(objects, rng) for objects in scenes]
