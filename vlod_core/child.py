"""One job in a second Python process beside the caller's own work, with its progress readable while it runs.

The toy build trains the student while the teacher trains: after the vision tower is pretrained they share
nothing, and each runs torch on one thread, so on a 2-core machine the two take the time of the longer one.
The job runs as `python -m vlod_core.child module:function`, not through `multiprocessing`: its spawn
re-imports the caller's main module, and Streamlit installs the app's script as `__main__`, so a spawned
child would run the app again. The payload goes in as JSON on stdin; progress and the result come back as
JSON lines on stdout; stderr goes to a log file whose tail a failure quotes.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

PREFIX = "vlod-beside"  # marks the lines meant for the parent; anything else a job prints is ignored
PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the folder that holds vlod_core


class WorkerDied(RuntimeError):
    """The process ended without a result: it was killed, or failed before its job could run."""


class Beside:
    """`function(payload, on_step)` from `job` ("module:function") running in a second Python process;
    `steps` is the last count it passed to `on_step`."""

    def __init__(self, job: str, payload: dict, log: Path):
        self._log_path = Path(log)
        self._log = open(self._log_path, "w")  # noqa: SIM115 (open for the process's lifetime; closed in wait)
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "vlod_core.child", job],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
        )
        self._process.stdin.write(json.dumps(payload))
        self._process.stdin.close()
        self._steps = 0
        self._outcome: tuple[str, Any] | None = None
        self._reader = threading.Thread(target=self._read, name="vlod-beside-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._process.stdout:
            prefix, _, rest = line.rstrip("\n").partition(" ")
            if prefix != PREFIX:
                continue
            kind, _, value = rest.partition(" ")
            if kind == "step":
                self._steps = int(value)
            elif kind in ("result", "error"):
                self._outcome = (kind, json.loads(value))

    @property
    def steps(self) -> int:
        return self._steps

    def result(self, waiting: Callable[[int], None] | None = None, poll: float = 0.5) -> Any:
        """The job's return value, once it has finished (`waiting(steps)` every `poll` seconds until then)."""
        while True:
            try:
                code = self._process.wait(timeout=poll)
                break
            except subprocess.TimeoutExpired:
                if waiting is not None:
                    waiting(self.steps)
        self._reader.join()
        self._log.close()
        if self._outcome is None:
            tail = self._log_path.read_text(errors="replace")[-2000:]
            raise WorkerDied(f"the worker process ended without a result (exit code {code}); its log ends:\n{tail}")
        kind, value = self._outcome
        if kind == "error":
            raise RuntimeError(f"the worker process failed: {value}")
        return value

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._log.close()


def main() -> None:
    module, _, function = sys.argv[1].partition(":")
    job = getattr(importlib.import_module(module), function)
    payload = json.loads(sys.stdin.read())

    def on_step(n: int) -> None:
        print(f"{PREFIX} step {n}", flush=True)

    try:
        result = job(payload, on_step)
    except Exception as error:  # noqa: BLE001 (reported to the parent, which raises it)
        message = f"{type(error).__name__}: {error}\n{traceback.format_exc()}"
        print(f"{PREFIX} error {json.dumps(message)}", flush=True)
        sys.exit(1)
    print(f"{PREFIX} result {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    main()
