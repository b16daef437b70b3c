"""Distillation jobs that outlive a page: a registry, one worker process per job, a queue, and time-outs.

A `JobRegistry` lives once per server (the app keeps it in `st.cache_resource`) and holds every job by a
short random id, which the page keeps in the URL (`?run=…`): a reload or a shared link finds the same job
with its progress and its Stop. Each job runs `python -m vlod_app.worker` (see there) in its own process,
so concurrent runs share the cores instead of one interpreter lock, and the server's cached pair is never
touched. At most `max_running` jobs run at once; up to `max_queued` more wait in line (their position is
shown) and any more are refused with a clear message. A job whose page nobody has polled for `idle_stop_s`
stops itself (its tab was closed), and finished jobs are forgotten after `keep_s`, with their folder.

A second kind of job, `ExperimentsJob`, runs the paper check (`vlod_core.experiments`) for the *Paper check*
page (`?check=…`): at most one at a time per server (a second request joins the running one), and it is
not stopped when nobody watches, since its runs are cached and its report, under VLOD_HOME, is for everyone.

Nothing here imports Streamlit: the pages poll `Job.snapshot()` from a fragment.
"""

from __future__ import annotations

import io
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType

from PIL import Image

from vlod_core import settings
from vlod_core.child import Child
from vlod_core.distill import DistillConfig
from vlod_core.pair import PairSpec
from vlod_core.results import RunCard
from vlod_core.steering import RULES
from vlod_core.toy import world_of

ROOT = Path(__file__).resolve().parents[1]  # the checkout: the worker runs here (`Child` puts it on the path)
FINISHED = ("done", "skipped", "failed")  # a rule's final states; "waiting" and "running" are not
# The form's settings (the page draws a widget for each from its config field) and the app's own defaults: the
# configs' defaults but for the rules compared, a shorter run, and a held-out measurement every 50 steps.
FORM_SETTINGS = ("steps", "lr", "batch", "seed", "gamma", "lam", "eval_every", "geometry_every", "lora_rank")
APP_DEFAULTS = {"steps": 300, "eval_every": 50}  # two rules side by side, a visible gain in about a minute each
DEFAULT_SETTINGS = {"rules": ["standard", "vgs"]} | {
    name: APP_DEFAULTS.get(name, entry.default)
    for name, entry in settings.entries(DistillConfig).items()
    if name in FORM_SETTINGS
}
EVAL_EXAMPLES = 200
# Each toy world's own app defaults, beside APP_DEFAULTS (one source: the page's form, its links and the class
# demo read them through `default_settings`). The reasoning pair's: the one setting of its full check
# (docs/experiments/reasoning) where a rule gained within 300 steps, vgs_anchored at lr 1e-3 (+6.9 ± 1.0 points,
# 3 seeds), beside standard at the same rate, whose chains stop parsing on 2 of the 3 seeds (seed 0 among them).
# At 3e-4 (150 steps, the earlier defaults) no rule gained within a minute. Each held-out evaluation costs a
# 64-token chain a row, so two evaluations during the run on 100 rows. Measured (README, "The app"):
# `python bench/app_latency.py --demo --world reasoning`.
WORLD_APP_DEFAULTS = MappingProxyType(
    {
        "default": MappingProxyType({}),
        "reasoning": MappingProxyType(
            {"rules": ("standard", "vgs_anchored"), "steps": 300, "lr": 1e-3, "eval_every": 150, "eval_examples": 100}
        ),
    }
)
# A class demo, offered first on page 3: standard and VGS in fewer steps than the defaults, evaluated on the same
# 200 held-out rows three times (before, at step 100, after) instead of seven, so it is over sooner and its gain
# stands out of the rows' noise (README, "The app": its measured time and gains).
CLASS_DEMO = DEFAULT_SETTINGS | {"steps": 200, "eval_every": 100}
# My images: a set of a few rows is seen steps × batch / rows times over; past this many passes over each
# training row the student learns the rows' wording, not the images (300 steps at batch 32 on the 15 training
# rows of the example set: 640 passes, and "it is blue the triangle"). The fitted settings stay under it.
MAX_PASSES = 40


def default_settings(world: str = "default") -> dict:
    """The form's defaults for a pair of toy world `world`: DEFAULT_SETTINGS with the world's own beside."""
    return DEFAULT_SETTINGS | dict(WORLD_APP_DEFAULTS[world])


