"""The reasoning world's teacher alone, with another recipe: `python bench/teacher_probe.py --seed 0 --lr 2e-3
--steps 2000 [--layers 3] [--hidden 128] [--weights 0.2,0.2,0.1,0.5] [--clean-start 0.5] [--early-weights W]`.

The build's own tower and teacher stages (`toy.reasoning_build`: the same seed, tower, question mix and
drawings; no student beside it, nothing saved), then its greedy final-answer accuracy with the image on the
card's 400 held-out scenes, per question kind. With the build's settings (`--steps 1500 --lr 2e-3`) it gives
the card's teacher figure on the same machine; other settings say what a teacher recipe would reach before a
whole pair is rebuilt for it (issue 19: a teacher ≥ 0.95 within the 120-s build). Run on a quiet core: the
seconds printed are the teacher's steps alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's vlod_core, not an installed copy


def tower_column_accuracy(tower, scenes: int = 300) -> float:
    """How well one linear map reads each object's column off the frozen tower's features: a least-squares
    classifier fitted on half of the objects of `scenes` clean drawings, scored on the other half. 1.0 says the
    column is there for the language model to read; what it learns is then the binding of colour to position."""
    import torch

    from vlod_core.toy import world
    from vlod_core.toy.models import pixel_values

    examples = world.sample_examples(scenes, seed=123)
    with torch.no_grad():
        features = tower(pixel_values=pixel_values([world.render(e.objects) for e in examples])).last_hidden_state
    cells = [(i, o.row * world.GRID + o.col, o.col) for i, e in enumerate(examples) for o in e.objects]
    x = torch.stack([features[i, cell] for i, cell, _ in cells])
    x = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    column = torch.tensor([c for *_, c in cells])
    half = len(x) // 2
    weights = torch.linalg.lstsq(x[:half], torch.nn.functional.one_hot(column[:half], world.GRID).float()).solution
    return (x[half:] @ weights).argmax(1).eq(column[half:]).float().mean().item()


def curriculum(sample, early: tuple[float, ...], steps: int):
    """`sample` drawing its first `steps` batches with the question mix `early` (the trainer samples once a step
    with image rows; text-only rows do not ask for a mix of their own in the teacher's config)."""
    calls = [0]

    def drawn(n, seed, weights=None):
        calls[0] += 1
        return sample(n, seed, early if calls[0] <= steps else weights)

    return drawn


def main() -> None:
    import torch

    from vlod_core.toy import reasoning
    from vlod_core.toy.models import TEACHER_SIZE, build_model
    from vlod_core.toy.reasoning_build import ReasoningBuildConfig, chain_accuracy, held_out_examples
    from vlod_core.toy.tower import TowerConfig, pretrain_tower
    from vlod_core.toy.train import TrainConfig, train

    build = ReasoningBuildConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=build.seed)
    parser.add_argument("--lr", type=float, default=build.teacher_lr)
    parser.add_argument("--steps", type=int, default=build.teacher_steps)
    parser.add_argument("--layers", type=int, default=TEACHER_SIZE.layers, help="the teacher's language model depth")
    parser.add_argument("--hidden", type=int, default=TEACHER_SIZE.hidden, help="its width (and its tower's)")
    parser.add_argument(
        "--weights",
        type=lambda text: tuple(float(w) for w in text.split(",")),
        default=build.teacher_question_weights,
        help="shares of the question kinds (not_colour,two_shapes,leftmost_colour,left_of)",
    )
    parser.add_argument("--clean-start", type=float, default=TrainConfig.clean_start, help="share of clean steps first")
    parser.add_argument(
        "--early-weights",
        type=lambda text: tuple(float(w) for w in text.split(",")),
        help="the question mix of the first --early-share of the steps (a curriculum; default: --weights throughout)",
    )
    parser.add_argument("--early-share", type=float, default=1 / 3)
    args = parser.parse_args()
    config = replace(
        build, seed=args.seed, teacher_lr=args.lr, teacher_steps=args.steps, teacher_question_weights=args.weights
    )

    torch.set_num_threads(config.threads)
    processor = reasoning.build_reasoning_processor()
    torch.manual_seed(config.seed)  # as the build: the teacher, then its tower, from the seed
    teacher = build_model(replace(TEACHER_SIZE, layers=args.layers, hidden=args.hidden), processor)
    pretrain_tower(teacher.model.vision_tower, TowerConfig(steps=config.tower_steps, seed=config.seed))
    columns = tower_column_accuracy(teacher.model.vision_tower)
    started = time.perf_counter()
    teacher_config = replace(config.teacher_training(), clean_start=args.clean_start)
    sample = config.teacher_sample()
    if args.early_weights:
        sample = curriculum(sample, args.early_weights, round(args.early_share * config.teacher_steps))
    train(teacher, processor, teacher_config, sample=sample)
    seconds = time.perf_counter() - started
    card = chain_accuracy(teacher, processor, held_out_examples(config.eval_examples))
    summary = {
        "seed": config.seed,
        "lr": config.teacher_lr,
        "steps": config.teacher_steps,
        "layers": args.layers,
        "hidden": args.hidden,
        "weights": list(config.teacher_question_weights),
        "clean_start": args.clean_start,
        "early_weights": list(args.early_weights) if args.early_weights else None,
        "early_share": args.early_share if args.early_weights else None,
        "tower_column_accuracy": round(columns, 3),
        "teacher_seconds": round(seconds, 1),
        "accuracy_image": card["accuracy_image"],
        "per_kind": card.get("accuracy_image_per_kind"),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
