"""The job registry behind page 3: a queue with positions, a full server, stop, self-stop when unwatched.

The worker here is a few lines of Python that speak the worker's protocol (`vlod_app.worker`'s docstring)
without loading a model: what is under test is the registry's bookkeeping, which must not depend on how
long a real run takes. The real worker runs in `test_app_pages.py` (page 3) and below, once.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from vlod_app.jobs import DEFAULT_SETTINGS, JobRegistry, RegistryFull, distill_configs, eta_text
from vlod_core.pair import PairSpec

# Reports "ready", then one step every 0.05 s for each rule until it reads "stop" (or its input ends).
pytestmark = pytest.mark.slow  # starts worker processes

FAKE_WORKER = r"""
import json, sys, threading, time
folder = sys.argv[1]
job = json.load(open(folder + "/job.json"))
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
def emit(message):
    print(json.dumps(message), flush=True)
emit({"event": "ready"})
for rule in job["settings"]["rules"]:
    if stop.is_set():
        emit({"event": "skipped", "rule": rule}); continue
    emit({"event": "running", "rule": rule})
    for step in range(1, job["settings"]["steps"] + 1):
        if stop.is_set():
            break
        emit({"event": "record", "rule": rule, "record": {"step": step, "seconds": 0.05 * step}})
        time.sleep(0.05)
