"""The toy world as a data source: unlimited seeded training prompts and a fixed held-out set.

To the loop this is what a user's image folder is (`vlod_core.data.TrainingData`): it only differs in never
running out. Held-out rows carry their question type as the row's category, so evaluation reports the toy
world's accuracy per question type without knowing it is the toy world.
"""

from __future__ import annotations

from vlod_core.data import Row, TrainingData
from vlod_core.toy import world

HELD_OUT_SEED = 20_261_125  # never used for training
SHOW_SEED = HELD_OUT_SEED + 1  # the handful of rows whose answers are shown before and after


def rows(examples: list[world.Example], label: str = "toy") -> list[Row]:
    return [
        Row(ex.image(), ex.question, ex.answer, category=ex.question_type, label=f"{label} {i + 1}")
        for i, ex in enumerate(examples)
    ]


def held_out_rows(n: int = 400) -> list[Row]:
    return rows(world.sample_examples(n, seed=HELD_OUT_SEED), "held-out toy sample")


class ToyPrompts:
    """Fresh toy examples every step, a pure function of (seed, step)."""

    def prompts(self, step: int, count: int, seed: int) -> list[Row]:
        examples = world.sample_examples(count, seed=(seed * 1_000_003 + step * 7919) % 2**31)
        return rows(examples, f"toy step {step}")


def toy_data(eval_rows: int = 400, show_rows: int = 6) -> TrainingData:
    return TrainingData(
        ToyPrompts(),
        held_out_rows(eval_rows),
        seen_in_training=False,
        show_rows=rows(world.sample_examples(show_rows, seed=SHOW_SEED), "toy sample"),
        description={
            "name": "toy world",
            "train_rows": "unlimited (fresh scenes every step)",
            "eval_rows": eval_rows,
            "eval_seen_in_training": False,
            "split": f"{eval_rows} held-out scenes (seed {HELD_OUT_SEED})",
        },
    )
