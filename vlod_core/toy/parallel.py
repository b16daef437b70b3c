"""One job in a second process beside the caller's own work, with its progress readable while it runs.

The toy build trains the student while the teacher trains: after the vision tower is pretrained they share
nothing, and each runs torch on one thread, so on a 2-core machine the two take the time of the longer one.
The process is started with `spawn` (a fresh interpreter: no forked copy of a parent's threads, such as a
Streamlit server's) and is a daemon, so it never outlives the build.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable
from typing import Any

Job = Callable[..., Any]  # called as job(*args, on_step), where on_step(n) records n steps done


def _main(job: Job, args: tuple, steps, results) -> None:
    def on_step(n: int) -> None:
        steps.value = n

    try:
        results.put(("ok", job(*args, on_step)))
    except Exception as error:  # noqa: BLE001 (the parent raises it, with the worker's traceback)
        import traceback

        results.put(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


class WorkerDied(RuntimeError):
    """The process ended without a result: killed, or it could not start (spawn re-imports the caller's main
    module, which it cannot from a script read from stdin)."""


class Beside:
    """`job(*args, on_step)` running in a spawned process; `steps` is how far it has got."""

    def __init__(self, job: Job, *args):
        context = multiprocessing.get_context("spawn")
        self._steps = context.Value("i", 0)
        self._results = context.Queue()
        self._process = context.Process(
            target=_main, args=(job, args, self._steps, self._results), name="vlod-beside", daemon=True
        )
        self._process.start()

    @property
    def steps(self) -> int:
        return self._steps.value

    def result(self, waiting: Callable[[int], None] | None = None, poll: float = 0.5) -> Any:
        """The job's return value, once it has finished (`waiting(steps)` every `poll` seconds until then)."""
        while True:
            try:
                status, value = self._results.get(timeout=poll)
                break
            except queue.Empty:
                if not self._process.is_alive():
                    raise WorkerDied(f"the worker process died (exit code {self._process.exitcode})") from None
                if waiting is not None:
                    waiting(self.steps)
        self._process.join()
        if status == "error":
            raise RuntimeError(f"the worker process failed: {value}")
        return value

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
