"""A second renderer of toy scenes for tests, sharing no drawing code with `vlod_core.toy.drawings`.

It draws with PIL's ImageDraw primitives (ellipse, rectangle, polygon, two bars) on a 96 or 128 px canvas,
with its own proportions and colours and its own anti-aliasing (drawn at 3x and reduced with a box filter,
or hard edges), saves a PNG, and brings it in the way an upload comes in: `vlod_core.images.load_image`,
then the toy processor's resize (in the evaluation). What the pair understands here it understands from the scene, not from
one renderer's pixels.
"""

from __future__ import annotations

import io
import math
import random

from PIL import Image, ImageDraw

from vlod_core.images import load_image
from vlod_core.toy import world

PALETTE = {  # named colours as a person might pick them, not the world's RGB values
    "red": [(220, 30, 40), (200, 50, 50), (255, 60, 60)],
    "green": [(30, 180, 60), (60, 210, 90), (20, 160, 40)],
    "blue": [(40, 80, 230), (70, 120, 255), (30, 60, 200)],
    "yellow": [(250, 220, 20), (230, 200, 60), (255, 235, 90)],
}


def _shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], fill, outline_width: int):
    x0, y0, x1, y1 = box
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    style = {"outline": fill, "width": outline_width} if outline_width else {"fill": fill}
    if shape == "circle":
        draw.ellipse(box, **style)
    elif shape == "square":
        draw.rectangle((cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r), **style)
    elif shape == "triangle":
        draw.polygon([(cx, cy - 0.9 * r), (cx + r, cy + 0.9 * r), (cx - r, cy + 0.9 * r)], **style)
    elif shape == "cross":
        arm = 0.3 * r
        draw.rectangle((cx - arm, cy - r, cx + arm, cy + r), fill=fill)
        draw.rectangle((cx - r, cy - arm, cx + r, cy + arm), fill=fill)
    else:
        raise ValueError(shape)


def draw_scene(objects: tuple[world.SceneObject, ...], rng: random.Random) -> Image.Image:
    """A 96 or 128 px RGB image of the scene, as an upload of it reaches the processor (which resizes it)."""
    canvas = rng.choice((96, 128))
    smooth = rng.random() < 0.5
    scale = 3 if smooth else 1
    side = canvas * scale
    shade = rng.randint(0, 25)
    image = Image.new("RGB", (side, side), (shade, shade, shade + rng.randint(0, 10)))
    draw = ImageDraw.Draw(image)
    cell = side / world.GRID
    for obj in objects:
        radius = cell / 2 * rng.uniform(0.6, 0.85)
        margin = cell / 2 - radius
        cx = (obj.col + 0.5) * cell + rng.uniform(-margin, margin)
        cy = (obj.row + 0.5) * cell + rng.uniform(-margin, margin)
        outline = 0 if obj.shape == "cross" or rng.random() < 0.7 else max(2, math.ceil(radius * 0.3))
        _shape(draw, obj.shape, (cx - radius, cy - radius, cx + radius, cy + radius), rng.choice(PALETTE[obj.colour]), outline)
    if smooth:
        image = image.reduce(scale)  # box-filter anti-aliasing
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return load_image(buffer.getvalue()).image
