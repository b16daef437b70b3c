"""Every page of the app, run headless with Streamlit's AppTest on the small test pair (`vlod_home`).

Pages are reached from `app.py` with `switch_page`, as a user would (it also puts the repository root on
the import path, like `streamlit run app.py`). Each test clicks what a user clicks and checks what they
would see: four answers and a token strip, angle numbers, before/after answers after a short run, errors
as messages and never as exceptions. The cached, shared pair must come out of it all unchanged. A new
`AppTest` on the same process is a new browser tab on the same server (the caches and the job registry are
shared), which is how a reload and a shared link are tested; `query_params` set before its first run is the
link it opened. Tests named `test_bug_N_...` are issue 12's bugs: each failed on the code before the fix.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.slow  # runs every page in AppTest, with worker processes

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 240  # seconds per script run: the shared CPU is slow and noisy
PAGE_1 = "pages/1_Answers_and_tokens.py"
PAGE_2 = "pages/2_Gradient_angles.py"
PAGE_3 = "pages/3_Distill_and_compare.py"


def open_page(page: str | None = None, link: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if page:
        at.switch_page(page)
    for key, value in (link or {}).items():
        at.query_params[key] = value
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


def png_bytes(example_or_image) -> bytes:
    image = example_or_image if isinstance(example_or_image, Image.Image) else example_or_image.image()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def captions(at: AppTest) -> list[str]:
    return texts(at.caption)


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


def test_home_draws_the_glossary_and_the_first_tour_step(vlod_home):
    at = open_page()
    glossary = [e for e in at.expander if e.label.startswith("Glossary")]
    assert glossary, "no glossary in the sidebar"
    words = " ".join(texts(glossary[0].markdown))
    for term in ("ℓStd", "ℓLang", "ℓVis", "VDS", "log-ratio", "PMI", "η", "γ", "λ", "nats"):
        assert f"**{term}**" in words
    assert any("Guided tour, step 1 of 5" in m for m in texts(at.markdown))
    tour = [e for e in at.expander if e.label.startswith("Guided tour")]  # issue 21: it folds out of the way
    assert len(tour) == 1 and tour[0].proto.expanded
    # skipping is remembered for this session at once, and for the browser by a cookie written in the page
    at.button(key="tour_skip").click().run()
    assert_clean(at)
    assert not any("Guided tour" in m for m in texts(at.markdown))
    assert any("vlod_tour=done" in h.proto.body and "max-age" in h.proto.body for h in at.get("html"))
    assert button(at, "Take the guided tour")


# ------------------------------------------------------------------------------------------------ page 1


def ask(at: AppTest) -> AppTest:
    button(at, "Ask").click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    return at


def strip_tokens(at: AppTest) -> list[str]:
    """The token strip's boxes in answer order (two bar traces: tokens with a split, and without)."""
    strip = plotly_specs(at)[0]["data"]
    assert {trace["type"] for trace in strip} == {"bar"}
    boxes = sorted((x, text) for trace in strip for x, text in zip(trace.get("x", []), trace.get("text", [])))
    return [text for _, text in boxes]


def test_answers_page_shows_four_greedy_answers_and_a_token_strip(vlod_home, shared_student):
    at = ask(open_page(PAGE_1))
    for title in ("Teacher, with the image", "Teacher, without it", "Student, with the image", "Student, without it"):
        assert title in captions(at)
    assert any(c.startswith("**Greedy answers**") for c in captions(at))
    table = at.dataframe[0].value
    assert len(table) >= 1 and {"std_kl", "lang_kl", "vis_kl", "vds", "logratio", "reading"} <= set(table.columns)
    # the exact additive split, as shown, and its sign said in words
    assert ((table["logratio"] - table["logratio_lang"] - table["logratio_vis"]).abs() < 1e-4).all()
    for value, words in zip(table["logratio"], table["reading"]):
        assert ("more sure" in words) == (value > 0.05) and ("less sure" in words) == (value < -0.05)
    assert strip_tokens(at) == list(table["token"])
    assert "most likely next tokens" in plotly_specs(at)[0]["data"][0]["hovertext"][0]
    assert any("do not add up" in i for i in texts(at.info))
    # the greedy answer is decomposed by default: the same words as the student's card with the image
    greedy = [m for m in texts(at.markdown) if m.startswith("Token by token, the student's greedy answer")]
    assert greedy, texts(at.markdown)


