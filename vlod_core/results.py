"""Result records that cross from the core to the pages and the CLI: step records and run cards.

A run card is plain JSON. Loading one (perhaps uploaded by a user) validates its shape and sizes before
anything displays it, so a hand-edited or hostile file produces a clear `RunCardError`, not a traceback.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vlod_core.images import THUMBNAIL_PREFIX

MAX_CARD_BYTES = 20 * 1024 * 1024
MAX_RECORDS = 100_000
MAX_THUMBNAIL = 64 * 1024  # characters of one row's thumbnail data URI
SCHEMA = "vlod.run_card/2"
OLD_SCHEMAS = ("vlod.run_card/1",)  # read, and upgraded on load


class RunCardError(ValueError):
    """A run card file is not valid; the message says what is wrong."""


@dataclass
class StepRecord:
    step: int
    seconds: float
    loss: float
    std: float
    lang: float
    vis: float
    lp: float
    vds: float
    lang_high_vds: float  # ℓLang on the top-30% VDS tokens: where VGS "unlearns" the prior
    eta: float
    grad_norm: float
    response_tokens: int
    by_vds: dict | None = None  # {"lang": [...], "vis": [...]} per equal-count VDS bin, low → high (Fig. 4)
    geometry: dict | None = None  # GradGeometry.to_dict() every k steps
    evaluation: dict | None = None  # Evaluation.to_dict() every k steps

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunCard:
    config: dict
    versions: dict
    pair: dict
    seconds: float
    before: dict  # Evaluation.to_dict() before training; {} when not measured
    after: dict
    records: list[dict]
    data: dict = field(default_factory=dict)  # what it trained and evaluated on (TrainingData.description)
    answers_before: list[dict] = field(default_factory=list)
    answers_after: list[dict] = field(default_factory=list)
    probe_before: list[dict] = field(default_factory=list)
    probe_after: list[dict] = field(default_factory=list)
    stopped: str | None = None  # why the run ended early, if it did
    grounding: dict = field(default_factory=dict)  # GroundingReport.to_dict(): does each model read the image?
    schema: str = SCHEMA

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, allow_nan=True))

    @classmethod
    def from_json(cls, data: bytes | str) -> "RunCard":
        if len(data) > MAX_CARD_BYTES:
            raise RunCardError(
                f"run card is {len(data) / 2**20:.1f} MiB; the limit is {MAX_CARD_BYTES / 2**20:.0f} MiB"
            )
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError) as error:  # bad JSON or encoding, 5000-digit ints, "[" * 10**5
            raise RunCardError(f"not a JSON file ({str(error)[:200]})") from None
        return cls.from_dict(raw)

    @classmethod
    def load(cls, path: str | Path) -> "RunCard":
        size = Path(path).stat().st_size
        if size > MAX_CARD_BYTES:  # checked before reading, so a huge file is never loaded into memory
            raise RunCardError(f"run card is {size / 2**20:.1f} MiB; the limit is {MAX_CARD_BYTES / 2**20:.0f} MiB")
        return cls.from_json(Path(path).read_bytes())

    @classmethod
    def from_dict(cls, raw) -> "RunCard":
        validate_card(raw)
        raw = upgrade(raw)
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in names})


def _number(value, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RunCardError(f"{where} must be a number, got {type(value).__name__}")


RATE_PREFIXES = ("agreement_", "token_agreement_", "accuracy_", "acc1_", "acc_k_", "format_errors_")
METRIC_PREFIXES = RATE_PREFIXES + ("kl_",)


def _evaluation(block, where: str) -> None:
    """An evaluation block: metric names map to numbers (rates in [0, 1]; NaN: not measured)."""
    if not isinstance(block, dict):
        raise RunCardError(f"{where} must be an object")
    for key, value in block.items():
        if not key.startswith(METRIC_PREFIXES):
            continue
        _number(value, f"{where}.{key}")
        rate = key.startswith(RATE_PREFIXES)
        if rate and not (math.isnan(value) or 0.0 <= value <= 1.0):
            raise RunCardError(f"{where}.{key} must be in [0, 1], got {value}")
    for key in ("stderr", "per_category"):
        if key in block and not isinstance(block[key], dict):
            raise RunCardError(f"{where}.{key} must be an object")


def upgrade(raw: dict) -> dict:
    """A card written by an older vlod in today's shape (records' `accuracy` became `evaluation`)."""
    if raw.get("schema") not in OLD_SCHEMAS:
        return raw
    records = [
        {("evaluation" if k == "accuracy" else k): v for k, v in r.items()} if isinstance(r, dict) else r
        for r in raw.get("records", [])
    ]
    return raw | {"schema": SCHEMA, "records": records}


def validate_card(raw) -> None:
    """Raise RunCardError unless `raw` has a run card's shape."""
    if not isinstance(raw, dict):
        raise RunCardError("a run card is a JSON object")
    raw = upgrade(raw)
    if raw.get("schema") != SCHEMA:
        raise RunCardError(f"not a vlod run card (schema {raw.get('schema')!r}, expected {SCHEMA!r})")
    for key, kind in (("config", dict), ("versions", dict), ("pair", dict), ("records", list)):
        if not isinstance(raw.get(key), kind):
            raise RunCardError(f"'{key}' must be a {'list' if kind is list else 'JSON object'}")
    _number(raw.get("seconds"), "seconds")
    if raw.get("stopped") is not None and not isinstance(raw["stopped"], str):
        raise RunCardError("'stopped' must be text or null")
    _evaluation(raw.get("before"), "before")
    _evaluation(raw.get("after"), "after")
    if not isinstance(raw.get("data", {}), dict):
        raise RunCardError("'data' must be a JSON object")
    if not isinstance(raw.get("grounding", {}), dict):
        raise RunCardError("'grounding' must be a JSON object")
    if len(raw["records"]) > MAX_RECORDS:
        raise RunCardError(f"too many records ({len(raw['records'])}; limit {MAX_RECORDS})")
    for i, record in enumerate(raw["records"]):
        if not isinstance(record, dict):
            raise RunCardError(f"records[{i}] must be an object")
        for key in ("step", "loss", "std", "lang", "vis", "eta"):
            if key not in record:
                raise RunCardError(f"records[{i}] lacks {key}")
            _number(record[key], f"records[{i}].{key}")
        if record.get("evaluation") is not None:
            _evaluation(record["evaluation"], f"records[{i}].evaluation")
    for key in ("answers_before", "answers_after", "probe_before", "probe_after"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(a, dict) for a in value):
            raise RunCardError(f"'{key}' must be a list of objects")
        for answer in value:
            for text_key in ("question", "image", "no_image", "teacher_image", "teacher_no_image", "reference"):
                if text_key in answer and not isinstance(answer[text_key], str):
                    raise RunCardError(f"'{key}' entries need text in '{text_key}'")
            thumbnail = answer.get("thumbnail")
            if thumbnail is not None and not (
                isinstance(thumbnail, str) and thumbnail.startswith(THUMBNAIL_PREFIX) and len(thumbnail) < MAX_THUMBNAIL
            ):
                raise RunCardError(f"'{key}' entries' thumbnail must be a small PNG data URI")


def library_versions() -> dict[str, str]:
    """The versions a result was computed with, for run cards and reports."""
    import accelerate
    import tokenizers
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "accelerate": accelerate.__version__,
    }


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def json_safe(value):
    """NaN/inf become None (JSON has no NaN): e.g. the angle to a gradient that is zero in a module."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
