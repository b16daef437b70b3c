"""Page 2: angles between gStd, gLang and gVis on a batch — globally, per module group, per VDS bin.

Inputs in the sidebar, results first. What was measured lives in session state and in the URL (`samples`,
`seed`, `ablation`, `bins`, `include`, `gamma`, and the page-1 image as `sample`/`question`), so a reload
or a shared link measures the same batch again (the result is cached, so it is instant on this server).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from vlod_app.compute import geometry_cached
from vlod_app.links import Params, from_link
from vlod_app.state import current_spec, get_pair, shown
from vlod_app.widgets import adopt_probe, page_setup, probe_or_default, probe_params
from vlod_app.worlds import answer_length, world
from vlod_core.figures.angles import angles_by_bin, angles_by_group, norms_by_group, thin_bins, vector_plane
from vlod_core.figures.style import FEW_TOKENS, PAIR_LABELS
from vlod_core import settings
from vlod_core.geometry_batch import GeometryConfig
from vlod_core.inputs import ABLATIONS
from vlod_core.steering import SteeringConfig

MEASURED_KEY = "vlod_measured"
MEASURE = settings.entries(GeometryConfig)
GAMMA = settings.entries(SteeringConfig)["gamma"]
PAGE_BINS = 5  # 32 answers in 5 bins: about 25 response tokens per bin, enough for an angle (10 need 64 or more)
FORM_DEFAULTS = {
    "angles_include": True,
    "angles_samples": MEASURE["batch"].default - 1,  # with the page-1 image, the CLI's batch
    "angles_seed": MEASURE["seed"].default,
    "angles_ablation": MEASURE["ablation"].default,
    "angles_bins": PAGE_BINS,
    "angles_gamma": GAMMA.default,
}
MIN_SAMPLES, MAX_SAMPLES = (int(MEASURE["batch"].about.low) - 1, int(MEASURE["batch"].about.high) - 1)  # + the image


@dataclass(frozen=True)
class Measured:
    include: bool
    samples: int
    seed: int
    ablation: str
    bins: int


def measure() -> None:
    state = st.session_state
    state[MEASURED_KEY] = Measured(
        bool(state["angles_include"]),
        int(state["angles_samples"]),
        int(state["angles_seed"]),
        state["angles_ablation"],
        int(state["angles_bins"]),
    )


view = page_setup(
    "Gradient angles",
    "angles",
    "The student answers a batch of questions with the image; the three losses are averaged over its answers and "
    "differentiated with respect to all of its parameters — gradients only, the student is not changed.",
)
pair = get_pair()
spec = current_spec()

params = Params()
if "samples" in params.raw and from_link():
    adopt_probe(params)
    include, samples = params.flag("include"), params.integer("samples", MIN_SAMPLES, MAX_SAMPLES)
    bins = params.integer("bins", int(MEASURE["bins"].about.low), int(MEASURE["bins"].about.high))
    gamma = params.number("gamma", GAMMA.about.low, GAMMA.about.high)
    linked = Measured(
        "sample" in params.raw if include is None else include,
        FORM_DEFAULTS["angles_samples"] if samples is None else samples,
        params.integer("seed", 0, int(MEASURE["seed"].about.high)) or MEASURE["seed"].default,
        params.choice("ablation", ABLATIONS) or MEASURE["ablation"].default,
        FORM_DEFAULTS["angles_bins"] if bins is None else bins,
    )
    st.session_state[MEASURED_KEY] = linked
    for name, value in zip(("include", "samples", "seed", "ablation", "bins"), dataclasses.astuple(linked)):
        st.session_state[f"angles_{name}"] = value
    st.session_state["angles_gamma"] = FORM_DEFAULTS["angles_gamma"] if gamma is None else gamma
    params.show_problems()
elif from_link():  # a link copied before measuring: only its image (`sample` or `scene`, and `question`)
    adopt_probe(params)
    params.show_problems()

probe = probe_or_default()
view.show_probe(probe)
defaults = FORM_DEFAULTS  # each widget's own default (a link sets their state instead)
with view.inputs, st.form("geometry"):
    st.checkbox(
        f"Include the image from page 1 ({probe.label}: “{probe.question}”)",
        value=defaults["angles_include"],
        key="angles_include",
    )
    st.slider(
        "Toy samples in the batch",
        min_value=MIN_SAMPLES,
        max_value=MAX_SAMPLES,
        value=defaults["angles_samples"],
        key="angles_samples",
        help="answered by the student, besides the page-1 image when it is included",
    )
    st.number_input(**settings.widget(GeometryConfig, "seed", defaults["angles_seed"]), key="angles_seed")
    st.selectbox(**settings.widget(GeometryConfig, "ablation", defaults["angles_ablation"]), key="angles_ablation")
    st.number_input(**settings.widget(GeometryConfig, "bins", defaults["angles_bins"]), key="angles_bins")
    st.form_submit_button("Measure the angles", type="primary", on_click=measure)

measured: Measured | None = st.session_state.get(MEASURED_KEY)
if measured is None:
    st.info("Measure the angles (in the sidebar) to see them.")
    view.share(probe_params(probe))
    st.stop()
if measured.samples == 0 and not measured.include:
    st.error("The batch is empty: include the image from page 1 or some toy samples.")
    st.session_state.pop(MEASURED_KEY)
    view.share(probe_params(probe))
    st.stop()

with st.spinner("Sampling answers, scoring them four ways and taking three gradients…"):
    geometry = shown(
        "Measuring the gradients",
        geometry_cached,
        pair,
        spec,
        probe.digest if measured.include else None,
        probe.image if measured.include else None,
        probe.question if measured.include else None,
        measured.samples,
        measured.seed,
        measured.ablation,
        measured.bins,
        world(spec),  # the pair's toy world's samples, answered as long as its answers need
        answer_length(world(spec)),
    )
if geometry is None:
    st.session_state.pop(MEASURED_KEY)
    view.share(probe_params(probe))
    st.stop()

size = measured.samples + (1 if measured.include else 0)
view.context = f"{size} examples seed {measured.seed}"
overall = geometry["global"]
st.subheader(f"All parameters as one vector ({size} examples)")
columns = st.columns(3)
for column, key in zip(columns, PAIR_LABELS):
    column.metric(PAIR_LABELS[key], f"{overall['angles'][key]:.1f}°")
norms = overall["norms"]
st.caption(
    f"Norms: ‖gStd‖ = {norms['std']:.4g}, ‖gLang‖ = {norms['lang']:.4g}, ‖gVis‖ = {norms['vis']:.4g}. "
    "90° means the two losses pull independent ways; below 90° they agree, above they conflict."
)
view.note(
    "angles of all parameters as one vector",
    pd.DataFrame([{"pair": PAIR_LABELS[k], "degrees": overall["angles"][k]} for k in PAIR_LABELS]),
)

plane_col, note_col = st.columns([3, 2], gap="large")
with note_col:
    gamma = st.slider(**settings.widget(SteeringConfig, "gamma", defaults["angles_gamma"]), key="angles_gamma")
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
    view.chart(vector_plane(overall, gamma), "angle plane")

st.subheader("Per module group")
group_col, norm_col = st.columns(2)
with group_col:
    view.chart(angles_by_group(geometry), "angles per module group")
with norm_col:
    view.chart(norms_by_group(geometry), "gradient norms per module group")
st.caption(
    "Green: the two gradients agree (below 90°); magenta: they conflict (above 90°). A blank cell means a "
    "gradient is zero in that group: with the image removed, the vision tower and projector get no gradient "
    "from ℓLang."
)

st.subheader("Per VDS bin")
bins = geometry["bins"]
if bins:
    thin = thin_bins(bins)
    if thin:
        st.warning(
            f"Bin{'s' if len(thin) > 1 else ''} {', '.join(map(str, thin))} hold{'' if len(thin) > 1 else 's'} fewer "
            f"than {FEW_TOKENS} tokens (shaded): their angles are too noisy to trust. Add toy samples to the batch or "
            "use fewer bins."
        )
    view.chart(angles_by_bin(geometry), "angles per VDS bin")
    st.caption(
        "Each bin holds the same number of response tokens, ordered by VDS = KL(qI‖qx) (under each bin: its "
        "number, its token count and its VDS range); each loss is averaged over the bin's tokens only. The "
        "paper's Fig. 3 has the same axes."
    )
    view.table(
        pd.DataFrame(
            [
                {"bin": i, "tokens": b["tokens"], "VDS from": b["vds_low"], "VDS to": b["vds_high"]}
                | {PAIR_LABELS[k]: b["angles"][k] for k in PAIR_LABELS}
                for i, b in enumerate(bins, start=1)
            ]
        ),
        "angles per VDS bin",
    )
else:
    st.info("Too few response tokens for VDS bins (or bins set to 0): add toy samples to the batch.")

view.share(
    (probe_params(probe) if measured.include else {})
    | {
        "include": measured.include,
        "samples": measured.samples,
        "seed": measured.seed,
        "ablation": measured.ablation,
        "bins": measured.bins,
        "gamma": gamma if gamma != GAMMA.default else None,
    }
)
