"""Occlusion map: which parts of the image one response token's visual term depends on.

For a chosen response token `y_t`, each cell of a grid over the image is covered in turn and the token
is re-scored. The map holds the change of its visual log-ratio term (METHOD.md's additive split)

    logratio_vis = (log pI(y) − log px(y)) − (log qI(y) − log qx(y))

per cell. Only the image context changes when a cell is covered, so the image-free terms cancel:
`Δ logratio_vis = Δ log pI(y) − Δ log qI(y)`, and only the two image-context passes are re-run (all
occluded copies in batches). A positive value means covering that cell cost the teacher more belief in
`y` than it cost the student: the teacher looks there and the student does not (yet).

A covered cell is filled with the image's own background colour by default (`fill="background"`: the
median of its border pixels). A fixed mid-grey would itself be a new object on a dark background, so
every empty cell would score and the object's own cell would look weakest; with the background colour an
empty cell is unchanged and scores exactly 0. `grey` and `blur` (the cell blurred) are the alternatives.

The grid defaults to the model's own patch grid when the processor has a fixed size and a patch size
(the toy pair: 4x4 cells of 16 px, one object per cell), and to 8x8 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter

from vlod_core.engine import rollout
from vlod_core.losses import sampled_logratios
from vlod_core.pair import ModelPair

GREY = (128, 128, 128)
FILLS = ("background", "grey", "blur")  # what a covered cell is filled with
DEFAULT_GRID = 8
MAX_GRID = 16


@dataclass
class OcclusionMap:
    delta: np.ndarray  # (rows, cols): change of the token's logratio_vis when that cell is covered
    baseline: float  # the token's logratio_vis on the intact image
    token: str
    position: int  # index of the token in the response
    grid: tuple[int, int]  # (rows, cols)
    fill: str = "background"  # what covered the cells (FILLS)

    def to_dict(self) -> dict:
        return {
            "delta": self.delta.tolist(),
            "baseline": self.baseline,
            "token": self.token,
            "position": self.position,
            "grid": list(self.grid),
            "fill": self.fill,
        }


def _size_field(size, key: str):
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def default_grid(processor, fallback: int = DEFAULT_GRID) -> tuple[int, int]:
    """The model's patch grid when the processor resizes to a fixed size, else `fallback` x `fallback`."""
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    patch = getattr(processor, "patch_size", None)
    height, width = _size_field(size, "height"), _size_field(size, "width")
    if isinstance(patch, int) and patch > 0 and height and width:
        rows, cols = height // patch, width // patch
        if 2 <= rows <= MAX_GRID and 2 <= cols <= MAX_GRID:
            return rows, cols
    return fallback, fallback


def cell_box(size: tuple[int, int], grid: tuple[int, int], row: int, col: int) -> tuple[int, int, int, int]:
    """Pixel box (left, top, right, bottom) of one grid cell of an image of `size` = (width, height)."""
    width, height = size
    rows, cols = grid
    return (col * width // cols, row * height // rows, (col + 1) * width // cols, (row + 1) * height // rows)


def background_colour(image: Image.Image) -> tuple[int, int, int]:
    """The image's own background: the per-channel median of its outermost ring of pixels."""
    pixels = np.asarray(image.convert("RGB"))  # (H, W, 3)
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])  # (2W + 2H - 4, 3)
    return tuple(int(v) for v in np.median(border, axis=0))


def fill_source(image: Image.Image, fill: str) -> tuple[int, int, int] | Image.Image:
    """What `occlude` paints a cell with for a `FILLS` name: a colour, or (blur) a blurred copy to cut from."""
    if fill == "background":
        return background_colour(image)
    if fill == "grey":
        return GREY
    if fill == "blur":
        return image.convert("RGB").filter(ImageFilter.GaussianBlur(radius=max(2, min(image.size) // 16)))
    raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")


def occlude(
    image: Image.Image, grid: tuple[int, int], row: int, col: int, fill: tuple | Image.Image = GREY
) -> Image.Image:
    """A copy of `image` with one grid cell painted `fill` (a colour, or the same cell of a fill image)."""
    out = image.convert("RGB").copy()
    box = cell_box(out.size, grid, row, col)
    out.paste(fill.crop(box) if isinstance(fill, Image.Image) else fill, box)
    return out


@torch.no_grad()
def occlusion_map(
    pair: ModelPair,
    image: Image.Image,
    question: str,
    response_ids: list[int],
    position: int,
    grid: tuple[int, int] | None = None,
    ablation: str = "remove",
    fill: str = "background",
    batch_size: int = 16,
) -> OcclusionMap:
    """Δ logratio_vis of response token `position` for every covered cell (`fill`: one of FILLS), (rows, cols)."""
    response_ids = list(response_ids)
    if not 0 <= position < len(response_ids):
        raise ValueError(f"token position {position} is outside the response (length {len(response_ids)})")
    rows, cols = grid or default_grid(pair.processor)
    if not (1 <= rows <= MAX_GRID and 1 <= cols <= MAX_GRID):
        raise ValueError(f"grid must be between 1x1 and {MAX_GRID}x{MAX_GRID}, got {rows}x{cols}")
    image = image.convert("RGB")
    source = fill_source(image, fill)
    intact = rollout(pair, [image], [question], responses=[response_ids], ablation=ablation).four
    baseline = float(sampled_logratios(intact)["logratio_vis"][0, position])
    y = response_ids[position]
    student_intact = float(intact.student_image[0, position, y])
    teacher_intact = float(intact.teacher_image[0, position, y])

    cells = [(r, c) for r in range(rows) for c in range(cols)]
    deltas = []
    for start in range(0, len(cells), batch_size):
        chunk = [occlude(image, (rows, cols), r, c, source) for r, c in cells[start : start + batch_size]]
        # Only the image context changes when a cell is covered, so only the two image passes are re-run.
        four = rollout(
            pair, chunk, [question] * len(chunk), responses=[response_ids] * len(chunk), contexts=("image",)
        ).four
        student = four.student_image[:, position, y].float().cpu()
        teacher = four.teacher_image[:, position, y].float().cpu()
        deltas.append((student - student_intact) - (teacher - teacher_intact))
    delta = torch.cat(deltas).double().numpy().reshape(rows, cols)
    token = pair.tokenizer.convert_ids_to_tokens([y])[0]
    return OcclusionMap(delta, baseline, token, position, (rows, cols), fill)
