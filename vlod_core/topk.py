"""The most likely next tokens at each response position under the four distributions of METHOD.md.

The app shows them when the user hovers a token of the strip: seeing *which* tokens the teacher gains from
the image (qI vs qx) and which the student keeps from its language prior (px) makes a large `vis_kl` or
`lang_kl` concrete. The response is re-scored once (four passes, no gradients); `from_four` is the pure
part, usable on any `FourLogProbs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlod_core.scoring import FourLogProbs

# FourLogProbs field -> how the app labels that distribution
DISTRIBUTIONS = {
    "student_image": "student, image",
    "student_ablated": "student, no image",
    "teacher_image": "teacher, image",
    "teacher_ablated": "teacher, no image",
}


@dataclass
class NextTokens:
    """For response position t, `top[t][dist]` lists (token, probability), most likely first."""

    tokens: list[str]  # the scored response's tokens, one per position
    top: list[dict[str, list[tuple[str, float]]]]

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "top": self.top}


def from_four(four: FourLogProbs, tokenizer, k: int = 5, row: int = 0) -> NextTokens:
    """Top-k of each distribution at each real response position of `row`."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = int(four.response_mask[row].sum())
    ids = four.response_ids[row, :n].tolist()
    top: list[dict[str, list[tuple[str, float]]]] = [{} for _ in range(n)]
    with torch.no_grad():
        for name in DISTRIBUTIONS:
            logprobs = getattr(four, name)[row, :n].detach().float().cpu()  # (T, V)
            values, indices = logprobs.topk(min(k, logprobs.shape[-1]), dim=-1)  # (T, k)
            for t in range(n):
                words = tokenizer.convert_ids_to_tokens(indices[t].tolist())
                top[t][name] = [(w, float(v.exp())) for w, v in zip(words, values[t])]
    return NextTokens(tokenizer.convert_ids_to_tokens(ids), top)
