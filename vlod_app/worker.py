"""One distillation job in a process of its own: `python -m vlod_app.worker JOB_FOLDER`.

The app's job registry (`vlod_app.jobs`) writes `job.json` (the pair's spec, the form's settings, the
rules, the probe questions) and the probe images into a private folder and starts this module. It loads
the pair itself, runs `vlod_core.distill.distill` once per rule from the same seed, and reports on its
standard output, one JSON object per line:

    {"event": "ready"}                                  the pair is loaded
    {"event": "running", "rule": r}                     a rule starts
    {"event": "before", "rule": r, "metrics": {...}}    its held-out metrics before the first step
    {"event": "record", "rule": r, "record": {...}}     a StepRecord, after every step
    {"event": "done", "rule": r, "card": {...}, "student": "student-r"}   card, and the folder of its student
    {"event": "failed", "rule": r, "error": "..."}
    {"event": "skipped", "rule": r}                     stopped before this rule started
    {"event": "end"}

A job of kind "experiments" (`job.json` has `"kind": "experiments"`) runs the paper check instead
(`vlod_core.experiments.run_experiments`, which spreads its runs over processes of its own) and reports

    {"event": "ready"}
    {"event": "progress", "progress": {...}}           a `Progress`, at most twice a second
    {"event": "finished", "out_dir": "...", "stopped": false}
    {"event": "failed", "error": "..."}
    {"event": "end"}

With `"parallel": true` in job.json (the registry's choice where there are two cores) the first rule runs here
and each other rule in a second worker process of its own (`--rule R`, `RuleProcess`), their events relayed into
this stream, so a standard-versus-VGS run takes as long as its slower rule instead of both.

A line "stop" on its standard input stops it after the current step; so does the end of its input (the app
went away), so a worker never outlives its server. The trained student is saved as safetensors with its
processor into the job folder. Everything else the libraries print goes to the standard error (the log).
A process per job lets concurrent runs use separate cores instead of sharing one interpreter lock, and the
app's cached pair is never touched: the worker has a copy of its own.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from PIL import Image

from vlod_core.child import Channel, Child

logger = logging.getLogger(__name__)


MAX_SHOWN_ROWS = 50  # a user's rows whose before/after answers the page shows (all of a classroom-sized set)


def training_data(folder: Path, data: str | None, eval_rows: int, world: str = "default"):
    """The job's data: the pair's toy world (`world`), or the user's set copied into the job folder (split as the
    CLI splits)."""
    from vlod_core.data import TrainingData, split_rows
    from vlod_core.sources import load_data
    from vlod_core.toy.source import toy_data

    if data is None:
        return toy_data(eval_rows, world_name=world)
    loaded = load_data(folder / data, workdir=folder, cache_dir=str(folder / "datasets-cache"))
    split = split_rows(loaded.rows)
    # every row of the user's set is shown before and after (up to MAX_SHOWN_ROWS): the held-out ones first
    held = split.eval[:MAX_SHOWN_ROWS]
    trained = [] if split.seen_in_training else split.train[: MAX_SHOWN_ROWS - len(held)]
    extra = {"origin": "uploaded in the app", "skipped": len(loaded.skipped), "shown_held_out": len(held)}
    training = TrainingData.from_split(split, loaded.name, extra=extra)
    training.show_rows = held + trained
    return training


def run_rules(pair, configs: dict, data, probes: list, emit, should_stop) -> Iterator[tuple[str, object]]:
    """Distil once per rule, one after the other, yielding (rule, DistillResult): the one place the app
    calls `distill` (reporting each step and failure through `emit`)."""
    from vlod_core.data import Row
    from vlod_core.distill import distill

    probes = [Row(image, question) for image, question in probes]
    for rule, config in configs.items():
        if should_stop():
            emit({"event": "skipped", "rule": rule})
            continue
        emit({"event": "running", "rule": rule})
        try:
            result = distill(
                pair,
                config,
                data,
                callback=lambda record, rule=rule: emit({"event": "record", "rule": rule, "record": record.to_dict()}),
                on_start=lambda before, rule=rule: emit({"event": "before", "rule": rule, "metrics": before}),
                should_stop=should_stop,
                probes=probes,
            )
        except Exception as error:  # reported on the page; the log keeps the traceback
            logger.exception("distillation with rule %s failed", rule)
            emit({"event": "failed", "rule": rule, "error": f"{type(error).__name__}: {error}"})
            continue
        yield rule, result


def plan_from(value):
    """A paper check's plan from a job's settings: a plan's name, or a `Plan.to_dict()`."""
    from vlod_core.experiments import Plan, plan_named

    return plan_named(value) if isinstance(value, str) else Plan.from_dict(value)


