"""The paper check as one self-contained HTML page: the claims table first, then each experiment's figures
and tables, then the run details. plotly.js is embedded once, so the page opens without a network.
"""

from __future__ import annotations

import html
import json

from vlod_core.experiments.figures import all_figures

VERDICT_COLOURS = (
    ("agrees", "#d8f0d8"),
    ("disagrees", "#f6d5d5"),
    ("inconclusive", "#eeeeee"),
    ("not measured", "#ffffff"),
)
PAIR_NAMES = (("std-lang", "gStd ∠ gLang"), ("std-vis", "gStd ∠ gVis"), ("lang-vis", "gLang ∠ gVis"))

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; line-height: 1.45; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.8em 0 1.6em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.55em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.verdict { font-weight: 600; }
.small { color: #666; font-size: 0.88em; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.82em; }
"""


def esc(value) -> str:
    return html.escape(str(value))


def pm(block: dict | None, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
    """'mean ± SE' of a stat block (n/a when not measured)."""
    if not block or block.get("mean") is None:
        return "n/a"
    text = f"{block['mean'] * scale:.{digits}f}"
    if block.get("stderr") is not None:
        text += f" ± {block['stderr'] * scale:.{digits}f}"
    return text + unit


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td class='num'>{c}</td>" if i >= numeric_from else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def claims_table(results: dict) -> str:
    rows = []
    for claim in results["claims"]:
        measured = "n/a"
        if claim["measured"] is not None:
            unit = claim["unit"]
            measured = f"{claim['measured']:.2f}"
            if claim["stderr"] is not None:
                measured += f" ± {claim['stderr']:.2f}"
            measured += f"{unit} <span class='small'>(n = {claim['n']})</span>"
        note = f"<br><span class='small'>{esc(claim['note'])}</span>" if claim.get("note") else ""
        colour = dict(VERDICT_COLOURS)[claim["verdict"]]
        rows.append(
            f"<tr><td>{esc(claim['claim'])}{note}</td><td>{esc(claim['paper'])}</td><td class='num'>{measured}</td>"
            f"<td class='verdict' style='background:{colour}'>{esc(claim['verdict'])}</td>"
            f"<td class='small'>{esc(claim['rule'])}</td></tr>"
        )
    header = "".join(f"<th>{h}</th>" for h in ("claim", "paper", "ours (mean ± SE over seeds)", "verdict", "rule"))
    return f"<table id='claims'><tr>{header}</tr>{''.join(rows)}</table>"


def _sig(block: dict) -> str:
    return "n/a" if block.get("mean") is None else f"{block['mean']:.2g}"


def _geometry_tables(geometry: dict) -> str:
    out = []
    for when, title in (("start", "at the start"), ("after", f"after {geometry['steps']} standard steps")):
        block = geometry[when]
        rows = [
            ["all tokens", "", ""] + [pm(block["global"].get(k), digits=1, unit="°") for k, _ in PAIR_NAMES],
        ]
        for b in block["bins"]:
            rows.append(
                [
                    f"bin {b['bin']}",
                    f"{_sig(b['vds_low'])} – {_sig(b['vds_high'])}",
                    pm(b["tokens"], digits=1),
                ]
                + [pm(b["angles"][k], digits=1, unit="°") for k, _ in PAIR_NAMES]
            )
        rows.append(
            ["fitted rise, bin 1 → last", "", ""]
            + [pm(block["rise"].get(k), digits=1, unit="°") for k, _ in PAIR_NAMES]
        )
        out.append(f"<h3>{esc(title)} ({block['seeds']} seeds, {geometry['rows']} rows each)</h3>")
        out.append(_table(["", "VDS range (nats, mean over seeds)", "tokens"] + [name for _, name in PAIR_NAMES], rows))
    return "".join(out)


def _steps_to_gain(block: dict) -> str:
    values = ", ".join("—" if v is None else str(v) for v in block["values"])
    return f"{values} <span class='small'>({block['reached']}/{block['of']})</span>"


def _rules_table(experiments: dict) -> str:
    rows = []
    k = next((arm["acc_k"] for arm in experiments["rules"].values() if arm.get("acc_k")), None)
    for name, arm in experiments["rules"].items():
        stopped = sum(bool(reason) for reason in arm["stopped"])
        note = f"<br><span class='small'>stopped early in {stopped} seed(s): see results.json</span>" if stopped else ""
        rows.append(
            [
                esc(name) + note,
                pm(arm["before_image"]),
                pm(arm["after_image"]),
                pm(arm["before_no_image"]),
                pm(arm["after_no_image"]),
                pm(arm["vs_standard_image"], digits=1),
                _steps_to_gain(arm["steps_to_gain"]),
                pm(arm["lang_high_vds"]["windows"][-1]),
                pm(arm["eta"], digits=2),
                pm(arm["step_seconds"], scale=1000, digits=0),
            ]
            + ([pm(arm.get("acc_k_before_image")), pm(arm.get("acc_k_after_image"))] if k else [])
        )
    header = [
        "rule",
        "with image, before",
        "with image, after",
        "image removed, before",
        "image removed, after",
        "vs standard (points)",
        "steps to +5 points (per seed)",
        "ℓLang top-30% VDS, last window",
        "mean η",
        "ms/step",
    ] + ([f"Acc@{k} with image, before", f"Acc@{k} with image, after"] if k else [])
    return _table(header, rows)


def _sweep_tables(experiments: dict) -> str:
    gamma = [[esc(p["name"]), pm(p["after_image"]), pm(p["vs_standard"], digits=1)] for p in experiments["gamma"]]
    lam = [
        [
            esc(p["name"]),
            pm(p["after_image"]),
            pm(p["after_no_image"]),
            pm(p["vs_standard"], digits=1),
            pm(p["lang_high_vds_last"]),
            pm(p["lang_high_vds_rise"], digits=0, unit="%"),
        ]
        for p in experiments["lambda"]
    ]
    return _table(["γ", "accuracy with image, after", "vs standard (points)"], gamma) + _table(
        [
            "λ",
            "accuracy with image, after",
            "image removed, after",
            "vs standard (points)",
            "ℓLang top-30% VDS, last window",
            "ℓLang rise, first → last window",
        ],
        lam,
    )


def _lr_table(part: dict) -> str:
    rows = []
    for p in part["points"]:
        for rule in ("standard", "vgs"):
            r = p[rule]
            rows.append(
                [
                    f"{p['lr']:g}" if rule == "standard" else "",
                    str(p["steps"]) if rule == "standard" else "",
                    rule,
                    pm(r["after_image"]),
                    pm(r["gain_image"], scale=100, digits=1),
                    pm(r["late_gain_image"], scale=100, digits=1),
                    pm(r["after_no_image"]),
                    pm(r["lang_high_vds_last"]),
                    pm(r["eta"], digits=2),
                    (f"{pm(p['difference'], digits=1)} ({esc(p['label'])})" if rule == "vgs" else ""),
                ]
            )
    header = [
        "lr",
        "steps",
        "rule",
        "with image, after",
        "gain (points)",
        "gain in the last interval (points)",
        "image removed, after",
        "ℓLang top-30% VDS, last window",
        "mean η",
        "VGS − standard (points)",
    ]
    return _table(header, rows, numeric_from=3)


def _cost_table(cost: dict) -> str:
    rows = [[esc(n), pm(s, scale=1000, digits=1)] for n, s in cost["step_seconds"].items()]
    rows.append(["VGS (η fixed) / standard", pm(cost["ratio_fixed_eta"], digits=2, unit="×")])
    rows.append(["VGS (η measured every step) / standard", pm(cost["ratio_auto_eta"], digits=2, unit="×")])
    return _table(["rule", "ms per step"], rows)


def _timing_table(timing: dict) -> str:
    rows = [
        [esc(part), str(t["runs"]), str(t["executed_now"]), f"{t['compute_seconds']:.0f}"]
        for part, t in timing["parts"].items()
    ]
    return _table(["part", "runs (shared ones counted once)", "computed this time", "compute seconds"], rows)


def report_html(results: dict) -> str:
    """The whole report as one HTML string."""
    from plotly.offline import get_plotlyjs

    experiments = results["experiments"]
    figures = {
        name: fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})
        for name, fig in all_figures(results).items()
        if fig is not None
    }
    plan = results["plan"]
    timing = results["timing"]
    pair = results["pair"]["spec"]
    data = results["data"]["description"]
    coverage = results.get("coverage_of_z_interval")
    rules = "".join(f"<li>{esc(r)}</li>" for r in results["verdict_rules"])
    lr = experiments["learning_rate"]
    budget = ", ".join(f"lr {p['lr']:g}: {p['steps']} steps" for p in lr["points"])
    sections = [
        f"<h1>Paper check: decomposed on-policy distillation (Yoon et al., arXiv 2606.00564) on {esc(data.get('name', 'data'))}</h1>",
        f"<p class='small'>{esc(results['created'])} · plan <b>{esc(plan['name'])}</b> · {len(results['seeds'])} seeds · "
        f"teacher {esc(pair['teacher'])}, student {esc(pair['student'])} ({esc(pair['student_variant'])}) · "
        f"{esc(data.get('split', ''))} · {timing['executed']} runs computed, {timing['cached']} from the cache, "
        f"{timing['wall_seconds']:.0f} s wall"
        + (f" · <code>{esc(results['command'])}</code>" if results.get("command") else "")
        + "</p>",
        "<h2>Claims</h2>",
        claims_table(results),
        "<h3>How a verdict is decided</h3>",
        f"<ul>{rules}<li>With {len(results['seeds'])} seeds, ± {results['z']:g} SE covers about "
        f"{100 * coverage:.0f}% of a t distribution with {len(results['seeds']) - 1} degree(s) of freedom: a verdict "
        "is a screen, not a significance test.</li></ul>"
        if coverage is not None
        else f"<ul>{rules}</ul>",
        "<h2>1. Gradient geometry per VDS bin</h2>",
        figures["geometry"],
        _geometry_tables(experiments["geometry"]),
        "<h2>2. Update rules, from identical seeds</h2>",
        f"<p>{plan['steps']} steps at lr {plan['lr']:g}, batch {plan['batch']}, {plan['eval_examples']} held-out rows; "
        f"metric: {esc(experiments['metric'])}. 'vs standard' is the paired difference of the accuracy with the image "
        "after training. Steps to +5 points come from the evaluations during the runs.</p>",
        figures["accuracy"],
        _rules_table(experiments),
        figures["curves"],
        figures["lang"],
        figures.get("dynamics", "<p class='small'>ℓLang and ℓVis per VDS bin over the steps: these runs predate "
        "the loop's per-bin log (rerun them to draw the paper's Fig. 4).</p>"),
        "<h2>3. γ and λ sweeps</h2>",
        figures["sweeps"],
        _sweep_tables(experiments),
        "<h2>4. Learning rate: does VGS overtake standard at small rates?</h2>",
        f"<p><b>{esc(lr['answer'])}</b></p>",
        f"<p class='small'>METHOD.md's hypothesis: VGS's target q* contains the student's own text-only "
        f"distribution, so when the student moves fast the target drifts with it. The budget allowed {esc(budget)}.</p>",
        figures["learning_rate"],
        _lr_table(lr),
        "<h2>5. Step cost</h2>",
        figures["cost"],
        _cost_table(experiments["cost"]),
        "<p class='small'>Step times come from the same runs (the median over 10-step blocks of the mean step time, "
        "the steps after an evaluation left out), measured while two runs share the machine's cores: expect noise "
        "when other work runs too.</p>",
        "<h2>Run details</h2>",
        _timing_table(timing),
        f"<details><summary>plan, versions, pair and data identity</summary><pre>"
        f"{esc(json.dumps({k: results[k] for k in ('plan', 'versions', 'pair', 'data', 'timing')}, indent=1, ensure_ascii=False))}"
        "</pre></details>",
        f"<details><summary>configurations ({len(results['configs'])} arms)</summary><pre>"
        f"{esc(json.dumps(results['configs'], indent=1, ensure_ascii=False))}</pre></details>",
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>vlod paper check</title>"
        f"<style>{STYLE}</style><script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        + "\n".join(sections)
        + "</body></html>"
    )
