"""Page 1: the four answers for one image and question, and the per-token decomposition of an answer.

Inputs sit in the sidebar, results in the main column, so a result is in view as soon as it is asked for.
What was asked lives in session state and in the URL (`sample`, `question`, `seed`, `ablation`, and
`temperature` or `answer` when the decomposed answer is a sample or typed; `token` and `fill` for the
occlusion map): a reload or a shared link shows the same result. Asking goes through a callback, so the
whole page (the sidebar's caption included) is drawn after the question has changed.

With *Build a scene*, the image is a toy scene composed cell by cell (`scene` in the URL). Editing a cell
after asking asks the same question about the edited scene at once and keeps the scene before the edit
(`before` in the URL): the page shows both answers side by side and each token's visual term on both
images, a counterfactual edit.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from vlod_app.compute import occlusion_cached
from vlod_app.links import Params, from_link
from vlod_app.scene import probe_objects, scene_grid, scene_probe, take_cells
from vlod_app.scene_edit import Asked, Before, inspect_asked, show_edit
from vlod_app.state import current_spec, get_pair, get_probe, set_question, shown, uses_toy
from vlod_app.widgets import (
    adopt_probe,
    image_picker,
    no_image_yet,
    result_anchor,
    scroll_to,
    page_setup,
    plain_markdown,
    probe_params,
    sample_number,
    show_image,
)
from vlod_app.words import TOKEN_COLUMNS
from vlod_app.worlds import answer_length, answer_pattern, final_words, scene_reference, world
from vlod_core import settings
from vlod_core.answers import final_answer
from vlod_core.decomposition import PER_TOKEN_FIELDS
from vlod_core.distill import DistillConfig
from vlod_core.figures.style import GROUNDED_VDS, LINE_TOKENS
from vlod_core.figures.tokens import kl_bars, logratio_split, logratio_words, occlusion_figure, token_strip
from vlod_core.inputs import ABLATIONS
from vlod_core.occlusion import FILLS
from vlod_core.sampling import SamplingConfig
from vlod_core.text import check_question
from vlod_core.toy.scenes import SceneError, decode_scene

ASKED_KEY = "vlod_asked"
BEFORE_KEY = "vlod_scene_before"  # (the scene before the last edit, what was asked about it)
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
SAMPLING, RUN = settings.entries(SamplingConfig), settings.entries(DistillConfig)
TEMPERATURE = SAMPLING["temperature"]


FORM_DEFAULTS = {  # mode: greedy; texts: empty
    "ask_seed": RUN["seed"].default,
    "ask_ablation": RUN["ablation"].default,
    "ask_temperature": TEMPERATURE.default,
}


def set_form(asked: Asked) -> None:
    """Put an asked question's inputs into the form's widgets (before they are drawn)."""
    state = st.session_state
    state["ask_question"] = asked.question
    state["ask_seed"] = asked.seed
    state["ask_ablation"] = asked.ablation
    state["ask_mode"] = MODES[2] if asked.answer is not None else MODES[1 if asked.temperature else 0]
    state["ask_temperature"] = asked.temperature or 1.0
    state["ask_answer"] = asked.answer or ""


def edit_scene() -> None:
    """A cell of the scene changed: after an answer, ask the same about the edited scene and keep the old one."""
    state = st.session_state
    old, new = take_cells()
    asked = state.get(ASKED_KEY)
    state.pop(BEFORE_KEY, None)
    if asked is not None and asked.digest == old.digest and new.digest != old.digest:
        state[BEFORE_KEY] = Before(old.scene, asked)
        state[ASKED_KEY] = replace(asked, digest=new.digest)
        scroll_to("edit")


def ask() -> None:
    """The Ask button: check the inputs; on success they become what the page shows, else nothing is shown."""
    state, probe = st.session_state, get_probe()
    state.pop(ASKED_KEY, None)  # a failed Ask must not leave the previous result on screen
    state.pop(ERROR_KEY, None)
    state.pop(BEFORE_KEY, None)  # a comparison is between two scenes asked the same, by an edit
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
    scroll_to("answers")


view = page_setup(
    "Answers and tokens",
    "answers",
    "Ask teacher and student one question about an image, with and without it. Then see, token by token, where "
    "the student's answer differs from the teacher's because of the language prior and where because of the image.",
)
pair = get_pair()
spec = current_spec()
world_name = world(spec)
length, pattern = answer_length(world_name), answer_pattern(world_name)  # the world's answers: chains or words

# ------------------------------------------------------------------------------------- a link's inputs
params = Params()
if "scene" in params.raw and "question" not in params.raw and from_link():
    adopt_probe(params)  # a scene being built, nothing asked yet
    params.show_problems()
elif "question" in params.raw and from_link():
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
        params.integer("seed", 0, int(RUN["seed"].about.high)) or FORM_DEFAULTS["ask_seed"],
        params.choice("ablation", ABLATIONS) or FORM_DEFAULTS["ask_ablation"],
        params.number("temperature", TEMPERATURE.about.low, TEMPERATURE.about.high),
        params.text("answer"),
        tuple(notes),
    )
    st.session_state.pop(BEFORE_KEY, None)
    if probe is not None and question is not None:
        set_form(linked)
        st.session_state[ASKED_KEY] = linked
        if probe.source == "scene" and "before" in params.raw:
            try:
                before = scene_probe(decode_scene(params.raw["before"]), question, world_name)
            except SceneError as error:
                params.problems.append(f"`before={params.raw['before']}` in the link was ignored: {error}")
            else:
                st.session_state[BEFORE_KEY] = Before(before.scene, replace(linked, digest=before.digest))
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
        if probe.source != "scene":  # a built scene is shown larger, beside its grid
            show_image(probe.image, f"{probe.label}: {shown_question}", width=160)
        if st.session_state.get("ask_for") != probe.digest:  # a new image: its own question in the form
            st.session_state["ask_for"] = probe.digest
            st.session_state["ask_question"] = shown_question
    # drawn even without an image (disabled), so its widgets keep their values while an upload is awaited
    with st.form("ask"):
        st.text_input("Question", key="ask_question")  # a longer one is cut with a note (check_question)
        st.radio("Answer to decompose", MODES, key="ask_mode", help="The four cards are always greedy answers.")
        st.number_input(
            **settings.widget(SamplingConfig, "temperature", FORM_DEFAULTS["ask_temperature"]), key="ask_temperature"
        )
        st.number_input(
            **settings.widget(DistillConfig, "seed", FORM_DEFAULTS["ask_seed"]) | {"label": "Sampling seed"},
            key="ask_seed",
        )
        st.text_input("Answer to score (when you type one)", placeholder="it is red", key="ask_answer")
        st.selectbox(
            **settings.widget(DistillConfig, "ablation", FORM_DEFAULTS["ask_ablation"]),
            format_func=ABLATION_HELP.get,
            key="ask_ablation",
        )
        st.form_submit_button("Ask", type="primary", on_click=ask, disabled=probe is None)
if probe is None:
    no_image_yet()  # in the main column, where the eye is: a refused upload's reason, or what to do
    view.share({})
    st.stop()

if probe.source == "scene":
    grid_col, image_col = st.columns([3, 2], gap="medium")
    with grid_col:
        st.markdown("**Your scene**: a shape and a colour per cell (— for none)")
        scene_grid(edit_scene)
    toy = uses_toy(spec)
    with image_col:
        what = "What the model sees: the 64×64 input" if toy else "The 64×64 scene (the pair's processor resizes it)"
        show_image(probe.image, f"{what}, enlarged without smoothing", width=256)
    for note in probe.notes if toy else ():
        st.warning(f"Outside what the toy pair was trained on: {note}.")

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
    result = inspect_asked("Inspecting", pair, spec, probe, asked, length)
if result is None:
    st.session_state.pop(ASKED_KEY, None)
    view.share(probe_params(probe, question=False))
    st.stop()
inspection = result
view.context = f"sample {sample_number(probe)}" if probe.source == "toy" else probe.label
reference = probe.reference if probe.question == inspection.question else None
if probe.source == "scene":
    reference = scene_reference(probe_objects(probe), inspection.question, world_name)
for note in [*asked.notes, *inspection.notes]:
    st.info(note)

result_anchor("answers").subheader(f"“{inspection.question}”")
where = "scene" if probe.source == "scene" else "toy sample"
right = f" Right answer for this {where}: **{reference}**." if reference else ""
if pattern and reference:  # a chain: its final answer is what is right or wrong
    final = final_answer(reference, pattern)
    right = f" Right final answer for this {where}: **{final}** (reference chain: {plain_markdown(reference)})."
chains = f" Each answer is a chain; its final answer is read with the pattern `{pattern}`." if pattern else ""
st.caption(f"**Greedy answers**: each model's most likely word at every step.{chains}{right}")
grid = st.columns(4)
for column, key in zip(grid, ANSWER_TITLES):
    with column.container(border=True):
        st.caption(ANSWER_TITLES[key])
        if pattern:  # a chain reads better as text, its final answer in bold beside the reference's
            st.markdown(plain_markdown(inspection.answers[key]) or "(nothing)")
            st.markdown(final_words(inspection.answers[key], reference, pattern))
        else:
            st.markdown(f"**{inspection.answers[key] or '(nothing)'}**")

view.note(f"the image ({probe.label})", probe.image)

# ------------------------------------------------------------------------------------- a counterfactual edit
before = show_edit(
    view, pair, spec, asked, probe, inspection, st.session_state.get(BEFORE_KEY), world_name, length, ANSWER_TITLES
)
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
shown_response = plain_markdown(inspection.response) if pattern else inspection.response  # a chain's markers
st.markdown(
    f"Token by token, {what}: **{shown_response or '(end of turn only)'}** — {len(rows)} tokens; "
    f"without the image means *{asked.ablation}*."
)
view.chart(token_strip(rows, result.next_tokens), "token strip")
wrapped = (
    f" A long answer wraps, {LINE_TOKENS} tokens a line; the words the image decides (VDS ≥ {GROUNDED_VDS:g} "
    "nats) keep full strength inside an orange frame, and the rest of the chain, its language, is muted."
    if len(rows) > LINE_TOKENS
    else ""
)
st.caption(
    ":blue[**Blue**]: the student's mismatch with the teacher at this token comes from its language prior "
    "(ℓLang); :orange[**orange**]: from the image (ℓVis); grey: evenly both. Faint boxes are small mismatches, "
    "solid ones ≥ 1 nat; a hatched outline means there is nothing to split (below 0.001 nats)." + wrapped
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
        "before": before.scene if before is not None else None,
    }
    | occlusion_values
)
