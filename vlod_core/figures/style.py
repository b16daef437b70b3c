"""What the colours mean, everywhere in the app, and the layout every figure shares."""

from __future__ import annotations

from types import MappingProxyType

import plotly.graph_objects as go

LANG = "#1f77b4"
VIS = "#ff7f0e"
STD = "#555555"
VDS = "#9467bd"
TEACHER_MORE = "#01665e"  # occlusion: covering the cell costs the teacher more than the student
STUDENT_MORE = "#8c510a"  # ... costs the student more
RELIANCE_FLOOR = 0.1  # nats: occlusion changes smaller than this never get the full colour
RELIANCE_SCALE = ((0.0, STUDENT_MORE), (0.5, "#f5f5f5"), (1.0, TEACHER_MORE))
ANGLE_SCALE = ((0.0, "#4d9221"), (0.5, "#f7f7f7"), (1.0, "#c51b7d"))  # 0° agree, 90° independent, 180° conflict
PAIR_COLOURS = MappingProxyType({"std-lang": "#2ca02c", "std-vis": "#d62728", "lang-vis": "#17becf"})
PAIR_LABELS = MappingProxyType({"std-lang": "gStd ∠ gLang", "std-vis": "gStd ∠ gVis", "lang-vis": "gLang ∠ gVis"})
RULE_COLOURS = MappingProxyType(
    {
        "standard": "#2a9d8f",  # not grey: grey is "before" in the accuracy bars
        "vgs": VIS,
        "vgs_no_lp": "#d62728",
        "vgs_adaptive": "#bcbd22",
        "vgs_anchored": "#8c564b",
        "lang_steer": LANG,
    }
)
SPLIT_FLOOR = 1e-3  # nats: below this lang_kl + vis_kl, a token has nothing to split
SHARE_SCALE = ((0.0, LANG), (0.5, "#b3b3b3"), (1.0, VIS))  # 0: all language, 0.5: even, 1: all visual
GROUNDED_VDS = 0.1  # nats: a token whose VDS is at least this is underlined: the image decides it
MIN_OPACITY = 0.18  # the faintest token of the strip (the largest mismatch is fully opaque)
LINE_TOKENS = 10  # a longer answer (a reasoning chain) wraps into lines of this many tokens in the strip
MUTED_OPACITY = 0.4  # in a wrapped strip, the most a token the image does not decide is drawn with
FEW_TOKENS = 20  # a VDS bin with fewer response tokens than this gives angles too noisy to trust


def layout(fig: go.Figure, height: int, **kwargs) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, template="plotly_white", **kwargs)
    return fig
