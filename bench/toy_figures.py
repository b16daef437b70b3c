"""The toy pair's figures over several build seeds: what a fresh build on any machine should fall inside.

    python bench/toy_figures.py [--seeds 0,1,2] [--independent 200] [--keep DIR]

For each seed: `build_toy_pair` (the code `python -m vlod_core toy build --seed N` runs) into a temporary
folder, its card's accuracies on the renderer's held-out set, build wall and CPU seconds, then the teacher,
student and blind student on scenes drawn by the tests' independent renderer (`tests/independent_drawings.py`,
PIL primitives at 96/128 px, through the upload path), with the image and with it removed, and the best
question-only guess (`world.language_prior_accuracy`). Ends with min-max over seeds.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.independent_drawings import draw_scene  # noqa: E402
from vlod_core.data import Row  # noqa: E402
from vlod_core.evaluation import reference_accuracy  # noqa: E402
from vlod_core.toy import world  # noqa: E402
from vlod_core.toy.build import ToyBuildConfig, build_toy_pair  # noqa: E402

INDEPENDENT_SEED = 4242


def independent_rows(n: int) -> list[Row]:
    rng = random.Random(INDEPENDENT_SEED)
    examples = world.sample_examples(n, seed=INDEPENDENT_SEED)
    return [Row(draw_scene(ex.objects, rng), ex.question, ex.answer, category=ex.question_type) for ex in examples]


def measure(seed: int, folder: Path, rows: list[Row]) -> dict:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    card = build_toy_pair(folder, ToyBuildConfig(seed=seed))
    out = {"seed": seed, "build_seconds": card["build_seconds"], "build_cpu_seconds": card["build_cpu_seconds"]}
    for name in ("teacher", "student", "student_blind"):
        out[f"{name} renderer"] = card[name]["accuracy_image"]
        out[f"{name} renderer no image"] = card[name]["accuracy_no_image"]
        model = AutoModelForImageTextToText.from_pretrained(folder / name).eval()
        processor = AutoProcessor.from_pretrained(folder / name)
        accuracy = reference_accuracy(model, processor, rows, len(processor.tokenizer)).to_dict()
        out[f"{name} independent"] = accuracy["accuracy_image"]
        out[f"{name} independent no image"] = accuracy["accuracy_no_image"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--independent", type=int, default=200, help="questions on independent drawings")
    parser.add_argument("--keep", type=Path, help="build into DIR/seed-N instead of a temporary folder")
    args = parser.parse_args()
    rows = independent_rows(args.independent)
    examples = world.sample_examples(args.independent, seed=INDEPENDENT_SEED)
    prior = world.language_prior_accuracy(examples, world.sample_examples(8000, seed=1))
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = (args.keep or Path(tmp)) / f"seed-{seed}"
            results.append(measure(seed, folder, rows) | {"prior (independent questions)": prior})
        print(json.dumps(results[-1]), flush=True)
    print("\nrange over seeds", args.seeds)
    for key in results[0]:
        if key != "seed":
            values = [r[key] for r in results]
            print(f"  {key:32s} {min(values):.3f} - {max(values):.3f}")


if __name__ == "__main__":
    main()
