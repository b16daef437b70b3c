"""What a finished run amounts to: the metric it leads with, its gain, when it reached +5 points, whether it
stopped early — one home for these facts, read by the CLI, the app and the experiments' analysis.

Every function takes a run card as the library writes it (`results.RunCard`) or as JSON gives it back (a dict),
so a card read from disk and one just trained summarise alike. Metric names and their wording live here too:
`METRICS` is the one table the CLI's lines, the app's tables and the report's headers say them from.
"""

from __future__ import annotations

from types import MappingProxyType

import math
from dataclasses import asdict, dataclass
from typing import Any

GAIN = 0.05  # "steps to +5 points"


@dataclass(frozen=True)
class Metric:
    name: str  # as in the evaluation dicts, before the context suffix (`accuracy_image`)
    label: str  # what a table or a line calls it
    rate: bool  # a share of rows (shown in points), else a mean value
    higher_is_better: bool = True


METRICS = MappingProxyType(
    {
        metric.name: metric
        for metric in (
            Metric("accuracy", "accuracy (exact match with the right answer)", rate=True),
            Metric("agreement", "agreement with the teacher's greedy answer (exact)", rate=True),
            Metric("token_agreement", "token agreement with the teacher", rate=True),
            Metric("kl", "KL(student ‖ teacher) per token, nats (lower is closer)", rate=False, higher_is_better=False),
            # With an answer pattern or Acc@k (`vlod_core.evaluation`): reasoning answers scored by final answers.
            Metric("acc1", "Acc@1 (final answer of the greedy answer)", rate=True),
            Metric("acc_k", "Acc@k (final answers of k samples at temperature 1)", rate=True),
            Metric("format_errors", "format errors (no final answer found)", rate=True, higher_is_better=False),
        )
    }
)
CONTEXTS = MappingProxyType({"image": "with image", "no_image": "image removed"})  # evaluation suffix -> its wording


def card_dict(card: Any) -> dict:
    """A `RunCard` or its JSON dict, as a dict."""
    return card if isinstance(card, dict) else card.to_dict()


def _number(block: dict | None, name: str) -> float | None:
    value = (block or {}).get(name)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def headline(*blocks: dict) -> str:
    """The metric a summary leads with: accuracy where the rows have right answers, else agreement with the
    teacher. Any of the evaluation blocks (before, after, a record's) can tell."""
    return "accuracy" if any("accuracy_image" in (block or {}) for block in blocks) else "agreement"


def curve(card: Any, metric: str) -> list[tuple[int, float]]:
    """(step, metric with the image) at 0, at every evaluation during the run, and after its last step."""
    card = card_dict(card)
    key = f"{metric}_image"
    points = [(0, _number(card["before"], key))]
    points += [(r["step"], _number(r["evaluation"], key)) for r in card["records"] if r.get("evaluation")]
    if card["records"]:  # the steps actually run: an early stop ends the curve where it stopped
        points.append((card["records"][-1]["step"], _number(card["after"], key)))
    return [(s, v) for s, v in points if v is not None]


def steps_to_gain(card: Any, metric: str | None = None, gain: float = GAIN) -> int | None:
    """The first evaluated step whose metric with the image is `gain` above the start; None if never."""
    card = card_dict(card)
    points = curve(card, metric or headline(card["before"], card["after"]))
    if not points or points[0][0] != 0:
        return None
    target = points[0][1] + gain - 1e-9
    return next((step for step, value in points[1:] if value >= target), None)


@dataclass(frozen=True)
class RunSummary:
    """One run in a few numbers; `None` where the run did not measure it."""

    rule: str
    metric: str
    before: float | None  # the headline metric with the image
    after: float | None
    before_stderr: float | None
    after_stderr: float | None
    after_no_image: float | None
    # Share of answers with no final answer (with the image), where the run parses final answers: a reasoning
    # student can lose its chains' format while it moves toward the teacher, which no accuracy shows apart.
    format_errors_before: float | None
    format_errors_after: float | None
    steps_planned: int
    steps_run: int
    steps_to_gain: int | None
    stopped: str | None
    seconds: float

    @property
    def gain(self) -> float | None:
        return None if self.before is None or self.after is None else self.after - self.before

    @property
    def gain_stderr(self) -> float | None:
        """The gain's standard error, before and after taken as independent (they are measured on the same
        rows, so this errs on the wide side)."""
        if self.before_stderr is None or self.after_stderr is None:
            return None
        return math.hypot(self.before_stderr, self.after_stderr)

    def to_dict(self) -> dict:
        return asdict(self) | {"gain": self.gain, "gain_stderr": self.gain_stderr}


def summarise(card: Any) -> RunSummary:
    card = card_dict(card)
    before, after = card.get("before") or {}, card.get("after") or {}
    metric = headline(before, after)
    key = f"{metric}_image"
    config = card.get("config") or {}
    return RunSummary(
        rule=(config.get("steering") or {}).get("rule", "?"),
        metric=metric,
        before=_number(before, key),
        after=_number(after, key),
        before_stderr=_number(before.get("stderr"), key),
        after_stderr=_number(after.get("stderr"), key),
        after_no_image=_number(after, f"{metric}_no_image"),
        format_errors_before=_number(before, "format_errors_image"),
        format_errors_after=_number(after, "format_errors_image"),
        steps_planned=int(config.get("steps", len(card["records"]))),
        steps_run=card["records"][-1]["step"] if card["records"] else 0,
        steps_to_gain=steps_to_gain(card, metric),
        stopped=card.get("stopped"),
        seconds=float(card.get("seconds", 0.0)),
    )
