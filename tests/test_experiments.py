"""The paper check (`vlod_core.experiments`): a tiny plan end to end through `run_experiments` (the function
the command calls), its files, its cache (a rerun computes nothing; a stopped run resumes where it stopped; a
run computed in a worker process equals the same run computed here), and the verdict rules on hand-made
numbers.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics

import pytest
from plotly.offline import get_plotlyjs
from test_cli import REPO, assert_one_line_error, run_cli

from vlod_core.experiments import Plan, latest_results, run_experiments
from vlod_core.experiments.analysis import (
    claim_row,
    direction_verdict,
    dynamics,
    gamma_claim,
    fitted_rise,
    lr_answer,
    range_verdict,
    step_seconds,
)
from vlod_core.experiments.figures import all_figures
from vlod_core.experiments.plan import DEFAULTS
from vlod_core.experiments.runner import data_identity
from vlod_core.pair import PairSpec
from vlod_core.run_summary import steps_to_gain
from vlod_core.stats import Z, paired, paired_rates, stat

TINY = Plan(
    name="tiny",
    seeds=2,
    steps=3,
    batch=8,
    evaluations=1,
    eval_examples=8,
    gammas=(2.0,),
    lams=(0.0, 0.01),
    learning_rates=((DEFAULTS.lr, 3),),  # the rules' runs: nothing extra to run
    geometry_rows=8,
    geometry_bins=2,
    windows=2,
)
CLAIM_FIELDS = {"claim", "paper", "measured", "stderr", "verdict"}


runs = pytest.mark.slow  # a tiny paper check: runs on worker processes


@pytest.fixture(scope="module")
def tiny_data():
    from vlod_core.toy.source import toy_data

    return toy_data(TINY.eval_examples, show_rows=0)


@pytest.fixture(scope="module")
def toy_folders(toy_pair):
    """Where the toy pair is read from: the entry points locate it and hand it to the check (its workers)."""
    from vlod_core import toy

    return toy.folders(PairSpec())


@pytest.fixture(scope="module")
def tiny_check(tmp_path_factory, toy_pair, toy_folders, tiny_data):
    """The tiny plan run here (workers=0), with every progress report kept."""
    home = tmp_path_factory.mktemp("experiments")
    reports = []
    result = run_experiments(
        TINY, PairSpec(), tiny_data, home / "tiny", workers=0, pair=toy_pair, folders=toy_folders,
        progress=reports.append,
    )  # fmt: skip
    return home, result, reports


# ---------------------------------------------------------------------------------------------------
# Verdict rules and statistics on hand-made numbers


@pytest.mark.parametrize(
    "mean, stderr, expected",
    [
        (45.0, 2.0, "agrees"),  # 41–49 inside 35–55
        (53.0, 1.0, "agrees"),  # 51–55: touches the widened edge
        (54.0, 1.0, "inconclusive"),  # 52–56 straddles 55
        (57.0, 0.9, "disagrees"),  # 55.2–58.8 entirely above
        (20.0, 5.0, "disagrees"),  # 10–30 entirely below 35
        (45.0, 20.0, "inconclusive"),  # too noisy to say
        (45.0, None, "inconclusive"),  # one seed: no standard error
        (None, 1.0, "inconclusive"),
        (math.nan, 1.0, "inconclusive"),
    ],
)
def test_range_verdict(mean, stderr, expected):
    assert range_verdict(mean, stderr, 40.0, 50.0, 5.0) == expected


@pytest.mark.parametrize(
    "mean, stderr, expected",
    [
        (3.0, 1.0, "agrees"),  # 1–5 > 0
        (0.5, 0.2, "agrees"),  # 0.1–0.9: small, but there
        (1.5, 1.0, "inconclusive"),  # −0.5–3.5
        (0.2, 0.3, "disagrees"),  # −0.4–0.8: a 1-point effect is ruled out
        (-4.0, 1.0, "disagrees"),  # the opposite direction
        (0.0, 0.5, "inconclusive"),  # −1–1 reaches the margin
        (2.0, None, "inconclusive"),
    ],
)
def test_direction_verdict(mean, stderr, expected):
    assert direction_verdict(mean, stderr, 1.0) == expected


def test_a_claim_the_plan_does_not_measure_reads_not_measured_not_inconclusive():
    """Issue 21: the quick plan has no γ = 3; its claim said "inconclusive" with no number."""
    spec = gamma_claim(3.0)
    assert claim_row(spec, None)["verdict"] == "not measured"
    assert claim_row(spec, None)["note"] == "not measured in this plan"
    assert claim_row(spec, {"mean": None, "stderr": None, "n": 0})["verdict"] == "inconclusive"  # measured, no number
    assert claim_row(spec, {"mean": 5.0, "stderr": 1.0, "n": 3})["verdict"] == "agrees"


def test_stat_and_paired_differences():
    block = stat([1.0, 2.0, None, 3.0])
    assert block["n"] == 3 and block["mean"] == pytest.approx(2.0)
    assert block["stderr"] == pytest.approx(1.0 / math.sqrt(3))
    assert stat([4.0])["stderr"] is None
    # per-seed differences, over the seeds both arms measured
    difference = paired([0.8, 0.7, 0.9, None], [0.6, 0.7, None, 0.5], scale=100)
    assert difference["values"] == [pytest.approx(20.0), pytest.approx(0.0), None, None]
    assert difference["mean"] == pytest.approx(10.0) and difference["n"] == 2


def test_rate_differences_carry_the_rows_sampling_error():
    """One row out of 400, the same in every seed: repeatable, but no effect."""
    block = paired_rates([0.7525] * 3, [0.75] * 3, rows=400)
    assert block["mean"] == pytest.approx(0.25) and block["stderr_seeds"] == pytest.approx(0.0)
    assert block["stderr"] == pytest.approx(100 * math.sqrt((0.0025 - 0.0025**2) / 400))
    assert direction_verdict(block["mean"], block["stderr"], 1.0) == "disagrees"  # and never "agrees"
    large = paired_rates([0.80, 0.82, 0.81], [0.70, 0.71, 0.70], rows=400)  # ten points: clearly there
    assert (
        large["stderr"] > large["stderr_seeds"] and direction_verdict(large["mean"], large["stderr"], 1.0) == "agrees"
    )


def test_run_measures():
    assert fitted_rise([60.0, 70.0, 80.0, 90.0]) == pytest.approx(30.0)
    assert fitted_rise([90.0, None, 90.0]) == pytest.approx(0.0)
    records = [{"step": s, "seconds": 10.0 + 0.1 * s, "evaluation": None} for s in range(1, 22)]
    records[9]["evaluation"] = {"accuracy_image": 0.80}  # step 10: the gap to step 11 holds an evaluation
    records[10]["seconds"] += 5.0
    for r in records[11:]:
        r["seconds"] += 5.0
    card = {"records": records, "before": {"accuracy_image": 0.74}, "after": {"accuracy_image": 0.76}}
    assert step_seconds(card) == pytest.approx(0.1)  # the evaluation's 5 s are left out
    assert steps_to_gain(card, "accuracy") == 10
    card["records"][9]["evaluation"] = {"accuracy_image": 0.78}
    assert steps_to_gain(card, "accuracy") is None


def test_dynamics_are_window_means_per_bin_over_seeds():
    """Fig. 4's data: seed A logs ℓLang per bin = (step, 10·step, 100·step), seed B twice that; two windows of
    four steps each average their steps, then the seeds. A card from before the per-bin log counts as missing."""

    def card(scale: float) -> dict:
        records = [
            {"step": s, "by_vds": {"lang": [scale * s, scale * 10 * s, scale * 100 * s], "vis": [1.0, 2.0, math.nan]}}
            for s in range(1, 9)
        ]
        return {"records": records}

    out = dynamics([card(1.0), card(2.0), {"records": [{"step": 1}]}, None], steps=8, window_count=2)
    assert out["bins"] == 3 and out["steps"] == [2.0, 6.0]
    first_window = [statistics.fmean([1, 2, 3, 4]) * k for k in (1, 10, 100)]
    assert [b[0]["mean"] for b in out["lang"]] == pytest.approx([1.5 * v for v in first_window])
    assert out["lang"][0][0]["n"] == 2  # the old card and the missing run are left out
    assert out["vis"][2][1]["mean"] is None and out["vis"][1][1]["mean"] == 2.0  # a NaN logged is no value
    assert dynamics([{"records": [{"step": 1}]}], steps=8, window_count=2) is None


def _lr_point(lr, difference, label, improving=()):
    return {
        "lr": lr,
        "steps": 100,
        "difference": stat(difference, 100),
        "label": label,
        "still_improving": list(improving),
    }


def test_learning_rate_answer():
    ahead = [_lr_point(1e-4, [0.05, 0.06, 0.04], "vgs ahead"), _lr_point(1e-3, [-0.1, -0.12, -0.11], "standard ahead")]
    answer = lr_answer(ahead, 1e-3)
    assert answer.startswith("Yes: VGS ends ahead of standard at lr 0.0001 (+5.0 ± 0.6 points)")
    assert "Standard is ahead at lr 0.001" in answer
    level = [_lr_point(1e-4, [0.01, -0.01, 0.0], "no clear difference", ["standard", "vgs"])]
    answer = lr_answer(level, 1e-3)
    assert answer.startswith("No: at no rate below the default") and "lr 0.0001: 100 steps" in answer
    assert "Still improving" in answer and "standard, vgs" in answer


def test_data_identity_sees_the_rows(tiny_data):
    from vlod_core.toy.source import toy_data

    assert data_identity(tiny_data) == data_identity(toy_data(TINY.eval_examples, show_rows=0))
    assert data_identity(tiny_data) != data_identity(toy_data(TINY.eval_examples + 1, show_rows=0))


def test_plan_refuses_one_seed():
    with pytest.raises(ValueError, match="seeds"):
        TINY.with_seeds(1)


# ---------------------------------------------------------------------------------------------------
# End to end


@runs
def test_results_file(tiny_check):
    home, result, reports = tiny_check
    results = json.loads(result.results_path.read_text())
    assert results == result.results
    for key in ("plan", "seeds", "configs", "versions", "pair", "data", "timing", "claims", "experiments"):
        assert key in results, key
    assert results["seeds"] == [0, 1]
    assert {"torch", "transformers"} <= set(results["versions"])
    assert set(results["timing"]["parts"]) == {"geometry", "rules", "gamma", "lambda", "learning_rate", "cost"}
    assert results["timing"]["executed"] + results["timing"]["cached"] == len(
        {k for c in results["configs"].values() for k in c["runs"]}
    )
    experiments = results["experiments"]
    assert set(experiments["rules"]) == {
        "standard",
        "vgs",
        "vgs_anchored",
        "lang_steer",
        "vgs_no_lp",
        "vgs (η = 0.41 fixed)",
    }
    assert len(experiments["geometry"]["start"]["bins"]) == TINY.geometry_bins
    assert [p["lr"] for p in experiments["learning_rate"]["points"]] == [lr for lr, _ in TINY.learning_rates]
    assert experiments["learning_rate"]["points"][0]["vgs"]["after_image"] == experiments["rules"]["vgs"]["after_image"]
    for arm in experiments["rules"].values():  # every number over both seeds
        assert arm["after_image"]["n"] == 2 and len(arm["after_image"]["values"]) == 2
    # progress: every run reported, ending complete
    assert reports[-1].done == reports[-1].total and reports[-1].fraction == 1.0
    assert all(0.0 <= r.fraction <= 1.0 for r in reports)


@runs
def test_claims_follow_the_stated_rule(tiny_check):
    """Each claim's verdict, recomputed here from its numbers and its spec, independently of the module."""
    claims = tiny_check[1].results["claims"]
    assert len({c["id"] for c in claims}) == len(claims) >= 20
    for claim in claims:
        assert CLAIM_FIELDS <= set(claim), claim
        assert claim["verdict"] in ("agrees", "disagrees", "inconclusive", "not measured")
        spec, mean, se = claim["spec"], claim["measured"], claim["stderr"]
        if claim["verdict"] == "not measured":  # the plan has no run for it
            assert mean is None and claim["note"] == "not measured in this plan", claim
            continue
        if mean is None or se is None:
            expected = "inconclusive"
        elif spec["kind"] == "range":
            low, high = spec["low"] - spec["tolerance"], spec["high"] + spec["tolerance"]
            if low <= mean - Z * se and mean + Z * se <= high:
                expected = "agrees"
            elif mean + Z * se < low or mean - Z * se > high:
                expected = "disagrees"
            else:
                expected = "inconclusive"
        else:
            expected = (
                "agrees" if mean - Z * se > 0 else ("disagrees" if mean + Z * se < spec["margin"] else "inconclusive")
            )
        assert claim["verdict"] == expected, claim
    not_run = [c for c in claims if c["id"] in ("vgs_beats_standard_gamma_1", "vgs_beats_standard_gamma_3")]
    assert all(c["measured"] is None and c["verdict"] == "not measured" for c in not_run)  # γ = 1, 3 not in TINY


