"""A session's own data set ("my images"): where its uploads live, how they become rows, and what a job gets.

Everything a user uploads is untrusted and private to their session, so one `MyData` per session owns one
private temporary folder (`tempfile.mkdtemp`: mode 0700), and every file made from an upload — unpacked zips,
a JSONL file, the `datasets` Arrow cache, the image folder a training job copies — is written inside it and
nowhere else. The folder is removed when the object goes away (the session ended and its state was dropped),
when `cleanup()` is called, or when the process exits, whichever comes first (`weakref.finalize`).

The checks are the core's: images go through `vlod_core.images.load_image` (as page 1's upload), zips
through `vlod_core.archive.extract_zip`, files and folders through `vlod_core.sources.load_data`, typed rows
through `vlod_core.sources.from_memory`. Each failure is a `DataError`, `ArchiveError` or `ImageError` whose
message is for the user as it is. Nothing here imports Streamlit.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vlod_core.archive import extract_zip
from vlod_core.data import EVAL_SPLITS, DataError, DataSplit, Row, VQASet, split_rows
from vlod_core.images import ImageError, load_image
from vlod_core.sources import from_memory, load_data, load_file, save_image_folder

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "shapes"  # the shipped set, one click away
MAX_IMAGES = 200  # images uploaded at once (each up to vlod_core.images' limit)


@dataclass
class UploadedImages:
    """Uploaded image files that passed the checks, by name (in upload order), and why the others did not."""

    images: dict[str, Image.Image] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class MyData:
    """One session's private folder for its uploaded data, and the loaders that write only inside it."""

    def __init__(self):
        self.folder = Path(tempfile.mkdtemp(prefix="vlod-mydata-"))
        self._remove = weakref.finalize(self, shutil.rmtree, str(self.folder), ignore_errors=True)

    def cleanup(self) -> None:
        """Remove the folder now (also happens when the object is collected, or at exit)."""
        self._remove()

    @property
    def alive(self) -> bool:
        return self._remove.alive

    def _new_dir(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.folder))

    @property
    def _cache(self) -> str:
        return str(self.folder / "datasets-cache")

    # ------------------------------------------------------------------------------------------ sources

    @staticmethod
    def images(files: list[tuple[str, bytes]]) -> UploadedImages:
        """Check each uploaded image as page 1 does; a bad file is named with its reason, the others kept."""
        out = UploadedImages()
        if len(files) > MAX_IMAGES:
            out.errors.append(f"{len(files)} images uploaded; at most {MAX_IMAGES} are used (the first ones)")
            files = files[:MAX_IMAGES]
        for name, data in files:
            try:
                loaded = load_image(data)
            except ImageError as error:
                out.errors.append(f"{name}: {error}")
                continue
            if name in out.images:
                out.errors.append(f"{name}: uploaded twice; the first one is used")
                continue
            out.images[name] = loaded.image
            out.notes += [f"{name}: {note}" for note in loaded.notes]
        return out

    @staticmethod
    def from_table(rows: list[dict], images: dict[str, Image.Image]) -> VQASet:
        """The editable table's rows (image name, question, optional answer) as a data set; a row with no
        question, or naming no uploaded image, is skipped and counted (DataError when none is left)."""
        items, missing = [], []
        for index, row in enumerate(rows):
            name = _text(row.get("image"))
            question = row.get("question")
            answer = row.get("answer")
            if _text(question) is None and _text(answer) is None:
                continue  # an untouched row of the table: nothing typed, nothing to count
            if name not in images:
                missing.append(f"my images row {index + 1}: no image chosen" if not name else f"{name}: not uploaded")
                continue
            items.append((images[name], _text(question) or "", _text(answer)))
        data = from_memory(items) if items else None
        if data is None:
            reason = f" ({'; '.join(missing[:3])})" if missing else ""
            raise DataError(f"type a question for at least one uploaded image{reason}")
        data.skipped[:0] = missing
        return data

    def from_zip(self, name: str, data: bytes) -> VQASet:
        """A zipped image folder (or a zip holding a JSONL/Parquet file and its images), unpacked and read
        inside the private folder; image paths must stay inside the zip."""
        place = self._new_dir("zip-")
        path = place / "upload.zip"
        path.write_bytes(data)
        loaded = load_data(path, workdir=place, cache_dir=self._cache)
        loaded.name = Path(name).stem or loaded.name
        return loaded

    def from_jsonl(self, name: str, data: bytes, images_zip: bytes | None) -> VQASet:
        """A JSONL file (TRL or LLaMA-Factory / ms-swift format) whose image paths are relative to the
        unpacked zip of its images; paths that lead outside it are refused."""
        place = self._new_dir("jsonl-")
        if images_zip is not None:
            extract_zip(images_zip, place)
        suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in (".json", ".jsonl") else ".jsonl"
        path = place / f"upload{suffix}"
        path.write_bytes(data)
        loaded = load_file(path, confine=True, cache_dir=self._cache)
        loaded.name = Path(name).stem or loaded.name
        return loaded

    def from_examples(self) -> VQASet:
        """The shipped `examples/shapes` set (toy-style scenes with questions and answers)."""
        loaded = load_data(EXAMPLES, cache_dir=self._cache)
        loaded.name, loaded.origin = "examples/shapes", "the shipped examples/shapes folder"
        return loaded

    # ------------------------------------------------------------------------------------------ for a job

    def for_job(self, data: VQASet, split: DataSplit | None = None) -> Path:
        """The set written as an image folder (PNGs + metadata.jsonl) inside the private folder, for a job.

        A source's own train/test split is kept (as `train/` and `test/` folders); otherwise the job splits
        the rows as the preview did (`split_rows`, the same seed).
        """
        split = split or split_rows(data.rows)
        place = self._new_dir("job-")
        own_split = any(row.split in EVAL_SPLITS for row in split.eval) and not split.seen_in_training
        if own_split:
            save_image_folder(_items(split.train), place / "train")
            save_image_folder(_items(split.eval), place / "test")
        else:
            save_image_folder(_items(data.rows), place)
        return place


def _text(value) -> str | None:
    """A table cell as text, None when empty (pandas gives None or NaN for cells never typed in)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value).strip() or None


def _items(rows: list[Row]) -> list[tuple[Image.Image, str, str | None]]:
    return [(row.load_image(), row.question, row.answer) for row in rows]


def split_label(row: Row, split: DataSplit) -> str:
    """How the job uses `row`: held out, trained on, or both (a set too small to split)."""
    if split.seen_in_training:
        return "train + eval (seen in training)"
    return "held out" if any(row is held for held in split.eval) else "train"
