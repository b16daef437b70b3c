"""Held-out accuracy on the toy world, with the image and with it ablated, per question type.

An answer counts as right when greedy decoding reproduces the reference response exactly. That holds iff
at every reference position the argmax equals the reference token given the reference prefix, so one
teacher-forced pass decides it, with no generation loop; a test checks the shortcut against `generate()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from PIL import Image

from vlod_core.inputs import build_scoring_batch
from vlod_core.sampling import GREEDY, decode, generate
from vlod_core.scoring import both_contexts
from vlod_core.toy import world

HELD_OUT_SEED = 20_261_125  # never used for training


@dataclass(frozen=True)
class Accuracy:
    accuracy_image: float
    accuracy_no_image: float
    per_type_image: dict[str, float] = field(default_factory=dict)
    per_type_no_image: dict[str, float] = field(default_factory=dict)
    n: int = 0

    @property
    def grounding_gap(self) -> float:
        return self.accuracy_image - self.accuracy_no_image

    def to_dict(self) -> dict:
        return asdict(self) | {"grounding_gap": self.grounding_gap}


def held_out_examples(n: int = 400) -> list[world.Example]:
    return world.sample_examples(n, seed=HELD_OUT_SEED)


def reference_ids(tokenizer, answer: str) -> list[int]:
    return tokenizer(answer, add_special_tokens=False, padding=True, padding_side="right")["input_ids"] + [
        tokenizer.eos_token_id
    ]


@torch.no_grad()
def exact_match(
    model,
    processor,
    examples: list[world.Example],
    vocab_size: int,
    ablation: str = "remove",
    batch_size: int = 128,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example booleans (with image, ablated): would greedy decoding give the reference answer?"""
    tokenizer = processor.tokenizer
    was_training = model.training
    model.eval()
    right_image, right_ablated = [], []
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            responses = [reference_ids(tokenizer, ex.answer) for ex in chunk]
            batch = build_scoring_batch(
                processor, [ex.image() for ex in chunk], [ex.question for ex in chunk], responses, ablation
            ).to(model.device)
            for logprobs, sink in zip(
                both_contexts(model, batch, vocab_size, tokenizer.pad_token_id), (right_image, right_ablated)
            ):
                hit = (logprobs.argmax(-1) == batch.response_ids) | ~batch.response_mask  # (B, T)
                sink.append(hit.all(-1).cpu())
            if progress is not None:
                progress(min(start + batch_size, len(examples)), len(examples))
    finally:
        model.train(was_training)
    return torch.cat(right_image), torch.cat(right_ablated)


def evaluate(model, processor, vocab_size: int, examples: list[world.Example] | None = None, **kwargs) -> Accuracy:
    examples = examples if examples is not None else held_out_examples()
    image, ablated = exact_match(model, processor, examples, vocab_size, **kwargs)
    kinds = [ex.question_type for ex in examples]

    def per_type(hits: torch.Tensor) -> dict[str, float]:
        return {
            kind: float(hits[[k == kind for k in kinds]].float().mean())
            for kind in world.QUESTION_TYPES
            if kind in kinds
        }

    return Accuracy(
        float(image.float().mean()), float(ablated.float().mean()), per_type(image), per_type(ablated), len(examples)
    )


def fixed_examples(n: int = 6) -> list[world.Example]:
    """A handful of held-out examples, the same every time, for before/after answers."""
    return world.sample_examples(n, seed=HELD_OUT_SEED + 1)


def greedy_answers(model, processor, images: list[Image.Image], questions: list[str]) -> list[dict]:
    """Greedy answers with and without the image for a few (image, question) rows."""
    if not questions:
        return []
    with_image = generate(model, processor, questions, images, GREEDY)
    without = generate(model, processor, questions, [None] * len(questions), GREEDY)
    return [
        {"question": q, "image": decode(processor.tokenizer, a), "no_image": decode(processor.tokenizer, b)}
        for q, a, b in zip(questions, with_image, without)
    ]


def answers(model, processor, examples: list[world.Example]) -> list[dict]:
    """`greedy_answers` for toy examples, with each reference answer."""
    rows = greedy_answers(model, processor, [ex.image() for ex in examples], [ex.question for ex in examples])
    return [{"question": row["question"], "reference": ex.answer} | row for row, ex in zip(rows, examples)]
