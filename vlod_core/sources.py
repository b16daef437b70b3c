"""Reading a user's data set, in the formats the ecosystem uses, into `vlod_core.data` rows.

Hugging Face `datasets` reads the containers (offline, never running a data set's own code):
- an image folder in the ImageFolder convention: images plus `metadata.jsonl` / `metadata.csv` with
  `file_name`, `question` and optional `answer` (or `train/` and `test/` subfolders, each with metadata);
- a JSON / JSONL file in TRL's format (`prompt` as text or as a one-user-message list; `image` or `images`)
  or in LLaMA-Factory / ms-swift's (`messages` or `conversations` with an `<image>` tag in the user turn, an
  optional assistant turn as the answer, and `images`: paths relative to the file);
- a folder written by `datasets.Dataset.save_to_disk`, or a Parquet file, with the same columns;
- a Hub data set repository folder as a download leaves it (`README.md`, `data/<split>-NNNNN-of-NNNNN.parquet`
  shards, or one configuration's folder of such shards), read as `datasets.load_dataset(folder)` reads it:
  the splits come from the file names (or the README's `configs`);
- the_cauldron's schema (`images`: a list of images; `texts`: a list of `{user, assistant, source}` turns):
  each turn becomes a row with the row's image (see `_turn_records`), and a row's turns share a split;
- a Hub data set id, when the Hub can be reached;
- a zip of any of these (checked by `vlod_core.archive` before anything is unpacked).
One function, `row_from_record`, turns a record of any of these formats into a `Row`, so they all load to the
same rows. A bad row is skipped with its reason (or, with `strict`, stops the load); a bad set (no usable
column, nothing left) raises `DataError` with what was found and what was expected.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from PIL import Image

from vlod_core.data import DataError, Row, StoredImage, VQASet
from vlod_core.images import ImageError


IMAGE_COLUMNS = ("image", "images", "file_name")
QUESTION_COLUMNS = ("question", "prompt", "messages", "conversations", "texts")
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
SPLIT_FOLDERS = ("train", "test", "validation")
IMAGE_TAG = "<image>"
MAX_QUESTION_CHARS = 4000  # a longer "question" is almost certainly a mistake in the file
HUB_HINT = (
    "Without a network, download the data set elsewhere (datasets' save_to_disk or a Parquet file) and pass "
    "its local path instead."
)

Progress = Callable[[int, int], None]  # (rows checked, rows in all)


class RowError(ValueError):
    """Why one record cannot become a row; it is skipped (or, with `strict`, the load stops)."""


# ------------------------------------------------------------------------------------------------ records


def _text_of(content) -> tuple[str, int]:
    """A message's text and how many images it refers to (`<image>` tags or image parts)."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content.replace(IMAGE_TAG, " ").strip(), content.count(IMAGE_TAG)
    if isinstance(content, list):
        texts, images = [], 0
        for part in content:
            if not isinstance(part, dict):
                raise RowError(f"a message part is {type(part).__name__}, not an object")
            kind = part.get("type")
            if kind == "image":
                images += 1
            elif kind == "text":
                text, tags = _text_of(part.get("text"))
                texts.append(text)
                images += tags
        return " ".join(t for t in texts if t).strip(), images
    raise RowError(f"message content is {type(content).__name__}, not text or a list of parts")


def _turns(messages) -> list[tuple[str, object]]:
    """(role, content) of each turn, from `role`/`content` or ShareGPT's `from`/`value`."""
    if isinstance(messages, str):
        return [("user", messages)]
    if not isinstance(messages, list):
        raise RowError(f"messages are {type(messages).__name__}, not a list")
    roles = {"human": "user", "gpt": "assistant"}
    turns = []
    for message in messages:
        if not isinstance(message, dict):
            raise RowError("a message is not an object")
        role = message.get("role", message.get("from"))
        turns.append((roles.get(role, role), message.get("content", message.get("value"))))
    return turns