@runs
def test_report_is_one_self_contained_page(tiny_check):
    page = tiny_check[1].report_path.read_text()
    assert page.count("<html") == 1
    claims_at = page.index("id='claims'")
    assert claims_at < page.index('class="plotly-graph-div"')  # the claims table comes first
    for claim in tiny_check[1].results["claims"]:
        assert claim["verdict"] in page
    assert "Plotly.newPlot" in page and get_plotlyjs() in page  # plotly.js itself is in the page
    assert not re.search(r"<script[^>]*\ssrc=", page)
    ours = page.replace(get_plotlyjs(), "")  # plotly.js holds links of its own (map tiles), never fetched here
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", ours)


@runs
def test_every_plotted_number_has_an_error_bar(tiny_check):
    figures = all_figures(tiny_check[1].results)
    assert all(figure is not None for figure in figures.values()), figures  # fresh runs log what each needs
    for name, figure in figures.items():
        for trace in figure.data:
            if trace.name and trace.name.startswith("paper"):
                continue  # the paper's reference line
            assert trace.error_y is not None and trace.error_y.array is not None, (name, trace.name)


@runs
def test_rerun_uses_the_cache(tiny_check, tiny_data, toy_folders):
    home, first, _ = tiny_check
    # no worker starts: all cached
    again = run_experiments(TINY, PairSpec(), tiny_data, home / "tiny", workers=2, folders=toy_folders)
    assert again.executed == 0 and again.cached == first.executed + first.cached
    assert again.results["claims"] == first.results["claims"]
    found = latest_results(home)
    assert found is not None and found[1] == home / "tiny"