def class_demo(world: str = "default") -> dict:
    """The class demo's settings: standard and VGS, fewer steps and held-out rows than the default world's form;
    in another world, that world's own defaults (its rules, rate and length)."""
    return CLASS_DEMO if world == "default" else default_settings(world)


def passes(form: dict, train_rows: int) -> float:
    """How many times a run with these settings sees each training row (steps × batch / rows)."""
    return int(form["steps"]) * int(form["batch"]) / max(train_rows, 1)


def fitted_steps(form: dict, train_rows: int) -> int:
    """The most steps (at the form's batch) that keep a set of `train_rows` rows under MAX_PASSES passes."""
    low = int(settings.entries(DistillConfig)["steps"].about.low)
    return max(low, min(int(form["steps"]), MAX_PASSES * max(train_rows, 1) // max(int(form["batch"]), 1)))


# Before a job's first step: its worker process(es) start, load the pair, check its grounding and take the
# teacher's reference answers. Measured on the quiet 2-core machine (2026-12-07): the class demo side by side took
# 43.9 s from submit to done, its slower rule's own run 28.9 s; the default settings 55.7 s against an estimate of
# 40.2 s for the runs alone.
JOB_START_SECONDS = 15.0


def seconds_estimate(form: dict, world: str = "default", side_by_side: bool = False) -> float:
    """About how long a job of these settings takes from Run to its results on one quiet core per rule: its start
    (`JOB_START_SECONDS`) and the rules one after the other, or with `side_by_side` (the registry's `parallel`)
    the slowest rule's time (`vlod_core.experiments.plan.run_seconds`, measured on the world's toy pair)."""
    from vlod_core.experiments.plan import run_seconds

    seconds = [run_seconds(config, world=world) for config in distill_configs(form, world).values()]
    return JOB_START_SECONDS + (max(seconds) if side_by_side else sum(seconds))


class RegistryFull(RuntimeError):
    """No room for another job on this server; the message says so for the user."""


def distill_configs(form: dict, world: str = "default") -> dict[str, DistillConfig]:
    """One `DistillConfig` per chosen rule from the form's settings, with the run settings the toy world `world`'s
    answers need (`toy.source.world_settings`: the reasoning world's lengths and boxed final answers); ValueError
    names a bad field."""
    from vlod_core.toy.source import world_settings

    rules = list(form.get("rules") or [])
    if not rules:
        raise ValueError("choose at least one update rule")
    unknown = [rule for rule in rules if rule not in RULES]
    if unknown:
        raise ValueError(f"unknown update rule {unknown[0]!r} (choose from {', '.join(RULES)})")
    values = {name: form[name] for name in FORM_SETTINGS if name in form}
    values["eval_examples"] = int(form.get("eval_examples", EVAL_EXAMPLES))
    values |= world_settings(world)
    return {rule: settings.build(DistillConfig, values | {"rule": rule}) for rule in rules}


@dataclass
class RuleRun:
    rule: str
    steps: int
    state: str = "waiting"  # waiting, running, done, skipped (never started), failed
    records: list[dict] = field(default_factory=list)
    before: dict | None = None  # the held-out metrics before its first step, as soon as the worker has them
    card: RunCard | None = None
    student: Path | None = None  # the trained student's folder (safetensors + processor)
    error: str | None = None


class Job:
    """One submitted run: its settings, its worker process and what the worker has reported so far."""

    kind = "distill"
    idle_stops = True  # stopped when nobody has looked at it for a while

    def __init__(self, job_id: str, spec: PairSpec, settings: dict, folder: Path, threads: int, clock=time.monotonic):
        self.id = job_id
        self.clock = clock  # seconds, monotonic; the registry's (a test's fake one advances by hand)
        self.spec = spec
        self.settings = settings
        self.folder = folder
        self.threads = threads
        self.runs = {rule: RuleRun(rule, int(settings["steps"])) for rule in settings.get("rules", ())}
        self.parallel = False  # its rules train side by side (the registry decides); the ETA is then the slowest's
        self.state = "queued"  # queued, starting, running, finished
        self.error: str | None = None
        self.stop_reason: str | None = None
        self.finished: float | None = None
        self.last_seen = clock()
        self.process: Child | None = None
        self._said_end = False  # the worker said "end": its exit is not a failure
        self._lock = threading.Lock()

    # -------------------------------------------------------------------------------------- page side

    def touch(self) -> None:
        """A page is looking at this job (it stops itself when nobody has for a while)."""
        self.last_seen = self.clock()

    def stop(self, reason: str = "stopped by the user") -> None:
        with self._lock:
            if self.state == "finished" or self.stop_reason:
                return
            self.stop_reason = reason
            process = self.process
            if self.state == "queued":
                self._finish_locked()
        if process is not None:
            process.stop()

    @property
    def done(self) -> bool:
        return self.state == "finished"

    @property
    def stopping(self) -> bool:
        return self.stop_reason is not None and not self.done

    def snapshot(self) -> dict[str, dict]:
        """Per rule: a copy of its records so far, its planned steps, its state and the card's accuracies."""
        with self._lock:
            return {
                rule: {
                    "records": list(run.records),
                    "steps": run.steps,
                    "state": run.state,
                    "before": run.card.before if run.card else run.before,
                    "after": run.card.after if run.card else None,
                }
                for rule, run in self.runs.items()
            }

    def cards(self) -> dict[str, RunCard]:
        with self._lock:
            return {rule: run.card for rule, run in self.runs.items() if run.card is not None}

    def students(self) -> dict[str, Path]:
        with self._lock:
            return {rule: run.student for rule, run in self.runs.items() if run.student is not None}

    def not_run(self) -> list[str]:
        """Rules that never started (the job was stopped before them)."""
        with self._lock:
            return [rule for rule, run in self.runs.items() if run.state == "skipped"]

    def fraction(self) -> float:
        with self._lock:
            total = sum(run.steps for run in self.runs.values())
            done = sum(run.steps if run.state in FINISHED else len(run.records) for run in self.runs.values())
        return min(1.0, done / max(total, 1))

    def eta_seconds(self) -> float | None:
        """Seconds left, measured from this run's own steps (None before a rule's first two steps).

        A rule's records carry its seconds since it began (its "before" measurement included), so a rule under
        way goes on at its own pace (its periodic measurements included) and needs its overhead once more for
        the "after" measurement; the first record's seconds less one step is that overhead. A rule still
        waiting costs the measured rule's pace scaled by the two rules' step costs (a VGS step does more work
        than a standard one: `vlod_core.experiments.plan.step_seconds`), plus the overhead twice."""
        with self._lock:
            measured = [(rule, _pace(run.records)) for rule, run in self.runs.items() if len(run.records) >= 2]
            if not measured:
                return None
            reference, (pace, overhead) = measured[-1]
            costs = _step_costs(self.settings)
            left = [0.0]
            for rule, run in self.runs.items():
                if run.state == "running" and len(run.records) >= 2:
                    own_pace, own_overhead = _pace(run.records)
                    left.append((run.steps - len(run.records)) * own_pace + own_overhead)
                elif run.state == "running" or run.state == "waiting":
                    scale = costs.get(rule, 1.0) / costs.get(reference, 1.0)
                    done = len(run.records)
                    left.append((run.steps - done) * pace * scale + overhead * (1 if done else 2))
        return max(left) if self.parallel else sum(left)  # side by side, the slowest rule is the wait

    # -------------------------------------------------------------------------------------- worker side

    def _start(self, command: list[str]) -> None:
        with self._lock:
            self.state = "starting"
            try:
                self.process = Child(
                    [*command, str(self.folder)],
                    self._receive,
                    self.folder / "worker.log",
                    env={"OMP_NUM_THREADS": str(self.threads)},
                    on_exit=self._ended,
                    cwd=ROOT,
                )
            except OSError as error:
                self.error = f"the worker process could not start ({error})"
                self._finish_locked()

    def _receive(self, message: dict) -> None:
        self._said_end |= message.get("event") == "end"
        self._apply(message)

    def _ended(self, code: int) -> None:
        with self._lock:
            if not self._said_end and self.error is None:
                tail = _log_tail(self.folder / "worker.log")
                self.error = f"the worker process ended unexpectedly (exit code {code}){': ' + tail if tail else ''}"
            self._finish_locked()

    def _apply(self, message: dict) -> None:
        event, rule = message.get("event"), message.get("rule")
        with self._lock:
            run = self.runs.get(rule)
            if event == "ready":
                self.state = "running"
            elif run is None:
                return
            elif event == "running":
                run.state = "running"
            elif event == "before":
                run.before = message["metrics"]
            elif event == "record":
                run.records.append(message["record"])
            elif event == "done":
                run.card = RunCard.from_dict(message["card"])
                run.student = self.folder / message["student"]
                run.state = "done"
            elif event == "failed":
                run.state, run.error = "failed", message["error"]
                self.error = f"{rule}: {message['error']}"
            elif event == "skipped":
                run.state = "skipped"

    def _finish_locked(self) -> None:
        for run in self.runs.values():
            if run.state == "waiting":
                run.state = "skipped"
            elif run.state == "running":  # the worker died mid-rule
                run.state = "failed"
                run.error = run.error or self.error or "the worker process ended"
        self.state, self.finished = "finished", self.clock()


class ExperimentsJob(Job):
    """A paper check in a worker process: the runner's latest `Progress` (as a dict) and where it wrote."""

    kind = "experiments"
    idle_stops = False  # its finished runs are cached and its report is for every visitor

    def __init__(self, job_id: str, spec: PairSpec, settings: dict, folder: Path, threads: int, clock=time.monotonic):
        super().__init__(job_id, spec, settings, folder, threads, clock)
        self.progress: dict | None = None
        self.out_dir: Path | None = None  # set when the check ended with a report (or stopped)
        self.stopped = False  # it ended before every run finished (no report; the runs so far are cached)

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self.progress or {})

    def fraction(self) -> float:
        with self._lock:
            return float((self.progress or {}).get("fraction", 0.0))

    def eta_seconds(self) -> float | None:
        with self._lock:
            return (self.progress or {}).get("eta_seconds")

    def _apply(self, message: dict) -> None:
        event = message.get("event")
        with self._lock:
            if event == "ready":
                self.state = "running"
            elif event == "progress":
                self.progress = message["progress"]
            elif event == "finished":
                self.out_dir, self.stopped = Path(message["out_dir"]), bool(message["stopped"])
            elif event == "failed":
                self.error = message["error"]


def _pace(records: list[dict]) -> tuple[float, float]:
    """(seconds per step, seconds of one measurement and setup) from a rule's records (two or more)."""
    first, last = records[0], records[-1]
    pace = (last["seconds"] - first["seconds"]) / max(last["step"] - first["step"], 1)
    return pace, max(0.0, first["seconds"] - first["step"] * pace)


def _step_costs(settings: dict) -> dict[str, float]:
    """Each rule's estimated seconds per step for these settings (only their ratios are used)."""
    from vlod_core.experiments.plan import step_seconds

    try:
        return {rule: step_seconds(config) for rule, config in distill_configs(settings).items()}
    except ValueError:
        return {}


def _log_tail(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


class JobRegistry:
    """Every job of one server, by id; starts queued jobs as slots free up and stops forgotten ones."""

    def __init__(
        self,
        max_running: int = 2,
        max_queued: int = 4,
        idle_stop_s: float = 300,
        keep_s: float = 3600,
        command: list[str] | None = None,
        poll_s: float = 1.0,
        clock=time.monotonic,
    ):
        if max_running < 1 or max_queued < 0:
            raise ValueError("max_running must be >= 1 and max_queued >= 0")
        self.max_running, self.max_queued = max_running, max_queued
        # A job's rules train side by side, one process each, where the machine has a core for each of two.
        self.parallel = (os.cpu_count() or 1) >= 2
        self.idle_stop_s, self.keep_s = idle_stop_s, keep_s
        self.clock = clock  # the idle and keep times are read from it (a test injects its own)
        self.command = command or [sys.executable, "-m", "vlod_app.worker"]
        self.root = Path(tempfile.mkdtemp(prefix="vlod-jobs-"))
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._janitor = threading.Thread(target=self._tend, args=(poll_s,), name="vlod-job-janitor", daemon=True)
        self._janitor.start()

    def submit(
        self,
        spec: PairSpec,
        settings: dict,
        probes: list[tuple[Image.Image, str]],
        threads: int = 1,
        data: Path | None = None,
    ) -> Job:
        """Queue a job (it starts at once when a slot is free); RegistryFull when the line is full too.

        `data`: a data-set folder or file (`vlod_core.sources.load_data` reads it) to train on, copied into the
        job's folder; None trains on the toy world.
        """
        distill_configs(settings, world_of(spec))  # a bad setting fails here, in the page, not in the worker
        with self._lock:
            active = [job for job in self._jobs.values() if not job.done]
            if len(active) >= self.max_running + self.max_queued:
                raise RegistryFull(
                    f"this server is full: it runs {self.max_running} at once and keeps {self.max_queued} more "
                    "waiting, and all those places are taken; try again when a run has finished"
                )
            job_id = secrets.token_urlsafe(6)
            folder = self.root / job_id
            folder.mkdir()
            for i, (image, _) in enumerate(probes):
                image.save(folder / f"probe-{i}.png")
            copied = None
            if data is not None:
                copied = f"data{Path(data).suffix}"
                (shutil.copytree if Path(data).is_dir() else shutil.copy)(data, folder / copied)
            (folder / "job.json").write_text(
                json.dumps(
                    {
                        "spec": asdict(spec),
                        "settings": settings,
                        "threads": threads,
                        "probes": [{"image": f"probe-{i}.png", "question": q} for i, (_, q) in enumerate(probes)],
                        "data": copied,
                        "parallel": self.parallel,
                    }
                )
            )
            job = Job(job_id, spec, dict(settings), folder, threads, self.clock)
            job.parallel = self.parallel and len(settings.get("rules", ())) > 1
            self._jobs[job_id] = job
        self._schedule()
        return job

    def submit_experiments(self, spec: PairSpec, settings: dict, threads: int = 1) -> ExperimentsJob:
        """Queue a paper check; while one is going, return that one instead (they would share one folder).

        `settings`: `plan` (a plan's name, or `Plan.to_dict()`), `workers` (its processes, 0: in the worker
        itself), `out` (the output folder)."""
        with self._lock:
            going = [j for j in self._jobs.values() if isinstance(j, ExperimentsJob) and not j.done]
            if going:
                return going[0]
            active = [job for job in self._jobs.values() if not job.done]
            if len(active) >= self.max_running + self.max_queued:
                raise RegistryFull("this server is full: try again when a run has finished")
            job_id = secrets.token_urlsafe(6)
            folder = self.root / job_id
            folder.mkdir()
            (folder / "job.json").write_text(
                json.dumps({"kind": "experiments", "spec": asdict(spec), "settings": settings, "threads": threads})
            )
            job = ExperimentsJob(job_id, spec, dict(settings), folder, threads, self.clock)
            self._jobs[job_id] = job
        self._schedule()
        return job

    def get(self, job_id: str | None) -> Job | None:
        return self._jobs.get(job_id) if job_id else None

    def experiments(self) -> ExperimentsJob | None:
        """The paper check going on now, if any."""
        with self._lock:
            return next((j for j in self._jobs.values() if isinstance(j, ExperimentsJob) and not j.done), None)

    def position(self, job: Job) -> int | None:
        """1 for the next job to start, 2 after it …; None unless the job is waiting."""
        with self._lock:
            queued = [j for j in self._jobs.values() if j.state == "queued" and not j.stop_reason]
        return queued.index(job) + 1 if job in queued else None

    def running(self) -> int:
        with self._lock:
            return sum(1 for job in self._jobs.values() if job.state in ("starting", "running"))

    def close(self) -> None:
        """Stop every job, wait briefly for the workers, remove all job folders."""
        self._closed.set()
        for job in list(self._jobs.values()):
            job.stop("the server is shutting down")
        for job in list(self._jobs.values()):
            if job.process is not None:
                try:
                    job.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    job.process.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def _schedule(self) -> None:
        with self._lock:
            free = self.max_running - sum(1 for j in self._jobs.values() if j.state in ("starting", "running"))
            waiting = [j for j in self._jobs.values() if j.state == "queued" and not j.stop_reason]
            for job in waiting[: max(free, 0)]:
                job._start(self.command)

    def _tend(self, poll_s: float) -> None:
        while not self._closed.wait(poll_s):
            self.tend()

    def tend(self) -> None:
        """One round of housekeeping (the janitor thread's, every `poll_s`): stop the jobs nobody has looked at
        for `idle_stop_s`, forget those finished `keep_s` ago, start queued ones where a place is free."""
        now = self.clock()
        for job in list(self._jobs.values()):
            if not job.done and job.idle_stops and now - job.last_seen > self.idle_stop_s:
                job.stop(f"stopped because nobody looked at it for {_duration(self.idle_stop_s)}")
            if job.done and job.finished is not None and now - job.finished > self.keep_s:
                with self._lock:
                    self._jobs.pop(job.id, None)
                shutil.rmtree(job.folder, ignore_errors=True)
        self._schedule()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    return f"{seconds // 60} min" + (f" {seconds % 60} s" if seconds % 60 else "")


def eta_text(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "estimating the time left"
    return f"about {_duration(max(seconds, 1))} left"


def student_zip(folder: Path) -> bytes:
    """A distilled student's folder (safetensors and its processor) as a zip, under `student/`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                archive.write(path, Path("student") / path.relative_to(folder))
    return buffer.getvalue()