def _question_and_answer(record: dict) -> tuple[str, str | None, int]:
    """The question, the reference answer (if any) and the number of image references in the prompt.

    No reference at all is fine (TRL's text prompts and plain questions leave the image implicit).
    """
    answer = record.get("answer")
    if record.get("question") is not None:
        question, tags = _text_of(record["question"])
        return question, answer, tags
    conversation = record.get("prompt") if record.get("prompt") is not None else None
    if conversation is None:
        conversation = record.get("messages") if record.get("messages") is not None else record.get("conversations")
    turns = [turn for turn in _turns(conversation) if turn[0] != "system"]
    users = [i for i, (role, _) in enumerate(turns) if role == "user"]
    if not users:
        raise RowError("no user turn in the messages")
    if len(users) > 1:
        raise RowError(f"{len(users)} user turns; one question per row is supported")
    question, tags = _text_of(turns[users[0]][1])
    replies = [content for role, content in turns[users[0] + 1 :] if role == "assistant"]
    if replies and answer is None:
        answer = _text_of(replies[0])[0]
    completion = record.get("completion")
    if completion is not None and answer is None:
        answer = _text_of(completion)[0] if isinstance(completion, str) else _text_of(_turns(completion)[0][1])[0]
    return question, answer, tags


def _image_value(record: dict):
    """The row's one image reference (a path, bytes, an undecoded dict or a PIL image)."""
    for key in IMAGE_COLUMNS:
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            if len(value) != 1:
                raise RowError(f"{len(value)} images in one row; one image per row is supported")
            value = value[0]
        return value
    raise RowError("no image")


def _stored(value, base_dir: Path | None, confine: bool, label: str) -> Image.Image | StoredImage:
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, dict):  # datasets' undecoded Image: {"bytes": ..., "path": ...}
        if value.get("bytes"):
            return StoredImage(bytes(value["bytes"]), Path(value.get("path") or label).name)
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return StoredImage(bytes(value), label)
    if not isinstance(value, str) or not value.strip():
        raise RowError("the image is neither a file path nor image bytes")
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if confine and base_dir is not None and not path.resolve().is_relative_to(base_dir.resolve()):
        raise RowError(f"{value}: the image path leads outside the data set's folder")
    if not path.is_file():
        raise RowError(f"{value}: no such image file")
    return StoredImage(path, value)


def row_from_record(
    record: dict,
    base_dir: Path | None = None,
    *,
    split: str | None = None,
    label: str = "",
    confine: bool = False,
    group: str | None = None,
) -> Row:
    """One record of any supported format as a checked `Row`; `RowError` says why not."""
    question, answer, tags = _question_and_answer(record)
    if tags > 1:
        raise RowError(
            f"the prompt refers to {tags} images ({IMAGE_TAG} tags or image parts); one per row is supported"
        )
    if not question:
        raise RowError("no question")
    if len(question) > MAX_QUESTION_CHARS:
        raise RowError(f"the question has {len(question):,} characters (the limit is {MAX_QUESTION_CHARS:,})")
    if answer is not None and not isinstance(answer, str):
        raise RowError(f"the answer is {type(answer).__name__}, not text")
    image = _stored(_image_value(record), base_dir, confine, label)
    if isinstance(image, StoredImage):
        image.load()  # checked now (type, size, bombs, damage), not in the middle of a run
    answer = answer.strip() if answer is not None and answer.strip() else None
    return Row(image, question, answer, record.get("split") or split, label=label, group=group)


def _turn_records(label: str, record: dict) -> list[tuple[str, dict | RowError]]:
    """(label, record) of each question a record holds: one, or one per turn of the_cauldron's `texts`.

    the_cauldron gathers a source's questions about one image into one row of `{user, assistant}` turns; in
    most of its subsets (VQAv2, A-OKVQA, TextVQA, chart and document sets ...) each turn is a question of its
    own, answerable from the image alone. So each turn becomes a row with the row's image, rather than only the
    first turn: no question is thrown away. The turns of one row form a group that `split_rows` keeps on one
    side of a held-out split, so no image is both trained on and evaluated. (A turn that reads on from the
    previous ones, as in its dialogue subsets, loses that history: vlod's rows are single questions.)
    """
    if not any(record.get(key) is not None for key in QUESTION_COLUMNS if key != "texts"):
        texts = record.get("texts")
        if texts is not None:
            if not isinstance(texts, list):
                raise RowError(f"texts is {type(texts).__name__}, not a list of turns")
            if not texts:
                raise RowError("texts has no turns")
            image = {key: record[key] for key in IMAGE_COLUMNS if record.get(key) is not None}
            out = []
            for index, turn in enumerate(texts):
                turn_label = f"{label} turn {index + 1}" if len(texts) > 1 else label
                if not isinstance(turn, dict):  # skipped with its reason, the other turns kept
                    out.append(
                        (turn_label, RowError(f"a turn is {type(turn).__name__}, not a {{user, assistant}} object"))
                    )
                    continue
                question = turn.get("user")
                answer = {"question": question if question is not None else "", "answer": turn.get("assistant")}
                out.append((turn_label, image | answer))
            return out
    return [(label, record)]


