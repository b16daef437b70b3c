"""The *Paper check* page, headless (AppTest): "no report yet" and the start button on an empty VLOD_HOME, the
claims table and figures of a tiny experiments folder, and a check run as a job in a worker process, watched
through its `check=` link until its report shows.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest
from test_app_pages import PAGE_3, assert_clean, button, open_page, texts
from test_experiments import TINY

from vlod_core.experiments import run_experiments

pytestmark = pytest.mark.slow  # runs a tiny paper check

PAGE_4 = "pages/4_Paper_check.py"


def test_no_report_yet_offers_the_quick_check(experiments_home, tmp_path, monkeypatch):
    from vlod_app import paper

    monkeypatch.setattr(paper, "SHIPPED", tmp_path / "nothing shipped")  # else the shipped report is shown
    at = open_page(PAGE_4)
    assert any("No report yet" in i and "experiments --quick" in i for i in texts(at.info)), texts(at.info)
    start = button(at, "Run the quick check")
    assert not start.disabled
    assert not at.dataframe and not at.get("plotly_chart")


def test_the_latest_report_shows_its_claims_and_figures(experiments_home, toy_pair):
    from vlod_core.pair import PairSpec
    from vlod_core.toy.source import toy_data

    result = run_experiments(
        TINY, PairSpec(), toy_data(TINY.eval_examples, show_rows=0), experiments_home / "tiny", workers=0, pair=toy_pair
    )
    at = open_page(PAGE_4)
    assert not at.error, texts(at.error)
    claims = result.results["claims"]
    table = at.dataframe[0].value
    measured = [c for c in claims if c["verdict"] != "not measured"]
    vgs_first = (  # the VGS claims first, those the plan has no run for last
        [c for c in measured if c["id"].startswith("vgs_beats")]
        + [c for c in measured if not c["id"].startswith("vgs_beats")]
        + [c for c in claims if c["verdict"] == "not measured"]
    )
    assert list(table.columns[:2]) == ["verdict", "claim"]  # the verdict in view however long the claim
    assert list(table["claim"]) == [c["claim"] for c in vgs_first]
    assert list(table["verdict"]) == [c["verdict"] for c in vgs_first]
    for row, claim in zip(table["ours (mean ± SE over seeds)"], vgs_first):
        assert row == "n/a" if claim["measured"] is None else row.startswith(f"{claim['measured']:.2f}")
    agree = sum(c["verdict"] == "agrees" for c in claims)
    assert any(s.startswith(f"Claims: {agree} agree, ") for s in texts(at.subheader)), texts(at.subheader)
    assert any("plan **tiny**" in c and "run on this server" in c for c in texts(at.caption))
    assert any("What a verdict means." in m and "Not measured" in m for m in texts(at.markdown))
    from vlod_app.paper import SECTIONS

    assert len(at.get("plotly_chart")) == len(SECTIONS)  # every figure of the report, Fig. 4's dynamics too
    labels = [d.label for d in at.get("download_button")]
    assert "report.html" in labels and "results.json" in labels


def test_each_world_shows_its_own_report_and_the_other_worlds_verdicts_beside_it(
    experiments_home, toy_pair, tmp_path, monkeypatch
):
    """Issue 19: a reasoning report does not stand in for the default world's; each world's page shows its own
    claims and, beside them, the other world's verdicts; `world=` in a link picks the world."""
    from vlod_app import paper
    from vlod_core.pair import PairSpec
    from vlod_core.toy.source import toy_data

    monkeypatch.setattr(paper, "SHIPPED", tmp_path / "nothing shipped")
    result = run_experiments(
        TINY, PairSpec(), toy_data(TINY.eval_examples, show_rows=0), experiments_home / "tiny", workers=0, pair=toy_pair
    )
    reasoning = json.loads(json.dumps(result.results)) | {"world": "reasoning"}
    reasoning["plan"]["world"] = "reasoning"
    reasoning["claims"][0]["verdict"] = "agrees" if reasoning["claims"][0]["verdict"] != "agrees" else "disagrees"
    (experiments_home / "reasoning-tiny").mkdir()
    (experiments_home / "reasoning-tiny" / "results.json").write_text(json.dumps(reasoning))  # the newest report

    at = open_page(PAGE_4)
    assert_clean(at)
    assert at.get("segmented_control")[0].value == "default"
    claims, worlds = at.dataframe[0].value, at.dataframe[1].value
    assert list(claims["verdict"]) == list(paper.claims_frame(result.results)["verdict"])  # not the reasoning one
    first = worlds[worlds["claim"] == result.results["claims"][0]["claim"]].iloc[0]
    assert (first["default"], first["reasoning"]) == (result.results["claims"][0]["verdict"], reasoning["claims"][0]["verdict"])

    linked = open_page(PAGE_4, {"world": "reasoning"})
    assert_clean(linked)
    assert linked.get("segmented_control")[0].value == "reasoning"
    assert list(linked.dataframe[0].value["verdict"]) == list(paper.claims_frame(reasoning)["verdict"])
    assert "--world reasoning" in button(linked, "Run the quick check").help
    assert linked.query_params["world"] == "reasoning"
    bad = open_page(PAGE_4, {"world": "mars"})
    assert any("`world=mars` in the link was ignored" in w for w in texts(bad.warning))


