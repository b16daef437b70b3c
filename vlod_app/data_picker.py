"""Page 3's "Train on": the toy world, or the session's own images (`vlod_app.mydata`), with a preview.

The session's `MyData` (its private folder) lives in session state, so it is dropped, and its folder removed,
when the session ends. The current set is whatever the user loaded last: typed rows for uploaded images,
a zipped image folder, a JSONL with a zip of its images, or the shipped example set. Each input is read once
per upload (keyed by Streamlit's file ids), and a bad one leaves an error box with the core's message, never
a traceback. The preview shows the rows, the split the run will use, and the teacher's greedy answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from vlod_app.mydata import EXAMPLES, MyData, split_label
from vlod_app.state import uses_toy
from vlod_core.data import DataSplit, VQASet, split_rows
from vlod_core.evaluation import greedy_answers
from vlod_core.images import MAX_UPLOAD_BYTES, thumbnail_uri

logger = logging.getLogger(__name__)

TOY_WORLD, MY_IMAGES = "The toy world", "My images"
HOW = ("Upload images and type questions", "A zipped image folder", "A JSONL file and a zip of its images")
PREVIEW_ROWS = 50  # rows previewed, with the teacher's answers (the worker shows as many before and after)
TEACHER_CHUNK = 8  # rows the teacher answers at once in the preview
FOLDER_KEY, SET_KEY, ERROR_KEY, TEACHER_KEY = "vlod_mydata", "vlod_myset", "vlod_myset_error", "vlod_myset_teacher"
LOAD_ERRORS = (ValueError, OSError)  # DataError, ArchiveError, ImageError are ValueErrors; a full disk, OSError


@dataclass
class ChosenSet:
    data: VQASet
    split: DataSplit
    token: str  # what it was loaded from: the same token is not loaded twice


def my_data() -> MyData:
    """The session's private folder (created on first use; removed with the session)."""
    if FOLDER_KEY not in st.session_state or not st.session_state[FOLDER_KEY].alive:
        st.session_state[FOLDER_KEY] = MyData()
    return st.session_state[FOLDER_KEY]


def chosen_set() -> ChosenSet | None:
    return st.session_state.get(SET_KEY)


def trains_on_my_images() -> bool:
    return st.session_state.get("train_on") == MY_IMAGES


def _load(token: str, what: str, fn, *args) -> None:
    """Load a set once per token; on failure keep the message (shown until another input replaces it)."""
    current = chosen_set()
    if (current is not None and current.token == token) or st.session_state.get(ERROR_KEY, ("",))[0] == token:
        return
    try:
        data = fn(*args)
        chosen = ChosenSet(data, split_rows(data.rows), token)
    except LOAD_ERRORS as error:
        st.session_state[ERROR_KEY] = (token, f"{what}: {error}")
        return
    except Exception as error:  # one line for the user; the log keeps the traceback
        logger.exception("%s failed", what)
        st.session_state[ERROR_KEY] = (token, f"{what} failed: {type(error).__name__}: {error}")
        return
    st.session_state.pop(ERROR_KEY, None)
    st.session_state[SET_KEY] = chosen


def load_examples() -> None:
    """The example-set button (a callback: it runs before the page, so the page shows the set at once)."""
    st.session_state["train_on"] = MY_IMAGES
    _load("examples", "examples/shapes", my_data().from_examples)


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _typed_rows() -> None:
    uploads = st.file_uploader(
        f"Images (PNG, JPEG, GIF, WebP, BMP or TIFF; at most {MAX_UPLOAD_BYTES // 2**20} MiB each)",
        type=["png", "jpg", "jpeg", "gif", "webp", "bmp", "tif", "tiff"],
        accept_multiple_files=True,
        key="mydata_images",
    )
    if not uploads:
        st.caption("Upload one or more images; then type one or more questions per image in the table.")
        return
    ids = tuple(u.file_id for u in uploads)
    if st.session_state.get("mydata_checked", (None,))[0] != ids:
        st.session_state["mydata_checked"] = (ids, MyData.images([(u.name, u.getvalue()) for u in uploads]))
    checked = st.session_state["mydata_checked"][1]
    for error in checked.errors:
        st.error(error)
    for note in checked.notes:
        st.info(note)
    if not checked.images:
        return
    names = list(checked.images)
    st.image([checked.images[n] for n in names], caption=names, width=64)
    if st.session_state.get("mydata_table_names") != names:  # other images: start the table afresh
        st.session_state.pop("mydata_table", None)
        st.session_state["mydata_table_names"] = names
    base = pd.DataFrame({"image": names, "question": [""] * len(names), "answer": [""] * len(names)})
    edited = st.data_editor(
        base,
        num_rows="dynamic",
        hide_index=True,
        column_config={
            "image": st.column_config.SelectboxColumn("image", options=names, required=True),
            "question": st.column_config.TextColumn("question", help="What to ask about the image"),
            "answer": st.column_config.TextColumn("answer (optional)", help="The right answer, if you know it"),
        },
        key="mydata_table",
    )
    rows = edited.to_dict("records")
    if any(str(r.get("question") or "").strip() for r in rows):
        _load(_digest(ids, rows), "Your table", MyData.from_table, rows, checked.images)
        st.caption("Add rows (＋ below the table) to ask more than one question about an image.")
    else:
        current = chosen_set()
        using = f" (until then the run uses {current.data.name})" if current is not None else ""
        st.caption(f"Type a question for at least one image to use these rows{using}.")


