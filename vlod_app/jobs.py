"""Distillation runs in a background thread owned by the session, so the page never freezes.

A `DistillJob` runs `vlod_core.distill.distill` once per chosen rule, one after the other from the same
seed (two CPU cores gain nothing from running them at once). The thread never touches Streamlit: the
distill callback appends step records to the job under a lock, and the page polls the job from an
`st.fragment(run_every=…)`. Stopping sets an event that `distill`'s `should_stop` reads between steps.
`distill` trains a private copy of the student, so the cached, shared pair is never modified.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vlod_core.data import Row, TrainingData
from vlod_core.distill import DistillConfig, distill
from vlod_core.pair import ModelPair
from vlod_core.results import RunCard

logger = logging.getLogger(__name__)


@dataclass
class RuleRun:
    rule: str
    config: DistillConfig
    records: list[dict] = field(default_factory=list)
    card: RunCard | None = None
    student: object | None = None  # the trained copy
    state: str = "waiting"  # waiting, running, done, skipped, failed


class DistillJob:
    def __init__(
        self,
        pair: ModelPair,
        configs: dict[str, DistillConfig],
        data: TrainingData,
        probes: list[tuple[Image.Image, str]],
    ):
        self.pair, self.data = pair, data
        self.probes = [Row(image, question) for image, question in probes]
        self.runs = {rule: RuleRun(rule, config) for rule, config in configs.items()}
        self.error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="vlod-distill", daemon=True)

    def start(self) -> DistillJob:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive() and self._thread.ident is not None

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _work(self) -> None:
        for run in self.runs.values():
            if self._stop.is_set():
                run.state = "skipped"
                continue
            run.state = "running"

            def callback(record, run=run) -> None:
                with self._lock:
                    run.records.append(record.to_dict())

            try:
                result = distill(
                    self.pair,
                    run.config,
                    self.data,
                    callback=callback,
                    should_stop=self._stop.is_set,
                    probes=self.probes,
                )
            except Exception as error:  # reported on the page; the log keeps the traceback
                logger.exception("distillation with rule %s failed", run.rule)
                run.state = "failed"
                self.error = f"{run.rule}: {type(error).__name__}: {error}"
                continue
            run.card, run.student, run.state = result.card, result.student, "done"

    def snapshot(self) -> dict[str, dict]:
        """Per rule: a copy of the records so far, the planned steps, the state and the card's accuracies."""
        with self._lock:
            return {
                rule: {
                    "records": list(run.records),
                    "steps": run.config.steps,
                    "state": run.state,
                    "before": run.card.before if run.card else None,
                    "after": run.card.after if run.card else None,
                }
                for rule, run in self.runs.items()
            }

    def fraction(self) -> float:
        with self._lock:
            total = sum(run.config.steps for run in self.runs.values())
            done = sum(
                run.config.steps if run.state in ("done", "skipped", "failed") else len(run.records)
                for run in self.runs.values()
            )
        return min(1.0, done / max(total, 1))

    def cards(self) -> dict[str, RunCard]:
        return {rule: run.card for rule, run in self.runs.items() if run.card is not None}


def student_zip(student, processor) -> bytes:
    """The distilled student as a zipped `save_pretrained` folder (safetensors) with its processor."""
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="vlod-student-") as folder:
        student.save_pretrained(folder, safe_serialization=True)
        processor.save_pretrained(folder)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(folder).rglob("*")):
                if path.is_file():
                    archive.write(path, Path("student") / path.relative_to(folder))
    return buffer.getvalue()
