"""Every page of the app, run headless with Streamlit's AppTest on the small test pair (`vlod_home`).

Pages are reached from `app.py` with `switch_page`, as a user would (it also puts the repository root on
the import path, like `streamlit run app.py`). Each test clicks what a user clicks and checks what they
would see: four answers and a token strip, angle numbers, before/after answers after a short run, errors
as messages and never as exceptions. The cached, shared pair must come out of it all unchanged.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 240  # seconds per script run: the shared CPU is slow and noisy
PAGE_1 = "pages/1_Answers_and_tokens.py"
PAGE_2 = "pages/2_Gradient_angles.py"
PAGE_3 = "pages/3_Distill_and_compare.py"


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if page:
        at.switch_page(page)
    at.run()
    assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(elements) -> list[str]:
    return [e.value for e in elements]


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def button(at: AppTest, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} among {[b.label for b in at.button]}"
    return matches[0]


def number_input(at: AppTest, label_start: str):
    matches = [n for n in at.number_input if n.label.startswith(label_start)]
    assert matches, f"no number input {label_start!r}"
    return matches[0]


def png_bytes(example) -> bytes:
    buffer = io.BytesIO()
    example.image().save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def shared_student(vlod_home):
    """The cached pair's student and a copy of its weights, to check nothing in the app changed it."""
    from vlod_app.state import cached_pair
    from vlod_core.pair import PairSpec

    student = cached_pair(PairSpec()).student
    before = {k: v.detach().clone() for k, v in student.state_dict().items()}
    yield student
    after = student.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the shared student was modified"
    assert all(p.grad is None for p in student.parameters()), "the shared student holds gradients"


# ------------------------------------------------------------------------------------------------ home


def test_home_shows_the_pair_and_the_chooser(vlod_home):
    at = open_page()
    assert any("toy pair (student ← teacher)" in s and "vocabulary" in s for s in texts(at.success))
    assert at.radio(key="pair_kind").options[:2] == ["Toy pair (built in)", "Toy pair with the blind student"]
    assert button(at, "Check and use this pair")
    assert plotly_specs(at), "the home page's diagram is missing"


def test_home_refuses_a_missing_folder_and_keeps_the_pair(vlod_home, tmp_path):
    at = open_page()
    at.radio(key="pair_kind").set_value("Local folders").run()
    student, teacher = (t for t in at.text_input if t.label in ("Student", "Teacher"))
    student.set_value(str(tmp_path / "no-student"))
    teacher.set_value(str(tmp_path / "no-teacher"))
    button(at, "Check and use this pair").click().run()
    assert_clean(at)
    assert any("no such folder" in e for e in texts(at.error)), texts(at.error)
    assert "vlod_pair_spec" not in at.session_state


def test_home_trust_remote_code_is_off_by_default(vlod_home):
    at = open_page()
    at.radio(key="pair_kind").set_value("Hub ids").run()
    trust = [c for c in at.checkbox if c.label == "Trust remote code"]
    assert trust and trust[0].value is False


def hub_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_home_hub_preset_fails_fast_when_offline(vlod_home):
    if hub_reachable():
        pytest.skip("the Hub is reachable: choosing a preset would download gigabytes")
    at = open_page()
    at.radio(key="pair_kind").set_value("Preset from the Hub").run()
    started = time.perf_counter()
    button(at, "Check and use this pair").click().run()
    assert time.perf_counter() - started < 60
    assert_clean(at)
    assert any("unreachable" in e for e in texts(at.error)), texts(at.error)
    assert "vlod_pair_spec" not in at.session_state


def test_home_switches_to_the_blind_student(vlod_home):
    at = open_page()
    at.radio(key="pair_kind").set_value("Toy pair with the blind student").run()
    button(at, "Check and use this pair").click().run()
    assert_clean(at)
    assert at.session_state["vlod_pair_spec"].student_variant == "student_blind"
    assert any("blind student" in s for s in texts(at.success))


# ------------------------------------------------------------------------------------------------ page 1


def ask(at: AppTest) -> AppTest:
    button(at, "Ask").click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    return at


def test_answers_page_shows_four_answers_and_a_token_strip(vlod_home, shared_student):
    at = ask(open_page(PAGE_1))
    captions = texts(at.caption)
    for title in ("Teacher, with the image", "Teacher, without it", "Student, with the image", "Student, without it"):
        assert title in captions
    table = at.dataframe[0].value
    assert len(table) >= 1 and {"std_kl", "lang_kl", "vis_kl", "vds", "logratio"} <= set(table.columns)
    # the exact additive split, as shown
    assert ((table["logratio"] - table["logratio_lang"] - table["logratio_vis"]).abs() < 1e-4).all()
    strip = plotly_specs(at)[0]["data"][0]
    assert strip["type"] == "heatmap" and strip["text"][0] == list(table["token"])
    assert "most likely next tokens" in strip["hovertext"][0][0]  # the top-k under the four distributions
    assert any("do not add up" in i for i in texts(at.info))


def test_answers_page_scores_a_typed_answer_on_an_uploaded_png(vlod_home, examples):
    at = open_page(PAGE_1)
    at.radio(key="image_source").set_value("Upload an image").run()
    at.file_uploader(key="image_upload").upload("shapes.png", png_bytes(examples[0]), "image/png")
    at.run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    at.radio[1].set_value("An answer I type")  # "Answer to decompose"
    [answer] = [t for t in at.text_input if t.label.startswith("Answer to score")]
    answer.set_value("it is red")
    ask(at)
    assert any("your answer: **it is red**" in m for m in texts(at.markdown))
    assert list(at.dataframe[0].value["token"])[:3] == ["it", "is", "red"]
    assert at.session_state["vlod_probe"].label == "shapes.png"