def test_answers_page_decomposes_a_sample_at_a_chosen_temperature(vlod_home):
    at = open_page(PAGE_1)
    at.radio(key="ask_mode").set_value("A sample from the student")
    at.number_input(key="ask_temperature").set_value(1.5)
    at.number_input(key="ask_seed").set_value(3)
    ask(at)
    assert any("a sample from the student (temperature 1.5, seed 3)" in m for m in texts(at.markdown))
    assert at.query_params["temperature"] == "1.5" and at.query_params["seed"] == "3"


def test_answers_page_scores_a_typed_answer_on_an_uploaded_png(vlod_home, examples):
    at = open_page(PAGE_1)
    at.radio(key="image_source").set_value("Upload an image").run()
    at.file_uploader(key="image_upload").upload("shapes.png", png_bytes(examples[0]), "image/png")
    at.run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    at.radio(key="ask_mode").set_value("An answer I type")
    at.text_input(key="ask_answer").set_value("it is red")
    ask(at)
    assert any("your answer: **it is red**" in m for m in texts(at.markdown))
    assert list(at.dataframe[0].value["token"])[:3] == ["it", "is", "red"]
    assert at.session_state["vlod_probe"].label == "shapes.png"
    assert at.query_params["image"] == "upload" and "sample" not in at.query_params


def test_answers_page_reports_a_bad_upload_as_a_message(vlod_home):
    at = open_page(PAGE_1)
    at.radio(key="image_source").set_value("Upload an image").run()
    at.file_uploader(key="image_upload").upload("broken.png", b"this is not a png", "image/png")
    at.run()
    assert_clean(at)
    assert any("broken.png" in e and "not an image" in e for e in texts(at.error)), texts(at.error)
    # issue 21: said in the main column too, where the eye is (it was only in the sidebar, the main one blank)
    assert any("broken.png" in e and "not an image" in e for e in texts(at.main.error)), texts(at.main.error)


def test_a_long_question_is_cut_with_a_note_not_silently(vlod_home):
    """Issue 21, item 7: a 5 000-character question was cut to 500 by the browser (the widget's max_chars),
    with no note; the question's own check cuts it and says so."""
    at = open_page(PAGE_1)
    assert not at.text_input(key="ask_question").max_chars  # 0: no limit in the browser
    at.text_input(key="ask_question").set_value("what color is the circle ? " * 200)
    ask(at)
    assert any("question truncated from 5,399 to 500 characters" in i for i in texts(at.info)), texts(at.info)


def test_answers_page_draws_an_occlusion_map_beside_the_image(vlod_home):
    at = ask(open_page(PAGE_1))
    charts = len(at.get("plotly_chart"))
    at.toggle(key="occlusion_on").set_value(True).run()
    assert_clean(at)
    assert len(at.get("plotly_chart")) == charts + 1
    image, heat = plotly_specs(at)[-1]["data"][:2]
    z = heat["z"]  # plotly writes numpy arrays as typed arrays: {"dtype", "bdata", "shape"}
    shape = z["shape"] if isinstance(z, dict) else f"{len(z)}, {len(z[0])}"
    assert image["type"] == "image" and heat["type"] == "heatmap" and shape == "4, 4"
    assert image.get("xaxis", "x") != heat.get("xaxis", "x"), "the map must sit beside the image, not over it"
    assert any("4×4 grid" in m and "background" in m for m in texts(at.markdown))
    assert at.query_params["token"] == str(at.selectbox(key="occlusion_token").value + 1)


