"""`--data` on the command line: the README's example runs, `evaluate --json`, and bad data is one line, exit 2."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from test_cli import REPO, assert_one_line_error, run_cli

pytestmark = pytest.mark.slow  # starts the command line in a process each

SHAPES = str(REPO / "examples" / "shapes")


def test_distill_on_the_shipped_example_set_writes_a_card(vlod_home, tmp_path):
    out = tmp_path / "run.json"
    result = run_cli(vlod_home, "distill", "--data", SHAPES, "--steps", "2", "--batch", "4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "data: 24 rows read from image folder" in result.stderr
    assert "split: 5 of 24 rows held out at random (seed 0); 19 training rows, 5 evaluation rows" in result.stderr
    card = json.loads(out.read_text())
    assert card["data"]["name"] == "shapes" and card["data"]["eval_rows"] == 5
    assert card["after"]["eval_rows"] == 5 and card["after"]["eval_seen_in_training"] is False
    assert {"agreement_image", "kl_no_image", "accuracy_image"} <= card["after"].keys()
    assert "accuracy (exact match with the right answer), with image" in result.stdout and " ± " in result.stdout


def test_evaluate_prints_one_json_object(vlod_home):
    result = run_cli(vlod_home, "evaluate", "--data", SHAPES, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 24
    assert {"accuracy_image", "accuracy_no_image"} <= report["teacher"].keys()
    student = report["student"]
    for name in ("agreement", "token_agreement", "kl", "accuracy"):
        assert f"{name}_image" in student and f"{name}_no_image" in student and name + "_image" in student["stderr"]


def test_evaluate_without_references_leaves_accuracy_out(vlod_home, tmp_path):
    lines = (Path(SHAPES) / "metadata.jsonl").read_text().splitlines()[:4]
    rows = [{k: v for k, v in json.loads(line).items() if k != "answer"} for line in lines]
    folder = tmp_path / "noanswers"
    folder.mkdir()
    for row in rows:
        (folder / row["file_name"]).write_bytes((Path(SHAPES) / row["file_name"]).read_bytes())
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = json.loads(run_cli(vlod_home, "evaluate", "--data", str(folder), "--json").stdout)
    assert report["teacher"] == {} and "accuracy_image" not in report["student"]
    assert "agreement_image" in report["student"]


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "nowhere", "no such file or folder"),
        (lambda tmp: _jsonl(tmp / "cols.jsonl", [{"picture": "a.png", "text": "q"}]), "has no image column: found"),
        (lambda tmp: _jsonl(tmp / "gone.jsonl", [{"image": "gone.png", "question": "q ?"}]), "gone.png: no such image"),
    ],
    ids=["missing", "columns", "no-good-row"],
)
def test_bad_data_is_one_line_and_exit_2(vlod_home, tmp_path, make, expected):
    result = run_cli(vlod_home, "distill", "--data", str(make(tmp_path)), "--steps", "1")
    assert_one_line_error(result, expected)


def test_a_zip_with_a_traversal_member_is_refused(vlod_home, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../escape.txt", "x")
    path = tmp_path / "upload.zip"
    path.write_bytes(buffer.getvalue())
    assert_one_line_error(run_cli(vlod_home, "evaluate", "--data", str(path)), "../../escape.txt", "outside")


def test_strict_turns_a_skipped_row_into_an_error(vlod_home, tmp_path):
    image = (Path(SHAPES) / "scene_01.png").read_bytes()
    (tmp_path / "a.png").write_bytes(image)
    records = [{"image": "a.png", "question": "what color is the circle ?"}, {"image": "b.png", "question": "q ?"}]
    path = _jsonl(tmp_path / "rows.jsonl", records)
    lenient = run_cli(vlod_home, "evaluate", "--data", str(path), "--json")
    assert lenient.returncode == 0 and "1 skipped: rows row 2: b.png: no such image file" in lenient.stderr
    assert_one_line_error(run_cli(vlod_home, "evaluate", "--data", str(path), "--strict"), "row 2: b.png")


def test_progress_in_a_log_is_whole_lines_about_every_tenth_of_the_run(vlod_home, tmp_path):
    """Piped to a file (not a terminal), step progress is not one line redrawn with carriage returns."""
    out = tmp_path / "run.json"
    result = run_cli(vlod_home, "distill", "--data", SHAPES, "--steps", "30", "--batch", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr
    steps = [line for line in result.stderr.splitlines() if line.startswith("step ")]
    assert steps[0].startswith("step 1/30") and steps[-1].startswith("step 30/30")
    assert 8 <= len(steps) <= 12, steps


def test_progress_on_a_terminal_redraws_one_line(monkeypatch):
    from types import SimpleNamespace

    from vlod_core import cli

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    report = cli._record_printer(5)
    for step in range(1, 6):
        report(SimpleNamespace(step=step, loss=0.5, std=0.5, lang=0.1, vis=0.4, eta=1.0, evaluation=None))
    written = terminal.getvalue()
    assert written.count("\r") == 5 and written.count("\n") == 1 and written.endswith("\n")
