"""The blind teacher caught: a teacher whose projector outputs zeros is named before distilling and when
evaluating (library and CLI), refused on request, and the working toy pair passes; the blind toy student is
named as expected."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from test_cli import run_cli
from vlod_core.data import DataSplit, TrainingData
from vlod_core.distill import DistillConfig, distill
from vlod_core.evaluation import EvalSet, evaluate
from vlod_core.grounding import THRESHOLD, UngroundedTeacher, check_pair, pick_rows
from vlod_core.toy.source import held_out_rows

pytestmark = pytest.mark.slow  # every test here uses the session's toy pair

PROJECTOR = "multi_modal_projector"


def zeroed(model):
    """A copy of `model` whose projector's weights and biases are zero: every image gives the same tokens."""
    blind = copy.deepcopy(model)
    with torch.no_grad():
        for name, parameter in blind.named_parameters():
            if PROJECTOR in name:
                parameter.zero_()
    return blind


@pytest.fixture(scope="module")
def blind_teacher_pair(toy_pair):
    return dataclasses.replace(toy_pair, teacher=zeroed(toy_pair.teacher))  # the session pair stays as it is


@pytest.fixture(scope="module")
def rows():
    return held_out_rows(16)


def small_data(rows) -> TrainingData:
    return TrainingData.from_split(DataSplit(rows, rows[:8], False, "test rows"), "test rows")


def test_the_working_pair_reads_the_image_and_a_zeroed_projector_does_not(toy_pair, blind_teacher_pair, rows):
    working = check_pair(toy_pair, rows)
    assert working.teacher.grounded and working.student.grounded and working.warnings == []
    assert working.teacher.kl_other > 10 * THRESHOLD and working.teacher.kl_blank > 10 * THRESHOLD
    blind = check_pair(blind_teacher_pair, rows)
    assert not blind.teacher.grounded and blind.teacher.kl < THRESHOLD / 100
    assert blind.student.grounded  # the student is the session's, untouched
    (warning,) = blind.warnings
    assert "ignores the image" in warning and "toy teacher" in warning and f"{blind.teacher.kl:.2g}" in warning
    for cause in ("chat template that drops the image", "broken projector", "text-only checkpoint"):
        assert cause in warning
    assert blind.teacher.to_dict()["verdict"] == "ignores the image" and len(blind.teacher.causes) == 3


def test_reference_answers_and_one_row_measure_the_same_way(toy_pair, blind_teacher_pair, rows):
    one = check_pair(toy_pair, rows[:1], students=False)
    assert one.teacher.kl_other is None and one.teacher.kl == one.teacher.kl_blank and one.teacher.grounded
    full = check_pair(toy_pair, rows, students=False).teacher
    assert full.kl == max(full.kl_other, full.kl_blank)
    by_reference = check_pair(blind_teacher_pair, rows, answers="reference", students=False)
    assert by_reference.teacher.answers == "reference answers" and not by_reference.teacher.grounded


def test_rows_for_the_check_prefer_distinct_images(rows):
    many_questions = [dataclasses.replace(row) for row in rows[:3] for _ in range(4)]  # 3 images, 4 rows each
    for copy_, source in zip(many_questions, [r for r in rows[:3] for _ in range(4)]):
        copy_.image = source.image
    chosen = pick_rows(many_questions, 3)
    assert len({id(r.image) for r in chosen}) == 3


def test_the_blind_toy_student_is_named_as_expected(toy_pair, rows):
    from vlod_core import toy
    from vlod_core.pair import PairSpec, load_pair

    spec = PairSpec(student_variant="student_blind")
    pair = load_pair(spec, toy.folders(spec))
    report = check_pair(pair, rows)
    assert report.student.model == "toy blind student" and report.student.expected_blind
    assert report.warnings == []  # not a problem to warn about ...
    (note,) = report.notes  # ... but named, and said to be expected
    assert "toy blind student" in note and "expected" in note and "trained on text alone" in note
    assert check_pair(toy_pair, rows).notes == []


def test_distill_names_a_blind_teacher_in_the_card_and_the_log(blind_teacher_pair, toy_pair, rows, caplog):
    config = DistillConfig(steps=1, batch=4, eval_examples=4, answer_examples=0)
    with caplog.at_level("WARNING", logger="vlod_core.grounding"):
        card = distill(blind_teacher_pair, config, small_data(rows)).card
    assert any("ignores the image" in r.getMessage() for r in caplog.records)
    assert card.grounding["teacher"]["grounded"] is False
    assert "ignores the image" in card.grounding["warnings"][0]
    working = distill(toy_pair, config, small_data(rows)).card
    assert working.grounding["teacher"]["grounded"] is True and working.grounding["warnings"] == []
    with pytest.raises(UngroundedTeacher, match="ignores the image"):
        distill(blind_teacher_pair, config, small_data(rows), require_grounded_teacher=True)