def test_a_shared_answers_link_reopens_the_same_view(vlod_home, toy_pair):
    from vlod_app.compute import toy_samples

    question = toy_samples()[2].question
    link = {"sample": "3", "question": question, "seed": "5", "ablation": "blank", "temperature": "0.7"}
    at = open_page(PAGE_1, link)
    assert not at.error and not at.warning, (texts(at.error), texts(at.warning))
    assert f"“{question}”" in texts(at.subheader)
    assert at.selectbox(key="toy_sample").value == 3 and at.selectbox(key="ask_ablation").value == "blank"
    assert at.number_input(key="ask_seed").value == 5 and at.number_input(key="ask_temperature").value == 0.7
    assert any("temperature 0.7, seed 5" in m and "*blank*" in m for m in texts(at.markdown))
    assert {k: at.query_params[k] for k in link} == link  # and the URL still says so
    # the link's "copy link" control holds the same parameters
    [code] = [c.value for c in at.sidebar.get("code")]
    assert "sample=3" in code and "seed=5" in code and "ablation=blank" in code
    # a bad value is ignored with a warning, never an exception
    at = open_page(PAGE_1, {"sample": "99", "question": question, "seed": "x"})
    assert any("sample=99" in w for w in texts(at.warning)) and any("seed=x" in w for w in texts(at.warning))


def test_bug_5_the_sidebar_shows_the_question_just_asked(vlod_home):
    at = ask(open_page(PAGE_1))
    at.text_input(key="ask_question").set_value("what shape is red ?")
    ask(at)
    [image] = at.sidebar.get("image")
    assert image.proto.imgs[0].caption.endswith(": what shape is red ?")


def test_bug_6_a_scaled_down_upload_gets_a_note(vlod_home):
    at = open_page(PAGE_1)
    at.radio(key="image_source").set_value("Upload an image").run()
    photo = Image.effect_noise((2000, 1500), 40).convert("RGB")
    at.file_uploader(key="image_upload").upload("photo.png", png_bytes(photo), "image/png")
    at.run()
    assert_clean(at)
    assert any("photo.png: scaled down from 2000x1500 to 1024x768" in i for i in texts(at.info)), texts(at.info)


