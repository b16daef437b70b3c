"""From runs to numbers: means over seeds with standard errors, paired comparisons, and the paper's claims
with a verdict each.

Statistics. Every number is a mean over seeds; its standard error (SE) is the sample standard deviation over
seeds divided by √n. A comparison between two arms uses the per-seed differences (same seed: same initial
student, prompts, sampling seeds and evaluation rows), so what the arms share cancels.

Verdict rules (`Z` = 2 standard errors; the interval is measured ± 2 SE):
- a *range* claim (the paper gives a value or a range: an angle, a cost ratio) **agrees** when the interval
  lies inside the paper's range widened by the claim's stated tolerance, **disagrees** when it lies entirely
  outside that widened range, and is **inconclusive** when it straddles an edge;
- a *direction* claim ("A beats B", "rises"; measured as the effect in the paper's direction) **agrees** when
  the interval lies above 0 (the effect is there), **disagrees** when it lies below the claim's margin (an
  effect as large as the margin, the smallest we would count as the paper's, is ruled out; this includes an
  effect in the opposite direction), and is **inconclusive** otherwise;
- a claim measured on fewer than two seeds, or without a number, is inconclusive; one the plan has no run for
  (the quick plan has no γ = 3) reads **not measured**, which is no verdict and is counted apart.

The SE over seeds measures training randomness only: every arm is evaluated on the same rows. A difference
of two rates (accuracy, agreement) on those rows also carries the rows' own sampling error, which for a
paired difference d (a share of n rows) is at least √((|d| − d²)/n) (McNemar's, with every discordant row
in one direction: the fewest consistent with d). Rate differences add the mean of that floor over seeds to
their SE in quadrature (`paired_rates`), so a difference of one or two rows out of 400 is not mistaken for an
effect however repeatable it is across seeds.

With n seeds, ± 2 SE is a t interval with n − 1 degrees of freedom (about 82 % coverage for 3 seeds, 95 %
needs 4.3 SE): a verdict from 3 seeds is a screen, not a significance test.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

from vlod_core.run_summary import curve, headline, steps_to_gain
from vlod_core.stats import Z, finite, paired_rates, stat

NOT_MEASURED = "not measured"
VERDICTS = ("agrees", "disagrees", "inconclusive", NOT_MEASURED)  # the last: not in the plan, no verdict
VDS_FLOOR = 1e-3  # nats: below this the image barely changes the teacher's next-token distribution


# ---------------------------------------------------------------------------------------------------
# Statistics


def verdict_of(claim: dict | None) -> str:
    """A claim's verdict; one its plan has no run for (older reports said inconclusive), or that a report does
    not hold, is 'not measured'."""
    if not claim or (claim.get("measured") is None and claim.get("note") == "not measured in this plan"):
        return NOT_MEASURED
    return claim["verdict"]


def t_coverage(df: int, z: float = Z) -> float:
    """P(|T| < z) for Student's t with `df` degrees of freedom (Simpson's rule; no SciPy needed)."""
    if df < 1:
        return math.nan
    norm = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    pdf = lambda t: norm * (1 + t * t / df) ** (-(df + 1) / 2)  # noqa: E731
    n = 400
    h = z / n
    total = pdf(0) + pdf(z) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, n))
    return 2 * total * h / 3


# ---------------------------------------------------------------------------------------------------
# Verdicts


def range_verdict(mean, stderr, low: float, high: float, tolerance: float) -> str:
    """Agrees when mean ± Z·SE lies inside [low − tolerance, high + tolerance], disagrees when it lies outside."""
    if not (finite(mean) and finite(stderr)):
        return "inconclusive"
    lower, upper = mean - Z * stderr, mean + Z * stderr
    if low - tolerance <= lower and upper <= high + tolerance:
        return "agrees"
    if upper < low - tolerance or lower > high + tolerance:
        return "disagrees"
    return "inconclusive"


def direction_verdict(mean, stderr, margin: float) -> str:
    """The claim: the effect (in the paper's direction) is positive. Agrees when mean − Z·SE > 0; disagrees
    when mean + Z·SE < margin (an effect of the margin's size is ruled out)."""
    if not (finite(mean) and finite(stderr)):
        return "inconclusive"
    if mean - Z * stderr > 0:
        return "agrees"
    if mean + Z * stderr < margin:
        return "disagrees"
    return "inconclusive"


@dataclass(frozen=True)
class ClaimSpec:
    """One checkable claim: a range (low..high ± tolerance) or a direction (> 0, margin)."""

    id: str
    claim: str
    paper: str  # the paper's figure, as the paper gives it
    unit: str
    kind: str  # "range" or "direction"
    low: float = 0.0
    high: float = 0.0
    tolerance: float = 0.0
    margin: float = 0.0

    def verdict(self, mean, stderr) -> str:
        if self.kind == "range":
            return range_verdict(mean, stderr, self.low, self.high, self.tolerance)
        return direction_verdict(mean, stderr, self.margin)

    def rule(self) -> str:
        u = self.unit
        if self.kind == "range":
            return (
                f"agrees if ±{Z:g} SE lies within {self.low - self.tolerance:g}–{self.high + self.tolerance:g}{u} "
                f"(the paper's {self.low:g}–{self.high:g}{u} ± {self.tolerance:g}{u}); disagrees if outside it"
                if self.low != self.high
                else f"agrees if ±{Z:g} SE lies within {self.low:g} ± {self.tolerance:g}{u}; disagrees if outside it"
            )
        return f"agrees if measured − {Z:g} SE > 0; disagrees if measured + {Z:g} SE < {self.margin:g}{u}"


def geometry_claims(when: str) -> list[ClaimSpec]:
    return [
        ClaimSpec(
            f"lang_vis_global_{when}",
            "gLang and gVis are nearly orthogonal (all tokens)",
            "≈ 90°",
            "°",
            "range",
            90,
            90,
            15,
        ),
        ClaimSpec(
            f"lang_vis_lowest_bin_{when}",
            "angle(gLang, gVis) in the lowest VDS bin",
            "≈ 60° (Fig. 3)",
            "°",
            "range",
            60,
            60,
            10,
        ),
        ClaimSpec(
            f"lang_vis_highest_bin_{when}",
            "angle(gLang, gVis) in the highest VDS bin",
            "≈ 92° (Fig. 3)",
            "°",
            "range",
            92,
            92,
            10,
        ),
        ClaimSpec(
            f"lang_vis_rise_{when}",
            "angle(gLang, gVis) rises with VDS (fitted rise, lowest → highest bin)",
            "+32° (60° → 92°, Fig. 3)",
            "°",
            "direction",
            margin=10,
        ),
        ClaimSpec(
            f"std_lang_{when}",
            "gStd lies 40–50° from gLang (the 'passive bisector')",
            "40–50°",
            "°",
            "range",
            40,
            50,
            5,
        ),
        ClaimSpec(f"std_vis_{when}", "gStd lies 40–50° from gVis", "40–50°", "°", "range", 40, 50, 5),
    ]


def gamma_claim(gamma: float) -> ClaimSpec:
    return ClaimSpec(
        f"vgs_beats_standard_gamma_{gamma:g}",
        f"VGS (γ = {gamma:g}) beats standard OPD: held-out accuracy with the image, VGS − standard",
        "> 0 for γ ∈ {1, 2, 3, 4} (Table 1: +2.4 points for 2B, +1.5 for 4B)",
        " points",
        "direction",
        margin=1.0,
    )


LAMBDA_RISE = ClaimSpec(
    "no_lp_lang_rises",
    "without LP (λ = 0), ℓLang on the top-30% VDS tokens rises during training (last vs first tenth of the steps)",
    "rises (Fig. 4)",
    "%",
    "direction",
    margin=10.0,
)
LAMBDA_GAIN = ClaimSpec(
    "lp_keeps_gain",
    "λ = 0 loses most of VGS's gain: accuracy with the image, VGS (λ = 0.01) − VGS (λ = 0)",
    "> 0 (most of the gain lost at λ = 0)",
    " points",
    "direction",
    margin=1.0,
)
LANG_STEER = ClaimSpec(
    "lang_steer_hurts",
    "steering toward language hurts: accuracy with the image, standard − lang_steer",
    "> 0 (Fig. 5)",
    " points",
    "direction",
    margin=1.0,
)
STEP_COST = ClaimSpec(
    "step_cost",
    "a VGS step (fixed η) costs about 1.375× a standard step",
    "1.375×",
    "×",
    "range",
    1.375,
    1.375,
    0.1375,
)


def claim_row(spec: ClaimSpec, measured: dict | None, note: str = "") -> dict:
    """A claims-table row: the paper's figure, ours with its SE and n, the verdict and the rule."""
    not_in_plan = measured is None  # the plan has no run for it (the quick plan skips γ = 3): no verdict at all
    measured = measured or {"mean": None, "stderr": None, "n": 0}
    if measured["mean"] is None:
        note = note or "not measured in this plan"
    return {
        "id": spec.id,
        "claim": spec.claim,
        "paper": spec.paper,
        "measured": measured["mean"],
        "stderr": measured["stderr"],
        "n": measured["n"],
        "unit": spec.unit,
        "verdict": NOT_MEASURED if not_in_plan else spec.verdict(measured["mean"], measured["stderr"]),
        "rule": spec.rule(),
        "note": note,
    } | {"spec": asdict(spec)}


# ---------------------------------------------------------------------------------------------------
# One run's numbers


def _value(block: dict | None, name: str):
    value = (block or {}).get(name)
    return value if finite(value) else None


def step_seconds(card: dict, block: int = 10) -> float | None:
    """Seconds per training step: the median over complete blocks of `block` steps of their mean step time.

    A step's time is the gap to the previous record, left out after an evaluation (it ran in that gap).
    Blocks of 10 hold exactly one of `standard`'s steps that also score the image-free passes.
    """
    records = card["records"]
    gaps = {}
    for previous, record in zip(records, records[1:]):
        if not previous.get("evaluation") and not previous.get("geometry"):
            gaps[record["step"]] = record["seconds"] - previous["seconds"]
    blocks: dict[int, list[float]] = {}
    for step, gap in gaps.items():
        blocks.setdefault((step - 1) // block, []).append(gap)
    whole = [statistics.fmean(v) for v in blocks.values() if len(v) == block]
    if whole:
        return statistics.median(whole)
    return statistics.fmean(gaps.values()) if gaps else None


def windows(card: dict, steps: int, count: int, key: str = "lang_high_vds", value=None) -> list[float | None]:
    """The mean of a step-record field (or of `value(record)`) over `count` equal windows of the planned steps
    (NaN/None skipped)."""
    sums = [[] for _ in range(count)]
    for record in card["records"]:
        value_here = value(record) if value else record.get(key)
        if finite(value_here):
            sums[min(count - 1, (record["step"] - 1) * count // steps)].append(value_here)
    return [statistics.fmean(v) if v else None for v in sums]


def dynamics(cards: list[dict | None], steps: int, window_count: int) -> dict | None:
    """The paper's Fig. 4 on our runs: ℓLang and ℓVis per equal-count VDS bin (low → high), window means over
    the steps, each over seeds. None for runs logged before the loop recorded the bins."""
    logged = [c for c in cards if c and any(r.get("by_vds") for r in c["records"])]
    if not logged:
        return None
    bins = max(len(r["by_vds"]["lang"]) for c in logged for r in c["records"] if r.get("by_vds"))

    def series(name: str, b: int) -> list[dict]:
        def value(record: dict):
            values = (record.get("by_vds") or {}).get(name) or []
            return values[b] if b < len(values) else None

        per_seed = [windows(c, steps, window_count, value=value) if c else [None] * window_count for c in cards]
        return [stat([s[w] for s in per_seed]) for w in range(window_count)]

    return {
        "steps": [round((w + 0.5) * steps / window_count, 1) for w in range(window_count)],
        "bins": bins,
        "lang": [series("lang", b) for b in range(bins)],
        "vis": [series("vis", b) for b in range(bins)],
    }


def relative_rise(values: list[float | None]) -> float | None:
    """(last − first) / first of the finite window means, in percent."""
    kept = [v for v in values if finite(v)]
    if len(kept) < 2 or kept[0] <= 0:
        return None
    return 100.0 * (kept[-1] - kept[0]) / kept[0]


def fitted_rise(values: list[float | None]) -> float | None:
    """Least-squares slope of a per-bin series against the bin index, times (bins − 1): rise across the bins."""
    points = [(i, v) for i, v in enumerate(values) if finite(v)]
    if len(points) < 2:
        return None
    mean_x = statistics.fmean(i for i, _ in points)
    mean_y = statistics.fmean(v for _, v in points)
    spread = sum((i - mean_x) ** 2 for i, _ in points)
    slope = sum((i - mean_x) * (v - mean_y) for i, v in points) / spread
    return slope * (len(values) - 1)


# ---------------------------------------------------------------------------------------------------
# The experiments

PAIR_KEYS = ("std-lang", "std-vis", "lang-vis")


def geometry_summary(geometries: list[dict | None]) -> dict:
    """Angles over seeds: global and per VDS bin (with each bin's VDS range and token count), and the rise."""
    present = [g for g in geometries if g]
    out = {"seeds": len(present), "global": {}, "bins": [], "rise": {}}
    if not present:
        return out
    out["global"] = {
        k: stat([(g["global"]["angles"] or {}).get(k) if g else None for g in geometries]) for k in PAIR_KEYS
    }
    out["norms"] = {
        n: stat([g["global"]["norms"][n] if g else None for g in geometries]) for n in ("std", "lang", "vis")
    }
    count = max(len(g["bins"]) for g in present)
    for i in range(count):
        at = [g["bins"][i] if g and len(g["bins"]) == count else None for g in geometries]
        out["bins"].append(
            {
                "bin": i + 1,
                "vds_low": stat([b["vds_low"] if b else None for b in at]),
                "vds_high": stat([b["vds_high"] if b else None for b in at]),
                "tokens": stat([b["tokens"] if b else None for b in at]),
                "angles": {k: stat([b["angles"].get(k) if b else None for b in at]) for k in PAIR_KEYS},
            }
        )
    for k in PAIR_KEYS:
        per_seed = []
        for g in geometries:
            series = [b["angles"].get(k) for b in g["bins"]] if g and len(g["bins"]) == count else []
            per_seed.append(fitted_rise(series) if series else None)
        out["rise"][k] = stat(per_seed)
    return out


def arm_summary(cards: list[dict | None], steps: int, metric: str, window_count: int) -> dict:
    """One arm over seeds: before/after with and without the image, gain, steps to +5 points, ℓLang windows,
    the accuracy curve, η and the step time."""
    out = {}
    for when in ("before", "after"):
        for context in ("image", "no_image"):
            out[f"{when}_{context}"] = stat([_value(c[when], f"{metric}_{context}") if c else None for c in cards])
    if any(c and "acc_k_image" in c["after"] for c in cards):  # Acc@k, where the plan sampled k answers a row
        for when in ("before", "after"):
            out[f"acc_k_{when}_image"] = stat([_value(c[when], "acc_k_image") if c else None for c in cards])
        out["acc_k"] = next(c["after"].get("eval_samples") for c in cards if c and "acc_k_image" in c["after"])
    rows = [c["after"].get("eval_rows") for c in cards if c and c["after"]]
    out["eval_rows"] = min(rows) if rows else None
    out["gain_image"] = paired_rates(out["after_image"]["values"], out["before_image"]["values"], out["eval_rows"], 1.0)
    reach = [steps_to_gain(c, metric) if c else None for c in cards]
    out["steps_to_gain"] = {"values": reach, "reached": sum(r is not None for r in reach), "of": len(cards)} | {
        k: v for k, v in stat(reach).items() if k in ("mean", "stderr")
    }
    per_seed_windows = [windows(c, steps, window_count) if c else [None] * window_count for c in cards]
    out["lang_high_vds"] = {
        "steps": [round((w + 0.5) * steps / window_count, 1) for w in range(window_count)],
        "windows": [stat([s[w] for s in per_seed_windows]) for w in range(window_count)],
        "relative_rise": stat([relative_rise(s) for s in per_seed_windows]),
    }
    out["dynamics"] = dynamics(cards, steps, window_count)
    curves = [dict(curve(c, metric)) if c else {} for c in cards]
    curve_steps = sorted({s for c in curves for s in c})
    out["curve"] = {"steps": curve_steps, "values": [stat([c.get(s) for c in curves]) for s in curve_steps]}
    late = []
    for c in curves:
        points = sorted(c.items())
        late.append(points[-1][1] - points[-2][1] if len(points) >= 3 else None)
    out["late_gain_image"] = stat(late)  # the last evaluation interval: is it still improving?
    out["eta"] = stat([statistics.fmean(r["eta"] for r in c["records"]) if c and c["records"] else None for c in cards])
    out["step_seconds"] = stat([step_seconds(c) if c else None for c in cards])
    out["stopped"] = [c.get("stopped") if c else None for c in cards]
    out["seconds"] = stat([c.get("seconds") if c else None for c in cards])
    return out


def difference(arm: dict, baseline: dict, key: str = "after_image") -> dict:
    """arm − baseline per seed, in points, of a rate both measured on the same evaluation rows."""
    return paired_rates(arm[key]["values"], baseline[key]["values"], arm["eval_rows"] or baseline["eval_rows"])


def lr_answer(points: list[dict], default_lr: float) -> str:
    """The learning-rate sweep's answer to: does VGS overtake standard at small rates, given enough steps?"""
    if not points:
        return "The learning-rate sweep was not run."
    small = [p for p in points if p["lr"] < default_lr]
    text = []
    ahead = [p for p in small if p["label"] == "vgs ahead"]
    steps = ", ".join(f"lr {p['lr']:g}: {p['steps']} steps" for p in points)
    if ahead:
        listed = ", ".join(f"lr {p['lr']:g} ({_pm(p['difference'])} points)" for p in ahead)
        text.append(f"Yes: VGS ends ahead of standard at {listed}.")
    elif small:
        text.append(
            "No: at no rate below the default did VGS end more than two standard errors ahead of standard "
            f"within the steps run ({steps})."
        )
    behind = [p for p in points if p["label"] == "standard ahead"]
    if behind:
        text.append(
            "Standard is ahead at " + ", ".join(f"lr {p['lr']:g} ({_pm(p['difference'])})" for p in behind) + "."
        )
    level = [p for p in points if p["label"] == "no clear difference"]
    if level:
        text.append(
            "No clear difference at " + ", ".join(f"lr {p['lr']:g} ({_pm(p['difference'])})" for p in level) + "."
        )
    improving = [p for p in points if p["still_improving"]]
    if improving:
        text.append(
            "Still improving in the last evaluation interval (so not converged; the answer holds for these step "
            "counts only): " + ", ".join(f"lr {p['lr']:g} ({', '.join(p['still_improving'])})" for p in improving) + "."
        )
    return " ".join(text)


def _pm(block: dict) -> str:
    if block["mean"] is None:
        return "n/a"
    error = f" ± {block['stderr']:.1f}" if block["stderr"] is not None else ""
    return f"{block['mean']:+.1f}{error}"


def analyse(plan, runs: dict[tuple[str, str], list[dict | None]]) -> dict:
    """Every experiment's numbers and the claims table. `runs[(part, arm name)]` holds one record per seed
    (a cached run: `card`, `geometry_before`, `geometry_after`), None where a run is missing."""
    arms = {(a.part, a.name): a for a in plan.arms()}
    cards = {k: [r["card"] if r else None for r in v] for k, v in runs.items()}
    first = next((c for v in cards.values() for c in v if c), None)
    metric = headline(first["before"]) if first else "accuracy"

    def steps_of(key) -> int:
        arm = arms[key]
        return arm.steps or plan.steps

    summaries = {k: arm_summary(v, steps_of(k), metric, plan.windows) for k, v in cards.items()}
    standard = summaries.get(("rules", "standard"))

    def versus_standard(key, context="image") -> dict:
        if standard is None or key not in summaries:
            return stat([])
        return difference(summaries[key], standard, f"after_{context}")

    out: dict = {"metric": metric}
    geometry_runs = runs.get(("rules", "standard"), [])
    out["geometry"] = {
        "rows": plan.geometry_rows,
        "bins": plan.geometry_bins,
        "steps": plan.steps,
        "start": geometry_summary([r.get("geometry_before") if r else None for r in geometry_runs]),
        "after": geometry_summary([r.get("geometry_after") if r else None for r in geometry_runs]),
    }
    out["rules"] = {
        name: summaries[(part, name)]
        | {
            "vs_standard_image": versus_standard((part, name)),
            "vs_standard_no_image": versus_standard((part, name), "no_image"),
        }
        for (part, name) in summaries
        if part in ("rules", "cost")
    }
    out["gamma"] = [
        {
            "gamma": arms[k].gamma,
            "name": k[1],
            "after_image": summaries[k]["after_image"],
            "vs_standard": versus_standard(k),
        }
        for k in summaries
        if k[0] == "gamma"
    ]
    out["lambda"] = [
        {
            "lam": arms[k].lam if arms[k].rule == "vgs" else 0.0,
            "name": k[1],
            "after_image": summaries[k]["after_image"],
            "after_no_image": summaries[k]["after_no_image"],
            "vs_standard": versus_standard(k),
            "lang_high_vds_last": summaries[k]["lang_high_vds"]["windows"][-1],
            "lang_high_vds_rise": summaries[k]["lang_high_vds"]["relative_rise"],
        }
        for k in summaries
        if k[0] == "lambda"
    ]
    out["learning_rate"] = learning_rate_part(plan, summaries)
    out["cost"] = cost_part(plan, summaries)
    out["claims"] = claims(plan, out, summaries)
    if metric != "accuracy":  # rows without reference answers: agreement with the teacher's greedy answer
        out["claims"] = [
            c | {"claim": c["claim"].replace("accuracy", "agreement with the teacher")} for c in out["claims"]
        ]
    return out


def learning_rate_part(plan, summaries: dict) -> dict:
    points = []
    for lr, steps in plan.learning_rates:
        pair = {rule: summaries.get(("learning_rate", f"{rule} lr = {lr:g}")) for rule in ("standard", "vgs")}
        if not all(pair.values()):
            continue
        gap = difference(pair["vgs"], pair["standard"])
        lower = gap["mean"] - Z * gap["stderr"] if gap["stderr"] is not None else None
        upper = gap["mean"] + Z * gap["stderr"] if gap["stderr"] is not None else None
        label = (
            "vgs ahead"
            if lower is not None and lower > 0
            else ("standard ahead" if upper is not None and upper < 0 else "no clear difference")
        )
        improving = [
            rule
            for rule, s in pair.items()
            if s["late_gain_image"]["stderr"] is not None
            and s["late_gain_image"]["mean"] - Z * s["late_gain_image"]["stderr"] > 0
        ]
        points.append(
            {
                "lr": lr,
                "steps": steps,
                "difference": gap,
                "label": label,
                "still_improving": improving,
                **{
                    rule: {
                        key: s[key]
                        for key in (
                            "before_image",
                            "after_image",
                            "after_no_image",
                            "gain_image",
                            "late_gain_image",
                            "eta",
                            "steps_to_gain",
                        )
                    }
                    | {"lang_high_vds_last": s["lang_high_vds"]["windows"][-1], "curve": s["curve"]}
                    for rule, s in pair.items()
                },
            }
        )
    return {"points": points, "answer": lr_answer(points, plan.lr), "default_lr": plan.lr}


def cost_part(plan, summaries: dict) -> dict:
    def seconds(key):
        return summaries[key]["step_seconds"]["values"] if key in summaries else []

    standard = seconds(("rules", "standard"))
    out = {
        "step_seconds": {
            name: summaries[(part, name)]["step_seconds"] for (part, name) in summaries if part in ("rules", "cost")
        }
    }
    ratio = lambda a, b: stat([x / y if finite(x) and finite(y) and y > 0 else None for x, y in zip(a, b)])  # noqa: E731
    out["ratio_auto_eta"] = ratio(seconds(("rules", "vgs")), standard)
    fixed = [k for k in summaries if k[0] == "cost"]
    out["ratio_fixed_eta"] = ratio(seconds(fixed[0]), standard) if fixed else stat([])
    out["fixed_eta"] = plan.paper_eta
    return out


def claims(plan, out: dict, summaries: dict) -> list[dict]:
    rows = []
    for when, label in (("start", "at the start"), ("after", f"after {plan.steps} standard steps")):
        geometry = out["geometry"][when]
        bins = geometry["bins"]
        measured = {
            "lang_vis_global": geometry["global"].get("lang-vis"),
            "lang_vis_lowest_bin": bins[0]["angles"]["lang-vis"] if bins else None,
            "lang_vis_highest_bin": bins[-1]["angles"]["lang-vis"] if bins else None,
            "lang_vis_rise": geometry["rise"].get("lang-vis"),
            "std_lang": geometry["global"].get("std-lang"),
            "std_vis": geometry["global"].get("std-vis"),
        }
        flat = sum(1 for b in bins if finite(b["vds_high"]["mean"]) and b["vds_high"]["mean"] < VDS_FLOOR)
        notes = {
            "lang_vis_lowest_bin": "its tokens have VDS < 0.001 nats: the image barely changes the teacher there"
            if flat
            else "",
            "lang_vis_rise": f"{flat} of {len(bins)} bins hold tokens with VDS < 0.001 nats (their order is noise)"
            if flat
            else "",
        }
        for spec in geometry_claims(when):
            name = spec.id.removesuffix(f"_{when}")
            row = claim_row(spec, measured[name], notes.get(name, ""))
            rows.append(row | {"claim": f"{row['claim']} ({label})"})
    standard = summaries.get(("rules", "standard"))
    for gamma in (1.0, 2.0, 3.0, 4.0):
        point = next((p for p in out["gamma"] if p["gamma"] == gamma), None)
        rows.append(claim_row(gamma_claim(gamma), point["vs_standard"] if point else None))
    no_lp = summaries.get(("rules", "vgs_no_lp")) or summaries.get(("lambda", "λ = 0"))
    rows.append(claim_row(LAMBDA_RISE, no_lp["lang_high_vds"]["relative_rise"] if no_lp else None))
    vgs = summaries.get(("rules", "vgs"))
    rows.append(
        claim_row(
            LAMBDA_GAIN,
            difference(vgs, no_lp) if vgs and no_lp else None,
        )
    )
    lang = summaries.get(("rules", "lang_steer"))
    rows.append(
        claim_row(
            LANG_STEER,
            difference(standard, lang) if standard and lang else None,
        )
    )
    rows.append(
        claim_row(
            STEP_COST,
            out["cost"]["ratio_fixed_eta"],
            f"η fixed at {plan.paper_eta:g}; with η measured every step (vlod's default) the ratio is {_ratio(out['cost']['ratio_auto_eta'])}",
        )
    )
    return rows


def _ratio(block: dict) -> str:
    if block["mean"] is None:
        return "not measured"
    return f"{block['mean']:.2f}" + (f" ± {block['stderr']:.2f}" if block["stderr"] is not None else "")


def verdict_rules_text() -> list[str]:
    """The rules as sentences, for the report."""
    return [
        "Every number is a mean over seeds ± its standard error (SE: standard deviation over seeds / √n). "
        "Comparisons are per-seed paired differences: the same seed gives the same initial student, prompts, "
        "sampling seeds and evaluation rows to every arm.",
        "A difference of two accuracies on the same evaluation rows also carries the rows' own sampling error: its "
        "SE adds, in quadrature, the smallest such error its per-seed differences d allow, √((|d| − d²)/n) for n "
        "rows (McNemar, every discordant row in one direction), so one or two rows out of 400 never count as an "
        "effect, however repeatable across seeds.",
        f"Range claims (an angle, a cost ratio): agrees when mean ± {Z:g} SE lies inside the paper's range widened "
        "by the stated tolerance; disagrees when it lies entirely outside; otherwise inconclusive.",
        f"Direction claims ('A beats B', 'rises'; measured as the effect in the paper's direction): agrees when "
        f"mean − {Z:g} SE > 0; disagrees when mean + {Z:g} SE is below the stated margin (an effect that large is "
        "ruled out, including any effect in the opposite direction); otherwise inconclusive.",
        "A claim measured on fewer than two seeds, or without a number, is inconclusive; a claim the plan has no run "
        "for reads 'not measured' and is counted apart.",
    ]
