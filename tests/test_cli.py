"""`python -m vlod_core` as a user runs it, in a subprocess: errors are one line on stderr, exit 2, no traceback.

The subprocess finds the session's toy pair through VLOD_HOME, so nothing is trained here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vlod_core.inspection import ANSWER_KEYS

pytestmark = pytest.mark.slow  # starts the command line in a process each

REPO = Path(__file__).resolve().parents[1]
TOKEN_KEYS = {"token", "id", "std_kl", "lang_kl", "vis_kl", "vds", "logratio", "logratio_lang", "logratio_vis"}


def run_cli(vlod_home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = os.environ | {"VLOD_HOME": str(vlod_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "vlod_core", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vlod: error: "), lines[0]
    assert result.stdout == ""
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def image_file(tmp_path_factory, examples) -> Path:
    path = tmp_path_factory.mktemp("cli") / "scene.png"
    examples[0].image().save(path)
    return path


def test_missing_image_file(vlod_home, tmp_path):
    missing = tmp_path / "nope.png"
    result = run_cli(vlod_home, "inspect", "--image", str(missing), "--question", "what color is the circle ?")
    assert_one_line_error(result, str(missing), "no such image file")


def test_file_that_is_not_an_image(vlod_home, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is a shopping list, not a picture\n")
    result = run_cli(vlod_home, "inspect", "--image", str(text), "--question", "what color is the circle ?")
    assert_one_line_error(result, "not an image")


@pytest.mark.parametrize("question", ["", "   "])
def test_empty_question(vlod_home, image_file, question):
    result = run_cli(vlod_home, "inspect", "--image", str(image_file), "--question", question)
    assert_one_line_error(result, "question is empty")


def test_teacher_path_that_does_not_exist(vlod_home, image_file, tmp_path):
    teacher = tmp_path / "no-such-teacher"
    result = run_cli(
        vlod_home,
        "inspect",
        "--image",
        str(image_file),
        "--question",
        "what color is the circle ?",
        "--teacher",
        str(teacher),
    )
    assert_one_line_error(result, str(teacher), "no such folder")


def test_bad_sampling_number(vlod_home, image_file):
    result = run_cli(
        vlod_home,
        "inspect",
        "--image",
        str(image_file),
        "--question",
        "what color is the circle ?",
        "--max-new-tokens",
        "0",
    )
    assert_one_line_error(result, "max_new_tokens")


def test_inspect_json_is_one_object_whose_parts_add_up(vlod_home, image_file):
    result = run_cli(
        vlod_home,
        "inspect",
        "--image",
        str(image_file),
        "--question",
        "what color is the Zorblax ?",
        "--json",
        "--seed",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    payload = json.loads(result.stdout)  # the whole of stdout is one JSON object
    assert isinstance(payload, dict)
    assert set(payload["answers"]) == set(ANSWER_KEYS)
    assert all(isinstance(text, str) for text in payload["answers"].values())
    assert payload["tokens"], "no scored tokens"
    for row in payload["tokens"]:
        assert TOKEN_KEYS <= set(row), set(row)
        assert isinstance(row["token"], str) and isinstance(row["id"], int)
        numbers = [row[key] for key in TOKEN_KEYS - {"token", "id"}]
        assert all(math.isfinite(value) for value in numbers)
        assert row["logratio"] == pytest.approx(row["logratio_lang"] + row["logratio_vis"], abs=1e-5)
        assert row["std_kl"] >= -1e-6 and row["lang_kl"] >= -1e-6 and row["vis_kl"] >= -1e-6
    assert any("Zorblax" in note for note in payload["notes"])


def test_inspect_table_with_a_typed_answer(vlod_home, image_file, examples):
    example = examples[0]
    result = run_cli(
        vlod_home, "inspect", "--image", str(image_file), "--question", example.question, "--response", example.answer
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"scored response: {example.answer!r}" in result.stdout
    for key in ANSWER_KEYS:
        assert key in result.stdout


def test_usage_errors_exit_2_without_traceback(vlod_home):
    """argparse's own errors (a usage line, then `vlod inspect: error: ...`) also exit 2."""
    result = run_cli(vlod_home, "inspect", "--question", "what ?")  # --image is required
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: the following arguments are required: --image" in result.stderr


def test_compare_ends_with_the_verdict_in_words(vlod_home):
    result = run_cli(
        vlod_home, "compare", "--rules", "standard,vgs", "--seeds", "1", "--steps", "4", "--batch", "8",
        "--eval-examples", "16",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("verdict: vgs is "), lines[-1]
    assert "points" in lines[-1] and "1 seed" in lines[-1]
    assert any(line.startswith("measured: ") and "% of the KL was visual" in line for line in lines)


def test_threads_sets_torchs_thread_count_before_the_command_and_refuses_zero(tmp_path, capsys):
    """Two CLI runs at once at torch's default threads (one per core each) took ~4× as long on two cores;
    `--threads 1` gives each one. Applied before the command runs, whatever the command then does."""
    import torch

    from vlod_core.cli import EXIT_USAGE, main

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        missing = str(tmp_path / "missing.png")
        assert main(["inspect", "--threads", "1", "--image", missing, "--question", "what ?"]) == EXIT_USAGE
        assert torch.get_num_threads() == 1
        with pytest.raises(SystemExit) as exit_:
            main(["inspect", "--threads", "0", "--image", missing, "--question", "what ?"])
        assert exit_.value.code == 2 and "--threads: must be 1 or more, got 0" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_a_step_that_did_not_score_the_image_free_pass_prints_a_dash_not_nan(capsys):
    """A standard run scores ℓLang and ℓVis every `decompose_every` steps only; the other steps' progress lines
    said `lang nan  vis nan`, which reads like a failure."""
    from vlod_core.cli import _record_printer
    from vlod_core.results import StepRecord

    losses = dict.fromkeys(("loss", "std", "lp", "vds", "lang_high_vds", "grad_norm"), 0.5)
    report = _record_printer(total=2)
    report(StepRecord(step=1, seconds=1.0, eta=1.0, response_tokens=3, lang=0.25, vis=0.125, **losses))
    report(StepRecord(step=2, seconds=2.0, eta=1.0, response_tokens=3, lang=math.nan, vis=math.nan, **losses))
    first, second = capsys.readouterr().err.strip().splitlines()
    assert "lang 0.2500  vis 0.1250" in first
    assert "lang —  vis —" in second and "nan" not in second