@runs
def test_stopped_check_resumes_and_workers_match(tmp_path, toy_pair, toy_folders, tiny_data, tiny_check):
    """Stopped after its first run, a check writes no report and keeps that run; resumed on two worker
    processes, it computes only the rest, and a run computed in a worker equals the same run computed here."""
    plan = Plan(
        **(TINY.to_dict() | dict(rules=("standard", "vgs"), paper_eta=0, gammas=(), lams=(), learning_rates=()))
    )
    out = tmp_path / "check"
    first = run_experiments(
        plan, PairSpec(), tiny_data, out, workers=0, pair=toy_pair, folders=toy_folders,
        should_stop=lambda: len(list(out.glob("runs/*.json"))) >= 1,
    )  # fmt: skip
    assert first.stopped and first.executed == 1 and not (out / "results.json").exists()
    resumed = run_experiments(plan, PairSpec(), tiny_data, out, workers=2, folders=toy_folders)
    assert not resumed.stopped and resumed.cached == 1 and resumed.executed == 3
    # The same runs (same keys) ran in the tiny check, in this process.
    for path in (out / "runs").glob("*.json"):
        there = json.loads(path.read_text())
        here = json.loads((tiny_check[0] / "tiny" / "runs" / path.name).read_text())
        assert there["card"]["after"] == here["card"]["after"]
        assert [r["loss"] for r in there["card"]["records"]] == [r["loss"] for r in here["card"]["records"]]
        assert there["geometry_after"] == here["geometry_after"]


