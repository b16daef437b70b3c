"""The verdict in words and the run summaries it reads, on run cards made here (no model needed)."""

from __future__ import annotations

import math

import pytest

from vlod_core.run_summary import METRICS, headline, steps_to_gain, summarise
from vlod_core.verdict import verdict

ROWS = 400


def card(
    rule: str,
    before: float,
    after: float,
    *,
    lang=0.05,
    vis=0.40,
    no_image=0.5,
    curve=(),
    stopped=None,
    steps=300,
    angle=None,
    format_errors=None,
) -> dict:
    """A run card as `distill` writes it: accuracy before/after with binomial errors, records with the logged
    losses at step 1 (and evaluations at the steps of `curve`)."""
    records = [
        {
            "step": s,
            "seconds": 0.1 * s,
            "lang": lang if s == 1 else math.nan,
            "vis": vis if s == 1 else math.nan,
            "evaluation": None,
            "geometry": None,
        }
        for s in range(1, steps + 1)
    ]
    for step, value in curve:
        records[step - 1]["evaluation"] = {"accuracy_image": value}
    if angle is not None:
        records[0]["geometry"] = {"global": {"angles": {"std-vis": angle}}}

    def block(p: float, errors: float | None) -> dict:
        stderr = math.sqrt(p * (1 - p) / ROWS)
        parsed = {} if errors is None else {"format_errors_image": errors}
        return {
            "accuracy_image": p,
            "accuracy_no_image": no_image,
            "eval_rows": ROWS,
            "stderr": {"accuracy_image": stderr},
        } | parsed

    errors_before, errors_after = format_errors or (None, None)
    return {
        "config": {"steps": steps, "steering": {"rule": rule}},
        "before": block(before, errors_before),
        "after": block(after, errors_after),
        "records": records,
        "stopped": stopped,
        "seconds": 30.0,
    }


def test_a_rule_behind_standard_is_named_with_its_points_and_why():
    runs = {
        "standard": [card("standard", 0.72, 0.85), card("standard", 0.72, 0.86)],
        "vgs": [card("vgs", 0.72, 0.80), card("vgs", 0.72, 0.80)],
    }
    result = verdict(runs, geometry_angle=8.0)
    assert result.standings[0].position == "behind"
    assert result.line().startswith("verdict: vgs is behind standard by 5.5 ± ")
    why = result.text()
    assert "89% of the KL was visual" in why and "8° from the visual one" in why and "little to add" in why


def test_ahead_level_and_a_rule_that_never_ran():
    runs = {
        "standard": [card("standard", 0.50, 0.60, lang=0.4, vis=0.4)],
        "vgs": [card("vgs", 0.50, 0.70, lang=0.4, vis=0.4)],
        "lang_steer": [card("lang_steer", 0.50, 0.61, lang=0.4, vis=0.4)],
        "vgs_no_lp": [],
    }
    result = verdict(runs)
    positions = {s.rule: s.position for s in result.standings}
    assert positions == {"vgs": "ahead", "lang_steer": "level", "vgs_no_lp": "did not run"}
    line = result.line()
    assert "vgs is ahead of standard by 10.0 ±" in line and "lang_steer is level with standard (+1.0 ±" in line
    assert "vgs_no_lp did not run" in line
    assert "language and visual parts competed" in result.text() and "angle" not in result.text()


def test_chains_that_stopped_parsing_are_named_as_a_reason():
    """A reasoning run whose answers lost their final answer says so with the measured shares; where no run
    parses final answers, or none lost any, the clause is left out."""
    runs = {
        "standard": [card("standard", 0.46, 0.01, format_errors=(0.0, 0.97))],
        "vgs_anchored": [card("vgs_anchored", 0.46, 0.55, format_errors=(0.0, 0.0))],
    }
    why = verdict(runs).text()
    assert "no final answer (with the image), before → after training: standard 0% → 97%, vgs_anchored 0% → 0%" in why
    assert verdict(runs).standings[0].position == "ahead"
    intact = {rule: [card(rule, 0.46, 0.5, format_errors=(0.0, 0.0))] for rule in ("standard", "vgs")}
    unparsed = {rule: [card(rule, 0.72, 0.8)] for rule in ("standard", "vgs")}
    assert "final answer" not in verdict(intact).text() and "final answer" not in verdict(unparsed).text()


def test_a_rule_stopped_before_its_first_step_did_not_run():
    stopped = card("vgs", 0.5, 0.5, steps=0, stopped="stopped by the user after 0 steps")
    result = verdict({"standard": [card("standard", 0.5, 0.6)], "vgs": [stopped]})
    assert result.standings[0].position == "did not run" and "stopped by the user" in result.line()


def test_steps_to_five_points_stop_where_an_early_stop_ended_the_run():
    early = card("standard", 0.70, 0.76, steps=40, curve=[(20, 0.73)], stopped="the loss became nan at step 40")
    assert steps_to_gain(early, "accuracy") == 40  # the last step run, not the planned 300
    assert steps_to_gain(card("standard", 0.70, 0.74, curve=[(100, 0.76)]), "accuracy") == 100
    assert steps_to_gain(card("standard", 0.70, 0.72), "accuracy") is None
    summary = summarise(early)
    assert summary.steps_run == 40 and summary.steps_to_gain == 40 and summary.gain == pytest.approx(0.06)


def test_the_headline_metric_is_accuracy_where_references_exist_else_agreement():
    assert headline({"accuracy_image": 0.5}) == "accuracy"
    assert headline({"agreement_image": 0.5}, {"kl_image": 0.1}) == "agreement"
    assert all(metric.label for metric in METRICS.values()) and not METRICS["kl"].higher_is_better