def test_answers_page_reports_a_bad_upload_as_a_message(vlod_home):
    at = open_page(PAGE_1)
    at.radio(key="image_source").set_value("Upload an image").run()
    at.file_uploader(key="image_upload").upload("broken.png", b"this is not a png", "image/png")
    at.run()
    assert_clean(at)
    assert any("broken.png" in e and "not an image" in e for e in texts(at.error)), texts(at.error)


def test_answers_page_draws_an_occlusion_map(vlod_home):
    at = ask(open_page(PAGE_1))
    charts = len(at.get("plotly_chart"))
    at.toggle(key="occlusion_on").set_value(True).run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) == charts + 1
    occlusion = plotly_specs(at)[-1]["data"][1]
    z = occlusion["z"]  # plotly writes numpy arrays as typed arrays: {"dtype", "bdata", "shape"}
    shape = z["shape"] if isinstance(z, dict) else f"{len(z)}, {len(z[0])}"
    assert occlusion["type"] == "heatmap" and shape == "4, 4"
    assert any("4×4 grid" in m for m in texts(at.markdown))


# ------------------------------------------------------------------------------------------------ page 2


def test_gradient_page_shows_angles_without_touching_the_student(vlod_home, shared_student):
    at = open_page(PAGE_2)
    [batch] = [s for s in at.slider if s.label == "Toy samples in the batch"]
    batch.set_value(8)
    button(at, "Measure the angles").click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"gStd ∠ gLang", "gStd ∠ gVis", "gLang ∠ gVis"}
    for value in metrics.values():
        assert value.endswith("°") and 0 <= float(value[:-1]) <= 180
    kinds = [spec["data"][0]["type"] for spec in plotly_specs(at)]
    assert kinds.count("heatmap") == 1 and len(kinds) >= 4  # plane, groups (angles, norms), bins
    geometry = at.session_state["vlod_geometry"]["geometry"]
    assert len(geometry["bins"]) == 10 and all(not math.isnan(b["angles"]["std-vis"]) for b in geometry["bins"])


# ------------------------------------------------------------------------------------------------ page 3


@pytest.fixture
def jobs():
    """Apps whose background training job must be stopped and joined when the test ends, pass or fail."""
    apps: list[AppTest] = []
    yield apps
    for at in apps:
        job = at.session_state.get("vlod_distill_job")
        if job is not None:
            job.stop()
            job.join(120)


def start_run(at: AppTest, steps: int) -> AppTest:
    number_input(at, "Steps").set_value(steps)
    number_input(at, "Batch").set_value(8)
    number_input(at, "Held-out accuracy").set_value(0)
    button(at, "Run").click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    return at


def wait_for_results(at: AppTest, limit: float = 600) -> AppTest:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if "Results" in texts(at.subheader):
            return at
        time.sleep(1)
        at.run()
        assert_clean(at)
    raise AssertionError(f"no results after {limit} s")


def test_distill_page_runs_three_steps_and_shows_before_and_after(vlod_home, shared_student, jobs):
    at = open_page(PAGE_3)
    jobs.append(at)
    start_run(at, steps=3)
    assert any(p.proto.text.startswith("standard") for p in at.get("progress")), "no live progress"
    wait_for_results(at)
    summary = at.dataframe[0].value
    assert list(summary["rule"]) == ["standard", "vgs"] and list(summary["steps"]) == [3, 3]
    assert "Your image, before → after" in " ".join(texts(at.markdown))
    assert any(m.startswith("with the image:") and "→" in m for m in texts(at.markdown))
    assert {"question", "right answer", "before (image)", "standard (image)", "vgs (image)"} <= set(
        at.dataframe[1].value.columns
    )
    labels = [d.label for d in at.get("download_button")]
    assert "Run card (vgs, JSON)" in labels and "Distilled student (standard, zip)" in labels


def test_distill_page_can_be_stopped(vlod_home, shared_student, jobs):
    at = open_page(PAGE_3)
    jobs.append(at)
    start_run(at, steps=2000)
    at.button(key="stop_run").click().run()
    assert_clean(at)
    wait_for_results(at)
    assert any("stopped by the user" in w for w in texts(at.warning)), texts(at.warning)
    summary = at.dataframe[0].value
    assert list(summary["rule"]) == ["standard"] and summary["steps"][0] < 2000  # vgs never started


def test_distill_page_shows_an_uploaded_run_card_and_rejects_a_bad_one(vlod_home, toy_pair):
    from vlod_core.distill import DistillConfig, distill
    from vlod_core.toy.source import toy_data

    card = distill(toy_pair, DistillConfig(steps=1, batch=4, eval_examples=8, answer_examples=2), toy_data(8, 2)).card
    at = open_page(PAGE_3)
    at.file_uploader(key="card_upload").upload("bad.json", b'{"schema": "something else"}', "application/json")
    at.run()
    assert_clean(at)
    assert any("not a vlod run card" in e for e in texts(at.error)), texts(at.error)
    at.file_uploader(key="card_upload").clear()
    at.file_uploader(key="card_upload").upload("run.json", json.dumps(card.to_dict()).encode(), "application/json")
    at.run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    assert list(at.dataframe[0].value["rule"]) == ["standard"]
    assert "Run card (standard, JSON)" in [d.label for d in at.get("download_button")]