@runs
def test_a_check_stopped_while_its_workers_run_keeps_what_they_finished(tmp_path, tiny_data, toy_folders):
    """Stopped from the parent while two worker processes run, the check ends (no report), both workers end
    with it, and every run they finished is in the cache; nothing else is."""
    plan = Plan(
        **(TINY.to_dict() | dict(rules=("standard", "vgs"), paper_eta=0, gammas=(), lams=(), learning_rates=()))
    )
    out = tmp_path / "check"
    reports = []
    stopped = run_experiments(
        plan, PairSpec(), tiny_data, out, workers=2, folders=toy_folders, progress=reports.append,
        should_stop=lambda: len(list(out.glob("runs/*.json"))) >= 1,
    )  # fmt: skip
    assert stopped.stopped and not (out / "results.json").exists()
    assert 1 <= stopped.executed == len(list((out / "runs").glob("*.json"))) < 4
    assert any(report.running for report in reports)  # the workers' steps reached the parent
    assert not list((out / "runs").glob(".work-*"))  # the work file handed to the workers is gone


# ---------------------------------------------------------------------------------------------------
# The command


@runs
def test_cli_help_and_errors(vlod_home):
    shown = run_cli(vlod_home, "experiments", "--help")
    assert shown.returncode == 0 and "--quick" in shown.stdout and "--seeds" in shown.stdout
    assert_one_line_error(run_cli(vlod_home, "experiments", "--quick", "--seeds", "1"), "seeds must be at least 2")


