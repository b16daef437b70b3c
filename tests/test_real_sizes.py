"""`bench/real_sizes.py` end to end at tiny sizes: the real-size benchmark's code path, not its timings.

The tiny run builds the SmolVLM pair with the real vocabulary (the tokenizer's special tokens at the real ids),
saves it in the stock layout, loads it with `load_pair` in a fresh process and runs every row once. What is
checked is what a timing cannot show: every sample is exactly the asked length (EOS held off), the image
tokens the processor writes are the ones the model expects, the counted work grows from standard to VGS to
VGS with η measured, and each row and closing ratio is printed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vlod_core.distill import DistillConfig

pytestmark = pytest.mark.slow  # instantiates real-size shapes

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "real_sizes.py"


def run_bench(*args: str, timeout: float = 180, script: Path = SCRIPT) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_tiny_quick_run_prints_every_row_with_fixed_length_samples():
    result = run_bench("--tiny", "--quick", "--flops", "--new-tokens", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    # Tiny tiles are 64 px of 8-px patches, pixel-shuffled by 4: (64 / 8 / 4)^2 = 4 tokens per tile, one tile.
    assert "4 image tokens per image" in out, out
    for variant in ("standard", "vgs_fixed", "vgs_auto"):  # one timed step each, every sample exactly 5 tokens
        row = next(line for line in out.splitlines() if line.startswith(variant + " "))
        assert re.search(r"cpu-s \[1\] +\d+% / +\d+% +5 tok$", row), row
    # Work, not time: VGS adds the image-free passes and their backward; measuring η adds one more backward.
    flops = dict(
        re.findall(r"(\w+) ([\d.]+) G \(", next(line for line in out.splitlines() if line.startswith("FLOPs")))
    )
    assert 0 < float(flops["standard"]) < float(flops["vgs_fixed"]) < float(flops["vgs_auto"]), flops
    passes = "the image context only" if DistillConfig().decompose_every > 1 else "both contexts"
    assert f"standard's timed steps scored {passes}" in out
    assert re.search(r"^inspect +\d+\.\d+ s +\d+\.\d+ cpu-s \[1\] one question, \d+ tok", out, re.M), out
    assert re.search(r"memory \(peak resident set - baseline\): standard [\d.]+ GiB, vgs_fixed", out), out
    assert float(re.search(r"vision tower keeps ([\d.]+) MiB per image", out).group(1)) > 0, out
    ratio = r"\d+\.\d\d \(cpu \d+\.\d\d\)"
    assert re.search(rf"^threads 1: vgs_fixed/standard = {ratio}, vgs_auto/standard = {ratio}$", out, re.M), out


@pytest.mark.parametrize("entry", ["real_sizes.py", "step_cost.py --real-sizes"])
def test_gpu_pair_without_cuda_is_one_clear_error(entry):
    """The same rows run from `step_cost.py --real-sizes` (kept out of its default run) and on their own."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    script, *flag = entry.split()
    result = run_bench(*flag, "--pair", "qwen3", timeout=60, script=REPO / "bench" / script)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("real_sizes: error: --device cuda needs CUDA"), result.stderr
