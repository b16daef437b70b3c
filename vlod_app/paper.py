"""The *Paper check* page's glue: which report to show, its claims as a table, its figures by section.

The numbers, verdicts and figures come from `vlod_core.experiments` (the same ones the HTML report shows);
this only decides which report a visitor sees and puts it into the shapes a Streamlit page draws.

Which report: the newest one run on this server (`$VLOD_HOME/experiments/*/results.json`), else the report
shipped with vlod (`docs/experiments/<world>/`, the full plan, written by the command itself), so a fresh
install shows the paper check at once instead of after a five-minute quick check. The page says which it shows.
Where a local quick report's verdict differs from the shipped full one, the table says so and why: the two
plans differ in steps, seeds and rows (`plan_differences`), not in how a verdict is decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vlod_core.experiments import latest_results
from vlod_core.experiments.analysis import NOT_MEASURED, verdict_of
from vlod_core.experiments.worlds import measured_text, side_by_side
from vlod_core.pair import PairSpec
from vlod_core.toy import WORLDS
from vlod_core.experiments.check import RESULTS, load_results, world_of

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "docs" / "experiments"  # one folder per world: results.json and report.html
WORLD = "default"  # the toy world the check runs on
VERDICTS = ("agrees", "disagrees", "inconclusive", NOT_MEASURED)
COLOURS = {"agrees": "#d8f0d8", "disagrees": "#f6d5d5", "inconclusive": "#eeeeee", NOT_MEASURED: "#ffffff"}
PLURALS = {"agrees": "agree", "disagrees": "disagree", "inconclusive": "inconclusive", NOT_MEASURED: "not measured"}
SECTIONS = {  # figure name (vlod_core.experiments.figures.all_figures) -> heading on the page
    "geometry": "1. Gradient angles per VDS bin",
    "accuracy": "2. Update rules from identical seeds: accuracy",
    "curves": "2. Update rules: accuracy during training",
    "lang": "2. ℓLang on the most image-dependent tokens (the paper's “unlearning”)",
    "dynamics": "2. ℓLang and ℓVis per VDS bin over the steps (the paper's Fig. 4)",
    "sweeps": "3. γ and λ sweeps",
    "learning_rate": "4. Learning rate: does VGS overtake standard at small rates?",
    "cost": "5. Step cost",
}
COMPARED = {  # what the two plans may differ in, in words
    "steps": "steps",
    "seeds": "seeds",
    "eval_examples": "held-out rows",
    "evaluations": "evaluations during a run",
    "geometry_rows": "rows for the angles",
}


@dataclass(frozen=True)
class Shown:
    """The report on the page: its results, its folder, and whether it was run here or shipped."""

    results: dict
    folder: Path
    shipped: bool


WORLD_PAIRS = {world: name for name, world in WORLDS.items()}  # toy world -> the spec name its pair goes by
WORLD_WORDS = {  # each world in a few words, for the world choice and the side-by-side table
    "default": "2–3-token answers, all read off the image; teacher and student share one language prior",
    "reasoning": "reasoning chains, mostly language, a few facts read off the image; the student writes in "
    "another style",
}


def world_pair(world: str) -> PairSpec:
    """The toy pair a world's check runs on."""
    return PairSpec(teacher=WORLD_PAIRS[world], student=WORLD_PAIRS[world])


def shipped_results(root: Path | None = None, world: str = WORLD) -> Shown | None:
    """The report shipped under `docs/experiments/<world>/`, or None if it is missing or not one."""
    folder = (root or SHIPPED) / world
    try:
        return Shown(load_results(folder / RESULTS), folder, True)
    except (OSError, ValueError):
        return None


def report_to_show(home: Path | None = None, shipped_root: Path | None = None, world: str = WORLD) -> Shown | None:
    """The world's local report (the newest under `home`, default `$VLOD_HOME/experiments`) if any, else the
    one shipped for it."""
    local = latest_results(home, world)
    if local is not None:
        return Shown(local[0], local[1], False)
    return shipped_results(shipped_root, world)


def other_worlds(world: str, home: Path | None = None, shipped_root: Path | None = None) -> list[Shown]:
    """The other worlds' reports (local, else shipped), for the side-by-side table."""
    found = (report_to_show(home, shipped_root, other) for other in WORLD_PAIRS if other != world)
    return [shown for shown in found if shown is not None]


def worlds_frame(reports: list[dict]) -> pd.DataFrame:
    """The claims of each world's report side by side (`vlod_core.experiments.worlds`), the VGS claims first, and
    the worlds' verdicts first of all, so they are in view on a 1280×720 projector however long the claim."""
    rows = side_by_side(reports)
    vgs_first = sorted(rows, key=lambda r: not is_vgs_claim(r))
    worlds = [world_of(r) for r in reports]
    columns = [*worlds, "claim", *(f"{w} (ours)" for w in worlds), "paper"]
    return pd.DataFrame(vgs_first, columns=columns)