def test_a_check_runs_as_a_job_and_its_link_shows_progress_then_the_report(experiments_home, jobs):
    from vlod_core.pair import PairSpec

    settings = {"plan": TINY.to_dict(), "workers": 0, "out": str(experiments_home / "tiny")}
    job = jobs.submit_experiments(PairSpec(), settings)
    assert jobs.submit_experiments(PairSpec(), {"plan": "quick", "workers": 2, "out": "x"}) is job  # one at a time
    at = open_page(PAGE_4, {"check": job.id})
    if not job.done:  # a worker process loads the pair first: it is still going on a machine of any speed
        assert button(at, "Run the quick check").disabled
        assert any(p.proto.text.startswith(f"Check `{job.id}`") for p in at.get("progress")), "no live progress"
    deadline = time.monotonic() + 600
    while not job.done and time.monotonic() < deadline:
        time.sleep(1)
    assert job.done and job.error is None and not job.stopped, job.error
    assert job.snapshot()["done"] == job.snapshot()["total"] > 0
    distill_page = open_page(PAGE_3, {"run": job.id})  # a check's id is not a run: a warning, not a crash
    assert_clean(distill_page)
    assert any(f"`{job.id}` is not a distillation run" in w for w in texts(distill_page.warning))
    at.run()
    assert_clean(at)
    assert at.query_params["check"] == job.id
    assert any("plan **tiny**" in c for c in texts(at.caption)) and at.dataframe
    assert not button(at, "Run the quick check").disabled


def test_a_fresh_install_shows_the_shipped_report_and_a_quick_one_says_why_it_differs(
    experiments_home, toy_pair, tmp_path, monkeypatch
):
    """Issue 21: on a fresh install (no local report) the page shows the report shipped under docs/experiments,
    saying which (date, machine, command); a claim its plan has no run for reads "not measured", apart from the
    inconclusive. Once a local quick report exists it is shown, each verdict beside the shipped full plan's and,
    where they differ, why (the plans' steps)."""
    from vlod_app import paper
    from vlod_core.pair import PairSpec
    from vlod_core.toy.source import toy_data

    result = run_experiments(
        TINY, PairSpec(), toy_data(TINY.eval_examples, show_rows=0), tmp_path / "tiny", workers=0, pair=toy_pair,
        command="python -m vlod_core experiments --tiny",
    )  # fmt: skip
    shipped = tmp_path / "shipped" / paper.WORLD
    shutil.copytree(result.out_dir, shipped)
    full = json.loads((shipped / "results.json").read_text())
    full["plan"] |= {"name": "full", "steps": 300}
    flipped = next(c for c in full["claims"] if c["id"].startswith("vgs_beats") and c["measured"] is not None)
    flipped["verdict"] = "disagrees" if flipped["verdict"] != "disagrees" else "agrees"
    (shipped / "results.json").write_text(json.dumps(full))
    monkeypatch.setattr(paper, "SHIPPED", tmp_path / "shipped")

    at = open_page(PAGE_4)  # no local report: the shipped one
    assert_clean(at)
    shown = [i for i in texts(at.info) if "shipped with vlod" in i]
    assert shown and "python -m vlod_core experiments --tiny" in shown[0] and "CPUs" in shown[0], texts(at.info)
    assert full["created"][:10] in shown[0]
    table = at.dataframe[0].value
    assert table["claim"].iloc[0] == flipped["claim"] and table["verdict"].iloc[0] == flipped["verdict"]
    missing = [c for c in full["claims"] if c["measured"] is None and c["note"] == "not measured in this plan"]
    assert missing, "TINY has one γ: the other γ claims have no run"
    assert (table["verdict"] == "not measured").sum() == len(missing)
    inconclusive = sum(c["verdict"] == "inconclusive" for c in full["claims"] if c not in missing)
    assert any(f"{inconclusive} inconclusive, {len(missing)} not measured" in s for s in texts(at.subheader))
    assert not button(at, "Run the quick check").disabled

    local = experiments_home / "tiny"
    shutil.copytree(result.out_dir, local)  # a check run here: it replaces the shipped report
    at = open_page(PAGE_4)
    assert_clean(at)
    table = at.dataframe[0].value
    assert not any("shipped with vlod" in i for i in texts(at.info))
    assert list(table["full plan"])[0] == flipped["verdict"] != table["verdict"].iloc[0]
    assert table["why they differ"].iloc[0] == "3 steps against 300"
    assert (table["why they differ"].iloc[1:] == "").all()
