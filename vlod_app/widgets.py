"""What every page shares: its frame (`page_setup` → `View`), figures and tables to take away, the image
picker, and answers with a word diff.

`page_setup` draws, in order: the first-use build's progress (top of the page, so it is above the fold on a
projector), the title, the guided tour's step, and the sidebar (pair in use, a copy-link and an
export-this-view control, the glossary). A `View` collects the page's figures and tables as they are
drawn, so "export this view" writes exactly what is on screen, and offers each figure as PNG and SVG and
each table as CSV with a readable file name.
"""

from __future__ import annotations

import io
from dataclasses import replace

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from vlod_app import tour
from vlod_app.navigation import sidebar_menu
from vlod_app.compute import N_SAMPLES, toy_samples
from vlod_app.jobs import eta_text
from vlod_app.links import from_link, spec_from_params, view_link, write_view
from vlod_app.scene import scene_probe, starting_scene
from vlod_app.server import figure_file, toy_builds
from vlod_app.state import (
    Probe,
    current_spec,
    describe,
    get_probe,
    image_digest,
    set_probe,
    set_spec,
    toy_root,
    toy_ready,
    uses_toy,
)
from vlod_app.words import GLOSSARY, TOY_UNDERSTANDS
from vlod_app.worlds import default_question, scene_questions, world
from vlod_core.export import file_stem, find_browser, view_html
from vlod_core.figures.runs import word_diff
from vlod_core.images import MAX_SIDE, MAX_UPLOAD_BYTES, ImageError, load_image
from vlod_core.toy.scenes import SceneError, decode_scene

UPLOAD_TYPES = ["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"]
SOURCES = ("Built-in toy sample", "Upload an image", "Build a scene")
SOURCE_OF = {"toy": SOURCES[0], "upload": SOURCES[1], "scene": SOURCES[2]}
UPLOAD_ERROR_KEY = "vlod_upload_error"  # why the last upload was refused: said in the main column too
CHART_CONFIG = {"displayModeBar": False}
# Streamlit's default top padding (6rem) pushes results below the fold on a 1280x720 projector.
COMPACT = "<style>[data-testid='stMainBlockContainer'] {padding-top: 2.5rem;}</style>"
# One browser history entry per page visited. Streamlit's frontend pushes an entry when a page is opened and
# another when that page's script then writes its view into the query parameters (`links.write_view`), so
# Back first returned to the same page without its parameters (issue 21: "Back sometimes needs two
# presses"). A push that changes only the query of the page already shown becomes a replace.
ONE_ENTRY_PER_PAGE = """<script>
(() => {
  const history = window.history;
  if (history.vlodOneEntryPerPage) return;
  const push = history.pushState.bind(history);
  history.pushState = (state, title, url) => {
    const next = url == null ? null : new URL(url, window.location.href);
    if (next && next.origin === window.location.origin && next.pathname === window.location.pathname) {
      return history.replaceState(state, title, url);
    }
    return push(state, title, url);
  };
  history.vlodOneEntryPerPage = true;
})();
</script>"""


SCROLL_KEY = "vlod_scroll_to"  # the result an action (Ask, Run, an edit) just made, to bring into view once


# ------------------------------------------------------------------------------------------------ frame


def scroll_to(name: str) -> None:
    """Called from an action's callback: the page brings `name`'s result (`result_anchor(name)`) into view."""
    st.session_state[SCROLL_KEY] = name


def result_anchor(name: str):
    """A container for a result's heading; when an action asked for it (`scroll_to`), the page scrolls it to
    the top of the window once, so a new result below the fold is seen at once. Returns the container."""
    anchor = st.container(key=f"result_{name}")
    if st.session_state.get(SCROLL_KEY) == name:
        st.session_state.pop(SCROLL_KEY)
        selector = f".st-key-result_{name}"
        st.html(
            "<script>for (const wait of [300, 1200]) setTimeout(() => document.querySelector("
            f"'{selector}')?.scrollIntoView({{block: 'start'}}), wait);</script>",
            unsafe_allow_javascript=True,
        )
    return anchor


