"""Page 2: angles between gStd, gLang and gVis on a batch — globally, per module group, per VDS bin."""

from __future__ import annotations

import streamlit as st

from vlod_app.compute import geometry_cached
from vlod_app.state import current_spec, get_pair, shown
from vlod_app.widgets import page_setup, probe_or_default
from vlod_core.figures import PAIR_LABELS, angles_by_bin, angles_by_group, norms_by_group, vector_plane
from vlod_core.inputs import ABLATIONS

RESULT_KEY = "vlod_geometry"

page_setup("Gradient angles")
st.title("Gradient angles")
st.caption(
    "The student answers a batch of questions with the image; the three losses are averaged over its answers and "
    "differentiated with respect to all of its parameters — gradients only, the student is not changed."
)
pair = get_pair()
spec = current_spec()
probe = probe_or_default()

with st.form("geometry"):
    include = st.checkbox(f"Include the image from page 1 ({probe.label}: “{probe.question}”)", value=True)
    left, middle, right, last = st.columns(4)
    toy_examples = left.slider("Toy samples in the batch", min_value=0, max_value=64, value=15)
    seed = middle.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1)
    ablation = right.selectbox("Without the image means", ABLATIONS)
    bins = last.number_input(
        "VDS bins",
        min_value=0,
        max_value=20,
        value=10,
        step=1,
        help="Equal-count bins of the response tokens by VDS (0: none)",
    )
    submitted = st.form_submit_button("Measure the angles", type="primary")

if submitted:
    if toy_examples == 0 and not include:
        st.error("The batch is empty: include the image from page 1 or some toy samples.")
    else:
        with st.spinner("Sampling answers, scoring them four ways and taking three gradients…"):
            geometry = shown(
                "Measuring the gradients",
                geometry_cached,
                pair,
                spec,
                probe.digest if include else None,
                probe.image if include else None,
                probe.question if include else None,
                int(toy_examples),
                int(seed),
                ablation,
                int(bins),
            )
        if geometry is not None:
            size = int(toy_examples) + (1 if include else 0)
            st.session_state[RESULT_KEY] = {"geometry": geometry, "spec": spec, "size": size}

stored = st.session_state.get(RESULT_KEY)
if stored is None or stored["spec"] != spec:
    st.info("Measure the angles to see them.")
    st.stop()

geometry = stored["geometry"]
overall = geometry["global"]
st.subheader(f"All parameters as one vector ({stored['size']} examples)")
columns = st.columns(3)
for column, key in zip(columns, PAIR_LABELS):
    column.metric(PAIR_LABELS[key], f"{overall['angles'][key]:.1f}°")
norms = overall["norms"]
st.caption(
    f"Norms: ‖gStd‖ = {norms['std']:.4g}, ‖gLang‖ = {norms['lang']:.4g}, ‖gVis‖ = {norms['vis']:.4g}. "
    "90° means the two losses pull independent ways; below 90° they agree, above they conflict."
)

plane_col, note_col = st.columns([3, 2], gap="large")
with note_col:
    gamma = st.slider("γ for the VGS update", min_value=0.0, max_value=4.0, value=2.0, step=0.5)
    st.markdown(
        """
**How to read this.** gStd lies on the x axis and gVis is drawn at its true angle and length. gLang is
usually *not* in that plane: its shadow is drawn (dashed) and the title says how much sticks out.
The green arrow is what VGS descends: η·(gStd + γ·gVis), with η = ‖gStd‖ / ‖gStd + γ·gVis‖ so it is as
long as gStd — steering turns the update towards gVis without making it bigger.
Training moves the parameters *against* these arrows.

The paper found gStd between the other two, ~40–50° from each (a "passive bisector"), and the angle between
gLang and gVis rising with VDS to ~92°. The toy world does not have to agree; the app shows what it measures.
"""
    )
with plane_col:
    st.plotly_chart(vector_plane(overall, gamma), config={"displayModeBar": False}, key="vector_plane")

st.subheader("Per module group")
group_col, norm_col = st.columns(2)
group_col.plotly_chart(angles_by_group(geometry), config={"displayModeBar": False}, key="angles_by_group")
norm_col.plotly_chart(norms_by_group(geometry), config={"displayModeBar": False}, key="norms_by_group")
st.caption(
    "A blank cell means a gradient is zero in that group: with the image removed, the vision tower and "
    "projector get no gradient from ℓLang."
)

st.subheader("Per VDS bin")
if geometry["bins"]:
    st.plotly_chart(angles_by_bin(geometry), config={"displayModeBar": False}, key="angles_by_bin")
    st.caption(
        "Each bin holds the same number of response tokens, ordered by VDS = KL(qI‖qx); each loss is "
        "averaged over the bin's tokens only. The paper's Fig. 3 has the same axes."
    )
else:
    st.info("Too few response tokens for VDS bins (or bins set to 0): add toy samples to the batch.")
