"""The memory estimate (vlod_core.memory) against the measured peak resident memory of real distillation steps.

    OMP_NUM_THREADS=1 python bench/memory_estimate.py [--steps 3] [--batch 8]

For each pair, a fresh subprocess imports everything, notes its current resident memory (the baseline:
Python, torch, transformers), loads the pair, runs `distill` for a few steps on a fixed batch, and reports its peak resident
memory (`ru_maxrss`). The estimate is computed from the two configs for the same batch and lengths. Pairs: the
embedded toy pair (LLaVA, tiny) and a random Qwen2.5-VL pair big enough for the estimate to matter (teacher
512 wide, 4 layers; student 256 wide, 2 layers; 32k-row embedding tables), in float32 on the CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, torch
torch.set_num_threads(1)
from vlod_core.distill import DistillConfig, distill
from vlod_core.memory import estimate_training_memory
from vlod_core.pair import PairSpec, load_pair
from vlod_core.toy import world
import vlod_core.inputs, vlod_core.scoring  # everything imported before the baseline
teacher, student, steps, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import psutil
baseline = psutil.Process().memory_info().rss  # now, not the peak of the imports
pair = load_pair(PairSpec(teacher=teacher, student=student, device="cpu", dtype="float32"))
examples = world.sample_examples(batch, seed=0)
tok = pair.tokenizer
responses = [tok(ex.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for ex in examples]
rows = ([ex.image() for ex in examples], [ex.question for ex in examples], responses)
from vlod_core.inputs import build_scoring_batch
scoring = build_scoring_batch(pair.processor, *rows)
prompt = max(scoring.image.prompt_lengths)
response = scoring.response_ids.shape[1]
config = DistillConfig(steps=steps, batch=batch, eval_examples=4, answer_examples=0)
distill(pair, config, rollouts=lambda step: rows, evaluate_model=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
estimate = estimate_training_memory(pair.teacher.config, pair.student.config, torch.float32, batch, (prompt, response))
print(json.dumps({"baseline": baseline, "peak": peak, "estimate": estimate.to_dict(), "lengths": [prompt, response]}))
"""


def medium_qwen_pair(root: Path) -> tuple[Path, Path]:
    from vlod_core.testing.families import Size, _qwen2_5_vl

    teacher, student = root / "teacher", root / "student"
    _qwen2_5_vl(Size(hidden=512, layers=4, heads=8, vision_hidden=128, extra_rows=32064), teacher, 0)
    _qwen2_5_vl(Size(hidden=256, layers=2, heads=4, vision_hidden=64, extra_rows=32000), student, 1)
    return teacher, student


def measure(teacher: Path, student: Path, steps: int, batch: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(teacher), str(student), str(steps), str(batch)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    from vlod_core.toy.build import ensure_toy_pair

    toy = ensure_toy_pair()
    with tempfile.TemporaryDirectory() as tmp:
        pairs = {"toy (LLaVA)": (toy / "teacher", toy / "student"), "Qwen2.5-VL, random": medium_qwen_pair(Path(tmp))}
        mib = 2**20
        print(
            "| pair | batch | prompt + response tokens | estimate (MiB) | measured peak - baseline (MiB) | baseline (MiB) |"
        )
        print("|---|---|---|---|---|---|")
        for name, (teacher, student) in pairs.items():
            result = measure(teacher, student, args.steps, args.batch)
            grown = (result["peak"] - result["baseline"]) / mib
            prompt, response = result["lengths"]
            print(
                f"| {name} | {args.batch} | {prompt} + {response} | {result['estimate']['total'] / mib:.0f} | "
                f"{grown:.0f} | {result['baseline'] / mib:.0f} |"
            )


if __name__ == "__main__":
    main()
