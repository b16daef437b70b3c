"""Page 1: the four answers for one image and question, and the per-token decomposition of an answer."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from PIL import Image

from vlod_app.compute import inspect_cached, occlusion_cached
from vlod_app.state import current_spec, get_pair, set_question, shown
from vlod_app.widgets import image_picker, page_setup
from vlod_core.decomposition import PER_TOKEN_FIELDS
from vlod_core.figures import kl_bars, logratio_split, occlusion_figure, token_strip
from vlod_core.inputs import ABLATIONS
from vlod_core.text import check_question

RESULT_KEY = "vlod_inspection"
ABLATION_HELP = {
    "remove": "remove (drop the image)",
    "blank": "blank (a grey image)",
    "blur": "blur (a blurred image)",
}
ANSWER_TITLES = {
    "teacher_image": "Teacher, with the image",
    "teacher_no_image": "Teacher, without it",
    "student_image": "Student, with the image",
    "student_no_image": "Student, without it",
}

page_setup("Answers and tokens")
st.title("Answers and tokens")
st.caption(
    "Ask teacher and student one question about an image, with and without the image. Then see, token by token, "
    "where the student's answer differs from the teacher's because of the language prior and where because of "
    "the image."
)
pair = get_pair()
spec = current_spec()

left, right = st.columns([2, 3], gap="large")
with left:
    probe = image_picker()
    if probe is not None:
        shown_image = probe.image
        if max(shown_image.size) < 256:  # tiny toy images: enlarge without smoothing
            scale = 256 // max(shown_image.size)
            shown_image = shown_image.resize((shown_image.width * scale, shown_image.height * scale), Image.NEAREST)
        st.image(shown_image, caption=probe.label)
if probe is None:
    st.stop()

with right, st.form("ask"):
    question = st.text_input("Question", value=probe.question, key=f"question_{probe.digest}", max_chars=500)
    mode = st.radio("Answer to decompose", ["The student's own sample", "An answer I type"], horizontal=True)
    typed = st.text_input("Answer to score (used when you choose to type one)", placeholder="it is red")
    seed_col, ablation_col = st.columns(2)
    seed = seed_col.number_input(
        "Sampling seed",
        min_value=0,
        max_value=2**31 - 1,
        value=0,
        step=1,
        help="Change it to draw another sample from the student.",
    )
    ablation = ablation_col.selectbox(
        "Without the image means",
        ABLATIONS,
        format_func=ABLATION_HELP.get,
        help="remove is the paper's default: the image entry is dropped from the "
        "message, so there are no image tokens at all",
    )
    submitted = st.form_submit_button("Ask", type="primary")

if submitted:
    checked = shown("Question", check_question, question)
    response = typed.strip() if mode == "An answer I type" else None
    if checked is not None and mode == "An answer I type" and not response:
        st.error("Type an answer to score, or choose the student's own sample.")
    elif checked is not None:
        text, notes = checked
        set_question(text)
        with st.spinner("Asking teacher and student, then scoring the answer four ways…"):
            result = shown(
                "Inspecting", inspect_cached, pair, spec, probe.digest, probe.image, text, response, ablation, int(seed)
            )
        if result is not None:
            st.session_state[RESULT_KEY] = {
                "result": result,
                "spec": spec,
                "digest": probe.digest,
                "notes": notes,
                "ablation": ablation,
                "question": text,
                "typed": response is not None,
                "seed": int(seed),
            }

stored = st.session_state.get(RESULT_KEY)
if stored is None or stored["spec"] != spec or stored["digest"] != probe.digest:
    st.info("Ask a question to see the four answers and the token-level decomposition.")
    st.stop()

result = stored["result"]
inspection = result.inspection
for note in [*stored["notes"], *inspection.notes]:
    st.info(note)

st.subheader(f"“{inspection.question}”")
if probe.reference and probe.question == inspection.question:
    st.caption(f"Right answer for this toy sample: **{probe.reference}**")
grid = st.columns(4)
for column, key in zip(grid, ANSWER_TITLES):
    with column.container(border=True):
        st.caption(ANSWER_TITLES[key])
        st.markdown(f"**{inspection.answers[key] or '(nothing)'}**")

rows = inspection.decomposition.rows(0)
st.subheader("Token by token")
what = "your answer" if stored["typed"] else f"the student's sampled answer (temperature 1, seed {stored['seed']})"
st.markdown(
    f"Decomposing {what}: **{inspection.response or '(end of turn only)'}** — {len(rows)} tokens, "
    f"image ablation *{stored['ablation']}*."
)
st.plotly_chart(token_strip(rows, result.next_tokens), config={"displayModeBar": False}, key="token_strip")
st.info(
    "**The KLs do not add up**: std_kl ≠ lang_kl + vis_kl in general, so the colour is only a share. "
    "Only the log-ratio on the sampled token splits exactly: log pI(y) − log qI(y) = "
    "[log px(y) − log qx(y)] (language) + [(log pI(y) − log px(y)) − (log qI(y) − log qx(y))] (visual)."
)
split_col, kl_col = st.columns(2)
split_col.plotly_chart(logratio_split(rows), config={"displayModeBar": False}, key="logratio_split")
kl_col.plotly_chart(kl_bars(rows), config={"displayModeBar": False}, key="kl_bars")

table = pd.DataFrame(rows)[["token", *PER_TOKEN_FIELDS]]
st.dataframe(
    table, hide_index=False, column_config={k: st.column_config.NumberColumn(format="%.4f") for k in PER_TOKEN_FIELDS}
)
st.caption(
    "vds = KL(qI‖qx): how much the image changes the teacher at this token. logratio = logratio_lang + "
    "logratio_vis exactly."
)

st.subheader("Where in the image")
if st.toggle("Occlusion map for one token (re-scores the image once per grid cell)", key="occlusion_on"):
    labels = [f"{i}: {r['token']}  (vds {r['vds']:.3f})" for i, r in enumerate(rows)]
    default = max(range(len(rows)), key=lambda i: rows[i]["vds"])
    position = st.selectbox(
        "Token", range(len(rows)), index=default, format_func=labels.__getitem__, key=f"occlusion_token_{probe.digest}"
    )
    with st.spinner("Greying out each cell and re-scoring…"):
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
            stored["ablation"],
        )
    if occlusion is not None:
        map_col, text_col = st.columns([3, 2])
        map_col.plotly_chart(
            occlusion_figure(probe.image, occlusion), config={"displayModeBar": False}, key="occlusion"
        )
        text_col.markdown(
            f"Each cell of a {occlusion.grid[0]}×{occlusion.grid[1]} grid is greyed out in turn and "
            f"**{occlusion.token}** is scored again. The colour is the change of its visual term "
            "(student PMI − teacher PMI). **Red**: greying the cell cost the teacher more belief in the token "
            "than the student — the teacher looks there, the student less. **Blue**: the student relies on "
            "that cell more than the teacher does."
        )
else:
    st.caption("Off by default: it runs two forward passes per grid cell.")