def rows_from_records(
    records: Iterable[tuple[str, str | None, dict]],
    base_dir: Path | None,
    *,
    strict: bool = False,
    confine: bool = False,
    progress: Progress | None = None,
    total: int = 0,
) -> tuple[list[Row], list[str]]:
    """Rows from (label, split, record) triples; the skipped ones' reasons, each naming its row."""
    rows, skipped = [], []

    def skip(label: str, error: Exception) -> None:
        if strict:
            raise DataError(f"{label}: {error}") from None
        skipped.append(f"{label}: {error}")

    for index, (label, split, record) in enumerate(records):
        try:
            parts = _turn_records(label, record)
        except RowError as error:
            skip(label, error)
            parts = []
        group = label if len(parts) > 1 else None  # a record's turns stay together in a split
        for part_label, part in parts:
            try:
                if isinstance(part, RowError):
                    raise part
                rows.append(
                    row_from_record(part, base_dir, split=split, label=part_label, confine=confine, group=group)
                )
            except (RowError, ImageError) as error:
                skip(part_label, error)
        if progress is not None:
            progress(index + 1, total)
    return rows, skipped


def check_columns(columns: Iterable[str], where: str) -> None:
    """A set-level error, listing the columns found and the ones expected."""
    found = sorted(columns)
    if not any(c in found for c in IMAGE_COLUMNS):
        raise DataError(f"{where} has no image column: found {found}; expected one of {list(IMAGE_COLUMNS)}")
    if not any(c in found for c in QUESTION_COLUMNS):
        raise DataError(f"{where} has no question column: found {found}; expected one of {list(QUESTION_COLUMNS)}")


# ------------------------------------------------------------------------------------------------ containers


def _undecoded(dataset):
    """The same data set with every Image column left as {bytes, path}: images are checked by vlod, not PIL."""
    import datasets

    features = dataset.features.copy()
    changed = False
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            features[name], changed = datasets.Image(decode=False), True
        elif isinstance(getattr(feature, "feature", None), datasets.Image):
            features[name], changed = datasets.List(datasets.Image(decode=False)), True
    return dataset.cast(features) if changed else dataset


def _records(dataset_or_dict, name: str) -> Iterable[tuple[str, str | None, dict]]:
    """(label, split, record) for every row of a Dataset or DatasetDict."""
    import datasets

    if isinstance(dataset_or_dict, datasets.DatasetDict) and len(dataset_or_dict) > 1:
        parts = list(dataset_or_dict.items())
    else:  # one part: `datasets` calls it "train" whatever it is; it is no split of the user's
        parts = [(None, next(iter(dataset_or_dict.values())) if isinstance(dataset_or_dict, dict) else dataset_or_dict)]
    for split, dataset in parts:
        dataset = _undecoded(dataset)
        for index, record in enumerate(dataset):
            yield (f"{name}{f' [{split}]' if split else ''} row {index + 1}", split, record)


def _columns(dataset_or_dict) -> set[str]:
    import datasets

    if isinstance(dataset_or_dict, datasets.DatasetDict):
        return set().union(*(set(d.column_names) for d in dataset_or_dict.values()))
    return set(dataset_or_dict.column_names)


def _size(dataset_or_dict) -> int:
    import datasets

    if isinstance(dataset_or_dict, datasets.DatasetDict):
        return sum(d.num_rows for d in dataset_or_dict.values())
    return dataset_or_dict.num_rows


