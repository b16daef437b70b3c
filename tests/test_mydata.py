"""The session's private folder for "my images" (`vlod_app.mydata`): everything an upload makes is written
inside it, and it is gone after cleanup or when the session's object is dropped."""

from __future__ import annotations

import gc
import io
import json
import tempfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from vlod_app.mydata import MyData, split_label
from vlod_core.archive import ArchiveError
from vlod_core.data import DataError, split_rows
from vlod_core.sources import load_data


def png(colour: str, size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A fresh system temporary folder, so that anything written there by a load can be seen."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_uploads_are_written_only_inside_the_private_folder_and_removed_on_cleanup(private_tmp, tmp_path):
    data = MyData()
    folder = data.folder
    assert folder.parent == private_tmp and (folder.stat().st_mode & 0o777) == 0o700
    metadata = "".join(
        json.dumps({"file_name": f"{c}.png", "question": f"what color is it ? ({c})", "answer": c}) + "\n"
        for c in ("red", "blue")
    )
    pictures = {"red.png": png("red"), "blue.png": png("blue")}
    zipped = data.from_zip("mine.zip", zip_of(pictures | {"metadata.jsonl": metadata.encode()}))
    jsonl = "".join(json.dumps({"prompt": "what is it ?", "images": [f"{c}.png"]}) + "\n" for c in ("red", "blue"))
    from_jsonl = data.from_jsonl("rows.jsonl", jsonl.encode(), zip_of(pictures))
    assert [r.answer for r in zipped.rows] == ["red", "blue"] and zipped.name == "mine"
    assert [r.question for r in from_jsonl.rows] == ["what is it ?"] * 2
    job = data.for_job(zipped)
    assert job.is_relative_to(folder) and load_data(job, cache_dir=str(tmp_path / "c")).rows[1].answer == "blue"
    # nothing in the system's temporary folder but the private one
    assert {p for p in private_tmp.iterdir()} == {folder}
    data.cleanup()
    assert not folder.exists() and not data.alive and not any(private_tmp.iterdir())


def test_the_folder_goes_when_the_session_drops_it(private_tmp):
    data = MyData()
    folder = data.folder
    metadata = b'{"file_name": "a.png", "question": "q ?"}\n'
    data.from_zip("a.zip", zip_of({"a.png": png("red"), "metadata.jsonl": metadata}))
    del data
    gc.collect()
    assert not folder.exists()


def test_a_zip_that_leads_outside_is_refused_and_writes_nothing_outside(private_tmp):
    data = MyData()
    with pytest.raises(ArchiveError, match=r"\.\./evil.png: a path that leads outside"):
        data.from_zip("bad.zip", zip_of({"../evil.png": png("red"), "metadata.jsonl": b""}))
    jsonl = json.dumps({"prompt": "q ?", "images": ["../../outside.png"]}) + "\n"
    (private_tmp / "outside.png").write_bytes(png("red"))
    with pytest.raises(DataError, match="leads outside the data set's folder"):
        data.from_jsonl("rows.jsonl", jsonl.encode(), zip_of({"red.png": png("red")}))
    assert {p.name for p in private_tmp.iterdir()} == {data.folder.name, "outside.png"}
    assert not (private_tmp.parent / "evil.png").exists()
    data.cleanup()


def test_typed_rows_skip_and_count_rows_without_a_question():
    images = MyData.images([("a.png", png("red")), ("b.png", png("blue")), ("c.txt", b"not an image")])
    assert list(images.images) == ["a.png", "b.png"]
    assert images.errors and images.errors[0].startswith("c.txt: not an image")
    rows = [
        {"image": "a.png", "question": "what color is it ?", "answer": "red"},
        {"image": "a.png", "question": "is it a square ?", "answer": None},
        {"image": "b.png", "question": "", "answer": "blue"},  # an answer without a question: skipped
        {"image": "b.png", "question": None, "answer": None},  # untouched: ignored
        {"image": "gone.png", "question": "q ?", "answer": None},
    ]
    data = MyData.from_table(rows, images.images)
    assert [r.question for r in data.rows] == ["what color is it ?", "is it a square ?"]
    assert data.rows[0].answer == "red" and data.rows[1].answer is None
    assert len(data.skipped) == 2 and "gone.png: not uploaded" in data.skipped[0] and "no question" in data.skipped[1]
    with pytest.raises(DataError, match="type a question"):
        MyData.from_table([{"image": "a.png", "question": "", "answer": None}], images.images)


def test_the_job_gets_the_same_split_as_the_preview(tmp_path):
    data = MyData()
    examples = data.from_examples()
    split = split_rows(examples.rows)
    job = load_data(data.for_job(examples, split), cache_dir=str(tmp_path / "c"))
    again = split_rows(job.rows)
    assert [r.question for r in again.eval] == [r.question for r in split.eval]
    assert {split_label(r, split) for r in examples.rows} == {"train", "held out"}
    data.cleanup()