def page_setup(title: str, page: str, caption: str | None = None) -> View:
    """Page config, the pair a link names, the build's progress, title, tour step and sidebar."""
    st.set_page_config(page_title=f"vlod · {title}", page_icon="🔬", layout="wide")
    st.html(COMPACT)
    st.html(ONE_ENTRY_PER_PAGE, unsafe_allow_javascript=True)
    sidebar_menu()
    linked, problem = spec_from_params() if from_link() else (None, None)
    if linked is not None and linked != current_spec():
        set_spec(linked)
    build_banner()
    st.title(title)
    if caption:
        st.caption(caption)
    if problem:
        st.warning(problem)
    tour.tour_box(page)
    return View(title, page)


def build_banner() -> None:
    """The toy pair's first-use build, polled every second from the server's one build, with an ETA."""
    spec = current_spec()
    if toy_ready(spec):
        return
    root, world_name = toy_root(spec), world(spec)
    pair = "the toy reasoning pair" if world_name == "reasoning" else "the toy pair"

    def progress() -> None:
        build = toy_builds().get(root)
        if build is None or (not build.running and not build.error):
            st.rerun()  # built: the whole page, now with the pair
        if build.error:
            st.error(f"Building {pair} failed: {build.error}")
            st.button("Try again", key="build_retry", on_click=lambda: toy_builds().ensure(root, world_name))
            return
        st.progress(
            build.fraction,
            text=f"Building {pair}, once for this server: {build.stage} — {eta_text(build.eta_seconds())}. "
            "It keeps going if you leave this page.",
        )

    st.fragment(run_every=1.0)(progress)()


def show_image(image: Image.Image, caption: str, where=st, width: int | str = "content") -> None:
    """An image, tiny toy images enlarged without smoothing so their pixels stay sharp."""
    if max(image.size) < 256:
        scale = 256 // max(image.size)
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    where.image(image, caption=caption, width=width)


