"""The app on the reasoning world's pair (headless, AppTest): choosing it on the home page and in a link, page 1's
chains (the wrapped token strip, parsed final answers, the scene builder's reasoning questions), page 2's samples
and page 3's data and answer settings. The pair is a small build under the test VLOD_HOME (`reasoning_home`)."""

from __future__ import annotations

import pytest
from test_app_pages import PAGE_1, PAGE_2, PAGE_3, ask, assert_clean, button, captions, open_page, texts
from test_app_pages import wait_for_results

from vlod_core.answers import final_answer
from vlod_core.figures.style import LINE_TOKENS
from vlod_core.pair import PairSpec
from vlod_core.toy import TOY_REASONING

pytestmark = pytest.mark.slow  # builds the reasoning pair and runs the pages in AppTest

REASONING = PairSpec(teacher=TOY_REASONING, student=TOY_REASONING)
LINK = {"pair": TOY_REASONING}
SCENE = "r1c1-circle-red,r2c2-square-blue"


def strip_in_order(at) -> list[str]:
    """The wrapped token strip's boxes in answer order (each box's position is its customdata)."""
    strip = next(spec for spec in _specs(at) if spec["data"] and "customdata" in spec["data"][0])
    boxes = sorted((p, text) for trace in strip["data"] for p, text in zip(trace["customdata"], trace["text"]))
    return [text for _, text in boxes]


def _specs(at) -> list[dict]:
    import json

    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_the_home_page_offers_the_reasoning_pair_and_links_carry_it(reasoning_home):
    at = open_page()
    assert "Toy reasoning pair (built in)" in at.radio(key="pair_kind").options
    at.radio(key="pair_kind").set_value("Toy reasoning pair (built in)").run()
    button(at, "Check and use this pair").click().run()
    assert_clean(at)
    assert at.session_state["vlod_pair_spec"] == REASONING
    assert any(s.startswith("**toy reasoning pair (student ← teacher)**") for s in texts(at.success)), texts(at.success)
    assert at.query_params["pair"] == TOY_REASONING  # the URL says which pair
    # the link opens the same pair in a new tab; a wrong name is refused, said, and the default pair kept
    linked = open_page(PAGE_1, LINK)
    assert linked.session_state["vlod_pair_spec"] == REASONING
    assert any("toy reasoning pair" in c for c in texts(linked.sidebar.caption))
    wrong = open_page(PAGE_1, {"pair": "toy-reasonin"})
    assert any("`pair=toy-reasonin`" in w and f"`{TOY_REASONING}`" in w for w in texts(wrong.warning))
    assert "vlod_pair_spec" not in wrong.session_state  # the default pair, as before the link
    assert any("toy pair (student ← teacher)" in c for c in texts(wrong.sidebar.caption))


def test_answers_page_with_the_reasoning_pair_shows_a_chain_and_its_final_answer(reasoning_home):
    from vlod_app.compute import toy_samples
    from vlod_core.toy.reasoning import KINDS

    at = open_page(PAGE_1, LINK)
    samples = toy_samples("reasoning")
    assert {ex.question_type for ex in samples} == set(KINDS)  # the reasoning world's samples and questions
    assert at.text_input(key="ask_question").value == samples[0].question
    ask(at)
    table = at.dataframe[0].value
    tokens = list(table["token"])
    # a whole chain, longer than the default world's 8-token limit: it wraps into lines
    assert tokens[0] == "<reason>" and "</reason>" in tokens and "\\boxed{" in tokens
    assert len(tokens) > LINE_TOKENS and strip_in_order(at) == tokens
    assert any("wraps" in c and "orange frame" in c for c in captions(at))
    # each card's chain with its parsed final answer; the reference's final answer beside them
    wanted = final_answer(samples[0].answer, "boxed")
    assert any(f"Right final answer for this toy sample: **{wanted}**" in c for c in captions(at)), captions(at)
    finals = [m for m in texts(at.markdown) if m.startswith("final answer:")]
    assert len(finals) == 4 and all(("✓" in m) != ("✗" in m) for m in finals if "none" not in m)


def test_the_scene_builder_asks_the_reasoning_worlds_questions(reasoning_home):
    at = open_page(PAGE_1, LINK | {"scene": SCENE})
    picker = at.selectbox(key="scene_question")
    assert "how many shapes are not red ?" in picker.options
    assert "is the red shape left of the blue shape ?" in picker.options
    picker.set_value("how many shapes are not red ?").run()
    assert_clean(at)
    assert at.text_input(key="ask_question").value == "how many shapes are not red ?"
    assert at.selectbox(key="scene_question").value is None  # a menu: it empties once its question is taken
    ask(at)
    # two shapes, one of them red: the teacher's reference chain ends in \boxed{ one }
    assert any("Right final answer for this scene: **one**" in c for c in captions(at)), captions(at)


def test_gradient_angles_on_the_reasoning_pair_answer_whole_chains(reasoning_home):
    at = open_page(PAGE_2, LINK | {"samples": "3", "include": "0", "bins": "2", "seed": "1"})
    assert not at.error, texts(at.error)
    bins = at.dataframe[0].value
    assert bins["tokens"].sum() >= 3 * 20  # three chains of 20 tokens or more, not 6-token answers


def test_distill_page_trains_the_reasoning_pair_on_its_own_world(reasoning_home, jobs, monkeypatch):  # noqa: F811
    from vlod_app import jobs as job_module

    # fewer held-out rows than the world's defaults, so the test's run is short (a setting the page passes on)
    small = dict(job_module.WORLD_APP_DEFAULTS["reasoning"]) | {"eval_examples": 8}
    monkeypatch.setattr(job_module, "WORLD_APP_DEFAULTS", {"default": {}, "reasoning": small})
    at = open_page(PAGE_3, LINK)
    assert at.number_input(key="run_steps").value == small["steps"]  # the world's defaults in the form
    assert any("`boxed`" in c and "final answer" in c for c in captions(at)), captions(at)
    at.multiselect(key="run_rules").set_value(["standard"])
    at.number_input(key="run_steps").set_value(2)
    at.number_input(key="run_batch").set_value(4)
    at.number_input(key="run_eval_every").set_value(0)
    button(at, "Run").click().run()
    assert_clean(at)
    wait_for_results(at)
    card = jobs.get(at.query_params["run"]).cards()["standard"]
    assert card.data["world"] == "reasoning" and card.data["answer_pattern"] == "boxed"
    assert card.config["eval_examples"] == 8  # the world's default rows, passed on with the form's settings
    assert card.config["answer_pattern"] == "boxed" and card.config["sampling"]["max_new_tokens"] >= 60
    held_out = [d.value for d in at.dataframe if "right answer" in d.value.columns][0]
    assert all("\\boxed{" in answer for answer in held_out["right answer"])  # the reasoning world's chains
