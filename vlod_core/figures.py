"""Plotly figures built from the core's result objects; the app's pages only place them.

Every builder takes plain results (`Decomposition.rows()`, `NextTokens`, `OcclusionMap`, `GradGeometry`
dicts, run-card records) and returns a `plotly.graph_objects.Figure`; nothing here computes a model
quantity. Colours mean one thing across the app: language blue and visual orange wherever a term is split
into the two, standard OPD grey, VDS purple, one colour per update rule (vgs shares the visual orange,
lang_steer the language blue, the terms they steer towards). Two other meanings get pairs of their own that
use neither blue nor orange: teacher-versus-student reliance on a cell of the image (teal / brown) and the
angle between two gradients (green when they agree, magenta when they conflict).
"""

from __future__ import annotations

import difflib
import html
import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vlod_core.topk import DISTRIBUTIONS, NextTokens

LANG = "#1f77b4"
VIS = "#ff7f0e"
STD = "#555555"
VDS = "#9467bd"
TEACHER_MORE = "#01665e"  # occlusion: covering the cell costs the teacher more than the student
STUDENT_MORE = "#8c510a"  # ... costs the student more
RELIANCE_FLOOR = 0.1  # nats: occlusion changes smaller than this never get the full colour
RELIANCE_SCALE = ((0.0, STUDENT_MORE), (0.5, "#f5f5f5"), (1.0, TEACHER_MORE))
ANGLE_SCALE = ((0.0, "#4d9221"), (0.5, "#f7f7f7"), (1.0, "#c51b7d"))  # 0° agree, 90° independent, 180° conflict
PAIR_COLOURS = {"std-lang": "#2ca02c", "std-vis": "#d62728", "lang-vis": "#17becf"}
PAIR_LABELS = {"std-lang": "gStd ∠ gLang", "std-vis": "gStd ∠ gVis", "lang-vis": "gLang ∠ gVis"}
RULE_COLOURS = {
    "standard": "#555555",
    "vgs": VIS,
    "vgs_no_lp": "#d62728",
    "vgs_adaptive": "#bcbd22",
    "vgs_anchored": "#8c564b",
    "lang_steer": LANG,
}
SPLIT_FLOOR = 1e-3  # nats: below this lang_kl + vis_kl, a token has nothing to split
SHARE_SCALE = [[0.0, LANG], [0.5, "#b3b3b3"], [1.0, VIS]]  # 0: all language, 0.5: even, 1: all visual
MIN_OPACITY = 0.18  # the faintest token of the strip (the largest mismatch is fully opaque)
FEW_TOKENS = 20  # a VDS bin with fewer response tokens than this gives angles too noisy to trust


def _layout(fig: go.Figure, height: int, **kwargs) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, template="plotly_white", **kwargs)
    return fig


def token_labels(rows: list[dict]) -> list[str]:
    """Unique x labels: the position and the token (the same word can occur twice)."""
    return [f"{i}·{row['token']}" for i, row in enumerate(rows)]


def visual_share(row: dict) -> float:
    """vis_kl / (lang_kl + vis_kl): 0 = the token's mismatch is all language prior, 1 = all visual."""
    total = row["lang_kl"] + row["vis_kl"]
    return 0.5 if total <= 1e-12 else row["vis_kl"] / total


def strength(total: float, opaque_at: float = 1.0) -> float:
    """Opacity for a mismatch of `total` nats: MIN_OPACITY at SPLIT_FLOOR, 1 at `opaque_at`, log scale between."""
    if not total > SPLIT_FLOOR:
        return MIN_OPACITY
    position = math.log(total / SPLIT_FLOOR) / math.log(opaque_at / SPLIT_FLOOR)
    return MIN_OPACITY + (1 - MIN_OPACITY) * min(1.0, position)


def logratio_words(value: float, tolerance: float = 0.05) -> str:
    """The sign of log pI(y) − log qI(y) in words."""
    if value > tolerance:
        return "student more sure than the teacher"
    if value < -tolerance:
        return "student less sure than the teacher"
    return "about as sure as the teacher"


def _top_text(next_tokens: NextTokens | None, t: int) -> str:
    if next_tokens is None or t >= len(next_tokens.top):
        return ""
    lines = ["<br><b>most likely next tokens</b>"]
    for key, label in DISTRIBUTIONS.items():
        entries = ", ".join(f"{html.escape(w)} {p:.2f}" for w, p in next_tokens.top[t].get(key, []))
        lines.append(f"{label}: {entries}")
    return "<br>".join(lines)