class View:
    """The page's figures and tables as drawn, its link and its export."""

    def __init__(self, title: str, page: str):
        self.title, self.page = title, page
        self.context = ""  # a few words for file names, e.g. "sample 3" or "run Ab3x"
        self.parts: list[tuple[str, object]] = []
        self.params: dict[str, str] = {}
        st.sidebar.caption(f"Pair in use: **{describe(current_spec())}**. Change it on the home page.")
        self._tools = st.sidebar.container()
        self._probe = st.sidebar.container()
        self._inputs = st.sidebar.container()
        with st.sidebar.expander("Glossary: the symbols in words"):
            st.markdown("\n".join(f"- **{term}** — {text}" for term, text in GLOSSARY.items()))
        with st.sidebar:
            tour.restart_button()

    @property
    def inputs(self):
        """The sidebar's place for the page's inputs."""
        return self._inputs

    def _stem(self, name: str) -> str:
        return file_stem(f"vlod {self.page} {name} {self.context}")

    def chart(self, fig: go.Figure, name: str, key: str | None = None) -> None:
        """A figure, with PNG and SVG downloads; it goes into the exported view."""
        st.plotly_chart(fig, config=CHART_CONFIG, key=key or file_stem(name), width="stretch")
        self.parts.append((name, fig))
        if find_browser() is None:
            return
        stem = self._stem(name)
        row = st.container(horizontal=True, gap="small")
        for fmt, mime in (("png", "image/png"), ("svg", "image/svg+xml")):
            row.download_button(
                fmt.upper(),
                lambda fmt=fmt: figure_file(fig, fmt),
                file_name=f"{stem}.{fmt}",
                mime=mime,
                key=f"download_{key or file_stem(name)}_{fmt}",
                on_click="ignore",
                type="tertiary",
                icon=":material/download:",
                help=f"{name} as {fmt.upper()} ({stem}.{fmt})",
            )

    def table(
        self,
        frame: pd.DataFrame,
        name: str,
        column_config: dict | None = None,
        key: str | None = None,
        styles: dict | None = None,
        **options,
    ):
        """A table, with a CSV download (thumbnail columns left out, 'x ± se' cells as two numbers); it goes into
        the exported view. `styles`: column → function of a cell giving its CSS (e.g. a verdict's colour)."""
        shown = frame
        if styles:
            shown = frame.style
            for column, style in styles.items():
                shown = shown.map(style, subset=[column])
        st.dataframe(shown, hide_index=True, column_config=column_config, key=key, **options)
        self.parts.append((name, frame))
        images = [c for c in frame.columns if frame[c].astype(str).str.startswith("data:image/").any()]
        st.download_button(
            "CSV",
            csv_frame(frame.drop(columns=images)).to_csv(index=False),
            file_name=f"{self._stem(name)}.csv",
            mime="text/csv",
            key=f"csv_{key or file_stem(name)}",
            on_click="ignore",
            type="tertiary",
            icon=":material/download:",
            help=f"{name} as CSV",
        )

    def note(self, heading: str, content) -> None:
        """Text or an image for the exported view only (the page draws it its own way)."""
        self.parts.append((heading, content))

    def share(self, values: dict) -> None:
        """Write this view's inputs into the URL and offer its link and its export in the sidebar."""
        self.params = write_view(values, current_spec())
        link = view_link(self.params)
        with self._tools:
            row = st.container(horizontal=True, gap="small")
            with row.popover("Copy link", icon=":material/link:"):
                st.code(link, language=None, wrap_lines=True)
                st.caption("Anyone who opens this link on this server sees this view (an uploaded image excepted).")
            parts, title = self.parts, f"{self.title} — vlod"
            row.download_button(
                "Export view",
                lambda: view_html(title, parts, link),
                file_name=f"{self._stem('view')}.html",
                mime="text/html",
                key="export_view",
                on_click="ignore",
                icon=":material/download:",
                help="This page's figures and numbers as one self-contained HTML file (for a slide or a report)",
            )
            if find_browser() is None:
                st.caption("PNG and SVG downloads need Chrome or Chromium on the server (BROWSER_PATH).")

    def show_probe(self, probe: Probe | None) -> None:
        """The image and question the pages share, once this page has decided them."""
        if probe is not None:
            show_image(probe.image, f"{probe.label}: {probe.question}", self._probe, width=128)