def test_a_plan_survives_a_trip_through_json():
    """The app's worker gets its plan as JSON (`Plan.from_dict`): every field back as the plan held it."""
    from vlod_core.experiments import plan_named

    for plan in (plan_named("quick"), plan_named("full"), TINY):
        assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan


def _report(world: str, claims: list[dict]) -> dict:
    return {
        "schema": "vlod.experiments/1",
        "world": world,
        "created": "2026-12-07T05:00:00+00:00",
        "seeds": [0, 1, 2],
        "plan": {"name": "quick", "steps": 100, "world": world},
        "claims": claims,
    }


def _claim(claim_id: str, verdict: str, measured=None, stderr=None, note="") -> dict:
    return {"id": claim_id, "claim": f"claim {claim_id}", "paper": "≈ 90°", "verdict": verdict,
            "measured": measured, "stderr": stderr, "unit": "°", "note": note}


def test_two_worlds_side_by_side_keep_each_worlds_verdict_and_number():
    from vlod_core.experiments.worlds import side_by_side, side_by_side_markdown

    default = _report("default", [_claim("a", "disagrees", 7.0, 1.0), _claim("b", "inconclusive", None, None,
                                                                           "not measured in this plan")])
    reasoning = _report("reasoning", [_claim("a", "agrees", 51.25, 2.5), _claim("c", "agrees", 1.0)])
    rows = side_by_side([default, reasoning])
    assert [r["id"] for r in rows] == ["a", "b", "c"]  # the first report's order, then what only a later one has
    assert (rows[0]["default"], rows[0]["reasoning"]) == ("disagrees", "agrees")
    assert rows[0]["reasoning (ours)"] == "51.25 ± 2.50°"
    assert rows[1]["default"] == "not measured" and rows[1]["reasoning"] == "not measured"  # no run, no claim
    assert rows[2]["default"] == "not measured" and rows[2]["reasoning (ours)"] == "1.00°"
    table = side_by_side_markdown([default, reasoning]).splitlines()
    assert table[0] == "| claim | paper | default: verdict | default: ours | reasoning: verdict | reasoning: ours |"
    assert "| claim a | ≈ 90° | disagrees | 7.00 ± 1.00° | agrees | 51.25 ± 2.50° |" in table
    with pytest.raises(ValueError, match="one report per world"):
        side_by_side([default, default])
    default["claims"][0]["claim"] = "angle (after 300 standard steps)"
    reasoning["claims"][0]["claim"] = "angle (after 100 standard steps)"  # each plan its own steps
    assert side_by_side([default, reasoning])[0]["claim"] == "angle (after the plan's standard steps)"