emit({"event": "end"})
"""
SETTINGS = dict(DEFAULT_SETTINGS, steps=1000, eval_every=0)


def wait(condition, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def registry():
    registries = []

    def make(**kwargs) -> JobRegistry:
        made = JobRegistry(command=[sys.executable, "-c", FAKE_WORKER], **({"poll_s": 0.1} | kwargs))
        registries.append(made)
        return made

    yield make
    for made in registries:
        made.close()


def test_settings_become_one_config_per_rule_and_bad_ones_name_the_field():
    configs = distill_configs(dict(DEFAULT_SETTINGS, rules=["standard", "lang_steer"], gamma=1.5))
    assert list(configs) == ["standard", "lang_steer"]
    assert configs["lang_steer"].steering.gamma == 1.5 and configs["standard"].steps == DEFAULT_SETTINGS["steps"]
    with pytest.raises(ValueError, match="at least one update rule"):
        distill_configs(dict(DEFAULT_SETTINGS, rules=[]))
    with pytest.raises(ValueError, match="unknown update rule 'nope'"):
        distill_configs(dict(DEFAULT_SETTINGS, rules=["nope"]))
    with pytest.raises(ValueError, match="steps"):
        distill_configs(dict(DEFAULT_SETTINGS, steps=0))


def test_the_form_defaults_are_the_configs_and_carry_the_lora_rank():
    from vlod_core.distill import DistillConfig
    from vlod_core.steering import SteeringConfig

    default = distill_configs(dict(DEFAULT_SETTINGS, rules=["vgs"]))["vgs"]
    for name in ("lr", "batch", "seed", "geometry_every", "lora_rank"):
        assert getattr(default, name) == getattr(DistillConfig(), name), name
    assert (default.steering.gamma, default.steering.lam) == (SteeringConfig().gamma, SteeringConfig().lam)
    assert distill_configs(dict(DEFAULT_SETTINGS, lora_rank=8))["standard"].lora_rank == 8
    with pytest.raises(ValueError, match="lora_rank"):
        distill_configs(dict(DEFAULT_SETTINGS, lora_rank=-1))


def test_jobs_beyond_the_limit_wait_in_line_and_a_full_server_says_so(registry):
    jobs = registry(max_running=1, max_queued=1)
    first = jobs.submit(PairSpec(), SETTINGS, [])
    second = jobs.submit(PairSpec(), SETTINGS, [])
    with pytest.raises(RegistryFull, match="this server is full: it runs 1 at once and keeps 1 more waiting"):
        jobs.submit(PairSpec(), SETTINGS, [])
    wait(lambda: first.runs["standard"].records)
    assert second.state == "queued" and jobs.position(second) == 1 and jobs.position(first) is None
    assert jobs.running() == 1
    first.stop()
    wait(lambda: first.done)
    assert first.not_run() == ["vgs"] and first.runs["standard"].state != "skipped"
    wait(lambda: second.runs["standard"].records)  # its turn came by itself
    assert jobs.position(second) is None and second.fraction() > 0
    assert jobs.get(second.id) is second and jobs.get("unknown") is None


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_job_nobody_looks_at_stops_itself_and_a_watched_one_does_not(registry):
    clock = FakeClock()
    jobs = registry(max_running=2, idle_stop_s=1.0, poll_s=3600, clock=clock)  # the test tends, not the thread
    watched, forgotten = jobs.submit(PairSpec(), SETTINGS, []), jobs.submit(PairSpec(), SETTINGS, [])
    wait(lambda: watched.runs["standard"].records and forgotten.runs["standard"].records)
    for _ in range(30):  # three seconds, a page polling the watched job every 0.1 s
        clock.now += 0.1
        watched.touch()
        jobs.tend()
    wait(lambda: forgotten.done)
    assert forgotten.stop_reason == "stopped because nobody looked at it for 1 s"
    assert not watched.done and watched.stop_reason is None
    assert watched.eta_seconds() is not None and "left" in eta_text(watched.eta_seconds())


def test_a_stopped_queued_job_never_starts_and_finished_jobs_are_forgotten(registry):
    jobs = registry(max_running=1, keep_s=0.5)
    first, second = jobs.submit(PairSpec(), SETTINGS, []), jobs.submit(PairSpec(), SETTINGS, [])
    second.stop()
    assert second.done and second.not_run() == ["standard", "vgs"] and second.process is None
    first.stop()
    wait(lambda: jobs.get(first.id) is None)  # forgotten after keep_s, with its folder
    assert not first.folder.exists() and second.process is None


def test_a_worker_that_dies_is_reported():
    jobs = JobRegistry(command=[sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"])
    try:
        job = jobs.submit(PairSpec(), SETTINGS, [])
        wait(lambda: job.done)
        assert "ended unexpectedly (exit code 3): boom" in job.error
        assert {run.state for run in job.runs.values()} == {"skipped"}
    finally:
        jobs.close()


def test_the_real_worker_trains_a_copy_and_sends_back_card_and_student(vlod_home, examples):
    jobs = JobRegistry()
    try:
        settings = dict(DEFAULT_SETTINGS, rules=["standard"], steps=2, batch=4, eval_every=0)
        job = jobs.submit(PairSpec(), settings, [(examples[0].image(), examples[0].question)])
        wait(lambda: job.done, limit=300)
        assert job.error is None, job.error
        [card] = job.cards().values()
        assert [r["step"] for r in card.records] == [1, 2] and card.probe_after[0]["question"] == examples[0].question
        folder = job.students()["standard"]
        assert (folder / "model.safetensors").is_file() and json.loads((folder / "config.json").read_text())
    finally:
        jobs.close()


def test_two_rules_train_side_by_side_and_stop_together(vlod_home):
    """On two cores a job's rules run at once, one worker process each (`vlod_app.worker.RuleProcess`): the second
    rule records steps while the first is still going (one after the other, it could not start before the
    first's 1000 steps ended), and one Stop ends both, each keeping what it trained."""
    jobs = JobRegistry()
    try:
        jobs.parallel = True
        settings = dict(DEFAULT_SETTINGS, rules=["standard", "vgs"], steps=1000, batch=4, eval_every=0)
        job = jobs.submit(PairSpec(), settings, [])
        assert job.parallel and json.loads((job.folder / "job.json").read_text())["parallel"]
        wait(lambda: all(run.records for run in job.runs.values()) or job.done, limit=300)
        assert not job.done and all(run.state == "running" for run in job.runs.values()), job.snapshot()
        job.stop()
        wait(lambda: job.done, limit=300)
        assert job.error is None, job.error
        cards = job.cards()
        assert set(cards) == {"standard", "vgs"} and all(0 < len(c.records) < 1000 for c in cards.values())
        assert set(job.students()) == {"standard", "vgs"}
    finally:
        jobs.close()


def test_the_eta_comes_from_the_run_s_own_steps_and_a_steered_step_costs_more(tmp_path):
    """Issue 21, item 3: the ETA said ~82 s left with ~120 s to go: it priced VGS's steps at standard's pace
    and left out the measurements. Now: the running rule's own pace and overhead (its first record's seconds),
    and a waiting rule at that pace scaled by the rules' step costs, with its two measurements."""
    from vlod_app.jobs import Job
    from vlod_core.experiments.plan import step_seconds

    settings = dict(DEFAULT_SETTINGS, rules=["standard", "vgs"], steps=100)
    job = Job("eta", PairSpec(), settings, tmp_path, 1)
    job._apply({"event": "ready"})
    job._apply({"event": "running", "rule": "standard"})
    assert job.eta_seconds() is None
    for step in range(1, 51):  # 10 s of loading and measuring before the first step, then 0.5 s a step
        job._apply({"event": "record", "rule": "standard", "record": {"step": step, "seconds": 10 + 0.5 * step}})
    configs = distill_configs(settings)
    ratio = step_seconds(configs["vgs"]) / step_seconds(configs["standard"])
    assert ratio > 1.2  # a steered step does more work
    expected = (50 * 0.5 + 10) + (100 * 0.5 * ratio + 2 * 10)
    assert job.eta_seconds() == pytest.approx(expected)
    job.parallel = True  # side by side: the wait is the slower rule's, not the sum
    assert job.eta_seconds() == pytest.approx(max(50 * 0.5 + 10, 100 * 0.5 * ratio + 2 * 10))


def test_a_running_rule_shows_its_accuracy_before_training_as_soon_as_the_worker_sends_it(tmp_path):
    """The live curves start at step 0 while the rule runs (its card, with `before`, comes only at its end)."""
    from vlod_app.jobs import Job
    from vlod_core.figures.runs import training_curves
    from vlod_core.results import StepRecord

    job = Job("start", PairSpec(), dict(DEFAULT_SETTINGS, rules=["standard"]), tmp_path, 1)
    job._apply({"event": "ready"})
    job._apply({"event": "running", "rule": "standard"})
    assert job.snapshot()["standard"]["before"] is None
    before = {"accuracy_image": 0.735, "accuracy_no_image": 0.54, "eval_rows": 200, "stderr": {}}
    job._apply({"event": "before", "rule": "standard", "metrics": before})
    losses = dict.fromkeys(("loss", "std", "lang", "vis", "lp", "vds", "lang_high_vds", "grad_norm"), 0.5)
    record = StepRecord(step=1, seconds=1.0, eta=1.0, response_tokens=3, **losses).to_dict()
    job._apply({"event": "record", "rule": "standard", "record": record})
    snapshot = job.snapshot()
    assert snapshot["standard"]["before"] == before and snapshot["standard"]["state"] == "running"
    accuracy = [t for t in training_curves(snapshot).data if t.name and "standard" in t.name and 0.735 in list(t.y)]
    assert accuracy and list(accuracy[0].x) == [0]


def test_a_toy_worlds_runs_get_its_answer_settings_and_its_own_defaults():
    """The reasoning pair's runs write chains as long as the world needs, scored on the boxed final answer; the
    form's defaults are the world's own beside the app's (one source: `WORLD_APP_DEFAULTS`)."""
    from vlod_app.jobs import WORLD_APP_DEFAULTS, class_demo, default_settings
    from vlod_core.toy.source import world_settings

    default = distill_configs(DEFAULT_SETTINGS)["standard"]
    chains = distill_configs(default_settings("reasoning"), "reasoning")["standard"]
    assert default.answer_pattern is None and chains.answer_pattern == "boxed"
    assert chains.sampling.max_new_tokens == chains.eval_max_new_tokens == world_settings("reasoning")["max_new_tokens"]
    assert default_settings("default") == DEFAULT_SETTINGS
    assert default_settings("reasoning") == DEFAULT_SETTINGS | dict(WORLD_APP_DEFAULTS["reasoning"])
    assert class_demo("reasoning") == default_settings("reasoning")
