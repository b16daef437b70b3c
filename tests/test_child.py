"""The one child-process protocol (`vlod_core.child`): JSON lines out, lines in, "stop" and the end of the input.

The toy build's student, the app's workers and the paper check's workers all speak it; what is checked here is
the protocol itself, with jobs of a few lines (no model). The users' own tests: test_toy_build.py (Beside),
test_jobs.py (the app's registry), test_experiments.py (the paper check's workers).
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

from vlod_core.child import Child

pytestmark = pytest.mark.slow  # starts processes

JOBS = "tests.test_child"  # how the child imports this file's jobs (the repository root is on its path)


def echo_job(payload: dict, channel) -> dict:
    print("printed by a library: this goes to the log, not to the parent")
    channel.on_stop.append(lambda: print("on_stop ran", file=sys.stderr, flush=True))
    while (line := channel.receive()) is not None:
        channel.emit({"event": "echo", "line": line, "prefix": payload["prefix"]})
    return {"stopped": channel.stopped.is_set()}


def _start(tmp_path, messages: list, ended: list) -> Child:
    child = Child(
        [sys.executable, "-m", "vlod_core.child", f"{JOBS}:echo_job"],
        messages.append,
        tmp_path / "child.log",
        on_exit=ended.append,
    )
    child.send('{"prefix": "> "}')
    return child


def _wait(condition, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_child_answers_each_line_and_ends_when_told_to_stop(tmp_path):
    messages, ended = [], []
    child = _start(tmp_path, messages, ended)
    assert child.send("one") and child.send("two")
    _wait(lambda: len(messages) >= 2)
    assert [(m["event"], m["line"], m["prefix"]) for m in messages] == [("echo", "one", "> "), ("echo", "two", "> ")]
    child.stop()
    assert child.wait(timeout=60) == 0
    assert messages[-1] == {"event": "result", "value": {"stopped": True}}
    assert ended == [0]  # on_exit, after every message
    log = child.log_tail()
    assert "printed by a library" in log and "on_stop ran" in log
    assert not any("printed by a library" in str(m) for m in messages)
    assert not child.send("after the end")


def test_a_child_whose_parent_goes_away_stops(tmp_path):
    """The end of its input is the parent gone: the child stops as on "stop" (an app worker never outlives
    its server)."""
    messages, ended = [], []
    child = _start(tmp_path, messages, ended)
    child.send("one")
    _wait(lambda: messages)
    child.process.stdin.close()
    assert child.wait(timeout=60) == 0
    assert messages[-1]["value"] == {"stopped": True}


def test_a_child_that_cannot_start_raises_and_one_that_dies_reports_its_code(tmp_path):
    with pytest.raises(OSError):
        Child([str(tmp_path / "no-such-program")], print)
    ended = []
    done = threading.Event()
    child = Child(
        [sys.executable, "-c", 'import sys; print(\'{"event": "half"}\', flush=True); sys.exit(5)'],
        lambda message: done.set(),
        tmp_path / "dies.log",
        on_exit=ended.append,
    )
    assert child.wait(timeout=60) == 5 and done.is_set() and ended == [5]
