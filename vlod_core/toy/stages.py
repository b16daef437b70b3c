"""What the two toy builds share: the frame around their three stages.

Both builds (`toy.build`, the default world; `toy.reasoning_build`) pretrain the vision tower, train the teacher
here while the student trains in a second process (`vlod_core.child`) from the tower's weights, and write
everything into a staging folder that replaces the pair only when the build is whole. A `BuildFrame` owns that
folder, the thread count, the progress over all the build's steps, the clock, and the student's process, with
its fallback: when that process cannot run, the student trains here after the teacher (the same weights).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from vlod_core.child import Beside, WorkerDied

logger = logging.getLogger(__name__)

Progress = Callable[[str, float], None]  # (stage, fraction of the whole build done)
TOWER_FILE = "pretrained_tower.safetensors"  # handed to the student's process, removed before the rename
STUDENT_LOG = "student.log"


def every(n: int, report: Callable[[int], None]) -> Callable[[int, float], None]:
    """A training callback that passes every `n`th step on to `report(step)`."""
    return lambda step, _loss: report(step) if step % n == n - 1 else None


class BuildFrame:
    """One build, as a context manager: `staging` to write into, `report` progress, `start_student` beside,
    `student_card` when the teacher is done, `finish` to put the pair in place. Leaving it without `finish`
    (an error) removes the staging folder and leaves `out` as it was."""

    def __init__(self, out: Path, prefix: str, threads: int, total_steps: int, progress: Progress | None = None):
        self.out, self._prefix, self._threads = Path(out), prefix, threads
        self._total, self._progress = total_steps, progress
        self._student: Beside | None = None

    def __enter__(self) -> "BuildFrame":
        self.started, self._cpu_started = time.perf_counter(), time.process_time()
        self._previous_threads = torch.get_num_threads()
        torch.set_num_threads(self._threads)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=self._prefix, dir=self.out.parent))
        return self

    def __exit__(self, *exc) -> None:
        torch.set_num_threads(self._previous_threads)
        if self._student is not None:
            self._student.stop()
        if self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)

    def report(self, stage: str, done: int) -> None:
        if self._progress is not None:
            self._progress(stage, min(done, self._total) / self._total)

    @property
    def student_steps(self) -> int:
        """The steps the student's process has reported (0 when it trains here)."""
        return self._student.steps if self._student is not None else 0

    def start_student(self, job: str, config, tower_state: dict) -> None:
        """`job` ("module:function", see `student_inputs`) in a second process, from the tower's weights."""
        save_file(tower_state, self.staging / TOWER_FILE)
        payload = {"config": asdict(config), "staging": str(self.staging)}
        self._student = Beside(job, payload, self.staging / STUDENT_LOG)

    def student_card(self, train_here: Callable[[Callable[[int], None]], dict], first: int) -> dict:
        """The student's card entries: from its process (reporting its steps after the `first` ones), or, if it
        was not started or died, from `train_here(on_step)`."""

        def on_step(steps: int) -> None:
            self.report("training student", first + steps)

        card = None
        if self._student is not None:
            try:
                card = self._student.result(waiting=on_step)
            except WorkerDied as reason:
                logger.warning("training the student here instead: %s", reason)
        card = card or train_here(on_step)
        for scratch in (TOWER_FILE, STUDENT_LOG):
            (self.staging / scratch).unlink(missing_ok=True)
        return card

    def finish(self, card: dict) -> None:
        """Stamp the card with the build's time, write it, and put the staging folder in place of `out`."""
        card["build_seconds"] = round(time.perf_counter() - self.started, 1)
        card["build_cpu_seconds"] = round(time.process_time() - self._cpu_started, 1)  # this process only
        (self.staging / "card.json").write_text(json.dumps(card, indent=2))
        self.report("done", self._total)
        if self.out.exists():
            shutil.rmtree(self.out)
        self.staging.rename(self.out)


def student_inputs(payload: dict, config_class) -> tuple:
    """In the student's process: its build config, the tower's weights and the staging folder, from a
    `start_student` payload (one thread, no download bars, as the build itself)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    config = config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload["config"].items()})
    torch.set_num_threads(config.threads)
    staging = Path(payload["staging"])
    return config, load_file(staging / TOWER_FILE), staging
