"""Draw `examples/shapes/`: a dozen scenes of coloured shapes with questions and answers, as a user would.

The scenes follow the toy world's grammar (a 4x4 grid, at most one shape per cell, four shapes, four
colours) so the toy pair can answer them, but they are drawn here with PIL's own primitives at twice the
toy resolution, not by the toy world's renderer: this is what a teacher preparing a class would make.
The folder is an image folder in the Hugging Face ImageFolder convention (images + metadata.jsonl).

    python examples/make_shapes.py [--out examples/shapes]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

SIZE, GRID = 128, 4
CELL = SIZE // GRID
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (50, 90, 240), "yellow": (240, 210, 30)}
SHAPES = ("circle", "square", "triangle", "cross")
COUNT_WORDS = ("one", "two", "three", "four")


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, colour: tuple, row: int, col: int) -> None:
    left, top = col * CELL, row * CELL
    pad = CELL * 0.16
    box = (left + pad, top + pad, left + CELL - pad, top + CELL - pad)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(left + CELL / 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=colour)
    else:
        arm = CELL * 0.13
        middle_x, middle_y = left + CELL / 2, top + CELL / 2
        draw.rectangle((middle_x - arm, box[1], middle_x + arm, box[3]), fill=colour)
        draw.rectangle((box[0], middle_y - arm, box[2], middle_y + arm), fill=colour)


def scene(rng: random.Random) -> list[tuple[str, str, int, int]]:
    """(shape, colour, row, col) of 1-4 objects: distinct shapes and colours, one leftmost column."""
    count = rng.choice([1, 2, 2, 3, 4])
    while True:
        cells = rng.sample(range(GRID * GRID), count)
        cols = sorted(c % GRID for c in cells)
        if count == 1 or cols[0] != cols[1]:
            break
    shapes, colours = rng.sample(SHAPES, count), rng.sample(list(COLOURS), count)
    return [(s, c, cell // GRID, cell % GRID) for s, c, cell in zip(shapes, colours, cells)]


def questions(objects, rng: random.Random) -> list[tuple[str, str]]:
    target = rng.choice(objects)
    leftmost = min(objects, key=lambda o: o[3])
    n = len(objects)
    pool = [
        (f"what color is the {target[0]} ?", f"it is {target[1]}"),
        (f"which shape is {target[1]} ?", f"the {target[0]}"),
        ("how many shapes are there ?", f"{COUNT_WORDS[n - 1]} {'shape' if n == 1 else 'shapes'}"),
        ("which shape is leftmost ?", f"the {leftmost[0]}"),
    ]
    return rng.sample(pool, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "shapes"))
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    lines = []
    for index in range(args.scenes):
        objects = scene(rng)
        image = Image.new("RGB", (SIZE, SIZE), (0, 0, 0))
        draw = ImageDraw.Draw(image)
        for shape, colour, row, col in objects:
            draw_shape(draw, shape, COLOURS[colour], row, col)
        name = f"scene_{index + 1:02d}.png"
        image.save(out / name, optimize=True)
        for question, answer in questions(objects, rng):
            lines.append(json.dumps({"file_name": name, "question": question, "answer": answer}))
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.scenes} images and {len(lines)} questions to {out}")


if __name__ == "__main__":
    main()