def _first_line(error: Exception) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _datasets_call(what: str, fn, *args, **kwargs):
    """Run a `datasets` loader; any failure becomes one `DataError` sentence."""
    import datasets

    datasets.disable_progress_bars()
    try:
        return fn(*args, **kwargs)
    except DataError:
        raise
    except Exception as error:  # noqa: BLE001 - each failure becomes one clear message
        cause = error.__cause__ or error  # datasets wraps the informative error in a generic one
        raise DataError(f"{what}: could not be read ({_first_line(cause)})") from None


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()
    )


def _has_metadata_here(folder: Path) -> bool:
    return any((folder / name).is_file() for name in METADATA_FILES)


def _has_metadata(folder: Path) -> bool:
    return any(_has_metadata_here(place) for place in (folder, *(folder / split for split in SPLIT_FOLDERS)))


def _has_parquet(folder: Path) -> bool:
    """Parquet shards where a Hub download keeps them: in the folder, in `data/`, or in configuration folders."""
    return any(folder.glob("*.parquet")) or any(folder.glob("*/*.parquet")) or any(folder.glob("data/*/*.parquet"))


def load_repository_folder(folder: Path, *, strict=False, confine=False, cache_dir=None, progress=None) -> VQASet:
    """A Hub data set repository as downloaded (README.md, Parquet shards), read by `datasets.load_dataset(folder)`:
    the splits come from the shards' names (`train-00000-of-00002.parquet`) or the README's `configs`."""
    import datasets

    def load():
        try:
            return datasets.load_dataset(str(folder), cache_dir=cache_dir)
        except ValueError as error:  # a repository of several configurations (the_cauldron: one per source)
            configs = re.search(r"Config name is missing.*?\[(.*?)\]", str(error), re.S)
            if configs is None:
                raise
            raise DataError(
                f"{folder} holds several configurations ({configs.group(1)}); pass the folder of one of them"
            ) from None

    loaded = _datasets_call(str(folder), load)
    return _to_set(loaded, folder.name, f"data set repository {folder}", folder, strict, confine, progress)


def _to_set(loaded, name: str, origin: str, base_dir: Path | None, strict: bool, confine: bool, progress) -> VQASet:
    check_columns(_columns(loaded), name)
    rows, skipped = rows_from_records(
        _records(loaded, name), base_dir, strict=strict, confine=confine, progress=progress, total=_size(loaded)
    )
    data = VQASet(rows, name, origin, skipped)
    if not rows:
        first = f" ({'; '.join(skipped[:3])})" if skipped else ""
        raise DataError(f"{name} has no usable rows{first}")
    return data


def load_folder(folder: Path, *, strict=False, confine=False, cache_dir=None, progress=None) -> VQASet:
    import datasets

    if _is_saved_dataset(folder):
        loaded = _datasets_call(str(folder), datasets.load_from_disk, str(folder))
        return _to_set(loaded, folder.name, f"saved data set {folder}", folder, strict, confine, progress)
    if not _has_metadata(folder) and _has_parquet(folder):
        return load_repository_folder(folder, strict=strict, confine=confine, cache_dir=cache_dir, progress=progress)
    if not _has_metadata(folder):
        raise DataError(
            f"{folder} has no metadata.jsonl or metadata.csv (the image-folder convention: image files plus a "
            "metadata file with file_name, question and optional answer columns), and no Parquet shards (a Hub "
            "data set as downloaded)"
        )
    splits = [name for name in SPLIT_FOLDERS if _has_metadata_here(folder / name)]
    if splits and not _has_metadata_here(folder):
        # Each split folder on its own: their metadata may differ (a test split without answers).
        parts = {
            name: _datasets_call(
                f"{folder}/{name}", datasets.load_dataset, "imagefolder", data_dir=str(folder / name),
                split="train", cache_dir=cache_dir,
            )
            for name in splits
        }  # fmt: skip
        loaded = datasets.DatasetDict(parts)
    else:
        loaded = _datasets_call(
            str(folder), datasets.load_dataset, "imagefolder", data_dir=str(folder), cache_dir=cache_dir
        )
    return _to_set(loaded, folder.name, f"image folder {folder}", folder, strict, confine, progress)


