"""vlod's home page: what the lab shows, which model pair is in use, and choosing another one.

Run with `streamlit run app.py`. The pages in `pages/` use the pair chosen here (kept in session state).
"""

from __future__ import annotations

import streamlit as st

from vlod_app.state import (
    PRESETS,
    cached_grounding,
    check_and_load,
    current_spec,
    describe,
    preset_memory_lines,
    set_spec,
    shown,
    toy_ready,
)
from vlod_app.widgets import page_setup, probe_or_default
from vlod_core.figures.tokens import decomposition_diagram
from vlod_core.pair import TOY, PairSpec
from vlod_core.toy import TOY_REASONING

view = page_setup("vlod — a lab for decomposed on-policy distillation", "home")
view.show_probe(probe_or_default())

intro, picture = st.columns([5, 6])
with intro:
    st.markdown(
        """
A small vision-language **student** learns from a larger **teacher** by answering questions about images
itself (on-policy) and being corrected token by token. The usual correction, `ℓStd = KL(pI‖qI)`, mixes two
things: what the teacher believes from the **question alone** (its language prior) and what it gains from
**the image**. Scoring every answer four times — student and teacher, with and without the image — splits
them: `ℓLang` compares the two language priors, `ℓVis` pulls the student towards the teacher's *visual gain*
on top of its own prior, and `VDS` says how much a token depends on the image at all.
*Visual Gradient Steering* (Yoon et al., 2026) adds `γ·ℓVis` to the standard loss to push the student to
look at the image.

- **Answers and tokens** — the four answers for one image and question, and which tokens are
  language-driven or image-driven.
- **Gradient angles** — how the three gradients point relative to each other, per module and per VDS bin.
- **Distill and compare** — train standard and steered students from the same seed and compare them.
- **Paper check** — the paper's claims measured on the toy world over seeds, each with a verdict.
"""
    )
with picture:
    view.chart(decomposition_diagram(), "four passes diagram")

st.header("Model pair in use")
spec = current_spec()
pair = shown(f"Loading {describe(spec)}", check_and_load, spec) if toy_ready(spec) else None
if not toy_ready(spec):
    st.info(f"**{describe(spec)}** is being built, once for this server (progress at the top of the page).")
if pair is not None:
    teacher_params = sum(p.numel() for p in pair.teacher.parameters())
    student_params = sum(p.numel() for p in pair.student.parameters())
    st.success(
        f"**{describe(spec)}** — student {student_params:,} parameters, teacher {teacher_params:,}; "
        f"shared vocabulary of {pair.vocab_size:,} tokens; on {pair.device} "
        f"({next(pair.student.parameters()).dtype})."
    )
    for note in pair.notes:
        st.info(note)
    grounding = shown("Checking that the models read the image", cached_grounding, spec)
    for warning in grounding.warnings if grounding is not None else []:
        st.warning(warning[0].upper() + warning[1:], icon="⚠️")
    for note in grounding.notes if grounding is not None else []:
        st.info(note[0].upper() + note[1:])

st.header("Choose another pair")
TOY_KINDS = {  # the built-in pairs: label -> spec
    "Toy pair (built in)": PairSpec(),
    "Toy pair with the blind student": PairSpec(student_variant="student_blind"),
    "Toy reasoning pair (built in)": PairSpec(teacher=TOY_REASONING, student=TOY_REASONING),
}
PRESET, HUB_IDS, FOLDERS = "Preset from the Hub", "Hub ids", "Local folders"
KINDS = (*TOY_KINDS, PRESET, HUB_IDS, FOLDERS)
kind = st.radio("Pair", KINDS, horizontal=True, key="pair_kind")
if kind == "Toy reasoning pair (built in)":
    st.caption(
        "The reasoning world (`vlod_core.toy.reasoning`): questions that need a short chain over two facts read off "
        "the image. Teacher and student answer with chains `<reason> … </reason> \\boxed{…}` in different styles, "
        "most of whose tokens are language; accuracy is read off the boxed final answer. Built on first use."
    )
with st.form("choose_pair"):
    if kind == PRESET:
        preset = st.selectbox("Preset (student ← teacher)", list(PRESETS))
        st.caption(
            "Memory to distil, batch 8, 448-px images (estimated from the configs): " + "; ".join(preset_memory_lines())
        )
    elif kind in (HUB_IDS, FOLDERS):
        hint = "owner/name" if kind == HUB_IDS else "/path/to/saved/model"
        left, right = st.columns(2)
        student_name = left.text_input("Student", placeholder=hint)
        teacher_name = right.text_input("Teacher", placeholder=hint)
    if kind not in TOY_KINDS:
        left, middle, right = st.columns(3)
        dtype = left.selectbox(
            "Weights", ["auto", "float32", "bfloat16", "float16"], help="auto: bfloat16 on a GPU, float32 on the CPU"
        )
        device = middle.text_input("Device", value="auto", help="auto, cpu, cuda, cuda:1 …")
        trust = right.checkbox(
            "Trust remote code",
            value=False,
            help="Let the model's repository run its own Python code. Only for authors you trust.",
        )
    submitted = st.form_submit_button("Check and use this pair", type="primary")

if submitted:
    chosen = None
    if kind in TOY_KINDS:
        chosen = TOY_KINDS[kind]
    elif kind == PRESET:
        student_id, teacher_id = PRESETS[preset]
        chosen = shown(
            "This pair",
            PairSpec,
            teacher=teacher_id,
            student=student_id,
            dtype=dtype,
            device=device.strip() or "auto",
            trust_remote_code=trust,
        )
    elif not student_name.strip() or not teacher_name.strip():
        st.error("Give both a student and a teacher.")
    elif {TOY, TOY_REASONING} & {student_name.strip(), teacher_name.strip()}:
        st.error("For a toy pair, choose 'Toy pair (built in)' or 'Toy reasoning pair (built in)' above.")
    else:
        chosen = shown(
            "This pair",
            PairSpec,
            teacher=teacher_name.strip(),
            student=student_name.strip(),
            dtype=dtype,
            device=device.strip() or "auto",
            trust_remote_code=trust,
        )
    if chosen is not None and not toy_ready(chosen):
        set_spec(chosen)  # the build starts now; its progress shows at the top
        st.rerun()
    if chosen is not None and shown(f"Checking {describe(chosen)}", check_and_load, chosen) is not None:
        set_spec(chosen)
        st.rerun()  # the "pair in use" section above shows the new pair

st.caption(
    "A pair must share one tokenizer and chat template; the check runs before anything uses it. "
    "Models load once per server and are never modified: training works on a private copy of the student."
)
view.share({})
