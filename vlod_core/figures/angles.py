"""Page 2's figures: the angles between gStd, gLang and gVis per module group and per VDS bin, and the three
vectors in their plane."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vlod_core.figures.style import ANGLE_SCALE, FEW_TOKENS, LANG, PAIR_COLOURS, PAIR_LABELS, STD, VIS, layout


def angles_by_group(geometry: dict) -> go.Figure:
    """Heat map: module groups x the three pairs of gradients, angle in degrees (90 = orthogonal)."""
    groups = list(geometry["groups"])
    keys = list(PAIR_LABELS)
    z = [[geometry["groups"][g]["angles"].get(k, math.nan) for k in keys] for g in groups]
    norms = [
        [
            "‖gStd‖ {std:.3g} · ‖gLang‖ {lang:.3g} · ‖gVis‖ {vis:.3g}".format(**geometry["groups"][g]["norms"])
            for _ in keys
        ]
        for g in groups
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[PAIR_LABELS[k] for k in keys],
            y=groups,
            text=[[("" if math.isnan(v) else f"{v:.0f}°") for v in row] for row in z],
            texttemplate="%{text}",
            customdata=norms,
            hovertemplate="%{y}<br>%{x}: %{z:.1f}°<br>%{customdata}<extra></extra>",
            colorscale=ANGLE_SCALE,
            zmin=0,
            zmax=180,
            zmid=90,
            colorbar={
                "title": {"text": "degrees", "side": "right"},
                "thickness": 12,
                "tickvals": [0, 90, 180],
                "ticktext": ["0 agree", "90 independent", "180 conflict"],
            },
        )
    )
    fig.update_yaxes(autorange="reversed")
    return layout(fig, 120 + 28 * len(groups), title="Angles per module group")


def norms_by_group(geometry: dict) -> go.Figure:
    groups = list(geometry["groups"])
    fig = go.Figure()
    for name, colour, label in (("std", STD, "‖gStd‖"), ("lang", LANG, "‖gLang‖"), ("vis", VIS, "‖gVis‖")):
        fig.add_bar(
            y=groups,
            x=[geometry["groups"][g]["norms"][name] for g in groups],
            name=label,
            marker_color=colour,
            orientation="h",
        )
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.12 - 1.2 / max(len(groups), 1), "x": 0})
    fig.update_xaxes(type="log", dtick=1, title="gradient norm (log scale)")
    fig.update_yaxes(autorange="reversed")
    return layout(fig, 200 + 36 * len(groups), title="Gradient norms per module group")


def bin_labels(bins: list[dict]) -> list[str]:
    """Tick text per VDS bin: its number, its token count and its VDS range."""
    return [f"{i}<br>{b['tokens']} tok<br>{b['vds_low']:.2g}–{b['vds_high']:.2g}" for i, b in enumerate(bins, start=1)]


def thin_bins(bins: list[dict], minimum: int = FEW_TOKENS) -> list[int]:
    """1-based numbers of the bins with fewer than `minimum` response tokens."""
    return [i for i, b in enumerate(bins, start=1) if b["tokens"] < minimum]


def angles_by_bin(geometry: dict) -> go.Figure:
    """The paper's Fig. 3: angles per VDS bin (equal-count bins of response tokens), with norms.

    Each bin's tick says how many tokens it holds and its VDS range; bins with fewer than FEW_TOKENS tokens
    are shaded, their angles are noisy.
    """
    bins = geometry.get("bins") or []
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.06)
    x = list(range(1, len(bins) + 1))
    ranges = [f"VDS {b['vds_low']:.3g}–{b['vds_high']:.3g}, {b['tokens']} tokens" for b in bins]
    for key, label in PAIR_LABELS.items():
        fig.add_scatter(
            x=x,
            y=[b["angles"][key] for b in bins],
            name=label,
            mode="lines+markers",
            line={"color": PAIR_COLOURS[key]},
            customdata=ranges,
            hovertemplate=f"bin %{{x}} (%{{customdata}})<br>{label}: %{{y:.1f}}°<extra></extra>",
            row=1,
            col=1,
        )
    for name, colour, label in (("std", STD, "‖gStd‖"), ("lang", LANG, "‖gLang‖"), ("vis", VIS, "‖gVis‖")):
        fig.add_scatter(
            x=x,
            y=[b["norms"][name] for b in bins],
            name=label,
            mode="lines+markers",
            line={"color": colour, "dash": "dot"},
            customdata=ranges,
            hovertemplate=f"bin %{{x}} (%{{customdata}})<br>{label}: %{{y:.3g}}<extra></extra>",
            row=2,
            col=1,
        )
    for number in thin_bins(bins):
        fig.add_vrect(x0=number - 0.5, x1=number + 0.5, fillcolor="#999", opacity=0.15, line_width=0)
    fig.add_hline(y=90, line={"color": "#999", "dash": "dash"}, row=1, col=1)
    fig.update_yaxes(title="degrees", row=1, col=1)
    fig.update_yaxes(title="norm", type="log", dtick=1, row=2, col=1)
    fig.update_xaxes(
        title="VDS bin: number, tokens, VDS range (1 = least image-dependent tokens)",
        tickvals=x,
        ticktext=bin_labels(bins),
        row=2,
        col=1,
    )
    fig.update_layout(legend={"orientation": "h", "y": -0.32})
    title = "Angles and norms per VDS bin" + (f" (shaded: under {FEW_TOKENS} tokens)" if thin_bins(bins) else "")
    return layout(fig, 520, title=title)


def plane_coordinates(block: dict, gamma: float = 2.0, eta: float | None = None) -> dict:
    """2-D coordinates of gStd, gVis, gLang (its projection) and the VGS update in the gStd-gVis plane.

    gStd lies on the x axis; gVis is placed by its angle to gStd. gLang is generally out of that plane:
    its projection is drawn and `lang_out_of_plane` is the norm of the rest. The VGS update is
    η·(gStd + γ·gVis) with η = ‖gStd‖ / ‖gStd + γ·gVis‖ unless given (the small λ·ℓLP term is left out).
    """
    norms, angles = block["norms"], block["angles"]
    n_std, n_lang, n_vis = norms["std"], norms["lang"], norms["vis"]

    def cos(key: str) -> float:
        value = angles.get(key, math.nan)
        return 0.0 if math.isnan(value) else math.cos(math.radians(value))

    std = np.array([n_std, 0.0])
    vis = n_vis * np.array([cos("std-vis"), math.sqrt(max(0.0, 1 - cos("std-vis") ** 2))])
    # gLang's coordinates in the orthonormal basis e1 = gStd/‖gStd‖, e2 = (gVis ⟂ gStd)/‖·‖
    lang_x = n_lang * cos("std-lang")
    dot_lang_vis = n_lang * n_vis * cos("lang-vis")
    lang_y = (dot_lang_vis - lang_x * vis[0]) / vis[1] if vis[1] > 1e-12 else 0.0
    lang = np.array([lang_x, lang_y])
    lang_out = math.sqrt(max(0.0, n_lang**2 - lang_x**2 - lang_y**2))
    combined = std + gamma * vis
    if eta is None:
        eta = n_std / max(float(np.linalg.norm(combined)), 1e-12)
    return {
        "std": std,
        "vis": vis,
        "lang": lang,
        "vgs": eta * combined,
        "eta": eta,
        "gamma": gamma,
        "lang_out_of_plane": lang_out,
    }


def vector_plane(block: dict, gamma: float = 2.0, eta: float | None = None) -> go.Figure:
    """Arrows of gStd, gVis, gLang (projected) and the VGS update η(gStd + γ·gVis) in their plane."""
    coords = plane_coordinates(block, gamma, eta)
    fig = go.Figure()
    arrows = (
        ("std", STD, "gStd"),
        ("vis", VIS, "gVis"),
        ("lang", LANG, "gLang (projected)"),
        ("vgs", "#2ca02c", f"VGS update, η={coords['eta']:.2f}, γ={gamma:g}"),
    )
    tips = np.array([coords[k] for k, _, _ in arrows] + [np.zeros(2)])  # (5, 2), the origin included
    extent = max(1e-12, float(np.abs(tips).max()))
    # labels stacked in the order of their arrows' directions, so near-parallel arrows stay readable
    order = sorted(range(len(arrows)), key=lambda i: math.atan2(coords[arrows[i][0]][1], coords[arrows[i][0]][0]))
    shift = {arrows[i][0]: 18 * (rank - (len(arrows) - 1) / 2) for rank, i in enumerate(order)}
    for key, colour, label in arrows:
        x, y = coords[key]
        fig.add_scatter(
            x=[0, x],
            y=[0, y],
            mode="lines",
            line={"color": colour, "width": 3, "dash": "dash" if key == "lang" else "solid"},
            name=label,
            hoverinfo="name",
        )
        fig.add_annotation(
            x=x,
            y=y,
            ax=0,
            ay=0,
            xref="x",
            yref="y",
            axref="x",
            ayref="y",
            showarrow=True,
            arrowhead=3,
            arrowsize=1.2,
            arrowwidth=2,
            arrowcolor=colour,
            text="",
        )
        fig.add_annotation(
            x=x,
            y=y,
            text=label.split(",")[0],
            showarrow=False,
            yshift=shift[key],
            xanchor="left" if x >= 0 else "right",
            xshift=6 if x >= 0 else -6,
            font={"color": colour, "size": 13},
        )
    pad = 0.2 * extent
    low, high = tips.min(axis=0) - pad, tips.max(axis=0) + pad
    high[0] += 0.35 * extent  # room for the labels right of the tips
    if (tips[:, 0] < 0).any():
        low[0] -= 0.55 * extent  # and left of the tips that point left
    fig.update_xaxes(range=[low[0], high[0]], zeroline=True, zerolinecolor="#ccc", showgrid=False)
    fig.update_yaxes(
        range=[low[1], high[1]], zeroline=True, zerolinecolor="#ccc", showgrid=False, scaleanchor="x", scaleratio=1
    )
    fig.update_layout(legend={"orientation": "h", "y": -0.12})
    return layout(fig, 460, title=f"The gStd–gVis plane (gLang sticks out by {coords['lang_out_of_plane']:.3g})")
