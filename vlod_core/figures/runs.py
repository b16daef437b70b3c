"""Page 3's figures and numbers: training curves, accuracy before and after with its standard error, word
diffs of answers."""

from __future__ import annotations

import difflib
import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vlod_core.figures.style import PAIR_LABELS, RULE_COLOURS, layout


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
    return layout(fig, 600)


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
    return layout(fig, 340, title="Held-out accuracy before (grey) and after (colour)")


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