def load_file(path: Path, *, strict=False, confine=False, cache_dir=None, progress=None) -> VQASet:
    import datasets

    kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path.name}: expected a .jsonl, .json, .parquet or .zip file, or a folder")
    loaded = _datasets_call(path.name, datasets.load_dataset, kind, data_files=str(path), cache_dir=cache_dir)
    origin = f"{'JSON' if kind == 'json' else 'Parquet'} file {path}"
    return _to_set(loaded, path.stem, origin, path.parent, strict, confine, progress)


def load_hub(name: str, *, strict=False, cache_dir=None, progress=None) -> VQASet:
    import datasets

    from vlod_core.hub import hub_reachable

    if not hub_reachable():
        raise DataError(f"{name}: the Hugging Face Hub is unreachable. {HUB_HINT}")
    loaded = _datasets_call(name, datasets.load_dataset, name, cache_dir=cache_dir)
    return _to_set(loaded, name, f"Hub data set {name}", None, strict, False, progress)


def _scratch_dir() -> Path:
    """A private folder for unpacked zips, removed when the process ends."""
    folder = Path(tempfile.mkdtemp(prefix="vlod-data-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _unpacked_root(folder: Path) -> Path:
    """A zip of one folder unpacks to that folder; look inside it."""
    entries = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


def load_data(
    source: str | Path,
    *,
    strict: bool = False,
    workdir: Path | None = None,
    cache_dir: str | None = None,
    progress: Progress | None = None,
) -> VQASet:
    """Any supported source by path or Hub id. Zips unpack (after `archive` checks them) into `workdir`.

    Paths inside an unpacked zip must stay inside it. `cache_dir` is where `datasets` keeps its Arrow cache
    (the app points it into the session's private folder).
    """
    from vlod_core.archive import extract_zip

    text = str(source).strip()
    if not text:
        raise DataError("no data set given")
    path = Path(text).expanduser()
    options = dict(strict=strict, cache_dir=cache_dir, progress=progress)
    if path.is_dir():
        return load_folder(path, **options)
    if path.is_file():
        if path.suffix.lower() != ".zip":
            return load_file(path, **options)
        target = Path(tempfile.mkdtemp(prefix="zip-", dir=workdir)) if workdir else _scratch_dir()
        extract_zip(path.read_bytes(), target)
        root = _unpacked_root(target)
        data_files = sorted(root.glob("*.jsonl")) + sorted(root.glob("*.json")) + sorted(root.glob("*.parquet"))
        if _is_saved_dataset(root) or _has_metadata(root) or _has_parquet(root) or not data_files:
            return load_folder(root, confine=True, **options)
        return load_file(data_files[0], confine=True, **options)
    if text.startswith((".", "/", "~")) or not re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        raise DataError(f"{text}: no such file or folder (and not a Hub data set id of the form 'owner/name')")
    return load_hub(text, strict=strict, cache_dir=cache_dir, progress=progress)


def from_memory(
    items: Iterable[tuple[Image.Image, str, str | None]], name: str = "my images", *, strict: bool = False
) -> VQASet:
    """Rows handed over in memory (what the app's editable table holds): (image, question, answer)."""
    records = (
        (f"{name} row {i + 1}", None, {"image": image, "question": question, "answer": answer})
        for i, (image, question, answer) in enumerate(items)
    )
    rows, skipped = rows_from_records(records, None, strict=strict)
    if not rows:
        first = f" ({'; '.join(skipped[:3])})" if skipped else ""
        raise DataError(f"{name} has no usable rows{first}")
    return VQASet(rows, name, "images given in memory", skipped)


def save_image_folder(items: Iterable[tuple[Image.Image, str, str | None]], folder: Path) -> Path:
    """Write (image, question, answer) rows as an image folder (PNGs + metadata.jsonl) that `load_data` reads.

    What the app does with a user's uploaded and typed rows: they go into the session's private folder in the
    ecosystem's own format, so a training job in another process reads them like any data set.
    """
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names: dict[int, str] = {}  # one file per distinct image, however many questions it has
    lines = []
    for image, question, answer in items:
        if id(image) not in names:
            names[id(image)] = f"image_{len(names) + 1:04d}.png"
            image.convert("RGB").save(folder / names[id(image)])
        record = {"file_name": names[id(image)], "question": question}
        if answer is not None and str(answer).strip():
            record["answer"] = str(answer).strip()
        lines.append(json.dumps(record))
    (folder / "metadata.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder
