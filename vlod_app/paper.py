"""The *Paper check* page's glue: a results.json's claims as a table, its figures by section, and the job.

The numbers, verdicts and figures come from `vlod_core.experiments` (the same ones the HTML report shows);
this only puts them into the shapes a Streamlit page draws.
"""

from __future__ import annotations

import pandas as pd

VERDICTS = ("agrees", "disagrees", "inconclusive")
SECTIONS = {  # figure name (vlod_core.experiments.figures.all_figures) -> heading on the page
    "geometry": "1. Gradient angles per VDS bin",
    "accuracy": "2. Update rules from identical seeds: accuracy",
    "curves": "2. Update rules: accuracy during training",
    "lang": "2. ℓLang on the most image-dependent tokens (the paper's “unlearning”)",
    "sweeps": "3. γ and λ sweeps",
    "learning_rate": "4. Learning rate: does VGS overtake standard at small rates?",
    "cost": "5. Step cost",
}


def measured_text(claim: dict) -> str:
    """'ours' of one claim: mean ± SE with its unit and the number of seeds, or n/a."""
    if claim.get("measured") is None:
        return "n/a"
    text = f"{claim['measured']:.2f}"
    if claim.get("stderr") is not None:
        text += f" ± {claim['stderr']:.2f}"
    return f"{text}{claim.get('unit', '')} (n = {claim.get('n', '?')})"


def claims_frame(results: dict) -> pd.DataFrame:
    """The claims table: each claim, its verdict, ours, the paper's figure and the rule that decided it (the
    verdict second, so it is in view on a projector however long the claim)."""
    return pd.DataFrame(
        [
            {
                "claim": claim["claim"],
                "verdict": claim["verdict"],
                "ours (mean ± SE over seeds)": measured_text(claim),
                "paper": claim["paper"],
                "rule": claim.get("rule", ""),
            }
            for claim in results["claims"]
        ]
    )


def verdict_counts(results: dict) -> str:
    """'5 agree, 4 disagree, 9 inconclusive' (the plural of each verdict's verb)."""
    counts = {verdict: sum(c["verdict"] == verdict for c in results["claims"]) for verdict in VERDICTS}
    words = {"agrees": "agree", "disagrees": "disagree", "inconclusive": "inconclusive"}
    return ", ".join(f"{n} {words[verdict]}" for verdict, n in counts.items())


def summary_line(results: dict, folder) -> str:
    """When, which plan, how many seeds, which pair, and where the files are."""
    pair = results["pair"]["spec"]
    timing = results["timing"]
    return (
        f"{results['created']} · plan **{results['plan']['name']}** · {len(results['seeds'])} seeds · teacher "
        f"{pair['teacher']}, student {pair['student']} · {timing['executed']} runs computed, {timing['cached']} "
        f"from the cache, {timing['wall_seconds']:.0f} s · `{folder}`"
    )