def token_strip(rows: list[dict], next_tokens: NextTokens | None = None) -> go.Figure:
    """One box per response token: its colour says how its mismatch splits into language (blue) and visual
    (orange) KL, its opacity how large that mismatch is; a token with nothing to split is a hatched outline.

    Hovering shows std_kl, lang_kl, vis_kl, vds, the exact log-ratio split (its sign in words) and the top
    next tokens. Trace 0 holds the tokens with a split, trace 1 those with nothing to split.
    """
    totals = [r["lang_kl"] + r["vis_kl"] for r in rows]
    split = [t for t, total in enumerate(totals) if total >= SPLIT_FLOOR]
    flat = [t for t, total in enumerate(totals) if total < SPLIT_FLOOR]
    hover = []
    for t, r in enumerate(rows):
        small = "" if totals[t] >= SPLIT_FLOOR else " — nothing to split (mismatch below 0.001 nats)"
        hover.append(
            f"<b>{html.escape(r['token'])}</b> (position {t}){small}<br>"
            f"whole mismatch ℓStd {r['std_kl']:.3f} · language ℓLang {r['lang_kl']:.3f} · "
            f"visual ℓVis {r['vis_kl']:.3f} · image dependence VDS {r['vds']:.3f} (nats)<br>"
            f"log-ratio {r['logratio']:+.3f} ({logratio_words(r['logratio'])}) = language "
            f"{r['logratio_lang']:+.3f} + visual {r['logratio_vis']:+.3f}" + _top_text(next_tokens, t)
        )
    fig = go.Figure()
    fig.add_bar(
        x=split,
        y=[1] * len(split),
        text=[rows[t]["token"] for t in split],
        hovertext=[hover[t] for t in split],
        name="language ↔ visual share",
        marker={
            "color": [visual_share(rows[t]) for t in split],
            "colorscale": SHARE_SCALE,
            "cmin": 0,
            "cmax": 1,
            "opacity": [strength(totals[t]) for t in split],
            "line": {"width": 0},
            "showscale": True,
            "colorbar": {
                "title": {"text": "split", "side": "right"},
                "tickvals": [0, 0.5, 1],
                "ticktext": ["language", "even", "visual"],
                "thickness": 12,
                "len": 1.0,
            },
        },
    )
    fig.add_bar(
        x=flat,
        y=[1] * len(flat),
        text=[rows[t]["token"] for t in flat],
        hovertext=[hover[t] for t in flat],
        name="nothing to split",
        marker={"color": "white", "line": {"color": "#999", "width": 1}, "pattern": {"shape": "/", "fgcolor": "#ccc"}},
    )
    font = {"size": 16, "color": "black"}  # fixed: plotly cannot pick a contrast colour from a colour-scale number
    fig.update_traces(
        hoverinfo="text", textposition="inside", insidetextanchor="middle", textfont=font, insidetextfont=font
    )
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, range=[-0.5, max(len(rows), 1) - 0.5])
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, range=[0, 1])
    fig.update_layout(bargap=0.06, showlegend=False, uniformtext={"minsize": 10, "mode": "show"})
    return _layout(fig, 170, title="Response tokens: colour = language or visual, opacity = size of the mismatch")


def logratio_split(rows: list[dict]) -> go.Figure:
    """The exact additive view: log pI(y) − log qI(y) = language part + visual part, per token."""
    labels = token_labels(rows)
    fig = go.Figure()
    fig.add_bar(x=labels, y=[r["logratio_lang"] for r in rows], name="language part", marker_color=LANG)
    fig.add_bar(
        x=labels, y=[r["logratio_vis"] for r in rows], name="visual part (student PMI − teacher PMI)", marker_color=VIS
    )
    fig.add_scatter(
        x=labels,
        y=[r["logratio"] for r in rows],
        mode="markers",
        name="log-ratio log pI(y) − log qI(y)",
        customdata=[logratio_words(r["logratio"]) for r in rows],
        hovertemplate="%{x}: %{y:+.3f} nats, %{customdata}<extra></extra>",
        marker={"color": "black", "size": 10, "symbol": "diamond"},
    )
    fig.update_layout(barmode="relative", legend={"orientation": "h", "y": -0.25})
    fig.update_yaxes(title="nats (> 0: student more sure)", zeroline=True, zerolinecolor="#999")
    return _layout(fig, 340, title="Log-ratio per token: the two parts add up exactly")