def _zip_folder() -> None:
    upload = st.file_uploader(
        "A zip of an image folder: images plus metadata.jsonl or metadata.csv (file_name, question, optional "
        "answer), or train/ and test/ folders each with one",
        type=["zip"],
        key="mydata_zip",
    )
    if upload is not None:
        _load(upload.file_id, upload.name, my_data().from_zip, upload.name, upload.getvalue())


def _jsonl_and_zip() -> None:
    jsonl = st.file_uploader(
        "A JSONL file: TRL's format (prompt, image or images) or LLaMA-Factory / ms-swift's (messages with an "
        "<image> tag, images)",
        type=["jsonl", "json"],
        key="mydata_jsonl",
    )
    images = st.file_uploader(
        "A zip of its images (paths in the file are relative to it)", type=["zip"], key="mydata_jsonl_zip"
    )
    if jsonl is not None:
        token = f"{jsonl.file_id}+{images.file_id if images else ''}"
        archive = images.getvalue() if images is not None else None
        _load(token, jsonl.name, my_data().from_jsonl, jsonl.name, jsonl.getvalue(), archive)


def train_on(toy_pair: bool, disabled: bool) -> None:
    """The choice of training data, its inputs and, for my images, the preview's rows (without answers)."""
    st.radio(
        "Train on",
        (TOY_WORLD, MY_IMAGES),
        horizontal=True,
        key="train_on",
        disabled=disabled,
        help="The toy world draws fresh scenes and questions every step; my images trains on your rows.",
    )
    if not trains_on_my_images() or disabled:
        return
    if toy_pair:
        st.info(
            "The toy pair only knows 64×64 scenes of coloured shapes (circles, squares, crosses… in a few colours) "
            "and a small vocabulary: a photograph will get nonsense answers. The shipped example set is drawn "
            "in its world."
        )
    st.button(
        f"Use the example set ({EXAMPLES.parent.name}/{EXAMPLES.name}: a dozen shape scenes, two questions each)",
        key="mydata_examples",
        on_click=load_examples,
    )
    how = st.radio("Or bring your own", HOW, key="mydata_how", horizontal=True)
    {HOW[0]: _typed_rows, HOW[1]: _zip_folder, HOW[2]: _jsonl_and_zip}[how]()
    if ERROR_KEY in st.session_state:
        st.error(st.session_state[ERROR_KEY][1])


def teacher_answers(pair, spec, token: str, rows: list) -> list[dict] | None:
    """The teacher's greedy answers to the previewed rows, once per set and pair (None, with a message, on
    failure). In chunks of TEACHER_CHUNK rows, so a real pair never encodes fifty images at once."""
    key = (token, repr(spec))
    if st.session_state.get(TEACHER_KEY, (None,))[0] != key:
        with st.spinner("The teacher answers your rows…"):
            try:
                answers = [
                    answer
                    for start in range(0, len(rows), TEACHER_CHUNK)
                    for answer in greedy_answers(pair, pair.teacher, rows[start : start + TEACHER_CHUNK])
                ]
            except Exception as error:  # noqa: BLE001 - a model's failure on the user's rows, in one line
                logger.exception("teacher answers failed")
                st.error(f"The teacher could not answer these rows: {type(error).__name__}: {error}")
                return None
        st.session_state[TEACHER_KEY] = (key, answers)
    return st.session_state[TEACHER_KEY][1]


def preview(pair, spec) -> None:
    """The current set: where it came from, what was skipped, the split, and every row with the teacher's
    greedy answers (with the image and without)."""
    chosen = chosen_set()
    if chosen is None:
        st.caption("No data set yet: the run needs one (or choose the toy world).")
        return
    data, split = chosen.data, chosen.split
    st.markdown(f"**Your data set: {data.name}** — {data.summary(reasons=0).split(';')[0]}")
    if data.skipped:
        shown = "\n".join(f"- {reason}" for reason in data.skipped[:5])
        more = f"\n- … and {len(data.skipped) - 5} more" if len(data.skipped) > 5 else ""
        count = len(data.skipped)
        st.warning(f"{count} row{'' if count == 1 else 's'} skipped:\n{shown}{more}")
    st.caption(f"Split: {split.how}. Training on {len(split.train)} rows, evaluating on {len(split.eval)}.")
    rows = data.rows[:PREVIEW_ROWS]
    answers = [{}] * len(rows)
    # a real teacher on up to 50 rows takes a while on a CPU: an expensive view, behind a toggle
    if st.toggle("The teacher's answers in the preview", value=uses_toy(spec), key="mydata_teacher"):
        answers = teacher_answers(pair, spec, chosen.token, rows)
        if answers is None:
            return
    frame = pd.DataFrame(
        [
            {
                "image": thumbnail_uri(row.load_image()),
                "question": row.question,
                "right answer": row.answer or "",
                "used as": split_label(row, split),
            }
            | ({"teacher (image)": answer["image"], "teacher (no image)": answer["no_image"]} if answer else {})
            for row, answer in zip(rows, answers)
        ]
    )
    st.dataframe(
        frame,
        hide_index=True,
        column_config={"image": st.column_config.ImageColumn("image", width="small")},
        key="mydata_preview",
    )
    if len(data.rows) > PREVIEW_ROWS:
        st.caption(f"The first {PREVIEW_ROWS} of {len(data.rows)} rows.")
    if uses_toy(spec) and data.name != "examples/shapes":
        st.caption("(The toy pair's answers to anything but its own shape scenes are expected to be nonsense.)")
