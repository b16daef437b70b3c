"""Widgets more than one page uses: the sidebar's pair badge, the image picker, answers with a word diff."""

from __future__ import annotations

import streamlit as st

from vlod_app.compute import toy_samples
from vlod_app.state import Probe, current_spec, describe, get_probe, image_digest, set_probe
from vlod_core.figures import word_diff
from vlod_core.images import MAX_UPLOAD_BYTES, ImageError, load_image

UPLOAD_TYPES = ["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"]
SOURCES = ("Built-in toy sample", "Upload an image")
DEFAULT_QUESTION = "what color is the circle ?"


def page_setup(title: str) -> None:
    """Page config, title and the sidebar note of which pair is in use."""
    st.set_page_config(page_title=f"vlod · {title}", page_icon="🔬", layout="wide")
    st.sidebar.caption(f"Pair in use: **{describe(current_spec())}**. Change it on the home page.")
    probe = get_probe()
    if probe is not None:
        st.sidebar.image(probe.image, caption=f"{probe.label}: {probe.question}", width=128)


def toy_probe(index: int) -> Probe:
    example = toy_samples()[index]
    image = example.image()
    return Probe(image, f"toy sample {index + 1}", image_digest(image), example.question, "toy", (), example.answer)


def probe_or_default() -> Probe:
    """The session's probe, or the first toy sample when none was chosen yet."""
    probe = get_probe()
    if probe is None:
        probe = toy_probe(0)
        set_probe(probe)
    return probe


def image_picker() -> Probe | None:
    """Choose a toy sample or upload an image; the choice becomes the session's probe."""
    current = probe_or_default()
    source = st.radio(
        "Image",
        SOURCES,
        index=SOURCES.index(SOURCES[1] if current.source == "upload" else SOURCES[0]),
        horizontal=True,
        key="image_source",
    )
    if source == SOURCES[0]:
        samples = toy_samples()
        labels = [f"{i + 1}: {ex.question}" for i, ex in enumerate(samples)]
        default = int(current.label.rsplit(" ", 1)[-1]) - 1 if current.source == "toy" else 0
        choice = st.selectbox(
            "Toy sample", range(len(samples)), index=default, format_func=labels.__getitem__, key="toy_sample"
        )
        if current.source != "toy" or current.label != f"toy sample {choice + 1}":
            set_probe(toy_probe(choice))
        return get_probe()
    upload = st.file_uploader(
        f"An image (PNG, JPEG, GIF, WebP, BMP, TIFF; at most {MAX_UPLOAD_BYTES // 2**20} MiB)",
        type=UPLOAD_TYPES,
        key="image_upload",
    )
    if upload is None:
        if current.source == "upload":
            st.caption(f"Using the image uploaded before: {current.label}. Upload another to replace it.")
            return current
        st.info("Upload an image to look at, or pick a built-in toy sample.")
        return None
    try:
        loaded = load_image(upload.getvalue())
    except ImageError as error:
        st.error(f"{upload.name}: {error}")
        return None
    digest = image_digest(loaded.image)
    if current.source != "upload" or current.digest != digest:
        question = current.question or DEFAULT_QUESTION
        set_probe(Probe(loaded.image, upload.name, digest, question, "upload", tuple(loaded.notes)))
    for note in loaded.notes:
        st.info(f"{upload.name}: {note}")
    return get_probe()


def _escape(word: str) -> str:
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!<>|~:$" else c for c in word)


def diff_markdown(before: str, after: str) -> str:
    """Markdown of `after` with words removed since `before` struck through in red, new ones in green."""
    parts = []
    for op, word in word_diff(before, after):
        text = _escape(word)
        parts.append(text if op == "same" else (f":red[~~{text}~~]" if op == "removed" else f":green[**{text}**]"))
    return " ".join(parts) or "_(empty)_"