PLUS_MINUS = r"^\s*(-?\d+(?:\.\d+)?)(?:\s*±\s*(\d+(?:\.\d+)?))?\s*$"
MISSING = ("", "–", "-", "nan", "None")


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The table as a CSV wants it: a column of 'value ± se' cells becomes two number columns, `<name>` and
    `<name> SE` (a spreadsheet can compute with them; the page's text cannot). Cells without an SE give an
    empty SE, '–' (not measured) two empty cells."""
    out = {}
    for column in frame.columns:
        cells = frame[column]
        text = cells.astype(str).str.strip()
        present = text[~text.isin(MISSING) & cells.notna()]
        if (
            not pd.api.types.is_numeric_dtype(cells)
            and present.str.contains("±").any()
            and present.str.match(PLUS_MINUS).all()
        ):
            parts = text.str.extract(PLUS_MINUS)
            out[column] = pd.to_numeric(parts[0], errors="coerce")
            out[f"{column} SE"] = pd.to_numeric(parts[1], errors="coerce")
        else:
            out[column] = cells
    return pd.DataFrame(out, index=frame.index)


# ------------------------------------------------------------------------------------------------ probe


def session_world() -> str:
    """The toy world of the session's pair (`vlod_app.worlds`): whose samples and questions the pages offer."""
    return world(current_spec())


def toy_probe(number: int, question: str | None = None) -> Probe:
    """Toy sample `number` (from 1) of the session pair's world, asked its own question unless another is given."""
    world_name = session_world()
    example = toy_samples(world_name)[number - 1]
    image = example.image()
    own = question is None or question == example.question
    return Probe(
        image,
        f"toy sample {number}",
        image_digest(image),
        example.question if own else question,
        "toy",
        (),
        example.answer if own else None,
        world=world_name,
    )


def probe_or_default() -> Probe:
    """The session's probe, or the first toy sample when none was chosen yet. After a change of pair to another
    toy world, a toy sample becomes the same sample number of that world, and a scene or an upload is asked
    that world's first question."""
    probe, world_name = get_probe(), session_world()
    if probe is None:
        probe = toy_probe(1)
        set_probe(probe)
    elif probe.world != world_name and probe.source == "toy":
        probe = toy_probe(sample_number(probe))
        set_probe(probe)
    elif probe.world != world_name:
        probe = replace(probe, question=default_question(world_name), reference=None, world=world_name)
        set_probe(probe)
    return probe


def sample_number(probe: Probe) -> int | None:
    return int(probe.label.rsplit(" ", 1)[-1]) if probe.source == "toy" else None


def probe_params(probe: Probe, question: bool = True) -> dict:
    """The probe in a link: its toy sample number or built scene (and question), or that an upload was used."""
    if probe.source == "toy":
        where = {"sample": sample_number(probe)}
    elif probe.source == "scene":
        where = {"scene": probe.scene}
    else:
        where = {"image": "upload"}
    return where | ({"question": probe.question} if question else {})


def adopt_probe(params) -> None:
    """Take the probe a link names: toy `sample` or built `scene` (and `question`); `image=upload` can only
    be noted."""
    sample, question = params.integer("sample", 1, N_SAMPLES), params.text("question")
    scene = params.text("scene")
    if scene is not None:
        try:
            objects = decode_scene(scene)
        except SceneError as error:
            params.problems.append(f"`scene={scene}` in the link was ignored: {error}")
        else:
            set_probe(scene_probe(objects, question or default_question(session_world()), session_world()))
            return
    if sample is not None:
        set_probe(toy_probe(sample, question))
    elif params.raw.get("image") == "upload" and (get_probe() is None or get_probe().source != "upload"):
        st.info("This link was made with an uploaded image, which a link cannot carry: upload it to see this view.")


def _choose_sample() -> None:
    set_probe(toy_probe(st.session_state["toy_sample"]))


def _choose_scene_question() -> None:
    """A question picked from the world's kinds goes into the question box (the picker then empties again)."""
    question = st.session_state.get("scene_question")
    if question:
        st.session_state["ask_question"] = question
        st.session_state["scene_question"] = None


def scene_question_picker(probe: Probe) -> None:
    """The reasoning world's question kinds, asked of the scene being built (nothing in the default world)."""
    questions = scene_questions(decode_scene(probe.scene or ""), probe.world)
    if questions:
        st.selectbox(
            "A reasoning question about this scene",
            questions,
            index=None,
            placeholder="Pick one: it goes into the question box below",
            key="scene_question",
            on_change=_choose_scene_question,
            help="The four kinds the reasoning pair was trained on: count less a colour, two shapes added, the "
            "leftmost shape's colour, one colour left of another.",
        )


def image_picker() -> Probe | None:
    """Choose a toy sample or upload an image; the choice becomes the session's probe."""
    current = probe_or_default()
    if st.session_state.get("image_source_for") != current.digest:  # a link's or a page's probe: its source
        st.session_state["image_source"] = SOURCE_OF[current.source]
    source = st.radio("Image", SOURCES, horizontal=True, key="image_source")
    if source == SOURCES[2]:
        if current.source != "scene":
            start = decode_scene(starting_scene(current, toy_samples(session_world())))
            question = current.question or default_question(session_world())
            set_probe(scene_probe(start, question, session_world()))
        st.session_state["image_source_for"] = get_probe().digest
        st.caption(
            "Choose a shape and colour per cell in the grid above the results; the image is drawn by the toy "
            "world's own renderer."
        )
        scene_question_picker(get_probe())
        return get_probe()
    if source == SOURCES[0]:
        samples = toy_samples(session_world())
        st.session_state["toy_sample"] = sample_number(current) or 1
        st.selectbox(
            "Toy sample",
            range(1, len(samples) + 1),
            format_func=lambda n: f"{n}: {samples[n - 1].question}",
            key="toy_sample",
            on_change=_choose_sample,
        )
        if current.source != "toy":
            set_probe(toy_probe(st.session_state["toy_sample"]))
        st.session_state["image_source_for"] = get_probe().digest
        return get_probe()
    limit = MAX_UPLOAD_BYTES // 2**20
    upload = st.file_uploader(
        f"An image (PNG, JPEG, GIF, WebP, BMP, TIFF). At most {limit} MiB; larger than {MAX_SIDE} px is scaled down.",
        type=UPLOAD_TYPES,
        key="image_upload",
    )
    if uses_toy(current_spec()):
        st.caption(TOY_UNDERSTANDS)
    if upload is None:
        st.session_state.pop(UPLOAD_ERROR_KEY, None)
        if current.source == "upload":
            st.caption(f"Using the image uploaded before: {current.label}. Upload another to replace it.")
            return current
        st.info("Upload an image to look at, or pick a built-in toy sample.")
        return None
    data = upload.getvalue()
    try:
        loaded = load_image(data)
    except ImageError as error:
        st.session_state[UPLOAD_ERROR_KEY] = f"{upload.name}: {error}"
        st.error(st.session_state[UPLOAD_ERROR_KEY])
        return None
    st.session_state.pop(UPLOAD_ERROR_KEY, None)
    notes = tuple(loaded.notes) + scaled_down_note(data, loaded.image, loaded.notes)
    digest = image_digest(loaded.image)
    if current.source != "upload" or current.digest != digest:
        question = current.question or default_question(session_world())
        set_probe(Probe(loaded.image, upload.name, digest, question, "upload", notes, world=session_world()))
    st.session_state["image_source_for"] = digest
    for note in notes:
        st.info(f"{upload.name}: {note}")
    return get_probe()


def no_image_yet() -> None:
    """The main column while no image is chosen: why the upload was refused, or what to do."""
    if UPLOAD_ERROR_KEY in st.session_state:
        st.error(f"{st.session_state[UPLOAD_ERROR_KEY]}. Upload another image, or pick a built-in toy sample.")
    else:
        st.info("Upload an image (in the sidebar) to look at, or pick a built-in toy sample.")


def scaled_down_note(data: bytes, image: Image.Image, notes: list[str]) -> tuple[str, ...]:
    """A note when the upload was larger than MAX_SIDE and so was scaled down (unless the loader said so)."""
    if any("scaled down" in note for note in notes):
        return ()
    try:
        width, height = Image.open(io.BytesIO(data)).size  # the header only: load_image has just decoded it
    except OSError:
        return ()
    if max(width, height) <= MAX_SIDE or max(image.size) >= max(width, height):
        return ()
    return (f"scaled down from {width}x{height} to {image.width}x{image.height} (larger sides than {MAX_SIDE} px)",)


# ------------------------------------------------------------------------------------------------ answers


def _escape(word: str) -> str:
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!<>|~:$" else c for c in word)


def plain_markdown(text: str) -> str:
    """`text` shown as it is in markdown: a chain's `<reason>` and `\\boxed{` are not markup."""
    return " ".join(_escape(word) for word in text.split(" "))


def diff_markdown(before: str, after: str) -> str:
    """Markdown of `after` with words removed since `before` struck through in red, new ones in green."""
    parts = []
    for op, word in word_diff(before, after):
        text = _escape(word)
        parts.append(text if op == "same" else (f":red[~~{text}~~]" if op == "removed" else f":green[**{text}**]"))
    return " ".join(parts) or "_(empty)_"
