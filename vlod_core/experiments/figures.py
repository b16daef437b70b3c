"""Plotly figures of a paper check, built from its results dict (results.json); every point has its
standard-error bar (± 1 SE over seeds). Colours follow `vlod_core.figures`: one per rule, one per pair of
gradients.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vlod_core.figures import style as core

ERROR_NOTE = "error bars: ± 1 standard error over seeds"
FIXED_ETA_COLOUR = "#e377c2"  # vgs with the paper's fixed η


def _layout(fig: go.Figure, height: int, title: str) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 95, "b": 10},
        template="plotly_white",
        title={"text": f"{title}<br><sup>{ERROR_NOTE}</sup>", "y": 0.96, "yanchor": "top"},
        legend={"orientation": "h", "y": -0.18, "x": 0},
    )
    return fig


def _mean(block: dict | None):
    return None if not block else block.get("mean")


def _err(block: dict | None):
    return None if not block else block.get("stderr")


def _scaled(blocks: list[dict | None], scale: float = 1.0) -> tuple[list, list]:
    means = [None if _mean(b) is None else _mean(b) * scale for b in blocks]
    errors = [None if _err(b) is None else _err(b) * scale for b in blocks]
    return means, errors


def _colour(arm: str) -> str:
    return FIXED_ETA_COLOUR if "fixed" in arm else core.RULE_COLOURS.get(arm.split(" ")[0], "#000")


def geometry_figure(results: dict) -> go.Figure:
    """The paper's Fig. 3 on our runs: angles per VDS bin at the start and after the standard steps, with the
    paper's 60° → 92° for gLang–gVis and its 40–50° band for gStd."""
    geometry = results["experiments"]["geometry"]
    titles = ("at the start", f"after {geometry['steps']} standard steps")
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, shared_yaxes=True, horizontal_spacing=0.04)
    for col, when in enumerate(("start", "after"), start=1):
        bins = geometry[when]["bins"]
        x = [b["bin"] for b in bins]
        hover = [
            f"VDS {_mean(b['vds_low']) or 0:.3g}–{_mean(b['vds_high']) or 0:.3g}, {_mean(b['tokens']) or 0:.0f} tokens"
            for b in bins
        ]
        for key, label in core.PAIR_LABELS.items():
            means, errors = _scaled([b["angles"][key] for b in bins])
            fig.add_scatter(
                x=x,
                y=means,
                error_y={"type": "data", "array": errors, "visible": True},
                mode="lines+markers",
                name=label,
                line={"color": core.PAIR_COLOURS[key]},
                legendgroup=key,
                showlegend=col == 1,
                customdata=hover,
                hovertemplate=f"bin %{{x}} (%{{customdata}})<br>{label} %{{y:.1f}}°<extra></extra>",
                row=1,
                col=col,
            )
        if x:
            fig.add_scatter(
                x=[x[0], x[-1]],
                y=[60, 92],
                mode="lines",
                line={"color": core.PAIR_COLOURS["lang-vis"], "dash": "dot"},
                name="paper: gLang–gVis 60° → 92°",
                showlegend=col == 1,
                row=1,
                col=col,
            )
        fig.add_hrect(y0=40, y1=50, fillcolor="#d62728", opacity=0.08, line_width=0, row=1, col=col)
    fig.update_yaxes(title="degrees (shaded: the paper's 40–50° for gStd)", row=1, col=1)
    fig.update_xaxes(title="VDS bin (1 = least image-dependent)", dtick=1)
    return _layout(fig, 430, "Gradient angles per VDS bin (paper Fig. 3)")


def accuracy_figure(results: dict) -> go.Figure:
    """Held-out accuracy before and after, with the image and without it, per rule."""
    rules = results["experiments"]["rules"]
    metric = results["experiments"]["metric"]
    names = list(rules)
    fig = go.Figure()
    for when, context, label, pattern in (
        ("before", "image", "before, with image", ""),
        ("after", "image", "after, with image", ""),
        ("before", "no_image", "before, image removed", "/"),
        ("after", "no_image", "after, image removed", "/"),
    ):
        means, errors = _scaled([rules[n][f"{when}_{context}"] for n in names])
        fig.add_bar(
            x=names,
            y=means,
            error_y={"type": "data", "array": errors, "visible": True},
            name=label,
            marker={"color": "#bbbbbb" if when == "before" else [_colour(n) for n in names], "pattern_shape": pattern},
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title=f"held-out {metric}", range=[0, 1])
    return _layout(fig, 400, f"Held-out {metric} before and after, per rule")