def test_bug_7_an_upload_over_the_limit_gets_a_readable_message(vlod_home):
    import tomllib

    from vlod_core.images import MAX_UPLOAD_BYTES
    from vlod_core.results import MAX_CARD_BYTES

    # Streamlit refuses files over server.maxUploadSize in the browser, with no message the page can show;
    # its limit sits above vlod's own, so vlod's check runs and says what happened.
    config = tomllib.loads((APP.parent / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 > max(MAX_UPLOAD_BYTES, MAX_CARD_BYTES)
    at = open_page(PAGE_1)
    at.radio(key="image_source").set_value("Upload an image").run()
    assert "At most 10 MiB" in at.file_uploader(key="image_upload").label  # said before the upload
    at.file_uploader(key="image_upload").upload("huge.png", b"\x89PNG" + bytes(11 * 2**20), "image/png")
    at.run()
    assert_clean(at)
    assert any("huge.png" in e and "11.0 MiB; the limit is 10 MiB" in e for e in texts(at.error)), texts(at.error)


def test_bug_8_a_failed_ask_leaves_no_stale_result(vlod_home):
    at = ask(open_page(PAGE_1))
    assert "Teacher, with the image" in captions(at)
    at.radio(key="ask_mode").set_value("An answer I type")
    at.text_input(key="ask_answer").set_value("   ")
    button(at, "Ask").click().run()
    assert_clean(at)
    assert any("Type an answer" in e for e in texts(at.error))
    assert not at.get("plotly_chart") and not at.dataframe, "the previous result is still on screen"
    assert "Teacher, with the image" not in captions(at)
    assert "question" not in at.query_params


# ------------------------------------------------------------------------------------------------ page 2


def test_gradient_page_shows_angles_without_touching_the_student(vlod_home, shared_student):
    at = open_page(PAGE_2)
    at.slider(key="angles_samples").set_value(8)
    button(at, "Measure the angles").click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"gStd ∠ gLang", "gStd ∠ gVis", "gLang ∠ gVis"}
    for value in metrics.values():
        assert value.endswith("°") and 0 <= float(value[:-1]) <= 180
    kinds = [spec["data"][0]["type"] for spec in plotly_specs(at)]
    assert kinds.count("heatmap") == 1 and len(kinds) >= 4  # plane, groups (angles, norms), bins
    geometry = at.session_state["vlod_measured"]
    assert geometry.samples == 8 and at.query_params["samples"] == "8"
    bins = at.dataframe[0].value
    assert list(bins["bin"]) == list(range(1, 6)) and (bins["tokens"] > 0).all()  # 5 bins by default
    assert (bins["VDS from"] <= bins["VDS to"]).all()
    ticks = plotly_specs(at)[-1]["layout"]["xaxis2"]["ticktext"]
    assert all(f"{n} tok" in tick for n, tick in zip(bins["tokens"], ticks))
    # with 9 short answers no bin reaches the threshold: the page says so
    assert any("too noisy to trust" in w for w in texts(at.warning))


def test_a_shared_angles_link_measures_the_same_batch(vlod_home):
    at = open_page(PAGE_2, {"samples": "4", "seed": "2", "bins": "0", "include": "0", "gamma": "1"})
    assert not at.error and not at.warning, (texts(at.error), texts(at.warning))
    assert at.slider(key="angles_samples").value == 4 and at.slider(key="angles_gamma").value == 1.0
    assert any(s.startswith("All parameters as one vector (4 examples)") for s in texts(at.subheader))


# ------------------------------------------------------------------------------------------------ page 3


def start_run(at: AppTest, steps: int) -> AppTest:
    at.number_input(key="run_steps").set_value(steps)
    at.number_input(key="run_batch").set_value(8)
    at.number_input(key="run_eval_every").set_value(0)
    button(at, "Run").click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    return at


def results_shown(at: AppTest) -> bool:
    return any(s.startswith("Results of run") for s in texts(at.subheader))


def wait_for_results(at: AppTest, limit: float = 600) -> AppTest:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if results_shown(at):
            return at
        time.sleep(1)
        at.run()
        assert_clean(at)
    raise AssertionError(f"no results after {limit} s")


def test_distill_page_runs_three_steps_and_shows_before_and_after(vlod_home, shared_student, jobs):
    at = start_run(open_page(PAGE_3), steps=3)
    assert any(p.proto.text.startswith("Run `") for p in at.get("progress")), "no live progress"
    wait_for_results(at)
    summary = at.dataframe[0].value
    assert list(summary["rule"]) == ["standard", "vgs"] and list(summary["steps"]) == [3, 3]
    assert all("±" in value for value in summary["with image, before"])  # accuracies with a standard error
    assert "Your image, before → after" in " ".join(texts(at.markdown))
    assert any(m.startswith("with the image:") and "→" in m for m in texts(at.markdown))
    metrics = at.dataframe[1].value  # every measure before and after, ± a standard error
    assert {
        "agreement with the teacher's greedy answer (exact)",
        "accuracy (exact match with the right answer)",
    } <= set(metrics["metric"])
    assert all("±" in value for value in metrics["with image, after"])
    held_out = at.dataframe[2].value
    assert {"image", "question", "right answer", "before (image)", "standard (image)", "vgs (image)"} <= set(
        held_out.columns
    )
    assert all(str(thumbnail).startswith("data:image/png;base64,") for thumbnail in held_out["image"])
    labels = [d.label for d in at.get("download_button")]
    assert "Run card (vgs, JSON)" in labels and "Distilled student (standard, zip)" in labels
    assert labels.count("CSV") >= 2 and "Export view" in labels
    # the trained students came back from the worker as safetensors folders
    job = jobs.get(at.query_params["run"])
    assert all((folder / "model.safetensors").is_file() for folder in job.students().values())


def test_bugs_2_3_4_a_run_survives_a_reload_and_stop_lists_what_never_ran(vlod_home, shared_student, jobs):
    at = start_run(open_page(PAGE_3), steps=2000)
    # bug 3: from the run that started it, Run is disabled and the form shows the job's settings
    assert button(at, "Run").disabled and at.number_input(key="run_steps").disabled
    run_id = at.query_params["run"]
    job = jobs.get(run_id)
    assert job is not None and job.settings["steps"] == 2000
    # bug 2: a reload (a new tab on the same server, with the URL) shows the same run, its progress and Stop
    reloaded = open_page(PAGE_3, {"run": run_id})
    deadline = time.monotonic() + 120
    while not job.runs["standard"].records and time.monotonic() < deadline:
        time.sleep(1)
    reloaded.run()
    assert any(p.proto.text.startswith(f"Run `{run_id}` — standard: step") for p in reloaded.get("progress"))
    assert reloaded.button(key="stop_run").label == "Stop"
    assert reloaded.number_input(key="run_steps").value == 2000 and button(reloaded, "Run").disabled
    reloaded.button(key="stop_run").click().run()
    assert_clean(reloaded)
    wait_for_results(reloaded)
    # bug 4: the rule that never started is listed as not run, in words and in the table
    assert any("standard" in w and "stopped by the user" in w for w in texts(reloaded.warning))
    assert any("vgs" in w and "not run" in w for w in texts(reloaded.warning)), texts(reloaded.warning)
    summary = reloaded.dataframe[0].value
    assert list(summary["rule"]) == ["standard", "vgs"] and list(summary["state"])[1] == "not run"
    assert 0 < summary["steps"][0] < 2000


def test_the_class_demo_is_offered_first_and_runs_fewer_steps_and_evaluations(vlod_home, jobs):
    """Issue 21: a demo run for a class, offered before the settings (fewer steps and held-out evaluations, on
    the form's rows, so its gain stands out of the rows' noise)."""
    from vlod_app.jobs import CLASS_DEMO, DEFAULT_SETTINGS, EVAL_EXAMPLES, distill_configs, seconds_estimate

    at = open_page(PAGE_3)
    demo = at.button(key="run_demo")
    assert demo.label == "Run the class demo" and not demo.disabled
    # the plan's measured costs and the job's start, rules side by side (the server's default)
    assert seconds_estimate(CLASS_DEMO, side_by_side=True) <= 45 < seconds_estimate(DEFAULT_SETTINGS, side_by_side=True)
    demo.click().run()
    assert_clean(at)
    job = jobs.get(at.query_params["run"])
    try:
        assert job.settings["steps"] == CLASS_DEMO["steps"] < DEFAULT_SETTINGS["steps"]
        assert job.settings["rules"] == ["standard", "vgs"]
        configs = distill_configs(job.settings)
        assert configs["standard"].eval_examples == EVAL_EXAMPLES  # the form's held-out rows, evaluated fewer times
        assert CLASS_DEMO["steps"] // CLASS_DEMO["eval_every"] < DEFAULT_SETTINGS["steps"] // DEFAULT_SETTINGS["eval_every"]
        assert at.number_input(key="run_steps").value == CLASS_DEMO["steps"]  # the form says what runs
        assert button(at, "Run").disabled
    finally:
        job.stop()


def test_a_shared_distill_link_fills_in_the_settings(vlod_home):
    at = open_page(PAGE_3, {"rules": "standard,lang_steer", "steps": "7", "lr": "0.0005", "gamma": "1.5"})
    assert not at.warning, texts(at.warning)
    assert at.multiselect(key="run_rules").value == ["standard", "lang_steer"]
    assert at.number_input(key="run_steps").value == 7 and at.number_input(key="run_gamma").value == 1.5
    at = open_page(PAGE_3, {"run": "no-such-run"})
    assert any("`no-such-run` is not a distillation run on this server" in w for w in texts(at.warning))


def test_distill_page_says_when_the_server_is_full(vlod_home, jobs, monkeypatch):
    monkeypatch.setattr(jobs, "max_queued", 0)
    monkeypatch.setattr(jobs, "max_running", 0)  # every place taken
    at = open_page(PAGE_3)
    button(at, "Run").click().run()
    assert_clean(at)
    assert any("this server is full" in e for e in texts(at.error)), texts(at.error)
    assert "run" not in at.query_params and not button(at, "Run").disabled


def choose_my_images(at: AppTest) -> AppTest:
    at.radio(key="train_on").set_value("My images").run()
    assert_clean(at)
    return at


TABLES = {  # a table of page 3 by columns only it has (AppTest does not expose a dataframe's key)
    "preview": {"used as", "teacher (image)", "right answer"},
    "answers": {"used as", "before (image)"},
    "metrics": {"metric", "with image, after"},
}


def frame(at: AppTest, name: str):
    matches = [d.value for d in at.dataframe if TABLES[name] <= set(d.value.columns)]
    if name == "preview":
        matches = [m for m in matches if "before (image)" not in m.columns]
    assert matches, f"no {name} table among {[list(d.value.columns) for d in at.dataframe]}"
    return matches[0]


def zipped(members: dict[str, bytes]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_my_images_says_what_the_toy_pair_knows_and_loads_the_example_set(vlod_home):
    at = choose_my_images(open_page(PAGE_3))
    assert any("64×64 scenes of coloured shapes" in i and "nonsense" in i for i in texts(at.info)), texts(at.info)
    at.button(key="mydata_examples").click().run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    preview = frame(at, "preview")
    lines = [json.loads(line) for line in (APP.parent / "examples/shapes/metadata.jsonl").read_text().splitlines()]
    assert list(preview["question"]) == [line["question"] for line in lines]
    assert list(preview["right answer"]) == [line["answer"] for line in lines]
    assert all(str(image).startswith("data:image/png;base64,") for image in preview["image"])
    held = (preview["used as"] == "held out").sum()
    assert held == round(0.2 * len(lines)) and set(preview["used as"]) == {"train", "held out"}
    assert any(f"Split: {held} of {len(lines)} rows held out" in c for c in captions(at)), captions(at)
    assert preview["teacher (image)"].str.len().gt(0).all()  # the teacher's greedy answers
    # issue 21: the toy world's 300 steps would go over each of these rows hundreds of times; the steps are fitted
    from vlod_app.jobs import MAX_PASSES

    train = (preview["used as"] == "train").sum()
    steps = at.number_input(key="run_steps").value
    batch = at.number_input(key="run_batch").value
    assert steps < 300 and steps * batch / train <= MAX_PASSES
    assert any(f"Steps set to {steps} for your {train} training rows" in c for c in captions(at)), captions(at)
    assert not any("times: the student is likely to" in w for w in texts(at.warning))
    at.number_input(key="run_steps").set_value(300)  # back to many: Run warns instead of starting, with a way back
    button(at, "Run").click().run()
    assert "run" not in at.query_params and not button(at, "Run").disabled
    assert any(f"go over each of your {train} training rows" in w for w in texts(at.sidebar.warning))
    button(at, f"Use {steps} steps").click().run()
    assert at.number_input(key="run_steps").value == steps
    assert not any("times: the student is likely to" in w for w in texts(at.warning))


def test_my_images_typed_questions_preview_and_skipped_rows(vlod_home):
    at = choose_my_images(open_page(PAGE_3))
    red, blue = (png_bytes(Image.new("RGB", (64, 64), colour)) for colour in ("red", "blue"))
    at.file_uploader(key="mydata_images").set_value(
        [("red.png", red, "image/png"), ("blue.png", blue, "image/png"), ("notes.png", b"text", "image/png")]
    )
    at.run()
    assert_clean(at)
    assert any(e.startswith("notes.png: not an image") for e in texts(at.error)), texts(at.error)
    at.session_state["mydata_table"] = {
        "edited_rows": {0: {"question": "what color is the circle ?"}, 1: {"answer": "blue"}},
        "added_rows": [{"image": "red.png", "question": "how many shapes are there ?", "answer": "one shape"}],
        "deleted_rows": [],
    }
    at.run()
    assert_clean(at)
    preview = frame(at, "preview")
    assert list(preview["question"]) == ["what color is the circle ?", "how many shapes are there ?"]
    assert list(preview["right answer"]) == ["", "one shape"]
    assert set(preview["used as"]) == {"train + eval (seen in training)"}
    assert any("1 row skipped" in w and "no question" in w for w in texts(at.warning)), texts(at.warning)
    assert any("only 2 rows: trained and evaluated on the same rows" in c for c in captions(at)), captions(at)


def test_my_images_a_jsonl_with_a_zip_of_images_skips_a_row_that_names_no_image(vlod_home):
    at = choose_my_images(open_page(PAGE_3))
    at.radio(key="mydata_how").set_value("A JSONL file and a zip of its images").run()
    turns = [{"role": "user", "content": "<image>what color is it ?"}, {"role": "assistant", "content": "it is red"}]
    lines = [
        {"messages": turns, "images": ["pics/red.png"]},  # LLaMA-Factory / ms-swift
        {"prompt": "what color is it ?", "images": ["pics/notes.txt"]},  # TRL, naming a member that is no image
        {"prompt": "how many shapes are there ?", "image": "pics/red.png"},
    ]
    images = zipped({"pics/red.png": png_bytes(Image.new("RGB", (64, 64), "red")), "pics/notes.txt": b"hello"})
    at.file_uploader(key="mydata_jsonl").upload("rows.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode())
    at.file_uploader(key="mydata_jsonl_zip").upload("pics.zip", images, "application/zip")
    at.run()
    assert_clean(at)
    assert not at.error, texts(at.error)
    preview = frame(at, "preview")
    assert list(preview["question"]) == ["what color is it ?", "how many shapes are there ?"]
    assert list(preview["right answer"]) == ["it is red", ""]
    assert any("1 row skipped" in w and "notes.txt" in w and "not an image" in w for w in texts(at.warning)), texts(
        at.warning
    )


def test_a_link_made_with_my_images_says_the_images_cannot_travel(vlod_home):
    at = choose_my_images(open_page(PAGE_3))
    assert at.query_params["data"] == "mine"
    at = open_page(PAGE_3, {"data": "mine", "rules": "standard"})
    assert at.radio(key="train_on").value == "My images"
    assert any("a link cannot carry" in i for i in texts(at.info)), texts(at.info)


def test_my_images_a_bad_zip_gets_its_specific_error(vlod_home):
    at = choose_my_images(open_page(PAGE_3))
    at.radio(key="mydata_how").set_value("A zipped image folder").run()
    bad = zipped({"../evil.png": png_bytes(Image.new("RGB", (32, 32))), "metadata.jsonl": b""})
    at.file_uploader(key="mydata_zip").upload("bad.zip", bad, "application/zip")
    at.run()
    assert_clean(at)
    assert any(e.startswith("bad.zip: ../evil.png: a path that leads outside") for e in texts(at.error)), texts(
        at.error
    )
    assert "vlod_myset" not in at.session_state
    button(at, "Run").click().run()  # nothing to train on: said, not started
    assert any("load your images first" in e for e in texts(at.error)) and "run" not in at.query_params


def test_a_run_on_my_images_shows_every_row_before_and_after_beside_the_teacher(vlod_home, shared_student, jobs):
    at = choose_my_images(open_page(PAGE_3))
    pictures = [("red.png", Image.new("RGB", (64, 64), "red")), ("blue.png", Image.new("RGB", (64, 64), "blue"))]
    at.file_uploader(key="mydata_images").set_value([(n, png_bytes(i), "image/png") for n, i in pictures])
    at.run()
    at.session_state["mydata_table"] = {
        "edited_rows": {0: {"question": "what color is it ?"}, 1: {"question": "what shape is it ?"}},
        "added_rows": [],
        "deleted_rows": [],
    }
    at.run()
    teacher = list(frame(at, "preview")["teacher (image)"])
    at.multiselect(key="run_rules").set_value(["standard"])
    start_run(at, steps=3)
    assert at.session_state["vlod_distill_job"] and jobs.get(at.query_params["run"]).settings["data"] == "my images"
    wait_for_results(at)
    assert not at.error, texts(at.error)
    assert "Every row of your set, before and after" in texts(at.subheader)
    rows = frame(at, "answers")
    assert list(rows["question"]) == ["what color is it ?", "what shape is it ?"]
    assert list(rows["teacher (image)"]) == teacher  # the same teacher answers as the preview's
    assert {"before (image)", "standard (image)", "used as"} <= set(rows.columns)
    assert set(rows["used as"]) == {"train + eval (seen in training)"}
    metrics = frame(at, "metrics")
    assert set(metrics["metric"]) == {
        "agreement with the teacher's greedy answer (exact)",
        "token agreement with the teacher",
        "KL(student ‖ teacher) per token, nats (lower is closer)",
    }  # no right answers: no accuracy row
    assert all("±" in v for column in ("with image, before", "with image, after") for v in metrics[column])
    assert any("seen in training" in m for m in texts(at.markdown))
    card = jobs.get(at.query_params["run"]).cards()["standard"]
    assert card.data["eval_rows"] == 2 and card.data["eval_seen_in_training"] is True


def test_the_run_form_offers_lora_with_a_memory_estimate(vlod_home):
    from vlod_core.distill import DistillConfig

    at = open_page(PAGE_3)
    assert at.number_input(key="run_lora_rank").value == DistillConfig().lora_rank
    assert at.number_input(key="run_batch").value == DistillConfig().batch
    full = [c for c in captions(at) if c.startswith("Memory for this run")]
    assert full and "every weight trained" in full[0]
    at = open_page(PAGE_3, {"rules": "standard", "lora_rank": "4"})  # a link sets the form without a run
    assert at.number_input(key="run_lora_rank").value == 4
    lora = [c for c in captions(at) if c.startswith("Memory for this run")]
    assert lora and "LoRA rank 4" in lora[0]
    sizes = []
    for caption in (full[0], lora[0]):
        number, unit = caption.split("about ")[1].split(" ")[:2]
        sizes.append(float(number) * {"MiB": 2**20, "GiB": 2**30}[unit])
    assert sizes[1] < sizes[0]  # adapters only: no gradients or AdamW states for every weight


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


# ------------------------------------------------------------------------------------------------ first use


def test_the_first_use_build_keeps_going_whatever_the_pages_do(vlod_home, tmp_path, monkeypatch):
    """Issue 10: one build per server; leaving the page does not abort it; every visitor sees its progress."""
    import shutil
    import threading

    from vlod_core.toy import build

    reported, release, finished, calls = threading.Event(), threading.Event(), threading.Event(), []

    def slow_build(root, config=None, progress=None):  # the real build's files, after a wait we control
        calls.append(root)
        progress("training teacher", 0.4)
        reported.set()
        release.wait(180)
        shutil.copytree(vlod_home / "toy", root, dirs_exist_ok=True)
        finished.set()

    monkeypatch.setattr(build, "build_toy_pair", slow_build)
    monkeypatch.setenv("VLOD_HOME", str(tmp_path))
    first = open_page(PAGE_1)
    # before the fix, this page run did the build itself and returned only when it had finished
    assert not finished.is_set() and reported.wait(180)  # generous: a loaded machine starts the thread late
    try:
        texts_1 = [p.proto.text for p in first.get("progress")]
        assert any("Building the toy pair" in t and "keeps going" in t for t in texts_1), texts_1
        # the first visitor leaves; a second one sees the same build's real progress, and it started once
        second = open_page(PAGE_2)
        progress = [p for p in second.get("progress") if "Building the toy pair" in p.proto.text]
        assert progress and "training teacher" in progress[0].proto.text and progress[0].proto.value == 40
        assert len(calls) == 1
    finally:
        release.set()
    assert finished.wait(180)
    deadline = time.monotonic() + 180  # the build thread reports "done" and ends
    while any(t.name == "vlod-toy-build" and t.is_alive() for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the build thread did not end"
        time.sleep(0.05)
    third = open_page(PAGE_1)
    assert not [p for p in third.get("progress") if "Building" in p.proto.text]
    assert button(third, "Ask") and len(calls) == 1
