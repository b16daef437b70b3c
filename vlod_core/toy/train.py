"""Supervised training of the toy teacher and student (next-token loss on the answer only).

This is not distillation: it makes the pair that distillation then works on. Batches are built straight
from token ids and pixel arrays (the processor's output, computed without it; a test checks the two agree)
because the processor's PIL path would dominate a step this small. Fresh examples every step, so nothing
overfits, and a share of text-only examples teaches every model p(answer | question) as well. Scenes are
drawn by `drawings.draw` (varied, like a class's own drawings) or cleanly (`world.render`), in the share
`varied_fraction`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from vlod_core.evaluation import reference_ids
from vlod_core.toy import drawings, world
from vlod_core.toy.models import pixel_values
from vlod_core.toy.prefetch import prefetched

IGNORE = -100


@dataclass(frozen=True)
class TrainConfig:
    steps: int
    batch: int = 32
    lr: float = 1e-3
    warmup: int = 50
    text_only_fraction: float = 0.15
    weight_decay: float = 0.0
    seed: int = 0
    # Training draws fewer count questions (learned in a few hundred steps) and more of the hard ones.
    question_weights: tuple[float, ...] = (0.3, 0.3, 0.1, 0.3)
    # What the text-only rows ask; None: `question_weights`. A student grounded on some question types only
    # still needs every type's language prior.
    text_question_weights: tuple[float, ...] | None = None
    # Share of images drawn varied (`drawings.draw`) rather than clean (`world.render`), after the first
    # `clean_start` of the steps, which are all clean: with varied drawings from the start (even half of
    # them) a fresh tower never begins to use the image and the model settles on the language prior.
    varied_fraction: float = 0.6
    clean_start: float = 0.25
    train_vision: bool = True  # False: the vision tower stays as it is (a borrowed one)

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not (0.0 <= self.varied_fraction <= 1.0 and 0.0 <= self.clean_start <= 1.0):
            raise ValueError(f"varied_fraction and clean_start must be in [0, 1], got {self}")
        if not 0.0 <= self.text_only_fraction <= 1.0:
            raise ValueError(f"text_only_fraction must be in [0, 1], got {self.text_only_fraction}")


class PromptCache:
    """Token ids of chat-formatted prompts (with and without the image) and of answers, computed once."""

    def __init__(self, processor):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self._prompts: dict[tuple[str, bool], list[int]] = {}
        self._answers: dict[str, list[int]] = {}
        self._blank = world.Example((), "", "", "count").image()

    def prompt(self, question: str, with_image: bool) -> list[int]:
        key = (question, with_image)
        if key not in self._prompts:
            content = ([{"type": "image"}] if with_image else []) + [{"type": "text", "text": question}]
            text = self.processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
            images = [self._blank] if with_image else None
            ids = self.processor(text=[text], images=images, return_tensors="pt")["input_ids"][0]
            self._prompts[key] = ids.tolist()
        return self._prompts[key]

    def answer(self, answer: str) -> list[int]:
        if answer not in self._answers:
            self._answers[answer] = reference_ids(self.tokenizer, answer)
        return self._answers[answer]


def make_batch(
    cache: PromptCache,
    examples: list[world.Example],
    with_image: list[bool],
    draw_rng: np.random.Generator | None = None,
    varied_fraction: float = 0.0,
) -> dict:
    """Right-padded input ids, labels on the answer tokens, pixel values for the rows that have images
    (each a varied drawing from `draw_rng` with probability `varied_fraction`, else `world.render`)."""
    rows, labels = [], []
    for ex, image in zip(examples, with_image):
        prompt, answer = cache.prompt(ex.question, image), cache.answer(ex.answer)
        rows.append(prompt + answer)
        labels.append([IGNORE] * len(prompt) + answer)
    length = max(map(len, rows))
    pad = cache.tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (length - len(r)) for r in rows])  # (B, L)
    attention_mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows])
    label_ids = torch.tensor([lab + [IGNORE] * (length - len(lab)) for lab in labels])
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": label_ids}
    scenes = [ex.objects for ex, image in zip(examples, with_image) if image]
    varied = [draw_rng is not None and draw_rng.random() < varied_fraction for _ in scenes]
    imaged = [drawings.draw(o, draw_rng) if v else world.render(o) for o, v in zip(scenes, varied)]
    if imaged:
        batch["pixel_values"] = pixel_values(imaged)
    return batch


def clipped_step(loss: torch.Tensor, optimiser, scheduler, parameters: list) -> None:
    """One optimiser step on `loss`, its gradient norm clipped at 1 (every stage of the toy build)."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimiser.step()
    scheduler.step()


def train(
    model,
    processor,
    config: TrainConfig,
    callback: Callable[[int, float], None] | None = None,
    sample: Callable[..., list[world.Example]] = world.sample_examples,
) -> None:
    """Train `model` in place on fresh toy examples; `callback(step, loss)` after each step. `sample(n, seed,
    weights)` draws the examples (another world's sampler: `toy.reasoning`)."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    draw_rng = np.random.default_rng([config.seed, 1])
    cache = PromptCache(processor)
    for name, parameter in model.named_parameters():
        if "vision_tower" in name:
            parameter.requires_grad_(config.train_vision)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay)

    def schedule(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        progress = (step - config.warmup) / max(1, config.steps - config.warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    def batches():
        for step in range(config.steps):
            examples = sample(config.batch, int(rng.integers(2**31)), config.question_weights)
            with_image = list(rng.random(config.batch) >= config.text_only_fraction)
            if config.text_question_weights is not None:
                text = sample(config.batch, int(rng.integers(2**31)), config.text_question_weights)
                examples = [ex if image else t for ex, t, image in zip(examples, text, with_image)]
            varied = config.varied_fraction if step >= config.clean_start * config.steps else 0.0
            yield make_batch(cache, examples, with_image, draw_rng, varied)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    model.train()
    for step, batch in enumerate(prefetched(batches())):
        loss = model(**batch).loss
        clipped_step(loss, optimiser, scheduler, trained)
        if callback is not None:
            callback(step, loss.item())
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.eval()
