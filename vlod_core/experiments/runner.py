"""Running many distillation runs on all cores, each once: a cache keyed by what determines the result.

A `Task` is one run: a `DistillConfig` and, for the run that measures the geometry, how many rows to take
the angles over before and after training. Its key is a SHA-256 of the task, the pair's identity (spec and a
fingerprint of its weight files), the data's identity (description, and a fingerprint of the evaluation rows
and of the first training prompts, images included), the library versions and `CACHE_VERSION`. A finished
run is written to `DIR/runs/<key>.json` atomically (a temporary file, then `os.replace`) by the process that
ran it, so an interrupted check loses only the runs in flight, and a rerun with the same settings skips
every run it finds there.

Runs go to `workers` child processes (`vlod_core.child`: one per core, each with one intra-op thread, each
loading the pair once), which the parent hands one task at a time, longest first. Workers report their steps;
the parent turns them into a `Progress` with an ETA, and tells every worker to stop at its next step when the
caller asks (`should_stop`). `workers=0` runs in the calling process (tests, debugging).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlod_core.child import Child
from vlod_core.data import StoredImage, TrainingData
from vlod_core.distill import DistillConfig, distill
from vlod_core.experiments import handover
from vlod_core.experiments.plan import run_seconds
from vlod_core.pair import ModelPair, PairSpec, load_pair, resolve_device
from vlod_core.results import json_safe, library_versions

logger = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when a change to vlod changes what a cached run would hold
SCHEMA = "vlod.experiment_run/1"
GEOMETRY_STEP = 100_003  # the prompt draw the geometry rows come from: not a step any plan trains on
HASH_FILE_BYTES = 64 * 2**20  # weight files up to this size are fingerprinted by content, larger by size and time
FINGERPRINT_PROMPTS = 64  # training prompts (of seed 0) in the data fingerprint


class Cancelled(Exception):
    """The caller asked to stop; the run in flight is not cached."""


@dataclass(frozen=True)
class Task:
    config: DistillConfig
    geometry_rows: int = 0  # > 0: the angles per VDS bin on this many rows, before and after training
    geometry_bins: int = 10

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "geometry_rows": self.geometry_rows,
            "geometry_bins": self.geometry_bins,
        }


@dataclass(frozen=True)
class Progress:
    """Where a batch of runs stands; `fraction` is of the estimated work, counting runs in flight."""

    done: int  # runs finished (now or earlier: cached)
    total: int
    cached: int  # of `done`, found in the cache
    fraction: float
    elapsed_seconds: float
    eta_seconds: float | None
    running: tuple[str, ...]  # e.g. "vgs seed 1: step 120/300"


@dataclass
class Outcome:
    results: dict[str, dict]  # key -> cached run
    executed: list[str]  # keys of the runs computed this time
    cached: int  # runs found in the cache
    stopped: bool  # the caller stopped before every run finished


# ---------------------------------------------------------------------------------------------------
# Identity: what a cached run depends on besides its configuration


def _file_fingerprint(path: Path) -> str:
    stat = path.stat()
    if stat.st_size > HASH_FILE_BYTES:
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _folder_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder)}={_file_fingerprint(path)};".encode())
    return digest.hexdigest()


def pair_identity(spec: PairSpec, folders: tuple[str, str] | None = None) -> dict:
    """The spec, the device it resolves to, and a fingerprint of each local model folder (a Hub id: the id only).
    `folders` ((teacher, student), as `load_pair` reads them; None: the spec's own names) say where the pair is
    read from when the spec only names it (a toy pair, located by the entry point that offers it), so a rebuilt
    pair is a new pair."""
    identity = {"spec": dataclasses.asdict(spec), "device": resolve_device(spec.device).type}
    names = folders or (spec.teacher, spec.student)
    for role, name in zip(("teacher", "student"), names):
        folder = Path(name).expanduser()
        identity[role] = _folder_fingerprint(folder) if folder.is_dir() else name
    return identity


def _update_with_row(digest, row) -> None:
    digest.update(f"{row.question}\0{row.answer}\0{row.category}\0".encode())
    image = row.image
    if isinstance(image, StoredImage):
        source = image.source
        digest.update(source if isinstance(source, bytes) else f"{source}:{_file_fingerprint(Path(source))}".encode())
    else:
        digest.update(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())


def data_identity(data: TrainingData) -> dict:
    """The data's description and a fingerprint of its evaluation rows and first training prompts."""
    digest = hashlib.sha256()
    for row in data.eval_rows:
        _update_with_row(digest, row)
    for row in data.train.prompts(0, FINGERPRINT_PROMPTS, 0):
        _update_with_row(digest, row)
    return {"description": json_safe(data.description), "rows_sha256": digest.hexdigest()}


def task_key(task: Task, context: dict) -> str:
    """SHA-256 of the task and its context (pair, data, versions)."""
    payload = {"task": task.to_dict(), "context": context, "cache_version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(json_safe(payload), sort_keys=True).encode()).hexdigest()


def run_context(spec: PairSpec, data: TrainingData, folders: tuple[str, str] | None = None) -> dict:
    return {"pair": pair_identity(spec, folders), "data": data_identity(data), "versions": library_versions()}


# ---------------------------------------------------------------------------------------------------
# One run


def _geometry(pair: ModelPair, data: TrainingData, task: Task) -> dict | None:
    from vlod_core.geometry_batch import batch_geometry

    config = task.config
    rows = data.train.prompts(GEOMETRY_STEP, task.geometry_rows, config.seed)
    geometry = batch_geometry(
        pair,
        [row.load_image() for row in rows],
        [row.question for row in rows],
        seed=config.seed,
        sampling=config.sampling,
        ablation=config.ablation,
        bins=task.geometry_bins,
        detach_prior=config.steering.detach_prior,
    )
    return json_safe({"rows": len(rows)} | geometry.to_dict())


def execute(
    task: Task,
    key: str,
    pair: ModelPair,
    data: TrainingData,
    cache_dir: Path,
    on_step: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Run one task and write its result to the cache (atomically); raise `Cancelled` if stopped."""
    started = time.perf_counter()
    before = _geometry(pair, data, task) if task.geometry_rows else None
    geometry_seconds = time.perf_counter() - started
    steps = task.config.steps
    callback = (lambda record: on_step(record.step, steps)) if on_step is not None else None
    result = distill(pair, task.config, data, callback=callback, should_stop=should_stop)
    if result.card.stopped and should_stop is not None and should_stop():
        raise Cancelled(result.card.stopped)
    after = None
    if task.geometry_rows:
        measuring = time.perf_counter()
        after = _geometry(dataclasses.replace(pair, student=result.student), data, task)
        geometry_seconds += time.perf_counter() - measuring
    record = {
        "schema": SCHEMA,
        "key": key,
        "task": task.to_dict(),
        "card": json_safe(result.card.to_dict()),
        "geometry_before": before,
        "geometry_after": after,
        "seconds": round(time.perf_counter() - started, 3),
        "geometry_seconds": round(geometry_seconds, 3) if task.geometry_rows else 0.0,
    }
    write_atomically(cache_dir / f"{key}.json", json.dumps(record))
    return record


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def load_cached(cache_dir: Path, key: str) -> dict | None:
    path = cache_dir / f"{key}.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == key and record.get("schema") == SCHEMA else None


# ---------------------------------------------------------------------------------------------------
# Worker processes


def serve(payload: dict, channel) -> None:
    """A worker process (`python -m vlod_core.child vlod_core.experiments.runner:serve`): load the pair once,
    then run each task the parent sends ({"run": key, "task": ...}; {"run": null}: no more) until it says stop,
    reporting {"event": "ready"} and per task "step" (step, steps), "done", "cancelled" or "error"; the records
    go to the cache, where the parent reads them."""
    import torch
    from transformers.utils import logging as hf_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the workers with "stop"
    torch.set_num_threads(1)
    hf_logging.disable_progress_bar()
    cache_dir = Path(payload["cache_dir"])
    data = handover.read_data(Path(payload["data"]))
    try:
        spec = PairSpec(**payload["spec"])
        pair = load_pair(spec, tuple(payload["folders"]) if payload.get("folders") else None)
    except Exception as error:  # the parent raises it: one clear error, not a dead worker
        channel.emit({"event": "error", "key": None, "error": f"{type(error).__name__}: {error}"})
        return
    channel.emit({"event": "ready"})
    while (line := channel.receive()) is not None:
        message = json.loads(line)
        key = message["run"]
        if key is None:
            return
        task = handover.task_from_json(message["task"])
        last = [0.0]

        def on_step(step: int, steps: int, key=key) -> None:
            now = time.monotonic()
            if now - last[0] > 0.5 or step == steps:
                last[0] = now
                channel.emit({"event": "step", "key": key, "step": step, "steps": steps})

        try:
            execute(task, key, pair, data, cache_dir, on_step, channel.stopped.is_set)
        except Cancelled:
            channel.emit({"event": "cancelled", "key": key})
            return
        except Exception as error:
            logger.exception("run %s failed", key)
            channel.emit({"event": "error", "key": key, "error": f"{type(error).__name__}: {error}"})
            return
        channel.emit({"event": "done", "key": key})


# ---------------------------------------------------------------------------------------------------
# Many runs


class _Tracker:
    """Estimated work done (finished runs and the steps of runs in flight) and the ETA from it."""

    def __init__(
        self, keys: list[str], estimates: dict[str, float], labels: dict[str, str], cached: int, workers: int, progress
    ):
        self.total_runs, self.cached, self.done = len(keys), cached, cached
        self.estimates, self.labels, self.workers, self.progress = estimates, labels, max(workers, 1), progress
        self.work = sum(estimates.values()) or 1.0  # estimated seconds of the runs still to do
        self.finished_work = 0.0
        self.steps: dict[str, tuple[int, int]] = {}
        self.finished: set[str] = set()
        self.started = time.monotonic()

    def step(self, key: str, step: int, steps: int) -> None:
        if key not in self.finished:  # a worker's last message can arrive after its result
            self.steps[key] = (step, steps)

    def finish(self, key: str) -> None:
        self.steps.pop(key, None)
        self.finished.add(key)
        self.finished_work += self.estimates[key]
        self.done += 1

    def report(self) -> None:
        if self.progress is None:
            return
        partial = sum(self.estimates[k] * s / max(n, 1) for k, (s, n) in self.steps.items())
        fraction = 1.0 if self.done == self.total_runs else min(0.999, (self.finished_work + partial) / self.work)
        elapsed = time.monotonic() - self.started
        if fraction >= 1:
            eta = 0.0
        elif fraction > 0.02 and elapsed > 5:
            eta = elapsed * (1 - fraction) / fraction
        else:  # before any progress: the plan's estimate, while it lasts
            eta = self.work / self.workers - elapsed if elapsed < self.work / self.workers else None
        running = tuple(f"{self.labels[k]}: step {s}/{n}" for k, (s, n) in self.steps.items())
        self.progress(Progress(self.done, self.total_runs, self.cached, fraction, elapsed, eta, running))


def run_tasks(
    tasks: dict[str, Task],
    spec: PairSpec,
    data: TrainingData,
    cache_dir: str | Path,
    *,
    workers: int = 2,
    pair: ModelPair | None = None,
    labels: dict[str, str] | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    folders: tuple[str, str] | None = None,
) -> Outcome:
    """Every task (key -> task) that is not cached yet, on `workers` processes (0: here, with `pair`), each
    loading `spec`'s pair from `folders` (`pair_identity`)."""
    cache_dir = Path(cache_dir)
    labels = labels or {key: key[:8] for key in tasks}
    results = {key: record for key in tasks if (record := load_cached(cache_dir, key)) is not None}
    estimates = {
        k: run_seconds(task.config, task.geometry_rows, len(data.eval_rows), data.description.get("world", "default"))
        for k, task in tasks.items()
        if k not in results
    }
    todo = sorted(estimates, key=lambda k: -estimates[k])  # longest first: the workers finish together
    tracker = _Tracker(list(tasks), estimates, labels, len(results), workers, progress)
    tracker.report()
    stop_requested = should_stop or (lambda: False)
    executed: list[str] = []
    stopped = False
    if todo and workers == 0:
        pair = pair or load_pair(spec, folders)
        for key in todo:
            if stop_requested():
                stopped = True
                break

            def on_step(step: int, steps: int, key=key) -> None:
                tracker.step(key, step, steps)
                tracker.report()

            try:
                results[key] = execute(tasks[key], key, pair, data, cache_dir, on_step, stop_requested)
            except Cancelled:
                stopped = True
                break
            executed.append(key)
            tracker.finish(key)
            tracker.report()
    elif todo:
        stopped = _run_in_processes(
            tasks, todo, spec, folders, data, cache_dir, workers, tracker, stop_requested, results, executed
        )
    return Outcome(results, executed, len(tasks) - len(todo), stopped)


def _run_in_processes(
    tasks, todo, spec, folders, data, cache_dir, workers, tracker, stop_requested, results, executed
) -> bool:
    """Run `todo` (longest first) on `workers` child processes, each loading `spec`'s pair from `folders`; fill
    `results` and `executed`; True if stopped."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".work-", dir=cache_dir))
    events: queue.Queue = queue.Queue()
    children: list[Child] = []
    waiting, remaining, stopped = list(todo), set(todo), False

    def hand_out(index: int) -> None:
        key = waiting.pop(0) if waiting and not stopped else None
        if key is None:
            children[index].send(json.dumps({"run": None}))
            return
        children[index].send(json.dumps({"run": key, "task": handover.task_to_json(tasks[key])}))

    try:
        handover.write_data(data, work)
        payload = json.dumps(
            {"spec": dataclasses.asdict(spec), "folders": folders, "cache_dir": str(cache_dir), "data": str(work)}
        )
        for index in range(min(workers, len(todo))):
            log = cache_dir / f".worker-{index}.log"
            log.unlink(missing_ok=True)
            child = Child(
                [sys.executable, "-m", "vlod_core.child", "vlod_core.experiments.runner:serve"],
                lambda message, index=index: events.put((index, message)),
                log,
                env={"OMP_NUM_THREADS": "1"},
            )
            child.send(payload)
            children.append(child)
        while remaining:
            try:
                index, message = events.get(timeout=0.5)
            except queue.Empty:
                if all(child.ended for child in children) and events.empty():
                    if stopped:
                        break
                    codes = ", ".join(str(child.poll()) for child in children)
                    tails = "".join(f"\n{child.log_tail(500)}" for child in children if child.log_tail(500))
                    raise RuntimeError(
                        f"the worker processes ended (exit codes {codes}) before every run finished; the runs "
                        f"they finished are cached: run again to resume{tails}"
                    ) from None
            else:
                event, key = message.get("event"), message.get("key")
                if event == "error":
                    raise RuntimeError(f"a worker failed{f' on run {key}' if key else ''}: {message['error']}")
                if event == "ready":
                    hand_out(index)
                elif event == "step":
                    tracker.step(key, message["step"], message["steps"])
                elif event == "done":
                    results[key] = load_cached(cache_dir, key)
                    executed.append(key)
                    remaining.discard(key)
                    tracker.finish(key)
                    hand_out(index)
                elif event == "cancelled":
                    remaining.discard(key)
                    stopped = True
            tracker.report()
            if not stopped and stop_requested():
                stopped = True
            if stopped:
                for child in children:
                    child.stop()
    finally:  # also on Ctrl-C or an error: stop the workers at their next step, keep what is cached
        for child in children:
            child.stop()
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.terminate()
        shutil.rmtree(work, ignore_errors=True)
    return stopped
