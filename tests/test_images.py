"""Uploads that are not clean RGB pictures: each becomes a usable RGB image with a note, or one clear ImageError.

Every image here is made in the test itself (no fixture files), so the bytes the loader sees are known exactly.
"""

from __future__ import annotations

import io
import random
import resource
import struct
import zipfile
import zlib

import pytest
from PIL import Image

from vlod_core.images import MAX_ASPECT, MAX_PIXELS, MAX_SIDE, MAX_UPLOAD_BYTES, MIN_SIDE, ImageError, load_image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def noise(size=(64, 48)) -> Image.Image:
    """Incompressible content, so a cut file is missing real pixel data."""
    return Image.effect_noise(size, 80).convert("RGB")


def centre(image: Image.Image) -> tuple[int, int, int]:
    return image.getpixel((image.width // 2, image.height // 2))


def assert_usable(image: Image.Image) -> None:
    assert image.mode == "RGB"
    assert MIN_SIDE <= min(image.size) and max(image.size) <= MAX_SIDE
    assert max(image.size) / min(image.size) <= MAX_ASPECT + 1e-6


# --- files that are not images --------------------------------------------------------------------------


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.png", encode(noise(), "PNG"))  # even a zip of an image is not an image
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"what color is the circle ?\n" * 20, id="text"),
        pytest.param(b"<html><body><img src=x></body></html>", id="html"),
        pytest.param(_zip_bytes(), id="zip"),
        pytest.param(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", id="pdf"),
        # EPS would make Pillow run Ghostscript: refused before any decoder sees it.
        pytest.param(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", id="eps"),
        pytest.param(bytes(range(256)) * 8, id="binary-garbage"),
    ],
)
def test_not_an_image_is_refused_by_name(data):
    with pytest.raises(ImageError, match="not an image"):
        load_image(data)


def test_empty_file_says_empty(tmp_path):
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(empty)


def test_missing_path_says_no_such_file(tmp_path):
    with pytest.raises(ImageError, match="no such image file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="no such image file"):
        load_image(tmp_path)  # a folder is not an image file either


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
@pytest.mark.parametrize("keep", [0.9, 0.6, 0.3])
def test_truncated_file_is_refused_as_damaged(fmt, keep):
    data = encode(noise(), fmt)
    cut = data[: int(len(data) * keep)]
    with pytest.raises(ImageError) as caught:
        load_image(cut)
    message = str(caught.value)
    assert "damaged or truncated" in message or "not an image" in message


@pytest.mark.parametrize("length", [1, 8, 16, 33, 60])
def test_png_cut_inside_its_header_is_refused(length):
    with pytest.raises(ImageError):
        load_image(encode(noise(), "PNG")[:length])


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt TIFF/EXIF tags it skips
def test_fuzzed_files_only_ever_raise_image_error():
    """Random cuts and byte flips of every accepted format: either an RGB image or ImageError, nothing else."""
    rng = random.Random(0)
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6
    sources = {fmt: encode(noise((40, 32)), fmt) for fmt in ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")}
    sources |= {"animated-gif": animated.getvalue(), "exif-jpeg": encode(noise((40, 20)), "JPEG", exif=exif)}
    outcomes = {"image": 0, "refused": 0}
    for data in sources.values():
        for _ in range(120):
            mutated = bytearray(data)
            if rng.random() < 0.4:
                mutated = mutated[: rng.randrange(1, len(mutated))]
            else:
                for _ in range(rng.randint(1, 8)):
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            try:
                loaded = load_image(bytes(mutated))
            except ImageError:
                outcomes["refused"] += 1
            else:
                assert loaded.image.mode == "RGB"
                outcomes["image"] += 1
    assert outcomes["image"] and outcomes["refused"]  # the fuzz exercised both paths


# --- decompression bombs and size limits ----------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bilevel_png(width: int, height: int, rows: int | None = None) -> bytes:
    """A 1-bit black PNG; `rows` < height writes only that many rows (a file that *declares* the size)."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height if rows is None else rows)]
    pixels = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    """A complete 30000x30000 PNG (900 M pixels, ~1 GB once decoded) that is about 100 KB on disk."""
    bomb = bilevel_png(30_000, 30_000)
    assert len(bomb) < 200_000, len(bomb)
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(bomb)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 100, f"refusing the bomb grew the process by {grown_mib:.0f} MiB"


def test_few_kb_file_declaring_a_huge_size_is_refused():
    bomb = bilevel_png(30_000, 30_000, rows=10)
    assert len(bomb) < 4096
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(bomb)


def test_pixel_limit_below_pillows_own_is_enforced():
    """8000x8000 = 64 M pixels: Pillow would decode it, vlod's own limit (40 M) refuses it, naming the size."""
    width = height = 8000
    assert width * height > MAX_PIXELS
    with pytest.raises(ImageError, match=r"8000x8000.*decompression bomb"):
        load_image(bilevel_png(width, height))


def test_upload_over_the_byte_limit_names_the_limit(tmp_path):
    too_big = b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_UPLOAD_BYTES
    with pytest.raises(ImageError, match=f"limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MiB"):
        load_image(too_big)
    path = tmp_path / "big.png"
    path.write_bytes(too_big)
    with pytest.raises(ImageError, match=r"big\.png is 10\.0 MiB; the limit is 10 MiB"):
        load_image(path)
    small_limit = encode(noise(), "PNG")
    with pytest.raises(ImageError, match="limit is 0 MiB"):
        load_image(small_limit, max_bytes=1024)


# --- formats and modes that must work ----------------------------------------------------------------------


def test_animated_gif_uses_the_first_frame_and_says_so():
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    loaded = load_image(buffer.getvalue())
    assert any("first frame" in note and "3 frames" in note for note in loaded.notes), loaded.notes
    r, g, b = centre(loaded.image)
    assert r > 200 and g < 50 and b < 50


def test_cmyk_jpeg_red_comes_out_red():
    data = encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    loaded = load_image(data)
    r, g, b = centre(loaded.image)
    assert loaded.image.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_16_bit_png_is_scaled_to_8_bits_keeping_the_ramp():
    ramp = Image.new("I;16", (256, 32))
    ramp.putdata([x * 256 for _y in range(32) for x in range(256)])
    data = encode(ramp, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    loaded = load_image(data)
    assert loaded.image.mode == "RGB"
    assert any("8 bits" in note for note in loaded.notes)
    row = [loaded.image.getpixel((x, 16))[0] for x in range(0, 256, 32)]
    assert row == sorted(row) and row[0] < 10 and row[-1] > 200  # dark to light, not all white or black
    mid = Image.new("I;16", (32, 32), 32768)
    assert abs(centre(load_image(encode(mid, "PNG")).image)[0] - 128) <= 2


def test_palette_image_keeps_its_colours():
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    loaded = load_image(encode(palette, "PNG"))
    assert centre(loaded.image) == (10, 200, 30)
    assert loaded.notes == []


def test_alpha_is_flattened_onto_black_with_a_note():
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 16, 32))  # left half opaque red, right half transparent
    loaded = load_image(encode(rgba, "PNG"))
    assert loaded.image.getpixel((4, 16)) == (255, 0, 0)
    assert loaded.image.getpixel((28, 16)) == (0, 0, 0)
    assert any("transparency" in note for note in loaded.notes)
    palette = Image.new("P", (32, 32), 2)
    palette.putpalette([0, 0, 0, 255, 255, 255, 0, 255, 0] + [0] * 759)
    loaded = load_image(encode(palette, "PNG", transparency=2))
    assert centre(loaded.image) == (0, 0, 0) and any("transparency" in note for note in loaded.notes)
    grey_alpha = load_image(encode(Image.new("LA", (32, 32), (200, 255)), "PNG"))
    assert centre(grey_alpha.image) == (200, 200, 200)


@pytest.mark.parametrize("mode,value", [("L", 200), ("1", 1)])
def test_greyscale_becomes_grey_rgb(mode, value):
    loaded = load_image(encode(Image.new(mode, (32, 32), value), "PNG"))
    r, g, b = centre(loaded.image)
    assert loaded.image.mode == "RGB" and r == g == b and r == (200 if mode == "L" else 255)


@pytest.mark.parametrize(
    "mode,value,fmt",
    [("YCbCr", (76, 85, 255), "JPEG"), ("LAB", (50, 60, 40), "TIFF"), ("F", 0.5, "TIFF"), ("I", 9, "TIFF")],
)
def test_unusual_modes_come_out_rgb(mode, value, fmt):
    loaded = load_image(encode(Image.new(mode, (32, 32), value), fmt))
    assert_usable(loaded.image)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_every_accepted_format_loads(fmt):
    loaded = load_image(encode(Image.new("RGB", (40, 40), (0, 0, 255)), fmt))
    r, g, b = centre(loaded.image)
    assert_usable(loaded.image)
    assert b > 200 and r < 40 and g < 40


def test_one_pixel_image_is_scaled_up():
    loaded = load_image(encode(Image.new("RGB", (1, 1), (0, 255, 0)), "PNG"))
    assert loaded.image.size == (MIN_SIDE, MIN_SIDE)
    assert set(loaded.image.getdata()) == {(0, 255, 0)}
    assert any("tiny" in note for note in loaded.notes)


@pytest.mark.parametrize("size", [(4000, 10), (10, 4000), (1, 300), (3000, 2)])
def test_extreme_aspect_ratio_is_padded_not_squashed(size):
    loaded = load_image(encode(Image.new("RGB", size, (0, 255, 0)), "PNG"))
    assert_usable(loaded.image)
    wide = size[0] > size[1]
    assert any(("wide" if wide else "tall") in note and "padded" in note for note in loaded.notes)
    assert (loaded.image.width > loaded.image.height) == wide
    if min(size) >= 10:  # the strip survives the downscale and sits in the middle, padding around it
        assert centre(loaded.image) == (0, 255, 0)
        corner = loaded.image.getpixel((0, 0))
        assert corner == (0, 0, 0)


def test_thin_strip_is_scaled_before_padding():
    """A 1x1,000,000 strip is a ~2 KB PNG under the pixel limit; padding it first would need a 250 G-pixel canvas."""
    data = bilevel_png(1, 1_000_000)
    assert len(data) < 8192
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loaded = load_image(data)
    assert loaded.image.size == (MAX_SIDE // int(MAX_ASPECT), MAX_SIDE)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 100, f"loading the strip grew the process by {grown_mib:.0f} MiB"


def test_large_image_is_scaled_down_within_limits():
    loaded = load_image(encode(Image.new("RGB", (3000, 2000), (0, 0, 255)), "JPEG"))
    assert loaded.image.size == (MAX_SIDE, round(2000 * MAX_SIDE / 3000))


def test_exif_rotation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # a red band on the stored image's left edge
    loaded = load_image(encode(image, "JPEG", exif=exif, quality=95))
    assert loaded.image.size == (20, 40)
    assert "EXIF rotation applied" in loaded.notes
    r, g, b = loaded.image.getpixel((10, 3))  # after a clockwise turn the left edge is on top
    assert r > 200 and g < 60 and b < 60


def test_path_and_bytes_give_the_same_image(tmp_path):
    data = encode(noise(), "PNG")
    path = tmp_path / "picture.png"
    path.write_bytes(data)
    assert list(load_image(path).image.getdata()) == list(load_image(data).image.getdata())
    assert list(load_image(str(path)).image.getdata()) == list(load_image(data).image.getdata())
