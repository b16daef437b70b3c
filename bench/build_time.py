"""How long a toy build takes, stage by stage: `python bench/build_time.py [--world reasoning] [--seed N]`.

The build's progress callback stamped with a clock: when the tower, the teacher, the student (if it is still
training once the teacher is done) and the card's measurements start, the card's `build_seconds`, and the
issue's target (120 s for the reasoning world). Run it on a quiet machine: the two processes of a build are
the machine's two cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's vlod_core, not an installed copy

TARGET_SECONDS = {"default": None, "reasoning": 120.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", choices=sorted(TARGET_SECONDS), default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="folder for the pair (default: a temporary one, removed after)")
    args = parser.parse_args()
    if args.world == "reasoning":
        from vlod_core.toy.reasoning_build import ReasoningBuildConfig as Config
        from vlod_core.toy.reasoning_build import build_reasoning_pair as build
    else:
        from vlod_core.toy.build import ToyBuildConfig as Config
        from vlod_core.toy.build import build_toy_pair as build

    started, last = time.perf_counter(), [None]

    def progress(stage: str, done: float) -> None:
        if stage != last[0]:
            print(f"{time.perf_counter() - started:7.1f} s  {stage} (build {done:.0%} done)", flush=True)
            last[0] = stage

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out) if args.out else Path(scratch) / "pair"
        card = build(out, Config(seed=args.seed), progress)
    print(f"{time.perf_counter() - started:7.1f} s  built")
    summary = {name: card[name]["accuracy_image"] for name in ("teacher", "student") if name in card}
    print(json.dumps({"world": args.world, "seed": args.seed, "build_seconds": card["build_seconds"]} | summary))
    target = TARGET_SECONDS[args.world]
    if target is not None:
        verdict = "met" if card["build_seconds"] <= target else "not met"
        print(f"build_seconds {card['build_seconds']} against the target {target:g} s: {verdict}")


if __name__ == "__main__":
    main()