def curves_figure(results: dict) -> go.Figure:
    """Held-out accuracy with the image over the steps (the evaluations during the runs), per rule."""
    rules = results["experiments"]["rules"]
    fig = go.Figure()
    for name, arm in rules.items():
        means, errors = _scaled(arm["curve"]["values"])
        fig.add_scatter(
            x=arm["curve"]["steps"],
            y=means,
            error_y={"type": "data", "array": errors, "visible": True},
            mode="lines+markers",
            name=name,
            line={"color": _colour(name)},
        )
    before = _mean(next(iter(rules.values()))["before_image"]) if rules else None
    if before is not None:
        fig.add_hline(y=before + 0.05, line={"color": "#999", "dash": "dash"}, annotation_text="+5 points")
    fig.update_xaxes(title="step")
    fig.update_yaxes(title=f"held-out {results['experiments']['metric']}, with image")
    return _layout(fig, 400, "Accuracy over the steps")


def lang_figure(results: dict) -> go.Figure:
    """ℓLang on the top-30% VDS tokens over the steps, per rule (paper Fig. 4's 'unlearning')."""
    rules = results["experiments"]["rules"]
    fig = go.Figure()
    for name, arm in rules.items():
        means, errors = _scaled(arm["lang_high_vds"]["windows"])
        fig.add_scatter(
            x=arm["lang_high_vds"]["steps"],
            y=means,
            error_y={"type": "data", "array": errors, "visible": True},
            mode="lines+markers",
            name=name,
            line={"color": _colour(name)},
        )
    fig.update_xaxes(title="step (window means)")
    fig.update_yaxes(title="ℓLang on top-30% VDS tokens (nats)", type="log")
    return _layout(fig, 400, "ℓLang on the most image-dependent tokens over the steps (paper Fig. 4)")


BIN_COLOURS = ("#9ecae1", "#4292c6", "#08306b")  # low → high VDS; more bins cycle


def _bin_name(b: int, bins: int) -> str:
    """'VDS bin 1 of 3 (lowest)', 'VDS bin 2 of 3', 'VDS bin 3 of 3 (highest)'."""
    end = " (lowest)" if b == 0 else " (highest)" if b == bins - 1 else ""
    return f"VDS bin {b + 1} of {bins}{end}"


def dynamics_figure(results: dict) -> go.Figure | None:
    """The paper's Fig. 4 on our runs: ℓLang and ℓVis per VDS bin over the steps, one row per rule. None when
    the runs predate the loop's per-bin log."""
    rules = {k: v["dynamics"] for k, v in results["experiments"]["rules"].items() if v.get("dynamics")}
    if not rules:
        return None
    titles = [f"{name}: {term}" for name in rules for term in ("ℓLang", "ℓVis")]
    fig = make_subplots(rows=len(rules), cols=2, subplot_titles=titles, vertical_spacing=0.3 / len(rules))
    for row, (name, dyn) in enumerate(rules.items(), start=1):
        for col, term in enumerate(("lang", "vis"), start=1):
            for b, series in enumerate(dyn[term]):
                means, errors = _scaled(series)
                fig.add_scatter(
                    x=dyn["steps"],
                    y=means,
                    error_y={"type": "data", "array": errors, "visible": True},
                    mode="lines+markers",
                    name=_bin_name(b, dyn["bins"]),
                    legendgroup=str(b),
                    showlegend=row == 1 and col == 1,
                    line={"color": BIN_COLOURS[b % len(BIN_COLOURS)]},
                    row=row,
                    col=col,
                )
            fig.update_yaxes(type="log", dtick="D2", title="nats" if col == 1 else None, row=row, col=col)
    fig.update_xaxes(title="step (window means)", row=len(rules))
    title = "ℓLang and ℓVis per VDS bin over the steps (paper Fig. 4): equal-count bins of each batch's tokens"
    return _layout(fig, 120 + 230 * len(rules), title)


