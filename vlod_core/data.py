"""What the loop trains and evaluates on: rows of (image, question, optional answer), from any source.

The loop never knows where its data comes from. A `VQASet` is a named list of `Row`s plus the rows its
source skipped and why; `split_rows` makes the train and evaluation parts (the source's own split when it has
one, else a seeded held-out fraction, else — for tiny sets — the same rows for both, said as such);
`RowSampler` draws each step's prompts from the training rows. The toy world (`vlod_core.toy.source`) and
every file format (`vlod_core.sources`) produce these same types, and `TrainingData` hands them to the loop.

Images load lazily through `vlod_core.images.load_image` (the same checks as an upload: type, size,
decompression bombs), once per row.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from vlod_core.images import ImageError, load_image

DEFAULT_EVAL_FRACTION = 0.2
MIN_ROWS_TO_SPLIT = 10  # fewer rows than this: train and evaluate on the same rows, and say so
TRAIN_SPLITS = ("train",)
EVAL_SPLITS = ("test", "validation", "eval", "val")


class DataError(ValueError):
    """A data set cannot be used; the message is meant for the user as it is."""


class StoredImage:
    """An image file (a path or its bytes), checked and decoded once, on first use, like an upload.

    The decoded image lives as long as the row that holds it (a session's data set), never in a
    process-wide cache that other sessions could reach.
    """

    def __init__(self, source: Path | bytes, name: str):
        self.source, self.name = source, name

    @functools.cached_property
    def _image(self) -> Image.Image:
        try:
            return load_image(self.source).image
        except ImageError as error:
            raise ImageError(f"{self.name}: {error}") from None

    def load(self) -> Image.Image:
        return self._image

    def __repr__(self) -> str:
        return f"StoredImage({self.name!r})"


@dataclass(eq=False)
class Row:
    """One prompt: an image, a question, perhaps the reference answer, perhaps the source's split."""

    image: Image.Image | StoredImage
    question: str
    answer: str | None = None
    split: str | None = None  # the source's own split name ("train", "test", ...), if it has one
    category: str | None = None  # e.g. the toy world's question type: evaluation reports accuracy per category
    label: str = ""  # where the row came from (file and line, image name): for messages and tables
    group: str | None = None  # rows that must share a split (the turns of one multi-turn record)

    def load_image(self) -> Image.Image:
        return self.image.load() if isinstance(self.image, StoredImage) else self.image.convert("RGB")


@dataclass
class VQASet:
    """Rows read from one source, with the reasons for every row it skipped."""

    rows: list[Row]
    name: str
    origin: str  # e.g. "image folder /data/shapes (metadata.jsonl)"
    skipped: list[str] = field(default_factory=list)

    @property
    def has_answers(self) -> bool:
        return any(row.answer is not None for row in self.rows)

    def summary(self, reasons: int = 3) -> str:
        """'12 rows read from ...; 2 skipped: first reasons' — what the CLI and the app print."""
        text = f"{len(self.rows)} rows read from {self.origin}"
        if self.skipped:
            shown = "; ".join(self.skipped[:reasons])
            more = f" (and {len(self.skipped) - reasons} more)" if len(self.skipped) > reasons else ""
            text += f"; {len(self.skipped)} skipped: {shown}{more}"
        return text


@dataclass
class DataSplit:
    train: list[Row]
    eval: list[Row]
    seen_in_training: bool  # the evaluation rows are training rows too (a set too small to split)
    how: str  # in words, for every place the numbers appear

    def describe(self) -> dict:
        return {
            "train_rows": len(self.train),
            "eval_rows": len(self.eval),
            "eval_seen_in_training": self.seen_in_training,
            "split": self.how,
        }


def split_rows(
    rows: Sequence[Row],
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    seed: int = 0,
    min_rows: int = MIN_ROWS_TO_SPLIT,
) -> DataSplit:
    """The source's own train/test split if it has one, else a seeded held-out fraction."""
    if not 0 < eval_fraction < 1:
        raise DataError(f"eval fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    if not rows:
        raise DataError("the data set has no usable rows")
    splits = {row.split for row in rows}
    train = [row for row in rows if row.split in TRAIN_SPLITS]
    held = [row for row in rows if row.split in EVAL_SPLITS]
    if train and held:
        names = ", ".join(sorted(s for s in splits if s))
        return DataSplit(train, held, False, f"the source's own split ({names})")
    # Units of rows that go together (a record's turns share an image); each row alone when no row has a group.
    units: dict[object, list[int]] = {}
    for index, row in enumerate(rows):
        units.setdefault(row.group if row.group is not None else ("row", index), []).append(index)
    members = list(units.values())
    if len(rows) < min_rows or len(members) < 2:
        few = f"only {len(rows)} rows" if len(rows) < min_rows else f"all {len(rows)} rows are turns of one record"
        return DataSplit(
            list(rows),
            list(rows),
            True,
            f"{few}: trained and evaluated on the same rows (seen in training)",
        )
    order = np.random.default_rng(seed).permutation(len(members))
    n_units = min(max(1, round(len(members) * eval_fraction)), len(members) - 1)
    held = sorted(i for u in order[:n_units] for i in members[u])
    kept = sorted(i for u in order[n_units:] for i in members[u])
    how = f"{len(held)} of {len(rows)} rows held out at random (seed {seed})"
    if len(members) < len(rows):
        how += f"; the {n_units} held-out records' turns all held out together"
    return DataSplit([rows[i] for i in kept], [rows[i] for i in held], False, how)


class PromptSource(Protocol):
    """Where a step's prompts come from: the same rows for the same (step, count, seed), on every process."""

    def prompts(self, step: int, count: int, seed: int) -> list[Row]: ...


class RowSampler:
    """Seeded draws from a finite list of rows, without replacement within an epoch.

    The rows of step s are a pure function of (seed, s, count), so a resumed or data-parallel run sees the
    same prompts as a single uninterrupted one, and two runs from one seed see the same prompts.
    """

    def __init__(self, rows: Sequence[Row]):
        if not rows:
            raise DataError("there are no training rows")
        self.rows = list(rows)
        self._order_cache: tuple[tuple[int, int], np.ndarray] | None = None

    def _order(self, seed: int, epoch: int) -> np.ndarray:
        if self._order_cache is None or self._order_cache[0] != (seed, epoch):
            self._order_cache = ((seed, epoch), np.random.default_rng([seed, epoch]).permutation(len(self.rows)))
        return self._order_cache[1]

    def prompts(self, step: int, count: int, seed: int) -> list[Row]:
        out = []
        for index in range(step * count, (step + 1) * count):
            epoch, position = divmod(index, len(self.rows))
            out.append(self.rows[int(self._order(seed, epoch)[position])])
        return out


def binomial_stderr(p: float, n: int) -> float:
    """Standard error of a proportion measured on n rows."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else float("nan")


@dataclass
class TrainingData:
    """Everything the loop needs to know about its data, whatever the source.

    `train` gives each step's prompts; `eval_rows` are evaluated before and after (and every k steps);
    `show_rows` get their greedy answers shown before and after.
    """

    train: PromptSource
    eval_rows: list[Row]
    seen_in_training: bool = False
    show_rows: list[Row] = field(default_factory=list)
    description: dict = field(default_factory=dict)
    # The loop's evaluation sets of these rows, by settings: every run on this data reuses what they cache
    # (the encoded prompts, the teacher's greedy answers), so a comparison of rules computes them once.
    eval_sets: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_split(cls, split: DataSplit, name: str, show: int = 6, extra: dict | None = None):
        return cls(
            RowSampler(split.train),
            split.eval,
            split.seen_in_training,
            split.eval[:show],
            {"name": name, **split.describe(), **(extra or {})},
        )
