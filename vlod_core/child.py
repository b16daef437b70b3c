"""Work in another Python process, and the one way vlod talks to it: JSON lines.

Three things run in processes of their own: the toy build's student (it trains while the teacher trains), the
app's distillation jobs (a job's second rule trains beside its first), and the paper check's workers. All three
use this module. The parent starts `python -m MODULE ...` as a `Child`: messages to the child are lines on its
standard input ("stop" asks it to stop; the end of the input means the parent is gone), messages from it are
JSON objects, one a line, on its standard output; its standard error goes to a log file whose tail a failure
quotes. The child's end is a `Channel`: it keeps the real standard output for the protocol and sends everything
else the libraries print to the log.

Not `multiprocessing`: its spawn re-imports the caller's main module, and Streamlit installs the app's script
as `__main__`, so a spawned child would run the app again. `python -m vlod_core.child module:function` calls
`function(payload, channel)` with the JSON payload of the first input line; a `Beside` runs one such job and
returns its value.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])  # the folder that holds vlod_core (and vlod_app)
STOP = "stop"


class WorkerDied(RuntimeError):
    """The process ended without a result: it was killed, or failed before its job could run."""


class Child:
    """`command` (e.g. `[sys.executable, "-m", "vlod_app.worker", folder]`) in a process of its own.

    Each JSON object it writes is passed to `on_message` (on a reader thread), then `on_exit(exit code)` once
    its output ends. `log`: its standard error (None: this process's). `env`: added to this environment; the
    package root is always on its PYTHONPATH. Raises OSError if the process cannot start.
    """

    def __init__(
        self,
        command: list[str],
        on_message: Callable[[dict], None],
        log: Path | None = None,
        *,
        env: dict[str, str] | None = None,
        on_exit: Callable[[int], None] | None = None,
        cwd: str | Path | None = None,
    ):
        self.log = Path(log) if log is not None else None
        path = os.pathsep.join(filter(None, [PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))
        handle = open(self.log, "ab") if self.log is not None else None  # noqa: SIM115 (the child holds its copy)
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=handle,
                text=True,
                env=os.environ | {"PYTHONPATH": path} | (env or {}),
                cwd=cwd,
            )
        finally:
            if handle is not None:
                handle.close()
        self._on_message, self._on_exit = on_message, on_exit
        self._write_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="vlod-child-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict):
                self._on_message(message)
        code = self.process.wait()
        if self._on_exit is not None:
            self._on_exit(code)

    def send(self, line: str) -> bool:
        """One line to the child; False if it has ended (or closed its input)."""
        with self._write_lock:
            try:
                self.process.stdin.write(line + "\n")
                self.process.stdin.flush()
                return True
            except (OSError, ValueError):
                return False

    def stop(self) -> None:
        """Ask the child to stop (it ends its current step first)."""
        self.send(STOP)

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code once it has ended and every message has been passed on (TimeoutExpired: not yet)."""
        code = self.process.wait(timeout=timeout)
        self._reader.join()
        return code

    def poll(self) -> int | None:
        return self.process.poll()

    @property
    def ended(self) -> bool:
        """It has exited and every message it wrote has been passed on."""
        return not self._reader.is_alive()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def terminate(self, timeout: float = 10) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=timeout)

    def log_tail(self, chars: int = 2000) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        return self.log.read_text(errors="replace")[-chars:]


class Channel:
    """The child's end of the protocol: `emit` a message to the parent, `receive` its next line.

    Built first thing in the child: from then on the real standard output carries only `emit`'s lines and
    whatever else is printed goes to the standard error (the log). "stop", or the end of the input (the parent
    is gone), sets `stopped` and calls each `on_stop` function.
    """

    def __init__(self):
        self._out = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()
        self._inbox: queue.Queue[str | None] = queue.Queue()
        self.stopped = threading.Event()
        self.on_stop: list[Callable[[], None]] = []
        threading.Thread(target=self._listen, name="vlod-channel", daemon=True).start()

    def _listen(self) -> None:
        for line in sys.stdin:
            line = line.rstrip("\n")
            if line == STOP:
                break
            self._inbox.put(line)
        self.stopped.set()
        self._inbox.put(None)
        for function in list(self.on_stop):
            function()

    def emit(self, message: dict) -> None:
        with self._lock:
            self._out.write(json.dumps(message) + "\n")

    def step(self, steps: int) -> None:
        """A job's progress: `steps` done (a `Beside`'s `steps`)."""
        self.emit({"event": "step", "steps": steps})

    def receive(self) -> str | None:
        """The parent's next line; None once it has said stop or gone."""
        line = self._inbox.get()
        if line is None:
            self._inbox.put(None)  # every later call sees the end too
        return line


class Beside:
    """`function(payload, channel)` from `job` ("module:function") running in a second Python process; `steps`
    is the last count it passed to `channel.step`, `result()` its return value."""

    def __init__(self, job: str, payload: dict, log: Path):
        self._steps = 0
        self._outcome: tuple[str, Any] | None = None
        Path(log).unlink(missing_ok=True)
        self._child = Child([sys.executable, "-m", "vlod_core.child", job], self._receive, log)
        self._child.send(json.dumps(payload))

    def _receive(self, message: dict) -> None:
        event = message.get("event")
        if event == "step":
            self._steps = int(message["steps"])
        elif event in ("result", "error"):
            self._outcome = (event, message.get("value"))

    @property
    def steps(self) -> int:
        return self._steps

    def result(self, waiting: Callable[[int], None] | None = None, poll: float = 0.5) -> Any:
        """The job's return value, once it has finished (`waiting(steps)` every `poll` seconds until then)."""
        while True:
            try:
                code = self._child.wait(timeout=poll)
                break
            except subprocess.TimeoutExpired:
                if waiting is not None:
                    waiting(self.steps)
        if self._outcome is None:
            raise WorkerDied(
                f"the worker process ended without a result (exit code {code}); its log ends:\n{self._child.log_tail()}"
            )
        kind, value = self._outcome
        if kind == "error":
            raise RuntimeError(f"the worker process failed: {value}")
        return value

    def stop(self) -> None:
        self._child.terminate()


def main() -> None:
    """`python -m vlod_core.child module:function`: run one job; its value (or its error) is its last message."""
    channel = Channel()
    module, _, function = sys.argv[1].partition(":")
    job = getattr(importlib.import_module(module), function)
    payload = json.loads(channel.receive() or "{}")
    try:
        result = job(payload, channel)
    except Exception as error:  # noqa: BLE001 (reported to the parent, which raises it)
        channel.emit({"event": "error", "value": f"{type(error).__name__}: {error}\n{traceback.format_exc()}"})
        sys.exit(1)
    channel.emit({"event": "result", "value": result})


if __name__ == "__main__":
    main()