def visual_term_change(before: list[dict], after: list[dict]) -> go.Figure:
    """The visual part of the log-ratio (student PMI − teacher PMI) of the same answer's tokens on two images:
    a counterfactual edit of the image moves it only where the answer depends on what was edited."""
    labels = token_labels(after)
    fig = go.Figure()
    for rows, name, colour in ((before, "before the edit", "#fdd0a2"), (after, "after the edit", VIS)):
        fig.add_bar(
            x=labels,
            y=[r["logratio_vis"] for r in rows],
            name=name,
            marker_color=colour,
            customdata=[[r["vis_kl"], r["vds"]] for r in rows],
            hovertemplate="%{x}: %{y:+.3f} nats (ℓVis %{customdata[0]:.3f}, VDS %{customdata[1]:.3f})<extra>"
            + name
            + "</extra>",
        )
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.25})
    fig.update_yaxes(title="student PMI − teacher PMI, nats", zeroline=True, zerolinecolor="#999")
    return _layout(fig, 300, title="Each token's visual term, the same answer before and after the edit")


def kl_bars(rows: list[dict]) -> go.Figure:
    """The KL view per token. These do not add up: std_kl ≠ lang_kl + vis_kl in general."""
    labels = token_labels(rows)
    fig = go.Figure()
    for key, colour, name in (
        ("std_kl", STD, "whole mismatch ℓStd = KL(pI‖qI)"),
        ("lang_kl", LANG, "language ℓLang = KL(px‖qx)"),
        ("vis_kl", VIS, "visual ℓVis = KL(pI‖q*)"),
        ("vds", VDS, "image dependence VDS = KL(qI‖qx)"),
    ):
        fig.add_bar(x=labels, y=[r[key] for r in rows], name=name, marker_color=colour)
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.25})
    fig.update_yaxes(title="nats")
    return _layout(fig, 340, title="KLs per token (they do not add up)")


def occlusion_figure(image, occlusion) -> go.Figure:
    """The image (left) and, beside it, the occlusion map on the same grid (right): teal where covering a
    cell costs the teacher more belief in the token than the student, brown where it costs the student more.

    The map is drawn beside the image, not over it, so the image's own colours stay as they are.
    """
    pixels = np.asarray(image.convert("RGB"))
    height, width = pixels.shape[:2]
    rows, cols = occlusion.grid
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.06,
        subplot_titles=(
            "the image and its grid",
            f"covering each cell: change of '{occlusion.token}'s visual term (now {occlusion.baseline:+.2f})",
        ),
    )
    fig.add_trace(go.Image(z=pixels, hoverinfo="skip"), row=1, col=1)
    for c in range(1, cols):
        fig.add_vline(x=c * width / cols, line={"color": "#bbb", "width": 1}, row=1, col=1)
    for r in range(1, rows):
        fig.add_hline(y=r * height / rows, line={"color": "#bbb", "width": 1}, row=1, col=1)
    # at least RELIANCE_FLOOR nats to full colour, so changes of a few thousandths stay pale, not loud
    bound = max(float(np.nanmax(np.abs(occlusion.delta))), RELIANCE_FLOOR)
    fig.add_trace(
        go.Heatmap(
            z=occlusion.delta,
            x=[(c + 0.5) * width / cols for c in range(cols)],
            y=[(r + 0.5) * height / rows for r in range(rows)],
            colorscale=RELIANCE_SCALE,
            zmid=0,
            zmin=-bound,
            zmax=bound,
            xgap=2,
            ygap=2,
            text=[[f"{v:+.2f}" for v in row] for row in occlusion.delta],
            texttemplate="%{text}",
            hovertemplate="row %{y:.0f}, column %{x:.0f} (pixels): Δ visual term %{z:+.3f} nats<extra></extra>",
            colorbar={
                "title": {"text": "Δ visual term", "side": "right"},
                "thickness": 12,
                "tickvals": [-bound, 0, bound],
                "ticktext": ["student relies more", "no change", "teacher relies more"],
            },
        ),
        row=1,
        col=2,
    )
    for col in (1, 2):
        fig.update_xaxes(visible=False, range=[0, width], row=1, col=col)
        fig.update_yaxes(visible=False, range=[height, 0], scaleanchor=f"x{'' if col == 1 else 2}", row=1, col=col)
    return _layout(fig, 400)


# ---------------------------------------------------------------------------------------------------
# Gradient geometry


def _pair_keys(block: dict) -> list[str]:
    return [k for k in PAIR_LABELS if k in block.get("angles", {})]


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
    return _layout(fig, 120 + 28 * len(groups), title="Angles per module group")


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
    return _layout(fig, 200 + 36 * len(groups), title="Gradient norms per module group")


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
    return _layout(fig, 520, title=title)


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
    return _layout(fig, 460, title=f"The gStd–gVis plane (gLang sticks out by {coords['lang_out_of_plane']:.3g})")