def test_latest_results_of_a_world_skips_the_other_worlds_newer_report(tmp_path):
    import os

    for age, (folder, world) in enumerate([("reasoning-quick", "reasoning"), ("quick", "default")]):
        (tmp_path / folder).mkdir()
        path = tmp_path / folder / "results.json"
        path.write_text(json.dumps(_report(world, [])))
        os.utime(path, (1e9 - age * 100, 1e9 - age * 100))  # the reasoning report is the newest
    assert latest_results(tmp_path)[0]["world"] == "reasoning"
    assert latest_results(tmp_path, world="default")[1].name == "quick"
    assert latest_results(tmp_path, world="other") is None


def test_acc_k_is_summarised_over_seeds_and_shown_in_the_rules_table():
    """A plan with --samples-k k: each rule's Acc@k before and after over seeds, and two report columns."""
    from vlod_core.experiments.analysis import arm_summary
    from vlod_core.experiments.report import _rules_table

    def card(after_k: float) -> dict:
        before = {"accuracy_image": 0.5, "accuracy_no_image": 0.4, "acc_k_image": 0.45, "eval_samples": 8}
        after = before | {"accuracy_image": 0.6, "acc_k_image": after_k, "eval_rows": 400}
        return {"before": before, "after": after, "records": [{"step": 1, "seconds": 0.1, "eta": 1.0}]}

    arm = arm_summary([card(0.5), card(0.6), None], steps=1, metric="accuracy", window_count=1)
    assert arm["acc_k"] == 8 and arm["acc_k_after_image"]["mean"] == pytest.approx(0.55)
    assert arm["acc_k_after_image"]["n"] == 2 and arm["acc_k_before_image"]["stderr"] == 0.0
    plain = arm_summary([{**card(0.5), "after": {"accuracy_image": 0.6}}], steps=1, metric="accuracy", window_count=1)
    assert "acc_k" not in plain  # no samples drawn: no Acc@k
    arm["vs_standard_image"] = stat([0.0, 0.0])
    table = _rules_table({"rules": {"standard": arm}})
    assert "Acc@8 with image, after" in table and "0.550 ± 0.050" in table


def test_the_estimate_prices_each_worlds_answers():
    """A reasoning check costs more than the default world's same plan (longer chains, generated answers), and
    every toy world has a cost."""
    from vlod_core.experiments.plan import FULL, QUICK, WORLD_COST, estimate_seconds
    from vlod_core.toy.source import in_world
    from vlod_core.toy import WORLDS

    assert set(WORLD_COST) == set(WORLDS.values())
    for plan in (QUICK, FULL):
        in_reasoning = in_world(plan, "reasoning")
        reasoning = estimate_seconds(in_reasoning, 2)
        default = estimate_seconds(dataclasses.replace(in_reasoning, world="default"), 2)  # the same runs
        assert default["runs"] == reasoning["runs"] and reasoning["wall_seconds"] > 1.5 * default["wall_seconds"]