def run_check(job: dict, emit, should_stop) -> None:
    """The paper check of an experiments job, its progress reported through `emit`."""
    import time
    from dataclasses import asdict

    from vlod_core import toy
    from vlod_core.experiments import run_experiments
    from vlod_core.pair import PairSpec
    from vlod_core.toy.source import toy_data

    settings = job["settings"]
    plan = plan_from(settings["plan"])
    spec = PairSpec(**job["spec"])
    emit({"event": "ready"})
    last = [0.0]

    def progress(report) -> None:
        now = time.monotonic()
        if now - last[0] > 0.5 or report.done == report.total:
            last[0] = now
            emit({"event": "progress", "progress": asdict(report)})

    try:
        result = run_experiments(
            plan,
            spec,
            toy_data(plan.eval_examples, world_name=plan.world),  # the page checks a toy world's pair
            settings["out"],
            folders=toy.folders(spec),
            workers=int(settings["workers"]),
            progress=progress,
            should_stop=should_stop,
            command=f"the app's Paper check page (plan {plan.name})",
        )
    except Exception as error:  # reported on the page; the log keeps the traceback
        logger.exception("the paper check failed")
        emit({"event": "failed", "error": f"{type(error).__name__}: {error}"})
        return
    emit({"event": "finished", "out_dir": str(result.out_dir), "stopped": result.stopped})


TERMINAL = ("done", "failed", "skipped")  # a rule's last event


class RuleProcess:
    """One rule of this job in a second worker process (`python -m vlod_app.worker FOLDER --rule R`), so two
    rules train at once on two cores instead of one after the other. Its events are relayed through `emit`
    (not its own "ready" and "end"); "stop" is passed on; the end of its input (this worker gone) stops it."""

    def __init__(self, folder: Path, rule: str, emit):
        self.rule, self._emit, self._finished = rule, emit, False
        # its standard error is this worker's: the job's log
        self.child = Child([sys.executable, "-m", "vlod_app.worker", str(folder), "--rule", rule], self._relay)

    def _relay(self, message: dict) -> None:
        if message.get("event") in ("ready", "end"):
            return
        self._finished |= message.get("event") in TERMINAL
        self._emit(message)

    def stop(self) -> None:
        self.child.stop()

    def wait(self) -> None:
        """Until the process ends; a rule it never finished is reported failed (the log says why)."""
        code = self.child.wait()
        if not self._finished:
            self._emit({"event": "failed", "rule": self.rule, "error": f"its worker process ended (exit code {code})"})


def main(folder: str, only: str | None = None) -> int:
    """Run the job in `folder`: every rule of it (two at once when job.json says `parallel`), or `only` one."""
    folder = Path(folder)
    channel = Channel()  # from here on the real standard output carries only the protocol
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    emit, stop = channel.emit, channel.stopped
    beside: list[RuleProcess] = []

    def stop_beside() -> None:  # "stop", or the app is gone: the rules beside stop too
        for other in list(beside):
            other.stop()

    channel.on_stop.append(stop_beside)

    import torch
    from transformers.utils import logging as hf_logging

    from vlod_app.jobs import EVAL_EXAMPLES, distill_configs
    from vlod_core import toy
    from vlod_core.pair import PairSpec, load_pair

    hf_logging.disable_progress_bar()
    job = json.loads((folder / "job.json").read_text())
    torch.set_num_threads(int(job["threads"]))
    if job.get("kind") == "experiments":
        run_check(job, emit, stop.is_set)
        emit({"event": "end"})
        return 0
    spec = PairSpec(**job["spec"])
    pair = load_pair(spec, toy.folders(spec))
    probes = [(Image.open(folder / p["image"]).convert("RGB"), p["question"]) for p in job["probes"]]
    emit({"event": "ready"})
    configs = distill_configs(job["settings"], toy.world_of(spec))
    data = training_data(folder, job.get("data"), EVAL_EXAMPLES, toy.world_of(spec))
    if job.get("data") is not None:  # every row of the user's set is shown before and after
        configs = {rule: replace(config, answer_examples=len(data.show_rows)) for rule, config in configs.items()}
    if only is not None:
        configs = {only: configs[only]}
    elif job.get("parallel") and len(configs) > 1 and not stop.is_set():
        own, *others = configs
        beside.extend(RuleProcess(folder, rule, emit) for rule in others)
        if stop.is_set():  # stopped while they started: the input watcher may have missed them
            stop_beside()
        configs = {own: configs[own]}
    for rule, result in run_rules(pair, configs, data, probes, emit, stop.is_set):
        student_folder = folder / f"student-{rule}"
        result.student.save_pretrained(student_folder, safe_serialization=True)
        pair.processor.save_pretrained(student_folder)
        emit({"event": "done", "rule": rule, "card": result.card.to_dict(), "student": student_folder.name})
    for other in beside:
        other.wait()
    emit({"event": "end"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[3] if sys.argv[2:3] == ["--rule"] else None))