def sweeps_figure(results: dict) -> go.Figure:
    """γ and λ sweeps: accuracy with the image minus standard's (paired, points), and ℓLang at the end per λ."""
    experiments = results["experiments"]
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.08,
        subplot_titles=(
            "γ: VGS − standard (points)",
            "λ: VGS − standard (points)",
            "λ: ℓLang on top-30% VDS, last window",
        ),
    )
    gamma = experiments["gamma"]
    means, errors = _scaled([p["vs_standard"] for p in gamma])
    fig.add_scatter(
        x=[p["gamma"] for p in gamma],
        y=means,
        error_y={"type": "data", "array": errors, "visible": True},
        mode="markers+lines",
        name="γ sweep",
        line={"color": core.RULE_COLOURS["vgs"]},
        row=1,
        col=1,
    )
    lam = experiments["lambda"]
    labels = [f"{p['lam']:g}" for p in lam]
    means, errors = _scaled([p["vs_standard"] for p in lam])
    fig.add_scatter(
        x=labels,
        y=means,
        error_y={"type": "data", "array": errors, "visible": True},
        mode="markers+lines",
        name="λ sweep",
        line={"color": core.RULE_COLOURS["vgs_no_lp"]},
        row=1,
        col=2,
    )
    means, errors = _scaled([p["lang_high_vds_last"] for p in lam])
    fig.add_scatter(
        x=labels,
        y=means,
        error_y={"type": "data", "array": errors, "visible": True},
        mode="markers+lines",
        name="ℓLang, last window",
        line={"color": "#1f77b4"},
        row=1,
        col=3,
    )
    for col in (1, 2):
        fig.add_hline(y=0, line={"color": "#999", "dash": "dash"}, row=1, col=col)
    fig.update_xaxes(title="γ", dtick=1, row=1, col=1)
    fig.update_xaxes(title="λ", type="category", row=1, col=2)
    fig.update_xaxes(title="λ", type="category", row=1, col=3)
    fig.update_yaxes(title="nats", row=1, col=3)
    return _layout(fig, 400, "γ and λ sweeps (paired with standard, same seeds)")


def learning_rate_figure(results: dict) -> go.Figure:
    """Accuracy after the run per learning rate for standard and VGS, their paired difference, and the curves."""
    points = results["experiments"]["learning_rate"]["points"]
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.08,
        subplot_titles=("accuracy with image, after", "VGS − standard (points)", "accuracy over steps"),
    )
    lrs = [p["lr"] for p in points]
    for rule in ("standard", "vgs"):
        means, errors = _scaled([p[rule]["after_image"] for p in points])
        fig.add_scatter(
            x=lrs,
            y=means,
            error_y={"type": "data", "array": errors, "visible": True},
            mode="markers+lines",
            name=rule,
            line={"color": core.RULE_COLOURS[rule]},
            legendgroup=rule,
            row=1,
            col=1,
        )
        for p in points:
            values = p[rule]["curve"]["values"]
            means, errors = _scaled(values)
            fig.add_scatter(
                x=p[rule]["curve"]["steps"],
                y=means,
                error_y={"type": "data", "array": errors, "visible": True},
                mode="lines+markers",
                name=f"{rule} lr {p['lr']:g}",
                legendgroup=rule,
                showlegend=False,
                line={"color": core.RULE_COLOURS[rule], "dash": "solid" if rule == "standard" else "dot"},
                hovertemplate=f"{rule}, lr {p['lr']:g}<br>step %{{x}}: %{{y:.3f}}<extra></extra>",
                row=1,
                col=3,
            )
    means, errors = _scaled([p["difference"] for p in points])
    fig.add_scatter(
        x=lrs,
        y=means,
        error_y={"type": "data", "array": errors, "visible": True},
        mode="markers+lines",
        name="VGS − standard",
        line={"color": "#333"},
        row=1,
        col=2,
    )
    fig.add_hline(y=0, line={"color": "#999", "dash": "dash"}, row=1, col=2)
    fig.update_xaxes(type="log", title="learning rate", row=1, col=1)
    fig.update_xaxes(type="log", title="learning rate", row=1, col=2)
    fig.update_xaxes(title="step", row=1, col=3)
    return _layout(fig, 420, "Learning-rate sweep: does VGS overtake standard at small rates?")


def cost_figure(results: dict) -> go.Figure:
    """Milliseconds per training step, per rule (same runs as the accuracy figures)."""
    seconds = results["experiments"]["cost"]["step_seconds"]
    names = list(seconds)
    means, errors = _scaled([seconds[n] for n in names], 1000.0)
    fig = go.Figure(
        go.Bar(
            x=names,
            y=means,
            error_y={"type": "data", "array": errors, "visible": True},
            marker_color=[_colour(n) for n in names],
            texttemplate="%{y:.0f} ms",
        )
    )
    fig.update_yaxes(title="ms per step (one thread)")
    return _layout(fig, 380, "Step cost per rule")


def all_figures(results: dict) -> dict[str, go.Figure | None]:
    """Every figure of the report, by section name (None: the results hold nothing to draw it from)."""
    return {
        "geometry": geometry_figure(results),
        "accuracy": accuracy_figure(results),
        "curves": curves_figure(results),
        "lang": lang_figure(results),
        "dynamics": dynamics_figure(results),
        "sweeps": sweeps_figure(results),
        "learning_rate": learning_rate_figure(results),
        "cost": cost_figure(results),
    }
