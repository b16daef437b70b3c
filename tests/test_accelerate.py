"""Data-parallel distillation under `accelerate launch` equals one process on the joined batch."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vlod_core.distill import distill

pytestmark = pytest.mark.slow  # starts two processes under accelerate launch

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("accelerate_worker.py")


def _worker_module():
    spec = importlib.util.spec_from_file_location("accelerate_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def launched(vlod_home, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    env = os.environ | {
        "VLOD_HOME": str(vlod_home),
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    # `--cpu` would send accelerate to its simple launcher, which starts ONE process (several only through
    # mpirun). `--multi_gpu` goes through torchrun; with ACCELERATE_USE_CPU=1 and distill's `cpu=True` the two
    # processes form a gloo group on the CPU.
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(WORKER), str(out),
    ]  # fmt: skip
    done = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"accelerate launch failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert (out / "standard.records.1.json").exists(), "accelerate launch started only one process"
    return out


@pytest.fixture(scope="module")
def worker():
    return _worker_module()


@pytest.fixture(scope="module")
def cpu_pair(vlod_home):
    """The session's small pair on the CPU in float32, as the worker loads it (the session pair may be on a GPU)."""
    from vlod_core import toy
    from vlod_core.pair import PairSpec, load_pair

    return load_pair(PairSpec(device="cpu"), toy.folders(PairSpec()))


@pytest.fixture(scope="module")
def single(cpu_pair, worker):
    """The same runs in this process, on the joined batch."""
    return {
        rule: distill(cpu_pair, worker.config(rule), rollouts=worker.fixed_rollouts(cpu_pair), evaluate_model=False)
        for rule in worker.rules()
    }


@pytest.mark.parametrize("rule", ["standard", "vgs"])
def test_two_processes_equal_one_process_on_the_joined_batch(cpu_pair, launched, worker, single, rule):
    from safetensors.torch import load_file

    parallel = load_file(str(launched / f"{rule}.safetensors"))
    joined = worker.state(single[rule].student)
    initial = worker.state(cpu_pair.student)
    assert parallel.keys() == joined.keys()
    moved = max(float((joined[k] - initial[k]).abs().max()) for k in joined)
    assert moved > 1e-3, "the run must actually change the student for the comparison to mean anything"
    budget = worker.LR * worker.STEPS  # AdamW moves a parameter by at most about lr per step
    off, total = 0, 0
    for key in joined:
        difference = (parallel[key] - joined[key]).abs()
        if key.endswith("k_proj.bias"):
            # Softmax ignores a bias shared by all keys, so its true gradient is 0 and AdamW's normalised step
            # turns float rounding (~1e-10) into moves that differ between runs; both must stay tiny.
            for run in (parallel, joined):
                assert float((run[key] - initial[key]).abs().max()) < 0.1 * budget, key
            continue
        # Elements whose gradient is near 0 (|g| ~ AdamW's eps: in the toy student's vision tower, which the build
        # froze) take normalised steps anywhere up to lr from float rounding alone; the share check below
        # bounds how many may; none can move further than AdamW's whole budget.
        assert float(difference.max()) < budget, key
        off += int((difference > 1e-5).sum())
        total += difference.numel()
    # The same holds, more weakly, for any element whose gradient is near 0 (|g| ~ AdamW's eps): allow a few
    # such elements; a real difference (e.g. per-process VDS quantiles) moves a large share of them.
    assert off <= 1e-3 * total, f"{off} of {total} parameters differ by more than 1e-5"


@pytest.mark.parametrize("rule", ["standard", "vgs"])
def test_each_process_takes_its_share_and_gradients_are_averaged(launched, worker, single, rule):
    """AdamW hides gradient scale, so check the sharding and the averaging on the records themselves."""
    shares = [json.loads((launched / f"{rule}.records.{p}.json").read_text()) for p in range(2)]
    joined = single[rule].card.records
    assert all(len(records) == worker.STEPS for records in shares)
    first = [records[0] for records in shares]
    assert first[0]["std"] != pytest.approx(first[1]["std"], rel=1e-3)  # the two processes saw different rows
    # Equal shares and per-response averaging: the mean of the shares' losses is the joined batch's loss.
    for key in ("std", "vis", "loss"):
        assert (first[0][key] + first[1][key]) / 2 == pytest.approx(joined[0][key], rel=1e-5), key
    assert first[0]["response_tokens"] + first[1]["response_tokens"] == joined[0]["response_tokens"]
    # DDP averages the gradients: every process sees the joined batch's gradient norm (before clipping).
    for records in shares:
        for mine, reference in zip(records, joined):
            assert mine["grad_norm"] == pytest.approx(reference["grad_norm"], rel=1e-4)
            assert mine["eta"] == reference["eta"]


def test_measured_eta_runs_data_parallel_and_agrees_across_processes(launched, worker):
    shares = [json.loads((launched / f"vgs_auto.records.{p}.json").read_text()) for p in range(2)]
    assert all(len(records) == worker.STEPS for records in shares)
    for mine, other in zip(*shares):
        assert mine["eta"] == other["eta"] and 0 < mine["eta"] < 2  # reduced across processes: one η for all
        assert mine["grad_norm"] == pytest.approx(other["grad_norm"], rel=1e-6)