# ---------------------------------------------------------------------------------------------------
# Distillation runs


def training_curves(runs: dict[str, dict]) -> go.Figure:
    """Losses, η, held-out accuracy and global angles per step, one colour per rule.

    `runs[rule]` holds `records` (StepRecord dicts) and optionally `before` / `after` accuracy dicts and
    `steps` (the run's planned length, so accuracy after the run is drawn at its last step).
    """
    fig = make_subplots(
        rows=2,
        cols=2,
        vertical_spacing=0.16,
        horizontal_spacing=0.1,
        subplot_titles=(
            "losses: ℓStd solid, ℓVis dash, ℓLang dot",
            "η (update scale)",
            "held-out accuracy ±1 s.e.: with image solid, without dash",
            "angles °: Std–Vis solid, Lang–Vis dash, Std–Lang dot",
        ),
    )
    for rule, run in runs.items():
        colour = RULE_COLOURS.get(rule, "#000")
        records = run.get("records") or []
        steps = [r["step"] for r in records]
        for key, dash in (("std", "solid"), ("vis", "dash"), ("lang", "dot")):
            fig.add_scatter(
                x=steps,
                y=[r[key] for r in records],
                mode="lines",
                line={"color": colour, "dash": dash},
                name=f"{rule} ℓ{key.capitalize()}",
                legendgroup=rule,
                showlegend=key == "std",
                row=1,
                col=1,
            )
        fig.add_scatter(
            x=steps,
            y=[r["eta"] for r in records],
            mode="lines",
            line={"color": colour},
            name=f"{rule} η",
            legendgroup=rule,
            showlegend=False,
            row=1,
            col=2,
        )
        points = []
        if run.get("before"):
            points.append((0, run["before"]))
        points += [(r["step"], r["evaluation"]) for r in records if r.get("evaluation")]
        if run.get("after") and records:
            points.append((records[-1]["step"], run["after"]))
        points = [(s, a) for s, a in points if _finite(a.get("accuracy_image"))]
        for key, dash in (("accuracy_image", "solid"), ("accuracy_no_image", "dash")):
            pairs = [accuracy_se(a, key) for _, a in points]
            fig.add_scatter(
                x=[s for s, _ in points],
                y=[value for value, _ in pairs],
                error_y={"type": "data", "array": [0 if math.isnan(se) else se for _, se in pairs], "width": 3},
                mode="lines+markers",
                line={"color": colour, "dash": dash},
                name=f"{rule} {key}",
                legendgroup=rule,
                showlegend=False,
                row=2,
                col=1,
            )
        geometry = [(r["step"], r["geometry"]["global"]) for r in records if r.get("geometry")]
        for key, dash in (("std-lang", "dot"), ("std-vis", "solid"), ("lang-vis", "dash")):
            fig.add_scatter(
                x=[s for s, _ in geometry],
                y=[g["angles"][key] for _, g in geometry],
                mode="lines+markers",
                line={"color": colour, "dash": dash},
                name=f"{rule} {PAIR_LABELS[key]}",
                legendgroup=rule,
                showlegend=False,
                row=2,
                col=2,
            )
    if not any(r.get("geometry") for run in runs.values() for r in run.get("records") or []):
        fig.add_annotation(
            text="not measured: set 'angles every k steps'",
            xref="x4 domain",
            yref="y4 domain",
            x=0.5,
            y=0.5,
            showarrow=False,
            font={"color": "#888"},
        )
    fig.update_yaxes(type="log", dtick=1, row=1, col=1)  # one label per decade
    fig.update_yaxes(range=[0, 1], row=2, col=1)
    fig.update_yaxes(range=[0, 180], row=2, col=2)
    planned = [
        run.get("steps") or max((r["step"] for r in run.get("records") or []), default=0) for run in runs.values()
    ]
    fig.update_xaxes(range=[0, max(planned, default=0) or 1])  # fixed while a run fills it in
    fig.update_xaxes(title="step", row=2)
    fig.update_layout(legend={"orientation": "h", "y": -0.14, "x": 0})
    return _layout(fig, 600)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def accuracy_se(block: dict, key: str) -> tuple[float, float]:
    """(accuracy, standard error) for `block[key]` (e.g. "accuracy_image" of a run card's `before`).

    The card's own standard error (`stderr[key]`, as `vlod_core.evaluation` writes it) when it carries one;
    else the binomial sqrt(p(1-p)/n) from the block's row count (NaN when that is unknown). Every accuracy
    the app shows goes through here.
    """
    value = block.get(key, math.nan)
    value = value if _finite(value) else math.nan
    given = (block.get("stderr") or {}).get(key)
    if _finite(given):
        return value, float(given)
    n = block.get("eval_rows", block.get("n"))
    if not (_finite(value) and isinstance(n, int) and n > 0):
        return value, math.nan
    return value, math.sqrt(value * (1 - value) / n)


