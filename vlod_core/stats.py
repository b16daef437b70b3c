"""Means over seeds with standard errors, and paired differences of rates: the statistics a run comparison
and the paper check share."""

from __future__ import annotations

import math
import statistics

Z = 2.0  # an effect counts when it is more than Z standard errors from its reference
POINTS = 100.0  # rates are stored in [0, 1]; claims and tables speak in points


def finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def stat(values, scale: float = 1.0) -> dict:
    """Mean and standard error over seeds (`values` one per seed; None/NaN: not measured for that seed)."""
    kept = [v * scale for v in values if finite(v)]
    n = len(kept)
    mean = statistics.fmean(kept) if kept else None
    stderr = statistics.stdev(kept) / math.sqrt(n) if n >= 2 else None
    return {"mean": mean, "stderr": stderr, "n": n, "values": [v * scale if finite(v) else None for v in values]}


def paired(a: list, b: list, scale: float = 1.0) -> dict:
    """Per-seed differences a − b, for the seeds where both were measured."""
    return stat([x - y if finite(x) and finite(y) else None for x, y in zip(a, b)], scale)


def paired_rates(a: list, b: list, rows: int | None, scale: float = POINTS) -> dict:
    """`paired` for two rates measured on the same `rows` evaluation rows: the SE adds, in quadrature, the
    smallest sampling error of the rows that each seed's difference d allows, √((|d| − d²)/rows)."""
    block = paired(a, b, scale)
    differences = [x - y for x, y in zip(a, b) if finite(x) and finite(y)]
    if not differences or not rows:
        return block
    rows_error = scale * statistics.fmean(math.sqrt(max(abs(d) - d * d, 0.0) / rows) for d in differences)
    seeds_error = block["stderr"]
    total = math.sqrt(seeds_error**2 + rows_error**2) if seeds_error is not None else None
    return block | {"stderr": total, "stderr_seeds": seeds_error, "stderr_rows": rows_error}