def is_vgs_claim(claim: dict) -> bool:
    """The claims a class asks about first: does steering beat the standard update (at each γ)."""
    return claim["id"].startswith("vgs_beats_standard")


def ordered_claims(results: dict) -> list[dict]:
    """The VGS-versus-standard claims first, then the others in the report's order, and last those the plan
    did not measure (no verdict to read)."""
    claims = results["claims"]
    return sorted(claims, key=lambda c: (verdict_of(c) == NOT_MEASURED, not is_vgs_claim(c)))  # stable


def plan_differences(results: dict, other: dict) -> str:
    """'100 steps against 300, 3 seeds against 5' — how `results`'s plan differs from `other`'s."""
    mine, theirs = results["plan"], other["plan"]
    parts = [
        f"{mine[key]} {words} against {theirs[key]}"
        for key, words in COMPARED.items()
        if key in mine and key in theirs and mine[key] != theirs[key]
    ]
    return ", ".join(parts) or "the same settings (the runs themselves differ)"


def claims_frame(results: dict, reference: dict | None = None) -> pd.DataFrame:
    """The claims table, verdict first so it is in view on a 1280×720 projector however long the claim, the VGS
    claims first. With `reference` (the shipped full report, beside a local quick one), each row also says the
    full plan's verdict, and where it differs, why: the plans' steps and seeds."""
    full = {c["id"]: verdict_of(c) for c in reference["claims"]} if reference else {}
    why = plan_differences(results, reference) if reference else ""
    rows = []
    for claim in ordered_claims(results):
        row = {
            "verdict": verdict_of(claim),
            "claim": claim["claim"],
            "ours (mean ± SE over seeds)": measured_text(claim, seeds=True),
            "paper": claim["paper"],
        }
        if reference is not None:
            theirs = full.get(claim["id"], NOT_MEASURED)
            row[f"{reference['plan']['name']} plan"] = theirs
            row["why they differ"] = "" if theirs == row["verdict"] else why
        row["rule"] = claim.get("rule", "")
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_colour(verdict: str) -> str:
    """CSS for one verdict cell (the same colours as report.html)."""
    return f"background-color: {COLOURS[verdict]}" if verdict in COLOURS else ""


def verdict_counts(results: dict) -> str:
    """'5 agree, 4 disagree, 9 inconclusive, 1 not measured' (a verdict none of the claims got is left out,
    but the first three always show)."""
    counts = {v: sum(verdict_of(c) == v for c in results["claims"]) for v in VERDICTS}
    return ", ".join(f"{n} {PLURALS[v]}" for v, n in counts.items() if n or v != NOT_MEASURED)


def verdict_rule_words(results: dict) -> str:
    """How a verdict is decided, in plain words (the exact rules follow on the page)."""
    z = results.get("z", 2)
    return (
        f"Each claim is measured over {len(results['seeds'])} seeds: ours is the mean ± its standard error (SE). "
        f"**Agrees** means the paper's figure survives: our mean ± {z:g} SE lies inside the paper's range, or for "
        f"'A beats B' the whole interval is above zero. **Disagrees** means it does not: the interval lies "
        f"outside the range, or rules out an effect as large as the claim's margin. **Inconclusive** means the "
        f"interval straddles the line: more seeds (or steps) would decide. **Not measured**: this plan has no run "
        f"for the claim; it is no verdict and not counted as inconclusive."
    )


def source_line(shown: Shown) -> str:
    """Which report this is: where it was run, when, on what machine and by which command."""
    results = shown.results
    machine = results.get("machine")
    where = (
        f"{machine.get('cpus', '?')} CPUs ({machine.get('processor', '?')}, {machine.get('system', '?')}), "
        f"{machine.get('workers', '?')} worker processes"
        if isinstance(machine, dict)
        else "a machine it does not record"
    )
    command = results.get("command") or "a command it does not record"
    wall = results.get("timing", {}).get("wall_seconds")
    took = f", {wall / 60:.0f} min" if isinstance(wall, (int, float)) else ""
    origin = "shipped with vlod" if shown.shipped else "run on this server"
    return (
        f"The {results['plan']['name']} plan's report, {origin}: {results['created'][:16].replace('T', ' ')} UTC "
        f"on {where}{took}, by `{command}`."
    )


def summary_line(results: dict, folder) -> str:
    """When, which plan, how many seeds, which pair, and where the files are."""
    pair = results["pair"]["spec"]
    timing = results["timing"]
    return (
        f"{results['created']} · plan **{results['plan']['name']}** · {len(results['seeds'])} seeds · teacher "
        f"{pair['teacher']}, student {pair['student']} · {timing['executed']} runs computed, {timing['cached']} "
        f"from the cache, {timing['wall_seconds']:.0f} s · `{folder}`"
    )
