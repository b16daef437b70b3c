"""The verdict of a comparison in words, written from the runs' own numbers: which rule is ahead of standard
and by how much (± its standard error), or that they are level, and why, from what the runs measured at the
start — how much of the KL was visual, how far the standard gradient was from the visual one — and after:
answers that lost their final answer (where final answers are parsed), the accuracy with the image removed and
the steps to +5 points. Nothing here is canned: every clause is a measured number, and a clause whose number
was not measured is left out.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from vlod_core.run_summary import card_dict, summarise
from vlod_core.stats import POINTS, Z, paired_rates

MOSTLY = 0.7  # a share of the KL above this is "mostly visual" (below 1 − this: "mostly language")


@dataclass(frozen=True)
class Standing:
    """One rule against standard: the mean difference of the headline metric after training, in points."""

    rule: str
    points: float | None
    stderr: float | None
    seeds: int
    ran: bool
    why_not: str | None = None

    @property
    def position(self) -> str:
        if not self.ran:
            return "did not run"
        if self.points is None or self.stderr is None or not math.isfinite(self.stderr):
            return "unmeasured"
        if abs(self.points) <= Z * self.stderr:
            return "level"
        return "ahead" if self.points > 0 else "behind"

    def words(self) -> str:
        if not self.ran:
            return f"{self.rule} did not run ({self.why_not or 'no run card'})"
        if self.position == "unmeasured":
            return f"{self.rule} against standard: not measured (no evaluation)"
        difference = f"{self.points:+.1f} ± {self.stderr:.1f} points"
        if self.position == "level":
            return f"{self.rule} is level with standard ({difference})"
        where = "ahead of" if self.position == "ahead" else "behind"
        return f"{self.rule} is {where} standard by {abs(self.points):.1f} ± {self.stderr:.1f} points"


def _visual_share(card: dict) -> tuple[float | None, float | None, float | None]:
    """(ℓVis / (ℓLang + ℓVis), ℓLang, ℓVis) at the first step that scored the image-free passes."""
    for record in card.get("records", []):
        lang, vis = record.get("lang"), record.get("vis")
        if isinstance(lang, (int, float)) and isinstance(vis, (int, float)) and math.isfinite(lang + vis):
            total = lang + vis
            return (vis / total if total > 0 else None), lang, vis
    return None, None, None


def _first_angle(card: dict) -> float | None:
    """The angle between gStd and gVis at the first step whose geometry the run recorded, in degrees."""
    for record in card.get("records", []):
        angles = ((record.get("geometry") or {}).get("global") or {}).get("angles") or {}
        if isinstance(angles.get("std-vis"), (int, float)):
            return float(angles["std-vis"])
    return None


def standing(rule: str, cards: list[Any], standard: list[Any]) -> Standing:
    """`rule`'s seeds against standard's (paired by seed), on the headline metric with the image, after."""
    if not cards:
        return Standing(rule, None, None, 0, ran=False)
    summaries = [summarise(c) for c in cards]
    stopped = next((s.stopped for s in summaries if s.stopped and s.steps_run == 0), None)
    if stopped:
        return Standing(rule, None, None, len(cards), ran=False, why_not=stopped)
    base = [summarise(c) for c in standard]
    rows = next((card_dict(c)["after"].get("eval_rows") for c in cards if card_dict(c).get("after")), None)
    block = paired_rates([s.after for s in summaries], [b.after for b in base], rows, POINTS)
    stderr = block["stderr"]
    if stderr is None and len(summaries) == 1 and summaries[0].after_stderr is not None:
        stderr = POINTS * math.hypot(summaries[0].after_stderr, base[0].after_stderr or 0.0)  # one seed: the rows'
    return Standing(rule, block["mean"], stderr, block["n"], ran=True)


def _reasons(runs: dict[str, list[dict]], geometry_angle: float | None) -> list[str]:
    standard = runs.get("standard") or []
    out = []
    share, lang, vis = _visual_share(standard[0]) if standard else (None, None, None)
    angle = geometry_angle if geometry_angle is not None else (_first_angle(standard[0]) if standard else None)
    if share is not None:
        measured = f"{100 * share:.0f}% of the KL was visual at the start (ℓVis {vis:.3g}, ℓLang {lang:.3g} nats)"
        if angle is not None:
            measured += f" and the standard gradient was {angle:.0f}° from the visual one"
        if share >= MOSTLY:
            out.append(
                f"{measured}: the standard update already pointed where steering turns it, so VGS had little to add"
            )
        elif share <= 1 - MOSTLY:
            out.append(f"{measured}: the mismatch was mostly language, which VGS does not steer toward")
        else:
            out.append(f"{measured}: language and visual parts competed, the regime where steering can matter")
    lost_format = _format_errors(runs)
    if lost_format:
        out.append(lost_format)
    no_image = []
    for rule, cards in runs.items():
        summaries = [summarise(c) for c in cards]
        values = [s.after_no_image for s in summaries if s.after_no_image is not None]
        if values:
            no_image.append(f"{rule} {statistics.fmean(values):.2f}")
    if no_image:
        out.append("accuracy with the image removed after training: " + ", ".join(no_image))
    reach = []
    for rule, cards in runs.items():
        steps = [summarise(c).steps_to_gain for c in cards]
        reached = [s for s in steps if s is not None]
        reach.append(
            f"{rule} {statistics.median(reached):.0f} ({len(reached)}/{len(steps)} seeds)"
            if reached
            else f"{rule} never"
        )
    if reach:
        out.append("steps to +5 points: " + ", ".join(reach))
    return out


def _format_errors(runs: dict[str, list[dict]]) -> str | None:
    """A clause on answers that no longer parse, where a run measured them and some run ended with any."""
    shares = {}
    for rule, cards in runs.items():
        summaries = [summarise(c) for c in cards]
        pairs = [(s.format_errors_before, s.format_errors_after) for s in summaries]
        pairs = [(b, a) for b, a in pairs if b is not None and a is not None]
        if pairs:
            shares[rule] = (statistics.fmean(b for b, _ in pairs), statistics.fmean(a for _, a in pairs))
    if not any(after > 0 for _, after in shares.values()):
        return None
    changes = ", ".join(f"{rule} {100 * b:.0f}% → {100 * a:.0f}%" for rule, (b, a) in shares.items())
    return f"answers with no final answer (with the image), before → after training: {changes}"


@dataclass(frozen=True)
class Verdict:
    standings: tuple[Standing, ...]
    reasons: tuple[str, ...]
    metric: str
    seeds: int

    def line(self) -> str:
        """One line for a terminal or a run card, beginning `verdict:`."""
        head = "; ".join(s.words() for s in self.standings) or "only standard ran: nothing to compare"
        if self.standings and all(s.position == "unmeasured" for s in self.standings if s.ran):
            head += " (standard did not run, or nothing was evaluated)"
        return f"verdict: {head} ({self.metric} with the image after training, {self.seeds} seed(s))"

    def text(self) -> str:
        """What the runs measured, a sentence each, then the verdict line (last, so a log's tail shows it)."""
        return "\n".join([f"measured: {reason}." for reason in self.reasons] + [self.line()])

    def to_dict(self) -> dict:
        return {
            "line": self.line(),
            "reasons": list(self.reasons),
            "metric": self.metric,
            "seeds": self.seeds,
            "standings": [s.__dict__ | {"position": s.position} for s in self.standings],
        }


def verdict(runs: dict[str, list[Any]], geometry_angle: float | None = None) -> Verdict:
    """The verdict of rules (name -> one run card per seed, paired by seed) against `standard`.

    `geometry_angle` is the angle between gStd and gVis measured before training (page 2, `vlod geometry`),
    used when the standard runs recorded no geometry of their own. A rule with no card did not run.
    """
    runs = {rule: [card_dict(c) for c in cards] for rule, cards in runs.items()}
    standard = runs.get("standard") or []
    if standard and summarise(standard[0]).steps_run == 0 and summarise(standard[0]).stopped:
        standard = []  # stopped before its first step: nothing to compare against
    standings = tuple(
        standing(rule, cards, standard)
        if standard
        else Standing(rule, None, None, 0, ran=bool(cards), why_not=None if cards else "no run card")
        for rule, cards in runs.items()
        if rule != "standard"
    )
    first = next((c for cards in runs.values() for c in cards), None)
    metric = summarise(first).metric if first else "accuracy"
    ran = {rule: cards for rule, cards in runs.items() if cards}
    return Verdict(
        standings, tuple(_reasons(ran, geometry_angle)), metric, max((len(c) for c in runs.values()), default=0)
    )