def accuracy_text(block: dict, key: str) -> str:
    """'0.62 ± 0.02' (one standard error), or '–' when not measured."""
    value, se = accuracy_se(block, key)
    if math.isnan(value):
        return "–"
    return f"{value:.3f}" if math.isnan(se) else f"{value:.3f} ± {se:.3f}"


def accuracy_bars(cards: dict[str, dict]) -> go.Figure:
    """Held-out accuracy before and after, with and without the image, per rule, with ±1 standard error."""
    fig = go.Figure()
    labels = []
    for rule in cards:
        labels += [f"{rule}<br>with image", f"{rule}<br>without"]
    keys = ("accuracy_image", "accuracy_no_image")
    for moment, colours in (
        ("before", "#bbbbbb"),
        ("after", [RULE_COLOURS.get(r, "#000") for r in cards for _ in keys]),
    ):
        pairs = [accuracy_se(card[moment], key) for card in cards.values() for key in keys]
        fig.add_bar(
            x=labels,
            y=[value for value, _ in pairs],
            error_y={"type": "data", "array": [0 if math.isnan(se) else se for _, se in pairs], "color": "#333"},
            name=moment,
            marker_color=colours,
            texttemplate="%{y:.2f}",
            textposition="inside",
            insidetextanchor="start",  # at the bar's foot, clear of the error bar
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1], title="exact-match accuracy ±1 s.e.")
    return _layout(fig, 340, title="Held-out accuracy before (grey) and after (colour)")


def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """Word-level diff as (op, word) with op in {"same", "removed", "added"}."""
    a, b = before.split(), after.split()
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out += [("same", w) for w in a[i1:i2]]
        else:
            out += [("removed", w) for w in a[i1:i2]]
            out += [("added", w) for w in b[j1:j2]]
    return out


def decomposition_diagram() -> go.Figure:
    """The four distributions and the losses between them (the home page's picture)."""
    nodes = {
        "pI": (0, 1, "student, image<br><b>pI = p(·|τ<t, I, x)</b>", VIS),
        "px": (0, 0, "student, no image<br><b>px = p(·|τ<t, x)</b>", LANG),
        "qI": (2, 1, "teacher, image<br><b>qI = q(·|τ<t, I, x)</b>", VIS),
        "qx": (2, 0, "teacher, no image<br><b>qx = q(·|τ<t, x)</b>", LANG),
        "q*": (1, 2.05, "visual target<br><b>log q* = log px + log qI − log qx − log Z</b>", "#2ca02c"),
    }
    edges = (
        ("pI", "qI", "ℓStd = KL(pI ‖ qI)", STD, "solid"),
        ("px", "qx", "ℓLang = KL(px ‖ qx)", LANG, "solid"),
        ("pI", "q*", "ℓVis = KL(pI ‖ q*)", VIS, "solid"),
        ("qI", "qx", "VDS = KL(qI ‖ qx)", VDS, "dot"),
    )
    fig = go.Figure()
    for a, b, label, colour, dash in edges:
        (x0, y0, *_), (x1, y1, *_) = nodes[a], nodes[b]
        fig.add_scatter(
            x=[x0, x1],
            y=[y0, y1],
            mode="lines",
            line={"color": colour, "width": 3, "dash": dash},
            hoverinfo="skip",
            showlegend=False,
        )
        dx = -0.42 if b == "q*" else (0.5 if a == "qI" else 0)
        fig.add_annotation(
            x=(x0 + x1) / 2 + dx,
            y=(y0 + y1) / 2 + (0.13 if dx == 0 else 0),
            text=label,
            showarrow=False,
            font={"color": colour, "size": 14},
        )
    for x, y, label, colour in nodes.values():
        fig.add_annotation(
            x=x,
            y=y,
            text=label,
            showarrow=False,
            bgcolor="white",
            bordercolor=colour,
            borderwidth=2,
            borderpad=8,
            font={"size": 13},
        )
    fig.update_xaxes(visible=False, range=[-0.75, 3.15])
    fig.update_yaxes(visible=False, range=[-0.35, 2.4])
    return _layout(fig, 360, title="Four passes per response token, and what they compare")
