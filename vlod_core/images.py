"""Turning whatever a user uploads into one RGB image, or a clear `ImageError`.

Checks, in order: size in bytes, that Pillow recognises an image format, the declared pixel count
(before decoding, so a few-KB decompression bomb is refused without allocating gigabytes), then a full
decode (catches truncated files). Then it normalises: EXIF rotation applied, first frame of an animation
(with a note), any mode (CMYK, 16-bit, palette, alpha, greyscale) converted to RGB, extreme aspect ratios
padded towards square, tiny images scaled up, huge ones scaled down.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000  # declared width x height; refused before decoding
MAX_SIDE = 1024  # larger images are scaled down (every VLM resizes anyway)
MIN_SIDE = 16
MAX_ASPECT = 4.0  # wider than this gets padded, so the content is not squashed into a line
# Only these decoders ever see user bytes: Pillow would otherwise also try EPS (which runs Ghostscript),
# PDF, and a long tail of rarely-audited formats. (Phone-camera MPO files come in through the JPEG decoder.)
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
# What Pillow's decoders raise on damaged input (a fuzz test in tests/test_images.py feeds it broken files).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, TypeError, IndexError, EOFError, struct.error)


class ImageError(ValueError):
    """The file cannot be used as an image; the message is for the user as it is."""


@dataclass
class LoadedImage:
    image: Image.Image  # RGB
    notes: list[str] = field(default_factory=list)


def load_image(source: bytes | str | Path, max_bytes: int = MAX_UPLOAD_BYTES) -> LoadedImage:
    """A checked, normalised RGB image from bytes or a path."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{source}: no such image file")
        if path.stat().st_size > max_bytes:
            raise ImageError(
                f"{path.name} is {path.stat().st_size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB"
            )
        data = path.read_bytes()
    else:
        data = bytes(source)
    if not data:
        raise ImageError("the file is empty")
    if len(data) > max_bytes:
        raise ImageError(f"the file is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
    try:
        opened = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as error:
        raise ImageError(f"refused: {error}") from None
    except UnidentifiedImageError:
        raise ImageError("not an image vlod can read (expected PNG, JPEG, GIF, WebP, BMP or TIFF)") from None
    except _DECODE_ERRORS as error:
        raise ImageError(f"the image is damaged or truncated ({error})") from None
    width, height = opened.size
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"refused: the image declares {width}x{height} pixels (over {MAX_PIXELS:,}); it may be a decompression bomb"
        )
    notes = []
    try:
        frames = getattr(opened, "n_frames", 1)
        if frames > 1:
            notes.append(f"animated image with {frames} frames: using the first frame")
            opened.seek(0)
        opened.load()
        image = _normalise(opened, notes)
    except (*_DECODE_ERRORS, Image.DecompressionBombError) as error:
        raise ImageError(f"the image is damaged or truncated ({error})") from None
    return LoadedImage(image, notes)


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        notes.append(f"{image.mode} image scaled to 8 bits")
        image = image.point(lambda v: v / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (0, 0, 0))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        notes.append("transparency flattened onto black")
        return flat
    return image.convert("RGB")


def _normalise(image: Image.Image, notes: list[str]) -> Image.Image:
    try:
        rotated = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS:  # damaged EXIF block: the pixels are fine, only the orientation is unknown
        rotated = None
        notes.append("EXIF data unreadable: orientation not applied")
    if rotated is not None and rotated.size != image.size:
        notes.append("EXIF rotation applied")
    image = _to_rgb(rotated if rotated is not None else image, notes)
    width, height = image.size
    # Scale down before padding: padding a declared 60000x20 strip first would allocate a 60000x15000 canvas.
    if max(width, height) > MAX_SIDE:
        scale = MAX_SIDE / max(width, height)
        image = image.resize(
            (max(1, round(width * scale)), max(1, round(height * scale))), Image.BICUBIC, reducing_gap=3.0
        )
    if max(image.size) / min(image.size) > MAX_ASPECT:
        side = max(image.size)
        short = math.ceil(side / MAX_ASPECT)
        target = (side, short) if width > height else (short, side)
        canvas = Image.new("RGB", target, (0, 0, 0))
        canvas.paste(image, ((target[0] - image.width) // 2, (target[1] - image.height) // 2))
        image = canvas
        notes.append(
            f"very {'wide' if width > height else 'tall'} image ({width}x{height}) padded to {target[0]}x{target[1]}"
        )
    if min(image.size) < MIN_SIDE:
        scale = MIN_SIDE / min(image.size)
        image = image.resize(
            (max(MIN_SIDE, round(image.width * scale)), max(MIN_SIDE, round(image.height * scale))), Image.NEAREST
        )
        notes.append("tiny image scaled up")
    return image


THUMBNAIL_SIDE = 48
THUMBNAIL_PREFIX = "data:image/png;base64,"


def thumbnail_uri(image: Image.Image, side: int = THUMBNAIL_SIDE) -> str:
    """A small PNG of `image` as a data URI: run cards carry one per shown row, so a saved card shows its images."""
    import base64

    small = image.convert("RGB").copy()
    small.thumbnail((side, side), Image.NEAREST if max(image.size) <= 2 * side else Image.BICUBIC)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return THUMBNAIL_PREFIX + base64.b64encode(buffer.getvalue()).decode()
