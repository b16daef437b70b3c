"""Page 1: the four answers for one image and question, and the per-token decomposition of an answer.

Inputs sit in the sidebar, results in the main column, so a result is in view as soon as it is asked for.
What was asked lives in session state and in the URL (`sample`, `question`, `seed`, `ablation`, and
`temperature` or `answer` when the decomposed answer is a sample or typed; `token` and `fill` for the
occlusion map): a reload or a shared link shows the same result. Asking goes through a callback, so the
whole page (the sidebar's caption included) is drawn after the question has changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from vlod_app.compute import inspect_cached, occlusion_cached
from vlod_app.links import Params, from_link
from vlod_app.state import current_spec, get_pair, get_probe, set_question, shown
from vlod_app.widgets import adopt_probe, image_picker, page_setup, probe_params, sample_number, show_image
from vlod_app.words import TOKEN_COLUMNS
from vlod_core.decomposition import PER_TOKEN_FIELDS
from vlod_core.figures import kl_bars, logratio_split, logratio_words, occlusion_figure, token_strip
from vlod_core.inputs import ABLATIONS
from vlod_core.occlusion import FILLS
from vlod_core.text import check_question

ASKED_KEY = "vlod_asked"
ERROR_KEY = "vlod_ask_error"
MODES = ("The student's greedy answer", "A sample from the student", "An answer I type")
ABLATION_HELP = {
    "remove": "remove (drop the image)",
    "blank": "blank (a grey image)",
    "blur": "blur (a blurred image)",
}
FILL_HELP = {
    "background": "the image's own background colour",
    "grey": "mid-grey",
    "blur": "the cell blurred",
}
ANSWER_TITLES = {
    "teacher_image": "Teacher, with the image",
    "teacher_no_image": "Teacher, without it",
    "student_image": "Student, with the image",
    "student_no_image": "Student, without it",
}
MAX_SEED = 2**31 - 1
TEMPERATURES = (0.1, 2.0)  # the range offered for sampling


@dataclass(frozen=True)
class Asked:
    """What was last asked, successfully: the page shows its result while the image is the same."""

    digest: str
    question: str
    seed: int = 0
    ablation: str = "remove"
    temperature: float | None = None  # None: decompose the greedy answer
    answer: str | None = None  # a typed answer to decompose instead
    notes: tuple[str, ...] = ()


FORM_DEFAULTS = {"ask_seed": 0, "ask_ablation": "remove", "ask_temperature": 1.0}  # mode: greedy; texts: empty


def set_form(asked: Asked) -> None:
    """Put an asked question's inputs into the form's widgets (before they are drawn)."""
    state = st.session_state
    state["ask_question"] = asked.question
    state["ask_seed"] = asked.seed
    state["ask_ablation"] = asked.ablation
    state["ask_mode"] = MODES[2] if asked.answer is not None else MODES[1 if asked.temperature else 0]
    state["ask_temperature"] = asked.temperature or 1.0
    state["ask_answer"] = asked.answer or ""


def ask() -> None:
    """The Ask button: check the inputs; on success they become what the page shows, else nothing is shown."""
    state, probe = st.session_state, get_probe()
    state.pop(ASKED_KEY, None)  # a failed Ask must not leave the previous result on screen
    state.pop(ERROR_KEY, None)
    try:
        question, notes = check_question(state["ask_question"])
    except ValueError as error:
        state[ERROR_KEY] = f"Question: {error}"
        return
    mode, typed = state["ask_mode"], state["ask_answer"].strip()
    if mode == MODES[2] and not typed:
        state[ERROR_KEY] = "Type an answer to score, or choose the student's own answer."
        return
    set_question(question)
    state["ask_question"] = question
    state[ASKED_KEY] = Asked(
        probe.digest,
        question,
        int(state["ask_seed"]),
        state["ask_ablation"],
        float(state["ask_temperature"]) if mode == MODES[1] else None,
        typed if mode == MODES[2] else None,
        tuple(notes),
    )


view = page_setup(
    "Answers and tokens",
    "answers",
    "Ask teacher and student one question about an image, with and without it. Then see, token by token, where "
    "the student's answer differs from the teacher's because of the language prior and where because of the image.",
)
pair = get_pair()
spec = current_spec()

# ------------------------------------------------------------------------------------- a link's inputs
params = Params()
if "question" in params.raw and from_link():
    adopt_probe(params)
    probe = get_probe()
    try:
        question, notes = check_question(params.raw["question"])
    except ValueError as error:
        question, notes = None, ()
        params.problems.append(f"the link's question was ignored: {error}")
    linked = Asked(
        probe.digest if probe else "",
        question or "",
        params.integer("seed", 0, MAX_SEED) or 0,
        params.choice("ablation", ABLATIONS) or "remove",
        params.number("temperature", *TEMPERATURES),
        params.text("answer"),
        tuple(notes),
    )
    if probe is not None and question is not None:
        set_form(linked)
        st.session_state[ASKED_KEY] = linked
        if (token := params.integer("token", 1, 64)) is not None:
            st.session_state["occlusion_on"] = True
            st.session_state["occlusion_token"] = token - 1
        st.session_state["occlusion_fill"] = params.choice("fill", FILLS) or "background"
    params.show_problems()

# ------------------------------------------------------------------------------------- inputs (sidebar)
# Each widget's own default is the form's (a link or a new image sets its state instead): a widget that the
# browser mounts afresh shows its own default, so that default must be the form's.
with view.inputs:
    probe = image_picker()
    if probe is not None:
        asked = st.session_state.get(ASKED_KEY)
        shown_question = asked.question if asked and asked.digest == probe.digest else probe.question
        show_image(probe.image, f"{probe.label}: {shown_question}", width=160)
        if st.session_state.get("ask_for") != probe.digest:  # a new image: its own question in the form
            st.session_state["ask_for"] = probe.digest
            st.session_state["ask_question"] = shown_question
    # drawn even without an image (disabled), so its widgets keep their values while an upload is awaited
    with st.form("ask"):
        st.text_input("Question", key="ask_question", max_chars=500)
        st.radio("Answer to decompose", MODES, key="ask_mode", help="The four cards are always greedy answers.")
        st.slider(
            "Temperature (for a sample)", *TEMPERATURES, FORM_DEFAULTS["ask_temperature"], 0.1, key="ask_temperature"
        )
        st.number_input(
            "Sampling seed",
            0,
            MAX_SEED,
            FORM_DEFAULTS["ask_seed"],
            1,
            key="ask_seed",
            help="Another seed, another sample.",
        )
        st.text_input("Answer to score (when you type one)", placeholder="it is red", key="ask_answer")
        st.selectbox(
            "Without the image means",
            ABLATIONS,
            index=ABLATIONS.index(FORM_DEFAULTS["ask_ablation"]),
            format_func=ABLATION_HELP.get,
            key="ask_ablation",
            help="remove is the paper's default: the image entry is dropped from the message, so there are no "
            "image tokens at all",
        )
        st.form_submit_button("Ask", type="primary", on_click=ask, disabled=probe is None)
if probe is None:
    view.share({})
    st.stop()

if ERROR_KEY in st.session_state:
    st.error(st.session_state[ERROR_KEY])
asked: Asked | None = st.session_state.get(ASKED_KEY)
if asked is None or asked.digest != probe.digest:
    view.share(probe_params(probe, question=False))  # nothing asked: a reload must not ask by itself
    if ERROR_KEY not in st.session_state:
        st.info("Ask a question (in the sidebar) to see the four answers and the token-by-token decomposition.")
    st.stop()

# ------------------------------------------------------------------------------------- results
with st.spinner("Asking teacher and student, then scoring the answer four ways…"):
    result = shown(
        "Inspecting",
        inspect_cached,
        pair,
        spec,
        probe.digest,
        probe.image,
        asked.question,
        asked.answer,
        asked.ablation,
        asked.seed,
        asked.temperature,
    )
if result is None:
    st.session_state.pop(ASKED_KEY, None)
    view.share(probe_params(probe, question=False))
    st.stop()
inspection = result.inspection
view.context = f"sample {sample_number(probe)}" if probe.source == "toy" else probe.label
for note in [*asked.notes, *inspection.notes]:
    st.info(note)

st.subheader(f"“{inspection.question}”")
right = (
    f" Right answer for this toy sample: **{probe.reference}**."
    if probe.reference and probe.question == inspection.question
    else ""
)
st.caption(f"**Greedy answers**: each model's most likely word at every step.{right}")
grid = st.columns(4)
for column, key in zip(grid, ANSWER_TITLES):
    with column.container(border=True):
        st.caption(ANSWER_TITLES[key])
        st.markdown(f"**{inspection.answers[key] or '(nothing)'}**")

view.note(f"the image ({probe.label})", probe.image)
view.note(
    f"“{inspection.question}”: the four greedy answers",
    pd.DataFrame(
        [{"model and context": ANSWER_TITLES[key], "answer": inspection.answers[key]} for key in ANSWER_TITLES]
    ),
)

rows = inspection.decomposition.rows(0)
if asked.answer is not None:
    what = "your answer"
elif asked.temperature is not None:
    what = f"a sample from the student (temperature {asked.temperature:g}, seed {asked.seed})"
else:
    what = "the student's greedy answer (its card above, with the image)"
st.markdown(
    f"Token by token, {what}: **{inspection.response or '(end of turn only)'}** — {len(rows)} tokens; "
    f"without the image means *{asked.ablation}*."
)
view.chart(token_strip(rows, result.next_tokens), "token strip")
st.caption(
    ":blue[**Blue**]: the student's mismatch with the teacher at this token comes from its language prior "
    "(ℓLang); :orange[**orange**]: from the image (ℓVis); grey: evenly both. Faint boxes are small mismatches, "
    "solid ones ≥ 1 nat; a hatched outline means there is nothing to split (below 0.001 nats)."
)
st.info(
    "**The KLs do not add up**: ℓStd ≠ ℓLang + ℓVis in general, so the colour is only a share. Only the "
    "log-ratio on the answer's token splits exactly: log pI(y) − log qI(y) = [log px(y) − log qx(y)] (language) + "
    "[(log pI(y) − log px(y)) − (log qI(y) − log qx(y))] (visual: student PMI − teacher PMI)."
)
split_col, kl_col = st.columns(2)
with split_col:
    view.chart(logratio_split(rows), "log-ratio split")
with kl_col:
    view.chart(kl_bars(rows), "KLs per token")

table = pd.DataFrame(rows)[["token", *PER_TOKEN_FIELDS]]
table.insert(table.columns.get_loc("logratio") + 1, "reading", [logratio_words(v) for v in table["logratio"]])
view.table(
    table,
    "per-token numbers",
    column_config={
        field: (
            st.column_config.NumberColumn(label, help=hint, format="%.4f")
            if field in PER_TOKEN_FIELDS
            else st.column_config.TextColumn(label, help=hint)
        )
        for field, (label, hint) in TOKEN_COLUMNS.items()
    },
)

st.subheader("Where in the image")
occlusion_values: dict = {}
if st.toggle("Occlusion map for one token (re-scores the image once per grid cell)", key="occlusion_on"):
    labels = [f"{i + 1}: {r['token']}  (VDS {r['vds']:.3f})" for i, r in enumerate(rows)]
    if st.session_state.get("occlusion_token") not in range(len(rows)):
        st.session_state["occlusion_token"] = max(range(len(rows)), key=lambda i: rows[i]["vds"])
    token_col, fill_col = st.columns(2)
    position = token_col.selectbox("Token", range(len(rows)), format_func=labels.__getitem__, key="occlusion_token")
    fill = fill_col.selectbox(
        "Cover each cell with",
        FILLS,
        format_func=FILL_HELP.get,
        key="occlusion_fill",
        help="The image's own background is the default: a grey patch on a dark image is itself a new object.",
    )
    with st.spinner("Covering each cell and re-scoring…"):
        occlusion = shown(
            "Occlusion map",
            occlusion_cached,
            pair,
            spec,
            probe.digest,
            probe.image,
            inspection.question,
            tuple(result.response_ids),
            int(position),
            asked.ablation,
            fill,
        )
    if occlusion is not None:
        view.chart(occlusion_figure(probe.image, occlusion), f"occlusion map token {position + 1}", key="occlusion")
        st.markdown(
            f"Each cell of a {occlusion.grid[0]}×{occlusion.grid[1]} grid is covered in turn with "
            f"{FILL_HELP[fill]} and **{occlusion.token}** is scored again; the map beside the image shows the change "
            "of its visual term (student PMI − teacher PMI), in nats. **Teal**: covering the cell cost the "
            "teacher more belief in the token than the student — the teacher relies on it, the student less. "
            "**Brown**: the student relies on that cell more than the teacher. An empty cell is exactly 0 when it "
            "is covered with the background."
        )
        occlusion_values = {"token": int(position) + 1, "fill": fill if fill != "background" else None}
else:
    st.caption("Off by default: it runs two forward passes per grid cell.")

view.share(
    probe_params(probe)
    | {
        "question": asked.question,
        "seed": asked.seed,
        "ablation": asked.ablation,
        "temperature": asked.temperature,
        "answer": asked.answer,
    }
    | occlusion_values
)
