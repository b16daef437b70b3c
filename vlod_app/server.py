"""What one server keeps for all its visitors: the first-use toy build, the distillation job registry, and
the browser that renders figures as PNG and SVG.

All outlive any page's script run, so they live in `st.cache_resource`, never in session state. The toy
build runs in a server thread, once per toy folder, whatever the pages do: a visitor who navigates away
(which interrupts that page's script) does not abort it, and every visitor's page polls the same
`ToyBuild` for its real progress. The build itself is `ensure_toy_pair`, which also holds a file lock, so
two servers (or the CLI) on one machine still build only once.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from pathlib import Path

import streamlit as st

from vlod_app.jobs import JobRegistry
from vlod_core.export import figure_bytes, start_browser

logger = logging.getLogger(__name__)
CLOSE_WAIT_S = 30.0  # how long the server's exit waits for a build to leave at its next progress report


class BuildAbandoned(Exception):
    """Raised inside a build's progress report when the server is exiting: the build unwinds, cleans its
    staging folder and stops its student's process, instead of being cut off inside torch (which aborts)."""


class ToyBuild:
    """The toy pair's first-use build in a background thread, with progress any page can read."""

    def __init__(self, root: Path, world: str = "default"):
        self.root, self.world = root, world
        self.stage = "starting"
        self.fraction = 0.0
        self.error: str | None = None
        self.started = time.monotonic()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._work, name="vlod-toy-build", daemon=True)

    def start(self) -> ToyBuild:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def eta_seconds(self) -> float | None:
        if self.fraction < 0.02:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed * (1 - self.fraction) / self.fraction

    def close(self, timeout: float = CLOSE_WAIT_S) -> None:
        """Abandon the build at its next progress report and wait for it to unwind (the server is exiting)."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _progress(self, stage: str, fraction: float) -> None:
        if self._closing.is_set():
            raise BuildAbandoned("the server is exiting")
        self.stage, self.fraction = stage, min(max(fraction, 0.0), 1.0)

    def _work(self) -> None:
        from vlod_core.toy.build import ensure_toy_pair

        try:
            ensure_toy_pair(self.root, progress=self._progress, world=self.world)
            self._progress("done", 1.0)
        except BuildAbandoned:
            logger.info("the toy build of %s was abandoned: the server is exiting", self.root)
        except Exception as error:  # shown on every page that waits for it; the log keeps the traceback
            logger.exception("the toy build failed")
            self.error = f"{type(error).__name__}: {error}"


class ToyBuilds:
    """One build per toy folder; a failed one is replaced by a fresh try when asked again."""

    def __init__(self):
        self._builds: dict[Path, ToyBuild] = {}
        self._lock = threading.Lock()
        atexit.register(self.close)

    def close(self) -> None:
        """Abandon every build still going (at the server's exit)."""
        for build in list(self._builds.values()):
            build.close()

    def ensure(self, root: Path, world: str = "default") -> ToyBuild:
        with self._lock:
            build = self._builds.get(root)
            if build is None or (build.error and not build.running):
                build = self._builds[root] = ToyBuild(root, world).start()
            return build

    def get(self, root: Path) -> ToyBuild | None:
        return self._builds.get(root)


@st.cache_resource(show_spinner=False)
def figure_exporter() -> threading.Lock:
    """Start kaleido's browser once per server; exports take the returned lock (one figure at a time)."""
    start_browser()
    return threading.Lock()


def figure_file(fig, fmt: str) -> bytes:
    """A figure as PNG or SVG bytes, rendered by the server's one browser."""
    with figure_exporter():
        return figure_bytes(fig, fmt)


@st.cache_resource(show_spinner=False)
def toy_builds() -> ToyBuilds:
    return ToyBuilds()


def _setting(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        logger.warning("%s=%r is not a number; using %s", name, os.environ[name], default)
        return default


@st.cache_resource(show_spinner=False)
def job_registry() -> JobRegistry:
    """The server's jobs. VLOD_MAX_JOBS (2) run at once, VLOD_MAX_QUEUED (4) wait, a run nobody has looked
    at for VLOD_IDLE_STOP_S (300) seconds stops, and finished runs are kept VLOD_KEEP_S (3600) seconds."""
    registry = JobRegistry(
        max_running=max(1, int(_setting("VLOD_MAX_JOBS", 2))),
        max_queued=max(0, int(_setting("VLOD_MAX_QUEUED", 4))),
        idle_stop_s=_setting("VLOD_IDLE_STOP_S", 300),
        keep_s=_setting("VLOD_KEEP_S", 3600),
    )
    atexit.register(registry.close)  # workers also stop by themselves when the server's pipe closes
    return registry
