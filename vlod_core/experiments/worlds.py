"""Two toy worlds' paper checks side by side: where the KL is all visual and where the language part competes.

The same claims, the same verdict rule, one row per claim and one column pair per world: what a class reads to
see when steering toward the visual gradient should help. `python -m vlod_core experiments --side-by-side
DIR DIR` prints the table (the README's is its output); the *Paper check* page shows the same rows.
"""

from __future__ import annotations

import re

from vlod_core.experiments.analysis import verdict_of
from vlod_core.experiments.check import world_of


STEPS_WORDS = "after the plan's standard steps"  # where two plans ran different numbers of steps


def measured_text(claim: dict | None, seeds: bool = False) -> str:
    """'0.41 ± 0.05 pts', with ' (n = 3)' if `seeds`; n/a when not measured."""
    if not claim or claim.get("measured") is None:
        return "n/a"
    text = f"{claim['measured']:.2f}"
    if claim.get("stderr") is not None:
        text += f" ± {claim['stderr']:.2f}"
    return f"{text}{claim.get('unit', '')}" + (f" (n = {claim.get('n', '?')})" if seeds else "")


def side_by_side(reports: list[dict]) -> list[dict]:
    """One row per claim (in the first report's order, then claims only a later one has): the claim, the
    paper's figure, and each world's verdict and measurement, keyed "<world>" and "<world> (ours)"."""
    worlds = [world_of(r) for r in reports]
    if len(set(worlds)) != len(worlds):
        raise ValueError(f"one report per world, got worlds {worlds}")
    by_world = [{c["id"]: c for c in r["claims"]} for r in reports]
    order = list(dict.fromkeys(c["id"] for r in reports for c in r["claims"]))
    rows = []
    for claim_id in order:
        present = [claims[claim_id] for claims in by_world if claim_id in claims]
        texts = {c["claim"] for c in present}
        text = present[0]["claim"] if len(texts) == 1 else re.sub(r"after \d+ standard steps", STEPS_WORDS, present[0]["claim"])
        row = {"id": claim_id, "claim": text, "paper": present[0]["paper"]}
        for world, claims in zip(worlds, by_world):
            row[world] = verdict_of(claims.get(claim_id))
            row[f"{world} (ours)"] = measured_text(claims.get(claim_id))
        rows.append(row)
    return rows


def plan_line(results: dict) -> str:
    """'reasoning world: plan full, 3 seeds, 300 steps, 2026-12-07'."""
    plan = results["plan"]
    return (
        f"{world_of(results)} world: plan {plan['name']}, {len(results['seeds'])} seeds, {plan['steps']} steps, "
        f"{results['created'][:10]}"
    )


def side_by_side_markdown(reports: list[dict]) -> str:
    """The side-by-side table as Markdown, each world's plan named under it."""
    worlds = [world_of(r) for r in reports]
    header = ["claim", "paper"] + [f"{w}: {part}" for w in worlds for part in ("verdict", "ours")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in side_by_side(reports):
        cells = [row["claim"], row["paper"]] + [row[k] for w in worlds for k in (w, f"{w} (ours)")]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines + [""] + [f"- {plan_line(r)}" for r in reports])
