"""Page 1's figures: the token strip, the log-ratio split, the KLs, the occlusion map and the home page's
diagram of the four distributions."""

from __future__ import annotations

import html
import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vlod_core.figures.style import (
    LANG,
    MIN_OPACITY,
    RELIANCE_FLOOR,
    RELIANCE_SCALE,
    GROUNDED_VDS,
    LINE_TOKENS,
    MUTED_OPACITY,
    SHARE_SCALE,
    SPLIT_FLOOR,
    STD,
    VDS,
    VIS,
    layout,
)
from vlod_core.topk import DISTRIBUTIONS, NextTokens


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
    next tokens. Trace 0 holds the tokens with a split, trace 1 those with nothing to split. An answer longer
    than LINE_TOKENS (a reasoning chain) is `_wrapped_strip`: lines read like text, the image-read tokens
    standing out from the language ones.
    """
    if len(rows) > LINE_TOKENS:
        return _wrapped_strip(rows, next_tokens)
    totals = [r["lang_kl"] + r["vis_kl"] for r in rows]
    split = [t for t, total in enumerate(totals) if total >= SPLIT_FLOOR]
    flat = [t for t, total in enumerate(totals) if total < SPLIT_FLOOR]
    hover = _strip_hover(rows, next_tokens)
    fig = go.Figure()
    fig.add_bar(
        x=split,
        y=[1] * len(split),
        text=[rows[t]["token"] for t in split],
        hovertext=[hover[t] for t in split],
        name="language ↔ visual share",
        marker=_share_marker(rows, split, [strength(totals[t]) for t in split]),
    )
    fig.add_bar(
        x=flat,
        y=[1] * len(flat),
        text=[rows[t]["token"] for t in flat],
        hovertext=[hover[t] for t in flat],
        name="nothing to split",
        marker=nothing_to_split(),
    )
    font = {"size": 16, "color": "black"}  # fixed: plotly cannot pick a contrast colour from a colour-scale number
    fig.update_traces(
        hoverinfo="text", textposition="inside", insidetextanchor="middle", textfont=font, insidetextfont=font
    )
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, range=[-0.5, max(len(rows), 1) - 0.5])
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, range=[0, 1])
    fig.update_layout(bargap=0.06, showlegend=False, uniformtext={"minsize": 10, "mode": "show"})
    # A word the image decides ("blue" about a blue circle) can have almost no mismatch left, so its box is faint
    # and its split even (grey): the split is right, but the box alone would hide that the word is visual. An
    # orange underline, at full strength, says the image decides it (VDS: the teacher with and without it).
    for t, row in enumerate(rows):
        if row["vds"] >= GROUNDED_VDS:
            fig.add_shape(
                type="rect", x0=t - 0.47, x1=t + 0.47, y0=0, y1=0.1, fillcolor=VIS, line={"width": 0}, layer="above"
            )
    title = "Response tokens: colour = language or visual, opacity = size of the mismatch"
    return layout(fig, 170, title=f"{title}; orange underline = the image decides the word")


def nothing_to_split() -> dict:
    """The marker of a token with nothing to split: a hatched outline (a fresh dict: plotly keeps what it gets)."""
    return {"color": "white", "line": {"color": "#999", "width": 1}, "pattern": {"shape": "/", "fgcolor": "#ccc"}}
BOX = 0.84  # a wrapped strip's box height; the rest of each line is the gap to the next


def _strip_hover(rows: list[dict], next_tokens: NextTokens | None) -> list[str]:
    hover = []
    for t, r in enumerate(rows):
        small = "" if r["lang_kl"] + r["vis_kl"] >= SPLIT_FLOOR else " — nothing to split (mismatch below 0.001 nats)"
        if r["vds"] >= GROUNDED_VDS:
            small += f" — the image decides this word (VDS {r['vds']:.2f} ≥ {GROUNDED_VDS:g})"
        hover.append(
            f"<b>{html.escape(r['token'])}</b> (position {t}){small}<br>"
            f"whole mismatch ℓStd {r['std_kl']:.3f} · language ℓLang {r['lang_kl']:.3f} · "
            f"visual ℓVis {r['vis_kl']:.3f} · image dependence VDS {r['vds']:.3f} (nats)<br>"
            f"log-ratio {r['logratio']:+.3f} ({logratio_words(r['logratio'])}) = language "
            f"{r['logratio_lang']:+.3f} + visual {r['logratio_vis']:+.3f}" + _top_text(next_tokens, t)
        )
    return hover


def _share_marker(rows: list[dict], shown: list[int], opacity: list[float]) -> dict:
    return {
        "color": [visual_share(rows[t]) for t in shown],
        "colorscale": SHARE_SCALE,
        "cmin": 0,
        "cmax": 1,
        "opacity": opacity,
        "line": {"width": 0},
        "showscale": True,
        "colorbar": {
            "title": {"text": "split", "side": "right"},
            "tickvals": [0, 0.5, 1],
            "ticktext": ["language", "even", "visual"],
            "thickness": 12,
            "len": 1.0,
        },
    }


def _wrapped_strip(rows: list[dict], next_tokens: NextTokens | None) -> go.Figure:
    """The strip of a long answer: LINE_TOKENS boxes a line, read left to right and top to bottom (box t sits
    in column t mod LINE_TOKENS, its bar's base at minus its line), so a 60-token chain needs no scrolling.

    In a reasoning chain most tokens are language scaffolding and a few are read off the image; drawn alike,
    the few drown. So a token the image decides (VDS ≥ GROUNDED_VDS) keeps the strip's full colour and
    strength, an orange frame and black text, and every other token is muted: at most MUTED_OPACITY, grey
    text. Colour and hover still say how each mismatch splits. `customdata` holds each box's position.
    """
    totals = [r["lang_kl"] + r["vis_kl"] for r in rows]
    decided = [r["vds"] >= GROUNDED_VDS for r in rows]
    lines = (len(rows) + LINE_TOKENS - 1) // LINE_TOKENS
    hover = _strip_hover(rows, next_tokens)
    split = [t for t, total in enumerate(totals) if total >= SPLIT_FLOOR]
    flat = [t for t, total in enumerate(totals) if total < SPLIT_FLOOR]
    opacity = [strength(totals[t]) if decided[t] else min(strength(totals[t]), MUTED_OPACITY) for t in split]
    fig = go.Figure()
    for shown, name, marker in (
        (split, "language ↔ visual share", _share_marker(rows, split, opacity)),
        (flat, "nothing to split", nothing_to_split() | {"line": {"color": "#ccc", "width": 1}}),
    ):
        font = {"size": 15, "color": ["black" if decided[t] else "#777" for t in shown]}
        fig.add_bar(
            x=[t % LINE_TOKENS for t in shown],
            y=[BOX] * len(shown),
            base=[-(t // LINE_TOKENS) for t in shown],
            customdata=shown,
            text=[rows[t]["token"] for t in shown],
            hovertext=[hover[t] for t in shown],
            name=name,
            marker=marker,
            textfont=font,
            insidetextfont=font,
        )
    fig.update_traces(hoverinfo="text", textposition="inside", insidetextanchor="middle", textangle=0)
    for t in (t for t in range(len(rows)) if decided[t]):
        x, y = t % LINE_TOKENS, -(t // LINE_TOKENS)
        fig.add_shape(
            type="rect", x0=x - 0.46, x1=x + 0.46, y0=y, y1=y + BOX, line={"color": VIS, "width": 3}, layer="above"
        )
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, range=[-0.5, LINE_TOKENS - 0.5])
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, range=[-(lines - 1) - 0.02, BOX + 0.02])
    fig.update_layout(barmode="overlay", bargap=0.06, showlegend=False, uniformtext={"minsize": 10, "mode": "show"})
    title = "Response tokens, in lines: orange frame = the image decides the word; the other tokens muted"
    return layout(fig, 70 + 44 * lines, title=title)


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
    return layout(fig, 340, title="Log-ratio per token: the two parts add up exactly")


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
    return layout(fig, 300, title="Each token's visual term, the same answer before and after the edit")


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
    return layout(fig, 340, title="KLs per token (they do not add up)")


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
    return layout(fig, 400)


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
    return layout(fig, 360, title="Four passes per response token, and what they compare")
