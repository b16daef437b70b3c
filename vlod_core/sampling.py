"""Student sampling: the on-policy responses that everything else scores.

Samples are data: generated without gradients, cut at the end-of-turn token (kept, so the teacher also
scores where the student stops), and returned as token ids. Structural tokens (image placeholders, chat
markers, padding) are suppressed, since a sampled image token would break the next forward pass.
Prompts are left-aligned here, as `generate()` needs; scoring uses right padding (see `inputs.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from vlod_core.inputs import encode_prompts
from vlod_core.settings import check, setting


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = setting(
        1.0,
        low=1e-3,
        high=10.0,
        step=0.1,
        help="sampling temperature (unused when greedy)",
        label="Temperature (for a sample)",
    )
    top_p: float = setting(1.0, low=0.01, high=1.0, step=0.05, help="nucleus sampling: keep this much mass")
    max_new_tokens: int = setting(8, low=1, high=4096, help="length limit of the student's answers")
    greedy: bool = setting(False, help="take the likeliest token instead of sampling")

    def __post_init__(self):
        check(self, skip=("temperature",) if self.greedy else ())


GREEDY = SamplingConfig(greedy=True)


def structural_token_ids(tokenizer) -> list[int]:
    """Special tokens a response must never contain, except the end-of-turn token."""
    eos = tokenizer.eos_token_id
    return sorted({i for i in tokenizer.all_special_ids if i != eos})


class SeededSampler:
    """Temperature, top-p and the draw itself, as a logits processor with its own `torch.Generator`.

    `model.generate(do_sample=True)` draws from torch's process-wide RNG, so two sessions sampling at once
    interleave one stream and neither is reproducible. This processor makes the draw and leaves only the
    drawn token finite; `generate` then runs greedily and picks exactly that token. Top-p keeps the
    smallest set of likeliest tokens whose mass reaches `top_p`, as transformers' `TopPLogitsWarper` does.
    """

    def __init__(self, config: SamplingConfig, generator: torch.Generator | None = None):
        self.config, self.generator = config, generator

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        drawn = self.draw(scores)
        return torch.full_like(scores, float("-inf")).scatter(-1, drawn[:, None], 0.0)

    def draw(self, scores: torch.Tensor) -> torch.Tensor:
        """(B,) token ids drawn from (B, V) scores."""
        logits = scores.float() / self.config.temperature  # (B, V)
        if self.config.top_p < 1:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            sorted_probs = sorted_logits.softmax(-1)
            mass_before = sorted_probs.cumsum(-1) - sorted_probs  # (B, V): mass of the strictly likelier tokens
            drop = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, mass_before >= self.config.top_p)
            logits = logits.masked_fill(drop, float("-inf"))
        return torch.multinomial(logits.softmax(-1), 1, generator=self.generator)[:, 0]


def generate(
    model,
    processor,
    questions: list[str],
    images: list[Image.Image | None],
    config: SamplingConfig = GREEDY,
    generator_seed: int | None = None,
) -> list[list[int]]:
    """Response ids per row (ending with EOS when the model stopped). `images[i] is None`: text only."""
    return generate_encoded(
        model, processor.tokenizer, encode_prompts(processor, questions, images), config, generator_seed
    )


def generate_encoded(
    model, tokenizer, encoded: dict, config: SamplingConfig = GREEDY, generator_seed: int | None = None, image_features=None
) -> list[list[int]]:
    """`generate` from prompts already encoded (right-padded, as for scoring: `inputs.encode_prompts`).

    Encoding once and sampling and scoring from the same tensors saves the processor a second pass. The tokens
    are drawn by `decoding.decode`, which gives `model.generate`'s tokens (`hf_generate_encoded`) in a
    fraction of its time; `image_features` are the model's own for these inputs when the caller has them.
    """
    from vlod_core.decoding import decode

    encoded = {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in left_align(encoded).items()}
    choose = None if config.greedy else SeededSampler(config, _generator(model, generator_seed)).draw
    was_training = model.training
    model.eval()
    try:
        new = decode(
            model,
            encoded,
            config.max_new_tokens,
            structural_token_ids(tokenizer),
            tokenizer.pad_token_id,
            tokenizer.eos_token_id,
            choose,
            image_features,
        ).tolist()
    finally:
        model.train(was_training)
    return [_cut_at_eos(row, tokenizer.eos_token_id, tokenizer.pad_token_id) for row in new]


def _generator(model, seed: int | None) -> torch.Generator | None:
    """Drawn from a private generator, never torch's process-wide RNG: sessions sample concurrently."""
    return None if seed is None else torch.Generator(device=model.device).manual_seed(seed)


def hf_generate_encoded(
    model, tokenizer, encoded: dict, config: SamplingConfig = GREEDY, generator_seed: int | None = None
) -> list[list[int]]:
    """`generate_encoded` through transformers' `model.generate`: the reference the decode loop is held to."""
    # Tokenized right-padded, exactly as for scoring, then left-aligned here. A fast tokenizer stores the
    # padding side on its shared Rust backend during each call (even when given per call), so asking it for
    # left padding while another session asks for right makes the two calls race.
    encoded = {k: v.to(model.device) if torch.is_tensor(v) else v for k, v in left_align(encoded).items()}
    if config.greedy:
        sample_kwargs = {"do_sample": False}
    else:
        from transformers import LogitsProcessorList

        sampler = SeededSampler(config, _generator(model, generator_seed))
        sample_kwargs = {"do_sample": False, "logits_processor": LogitsProcessorList([sampler])}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model.generate(
                **encoded,
                max_new_tokens=config.max_new_tokens,
                suppress_tokens=structural_token_ids(tokenizer),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **sample_kwargs,
            )
    finally:
        model.train(was_training)
    new = output[:, encoded["input_ids"].shape[1] :].tolist()
    return [_cut_at_eos(row, tokenizer.eos_token_id, tokenizer.pad_token_id) for row in new]


def left_align(encoded) -> dict:
    """Right-padded processor output re-laid with each row's real tokens last, as `generate()` needs."""
    ids = encoded["input_ids"]  # (B, L)
    if "attention_mask" not in encoded:
        return dict(encoded)
    shifts = (ids.shape[1] - encoded["attention_mask"].sum(-1)).tolist()  # padding at each row's end
    out = dict(encoded)
    for key, value in encoded.items():  # ids, mask and any other per-token ids (token types ...)
        if torch.is_tensor(value) and value.shape == ids.shape and not value.is_floating_point():
            out[key] = torch.stack([row.roll(shift) for row, shift in zip(value, shifts)])
    return out


def _cut_at_eos(ids: list[int], eos: int, pad: int) -> list[int]:
    out = []
    for token in ids:
        if token == eos:
            return out + [eos]
        if token == pad:
            break
        out.append(token)
    return out


def decode(tokenizer, ids: list[int]) -> str:
    """Response text without the end-of-turn marker."""
    return tokenizer.decode([i for i in ids if i != tokenizer.eos_token_id], skip_special_tokens=False).strip()
