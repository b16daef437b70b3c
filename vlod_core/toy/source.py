"""The toy world as a data source: unlimited seeded training prompts and a fixed held-out set.

To the loop this is what a user's image folder is (`vlod_core.data.TrainingData`): it only differs in never
running out. Held-out rows carry their question type as the row's category, so evaluation reports the toy
world's accuracy per question type without knowing it is the toy world. `world="reasoning"` gives the reasoning
world's rows (`toy.reasoning`): the same scenes, questions that need a chain, and reference answers that are
the teacher's chains (`<reason> … </reason> \\boxed{…}`; compare final answers with the `boxed` pattern).
"""

from __future__ import annotations

from dataclasses import replace

from vlod_core.data import Row, TrainingData
from vlod_core.toy import world

WORLDS = ("default", "reasoning")

HELD_OUT_SEED = 20_261_125  # never used for training
SHOW_SEED = HELD_OUT_SEED + 1  # the handful of rows whose answers are shown before and after


def rows(examples: list[world.Example], label: str = "toy") -> list[Row]:
    return [
        Row(ex.image(), ex.question, ex.answer, category=ex.question_type, label=f"{label} {i + 1}")
        for i, ex in enumerate(examples)
    ]


def _sample(world_name: str):
    """The world's `sample_examples(n, seed)`; the reasoning world's reference answers are teacher chains."""
    if world_name == "default":
        return world.sample_examples
    if world_name == "reasoning":
        from functools import partial

        from vlod_core.toy import reasoning

        return partial(reasoning.sample_examples, reference=True)
    raise ValueError(f"unknown toy world {world_name!r}; expected one of {WORLDS}")


def examples(n: int, seed: int, world_name: str = "default") -> list[world.Example]:
    """`n` of the world's examples drawn from `seed`, scenes included (the reasoning world's answers are the
    teacher's reference chains): what a page offers as samples."""
    return _sample(world_name)(n, seed=seed)


def held_out_rows(n: int = 400, world_name: str = "default") -> list[Row]:
    return rows(_sample(world_name)(n, seed=HELD_OUT_SEED), "held-out toy sample")


class ToyPrompts:
    """Fresh toy examples every step, a pure function of (seed, step)."""

    def __init__(self, world_name: str = "default"):
        self.world_name, self.sample = world_name, _sample(world_name)

    def recipe(self) -> tuple[str, dict]:
        """How another process makes this source again (`experiments.handover`)."""
        return f"{type(self).__module__}.{type(self).__name__}", {"world_name": self.world_name}

    def prompts(self, step: int, count: int, seed: int) -> list[Row]:
        examples = self.sample(count, seed=(seed * 1_000_003 + step * 7919) % 2**31)
        return rows(examples, f"toy step {step}")


def max_new_tokens(world_name: str = "default") -> int | None:
    """The response length the world's answers need (None: the caller's default fits)."""
    if world_name == "reasoning":
        from vlod_core.toy.reasoning import MAX_NEW_TOKENS

        return MAX_NEW_TOKENS
    _sample(world_name)
    return None


def world_settings(world_name: str = "default") -> dict:
    """The run settings a world's answers need, by flat setting name (`vlod_core.settings`): the reasoning world's
    chains need room to be written and are scored by their boxed final answer."""
    length = max_new_tokens(world_name)
    if length is None:
        return {}
    return {"max_new_tokens": length, "eval_max_new_tokens": length, "answer_pattern": "boxed"}


def in_world(plan, world_name: str):
    """`plan` (an `experiments.Plan`) on toy world `world_name`: the world's name, the answer lengths and pattern
    its answers need, and the world's own settings for the plan (`plan.PLAN_IN_WORLD`)."""
    from vlod_core.experiments.plan import for_world

    return for_world(replace(plan, world=world_name, **world_settings(world_name)))


def toy_data(eval_rows: int = 400, show_rows: int = 6, world_name: str = "default") -> TrainingData:
    sample = _sample(world_name)
    description = {
        "name": "toy world" if world_name == "default" else f"toy {world_name} world",
        "train_rows": "unlimited (fresh scenes every step)",
        "eval_rows": eval_rows,
        "eval_seen_in_training": False,
        "split": f"{eval_rows} held-out scenes (seed {HELD_OUT_SEED})",
    }
    if world_name != "default":
        description |= {"world": world_name, "answer_pattern": "boxed", "max_new_tokens": max_new_tokens(world_name)}
    return TrainingData(
        ToyPrompts(world_name),
        held_out_rows(eval_rows, world_name),
        seen_in_training=False,
        show_rows=rows(sample(show_rows, seed=SHOW_SEED), "toy sample"),
        description=description,
    )
