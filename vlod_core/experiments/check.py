"""The paper check in one call: plan → runs (cached, on all cores) → numbers and verdicts → results.json and
report.html. What `vlod experiments` and the app's *Paper check* page call.

`run_experiments` returns a `CheckResult`; stopped early (`should_stop`), it writes no report but keeps every
finished run in the cache, so the next call with the same settings picks up where this one stopped.
`latest_results` finds the newest results.json under `$VLOD_HOME/experiments/`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlod_core.data import TrainingData
from vlod_core.home import vlod_home
from vlod_core.experiments.analysis import Z, analyse, t_coverage, verdict_rules_text
from vlod_core.experiments.plan import PARTS, Plan, estimate_seconds
from vlod_core.experiments.runner import Outcome, Progress, Task, run_context, run_tasks, task_key, write_atomically
from vlod_core.pair import ModelPair, PairSpec
from vlod_core.results import json_safe, library_versions

SCHEMA = "vlod.experiments/1"
RESULTS = "results.json"
REPORT = "report.html"
MAX_RESULTS_BYTES = 50 * 2**20


def experiments_home() -> Path:
    return vlod_home() / "experiments"


def default_out_dir(plan: Plan) -> Path:
    """`$VLOD_HOME/experiments/<plan>` for the default world, `.../<world>-<plan>` for another."""
    return experiments_home() / (plan.name if plan.world == "default" else f"{plan.world}-{plan.name}")


@dataclass
class CheckResult:
    out_dir: Path
    results: dict | None  # None when stopped before every run finished
    executed: int
    cached: int
    stopped: bool

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT

    @property
    def results_path(self) -> Path:
        return self.out_dir / RESULTS


def plan_tasks(plan: Plan, context: dict) -> tuple[dict[str, Task], dict[tuple[str, str], list[str]], dict[str, str]]:
    """The plan's runs by key, each arm's keys per seed, and a label per key (for progress lines).

    An arm whose run is the geometry run's training (the learning-rate sweep's `standard` at the plan's own
    rate and steps) takes that run: measuring the angles before and after does not change what it trains.
    """
    tasks, arms, labels = {}, {}, {}
    runs = {
        (arm, seed): Task(arm.config(plan, seed), arm.geometry_rows(plan), plan.geometry_bins)
        for arm in plan.arms()
        for seed in range(plan.seeds)
    }
    geometry_runs = {task.config: task for task in runs.values() if task.geometry_rows}
    for arm in plan.arms():
        keys = []
        for seed in range(plan.seeds):
            task = runs[(arm, seed)]
            task = geometry_runs.get(task.config, task)
            key = task_key(task, context)
            tasks.setdefault(key, task)
            labels.setdefault(key, f"{arm.name} seed {seed}")
            keys.append(key)
        arms[(arm.part, arm.name)] = keys
    return tasks, arms, labels


def _timing(plan: Plan, arms: dict, outcome: Outcome, wall_seconds: float) -> dict:
    """Compute seconds per part (each run counted in the first part that lists it) and the wall time."""
    seen: set[str] = set()
    executed = set(outcome.executed)
    parts = {}
    for part in PARTS:
        keys = [k for (p, _), ks in arms.items() if p == part for k in ks if k not in seen]
        keys = list(dict.fromkeys(keys))
        seen.update(keys)
        parts[part] = {
            "runs": len(keys),
            "executed_now": sum(k in executed for k in keys),
            "compute_seconds": round(sum(outcome.results[k]["seconds"] for k in keys), 1),
        }
    geometry = list(dict.fromkeys(k for (p, _), ks in arms.items() if p == "rules" for k in ks))
    parts["geometry"] = {
        "runs": sum(bool(outcome.results[k].get("geometry_before")) for k in geometry),
        "executed_now": sum(k in executed and bool(outcome.results[k].get("geometry_before")) for k in geometry),
        "compute_seconds": round(sum(outcome.results[k].get("geometry_seconds", 0.0) for k in geometry), 1),
        "note": "measured before and after the rules' standard runs; their compute seconds include it",
    }
    return {
        "wall_seconds": round(wall_seconds, 1),
        "executed": len(outcome.executed),
        "cached": outcome.cached,
        "parts": parts,
        "estimate": estimate_seconds(plan),
    }


def machine(workers: int) -> dict:
    """Where the numbers (and their seconds) were measured: a report read elsewhere says so."""
    return {
        "system": platform.platform(terse=True),
        "processor": platform.uname().processor or platform.machine(),
        "cpus": os.cpu_count(),
        "workers": workers,
        "python": platform.python_version(),
    }


def run_experiments(
    plan: Plan,
    spec: PairSpec,
    data: TrainingData,
    out_dir: str | Path | None = None,
    *,
    folders: tuple[str, str] | None = None,
    workers: int = 2,
    pair: ModelPair | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    command: str = "",
) -> CheckResult:
    """Run (or find cached) every run of `plan` on `spec`'s pair (read from `folders` where the spec only names
    it: a toy pair, located by the entry point) and `data`, then write `results.json` and `report.html` into
    `out_dir` (default `$VLOD_HOME/experiments/<plan name>`)."""
    from vlod_core.experiments.report import report_html

    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(plan)
    started = time.time()
    context = run_context(spec, data, folders)
    tasks, arms, labels = plan_tasks(plan, context)
    outcome = run_tasks(
        tasks,
        spec,
        data,
        out_dir / "runs",
        workers=workers,
        pair=pair,
        labels=labels,
        progress=progress,
        should_stop=should_stop,
        folders=folders,
    )
    if outcome.stopped:
        return CheckResult(out_dir, None, len(outcome.executed), outcome.cached, True)
    runs = {arm: [outcome.results.get(k) for k in keys] for arm, keys in arms.items()}
    experiments = analyse(plan, runs)
    claims = experiments.pop("claims")
    results = {
        "schema": SCHEMA,
        "created": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "world": plan.world,
        "machine": machine(workers),
        "plan": plan.to_dict(),
        "seeds": list(range(plan.seeds)),
        "pair": context["pair"],
        "data": context["data"],
        "versions": library_versions(),
        "configs": {
            f"{part}: {name}": {"config": tasks[keys[0]].to_dict(), "seeds": len(keys), "runs": keys}
            for (part, name), keys in arms.items()
        },
        "timing": _timing(plan, arms, outcome, time.time() - started),
        "verdict_rules": verdict_rules_text(),
        "z": Z,
        "coverage_of_z_interval": t_coverage(plan.seeds - 1),
        "claims": claims,
        "experiments": experiments,
    }
    results = json_safe(results)
    write_atomically(out_dir / RESULTS, json.dumps(results, indent=1, ensure_ascii=False))
    write_atomically(out_dir / REPORT, report_html(results))
    return CheckResult(out_dir, results, len(outcome.executed), outcome.cached, False)


def load_results(path: str | Path) -> dict:
    """A results.json written by `run_experiments`; ValueError (one sentence) if it is not one."""
    path = Path(path)
    if path.stat().st_size > MAX_RESULTS_BYTES:
        raise ValueError(f"{path} is larger than {MAX_RESULTS_BYTES // 2**20} MiB: not a results file")
    try:
        results = json.loads(path.read_text())
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{path} is not JSON ({str(error)[:120]})") from None
    if not isinstance(results, dict) or results.get("schema") != SCHEMA:
        raise ValueError(f"{path} is not a vlod experiments results file (schema {SCHEMA!r})")
    return results


def world_of(results: dict) -> str:
    """The toy world a results file measured ("default" for reports written before the field existed)."""
    return results.get("world") or results.get("plan", {}).get("world") or "default"


def latest_results(home: str | Path | None = None, world: str | None = None) -> tuple[dict, Path] | None:
    """The newest results.json under `home` (default `$VLOD_HOME/experiments`) and its folder, of `world` if
    given (a reasoning report is no answer for the default world); None if none."""
    root = Path(home) if home is not None else experiments_home()
    found = sorted(root.glob(f"*/{RESULTS}"), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    for path in found:
        try:
            results = load_results(path)
        except (OSError, ValueError):
            continue
        if world is None or world_of(results) == world:
            return results, path.parent
    return None