def test_evaluate_names_a_blind_teacher(blind_teacher_pair, toy_pair, rows):
    result = evaluate(blind_teacher_pair, EvalSet(rows[:8]))
    assert "ignores the image" in result.grounding["warnings"][0]
    assert result.to_dict()["grounding"]["teacher"]["verdict"] == "ignores the image"
    assert evaluate(toy_pair, EvalSet(rows[:8])).grounding["warnings"] == []
    assert "grounding" not in evaluate(toy_pair, EvalSet(rows[:8]), check_grounding=False).to_dict()


# --- the command line --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blind_teacher_folder(vlod_home, tmp_path_factory) -> Path:
    """The session's toy teacher saved with a zeroed projector (a copy: the session's files stay as they are)."""
    folder = tmp_path_factory.mktemp("blind") / "teacher"
    shutil.copytree(vlod_home / "toy" / "teacher", folder)
    weights = load_file(folder / "model.safetensors")
    weights = {k: torch.zeros_like(v) if PROJECTOR in k else v for k, v in weights.items()}
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_cli_evaluate_warns_about_a_blind_teacher_and_refuses_on_request(vlod_home, blind_teacher_folder):
    common = ("evaluate", "--teacher", str(blind_teacher_folder), "--eval-examples", "8", "--json")
    result = run_cli(vlod_home, *common)
    assert result.returncode == 0, result.stderr
    warning = next(line for line in result.stderr.splitlines() if line.startswith("vlod: warning: "))
    assert "ignores the image" in warning and str(blind_teacher_folder) in warning
    assert json.loads(result.stdout)["grounding"]["teacher"]["grounded"] is False
    refused = run_cli(vlod_home, *common, "--require-grounded-teacher")
    assert refused.returncode == 2 and refused.stdout == "" and "Traceback" not in refused.stderr
    assert "vlod: error: refused" in refused.stderr and "ignores the image" in refused.stderr


def test_cli_distill_warns_and_refuses_and_the_working_pair_is_quiet(vlod_home, blind_teacher_folder, tmp_path):
    common = ("distill", "--steps", "1", "--batch", "4", "--eval-examples", "8")
    out = tmp_path / "run.json"
    blind = run_cli(vlod_home, *common, "--teacher", str(blind_teacher_folder), "--out", str(out))
    assert blind.returncode == 0, blind.stderr
    assert "vlod: warning: the teacher" in blind.stderr and "ignores the image" in blind.stderr
    assert json.loads(out.read_text())["grounding"]["teacher"]["grounded"] is False
    refused = run_cli(vlod_home, *common, "--teacher", str(blind_teacher_folder), "--require-grounded-teacher")
    assert refused.returncode == 2 and "ignores the image" in refused.stderr and "step 1/1" not in refused.stderr
    working = run_cli(vlod_home, *common, "--require-grounded-teacher")
    assert working.returncode == 0, working.stderr
    assert "ignores the image" not in working.stderr


def test_cli_compare_refuses_a_blind_teacher(vlod_home, blind_teacher_folder):
    result = run_cli(
        vlod_home, "compare", "--steps", "1", "--batch", "4", "--seeds", "1", "--eval-examples", "8",
        "--teacher", str(blind_teacher_folder), "--require-grounded-teacher",
    )  # fmt: skip
    assert result.returncode == 2 and "ignores the image" in result.stderr and result.stdout == ""


def test_cli_inspect_reports_grounding(vlod_home, tmp_path):
    from vlod_core.toy import world

    image = tmp_path / "scene.png"
    world.sample_examples(1, seed=3)[0].image().save(image)
    result = run_cli(vlod_home, "inspect", "--image", str(image), "--question", "what color is the circle ?", "--json")
    assert result.returncode == 0, result.stderr
    grounding = json.loads(result.stdout)["grounding"]
    assert grounding["teacher"]["grounded"] is True and grounding["warnings"] == []


# --- the app's home page, where the pair is loaded -------------------------------------------------------------


def test_the_home_page_shows_a_blind_teacher_in_a_warning_box(vlod_home, blind_teacher_folder):
    from test_app_pages import assert_clean, button, open_page, texts

    at = open_page()
    assert not any("ignores the image" in w for w in texts(at.warning))  # the working toy pair
    at.radio(key="pair_kind").set_value("Local folders").run()
    student, teacher = (t for t in at.text_input if t.label in ("Student", "Teacher"))
    student.set_value(str(vlod_home / "toy" / "student"))
    teacher.set_value(str(blind_teacher_folder))
    button(at, "Check and use this pair").click().run()
    assert_clean(at)
    warnings = [w for w in texts(at.warning) if "ignores the image" in w]
    assert len(warnings) == 1 and str(blind_teacher_folder) in warnings[0] and "broken projector" in warnings[0]


def test_the_home_page_names_the_blind_toy_student_as_expected(vlod_home):
    from test_app_pages import assert_clean, button, open_page, texts

    at = open_page()
    at.radio(key="pair_kind").set_value("Toy pair with the blind student").run()
    button(at, "Check and use this pair").click().run()
    assert_clean(at)
    assert any("toy blind student" in i and "expected" in i for i in texts(at.info)), texts(at.info)
    assert not any("ignores the image" in w for w in texts(at.warning))