def test_a_worlds_own_settings_change_its_checks_only():
    """The reasoning world's checks are cut to their 10 and 45 minutes (`PLAN_IN_WORLD`) and cost less than
    QUICK and FULL would there; the default world's checks are QUICK and FULL."""
    from vlod_core.experiments.plan import FULL, PLAN_IN_WORLD, QUICK, estimate_seconds
    from vlod_core.toy.source import in_world, world_settings

    for plan in (QUICK, FULL):
        cut = in_world(plan, "reasoning")
        assert all(getattr(cut, name) == value for name, value in PLAN_IN_WORLD["reasoning"][plan.name].items())
        uncut = dataclasses.replace(plan, world="reasoning", **world_settings("reasoning"))
        assert len(cut.arms()) < len(uncut.arms())
        assert estimate_seconds(cut)["wall_seconds"] < 0.8 * estimate_seconds(uncut)["wall_seconds"]
        assert in_world(plan, "default") == plan
    assert in_world(QUICK, "reasoning").eval_examples < QUICK.eval_examples


@runs
def test_side_by_side_prints_the_shipped_worlds_claims_and_refuses_a_missing_report(tmp_path):
    """`experiments --side-by-side` runs nothing: the shipped reports of both worlds, one row per claim."""
    from vlod_core.experiments import load_results

    shipped = [REPO / "docs" / "experiments" / world for world in ("default", "reasoning")]
    result = run_cli(tmp_path, "experiments", "--side-by-side", *map(str, shipped))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "| claim | paper | default: verdict | default: ours | reasoning: verdict | reasoning: ours |"
    claims = load_results(shipped[0] / "results.json")["claims"]
    assert sum(line.startswith("| ") for line in lines[2:]) == len(claims)
    assert any(line.startswith("- reasoning world: plan ") for line in lines)
    assert not (tmp_path / "experiments").exists()  # nothing ran
    assert_one_line_error(run_cli(tmp_path, "experiments", "--side-by-side", str(tmp_path / "none")), "none")


def test_the_learning_rate_sweeps_own_rate_takes_the_geometry_runs_training():
    """The sweep's `standard` at the plan's rate and steps is the rules' `standard` run, which also measures the
    angles: one run per seed, not a second one without the geometry (3 of the quick check's 36 runs before)."""
    from vlod_core.experiments import plan_named
    from vlod_core.experiments.check import plan_tasks

    context = {"pair": "any", "data": "any"}
    for plan in (plan_named("quick"), plan_named("full")):
        assert (plan.lr, plan.steps) in plan.learning_rates  # the case this is about
        tasks, arms, _ = plan_tasks(plan, context)
        standard = arms[("rules", "standard")]
        assert arms[("learning_rate", f"standard lr = {plan.lr:g}")] == standard
        assert all(tasks[key].geometry_rows == plan.geometry_rows for key in standard)
        assert len(tasks) == len({(t.config, t.geometry_rows) for t in tasks.values()})
        assert sum(t.geometry_rows > 0 for t in tasks.values()) == plan.seeds


@runs
def test_measuring_the_geometry_does_not_change_what_a_run_trains(tmp_path, toy_pair, tiny_data):
    """Why the sweep may take the geometry run: the same configuration with and without the angles trains the
    same student (same losses every step, same evaluation after)."""
    from vlod_core.experiments.runner import Task, execute

    config = TINY.arms()[0].config(TINY, seed=1)
    runs_ = [execute(Task(config, rows, 2), f"k{rows}", toy_pair, tiny_data, tmp_path) for rows in (0, 8)]
    plain, measured = (run["card"] for run in runs_)
    assert runs_[1]["geometry_before"] and runs_[1]["geometry_after"] and not runs_[0]["geometry_before"]
    assert [r["loss"] for r in plain["records"]] == [r["loss"] for r in measured["records"]]
    assert plain["after"] == measured["after"]
