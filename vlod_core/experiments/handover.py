"""What the paper check hands its worker processes: the data and each run, as files and JSON, never pickles.

The parent writes the data once into a folder (`write_data`): the rows as JSON lines, each row's image as a
lossless PNG (an image file the row was read from is referred to where it lies), and the training source as
its rows or, for a source that draws fresh prompts (the toy worlds), as its recipe: the class and the arguments
that make it again (`recipe()`). A worker reads it back (`read_data`) and gets each run as `task_to_json`'s
object. The core never unpickles (tests/test_safety.py), and a file in the cache folder could be tampered with.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from PIL import Image

from vlod_core import settings
from vlod_core.data import Row, RowSampler, StoredImage, TrainingData
from vlod_core.distill import DistillConfig

ROWS_FILE, IMAGES = "rows.jsonl", "images"
RECIPE_PACKAGE = "vlod_core."  # a recipe may only name a class of vlod's own


class _Images:
    """Each distinct image of the data once, by identity: a PNG of a decoded image, the file of a stored one."""

    def __init__(self, folder: Path):
        self.folder, self.written = folder, {}

    def entry(self, image) -> dict:
        if id(image) in self.written:
            return self.written[id(image)][1]
        if isinstance(image, StoredImage) and isinstance(image.source, Path):
            entry = {"stored": str(image.source), "name": image.name}
        elif isinstance(image, StoredImage):
            path = self.folder / f"{len(self.written)}.bin"
            path.write_bytes(image.source)
            entry = {"stored": str(path), "name": image.name}
        else:
            path = self.folder / f"{len(self.written)}.png"
            image.save(path, format="PNG")
            entry = {"png": str(path)}
        self.written[id(image)] = (image, entry)  # the image kept alive, so its id is not reused
        return entry


def _read_image(entry: dict):
    if "stored" in entry:
        return StoredImage(Path(entry["stored"]), entry["name"])
    with Image.open(entry["png"]) as image:
        image.load()
        return image.copy()


def _row(entry: dict) -> Row:
    return Row(**{k: v for k, v in entry.items() if k != "image"}, image=_read_image(entry["image"]))


def write_data(data: TrainingData, folder: Path) -> None:
    """`data` into `folder` (new or empty), for `read_data` in another process."""
    images = _Images(folder / IMAGES)
    images.folder.mkdir(parents=True, exist_ok=True)
    lists = {"eval": data.eval_rows, "show": data.show_rows}
    if isinstance(data.train, RowSampler):
        train = {"rows": "train"}
        lists["train"] = data.train.rows
    elif callable(getattr(data.train, "recipe", None)):
        name, arguments = data.train.recipe()
        train = {"recipe": name, "arguments": arguments}
    else:
        raise TypeError(f"{type(data.train).__name__} cannot be handed to worker processes: give it a recipe()")
    with open(folder / ROWS_FILE, "w") as handle:
        for part, rows in lists.items():
            for row in rows:
                fields = {k: getattr(row, k) for k in ("question", "answer", "split", "category", "label", "group")}
                handle.write(json.dumps({"part": part, "image": images.entry(row.image), **fields}) + "\n")
    header = {"train": train, "seen_in_training": data.seen_in_training, "description": data.description}
    (folder / "data.json").write_text(json.dumps(header))


def read_data(folder: Path) -> TrainingData:
    header = json.loads((folder / "data.json").read_text())
    parts: dict[str, list[Row]] = {"train": [], "eval": [], "show": []}
    with open(folder / ROWS_FILE) as handle:
        for line in handle:
            entry = json.loads(line)
            parts[entry.pop("part")].append(_row(entry))
    train = header["train"]
    if "rows" in train:
        source = RowSampler(parts["train"])
    else:
        module, _, name = train["recipe"].rpartition(".")
        if not module.startswith(RECIPE_PACKAGE):
            raise ValueError(f"a recipe must name a class of vlod's own, got {train['recipe']!r}")
        source = getattr(importlib.import_module(module), name)(**train["arguments"])
    return TrainingData(source, parts["eval"], header["seen_in_training"], parts["show"], header["description"])


def task_to_json(task) -> dict:
    """A run (`runner.Task`) as JSON: its configuration by flat setting name, and its geometry."""
    return {"settings": settings.flat(task.config), "geometry_rows": task.geometry_rows, "bins": task.geometry_bins}


def task_from_json(entry: dict):
    from vlod_core.experiments.runner import Task

    config = settings.build(DistillConfig, entry["settings"])
    return Task(config, entry["geometry_rows"], entry["bins"])
