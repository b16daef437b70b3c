"""The four forward passes of METHOD.md: student and teacher, each with the image and with it ablated.

Each model sees both contexts in one batched call (the rows are concatenated; rows without an image simply
carry no placeholder tokens), so a step costs one student and one teacher forward. The logits that
predict each response token are gathered into an aligned `(B, T, V)` tensor and log-softmaxed in float32
over the pair's shared vocabulary. Only the student's passes carry gradients, and only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlod_core.inputs import ContextInputs, ScoringBatch


@dataclass
class FourLogProbs:
    """Log-probabilities over the shared vocabulary at each response position, each `(B, T, V)`.

    The two ablated fields are None when the batch was scored in the image context only.
    """

    student_image: torch.Tensor
    student_ablated: torch.Tensor | None
    teacher_image: torch.Tensor
    teacher_ablated: torch.Tensor | None
    response_ids: torch.Tensor  # (B, T)
    response_mask: torch.Tensor  # (B, T) bool


def merge_contexts(first: ContextInputs, second: ContextInputs, pad_id: int) -> ContextInputs:
    """One set of model kwargs holding the rows of both contexts (first's rows, then second's)."""
    a, b = first.model_kwargs, second.model_kwargs
    length = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    merged = {}
    for key in a.keys() | b.keys():
        if key in a and key in b:
            x, y = a[key], b[key]
            if x.dim() == 2 and x.shape == a["input_ids"].shape:  # per-token: pad to a common length
                fill = pad_id if key == "input_ids" else 0
                x = torch.nn.functional.pad(x, (0, length - x.shape[1]), value=fill)
                y = torch.nn.functional.pad(y, (0, length - y.shape[1]), value=fill)
            merged[key] = torch.cat([x, y], dim=0)
        else:  # image-only tensors (pixel values, grid sizes) belong to the rows that have images
            merged[key] = a[key] if key in a else b[key]
    return ContextInputs(merged, first.prompt_lengths + second.prompt_lengths)


def gather_response_logits(logits: torch.Tensor, prompt_lengths: list[int], steps: int) -> torch.Tensor:
    """(B, L, V) logits -> (B, T, V): position p + t - 1 predicts response token t of a row whose prompt is p."""
    start = torch.tensor(prompt_lengths, device=logits.device).unsqueeze(1) - 1  # (B, 1)
    positions = (start + torch.arange(steps, device=logits.device)).clamp(max=logits.shape[1] - 1)  # (B, T)
    return logits.gather(1, positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))


def context_logprobs(model, ctx: ContextInputs, steps: int, vocab_size: int) -> torch.Tensor:
    """(B, T, V) float32 log-probs of the response positions of one (possibly merged) context."""
    logits = model(**ctx.model_kwargs, use_cache=False).logits  # (B, L, V_model)
    logits = gather_response_logits(logits, ctx.prompt_lengths, steps)[..., :vocab_size]
    return torch.log_softmax(logits.float(), dim=-1)


def both_contexts(model, batch: ScoringBatch, vocab_size: int, pad_id: int, merge: bool = True):
    """(image, ablated) log-probs of one model, in one batched call when `merge`; ablated is None if absent."""
    steps = batch.response_ids.shape[1]
    if batch.ablated is None:
        return context_logprobs(model, batch.image, steps, vocab_size), None
    if not merge:
        return (
            context_logprobs(model, batch.image, steps, vocab_size),
            context_logprobs(model, batch.ablated, steps, vocab_size),
        )
    merged = merge_contexts(batch.image, batch.ablated, pad_id)
    logprobs = context_logprobs(model, merged, steps, vocab_size)
    rows = batch.response_ids.shape[0]
    return logprobs[:rows], logprobs[rows:]


def score_four(
    teacher, student, batch: ScoringBatch, vocab_size: int, pad_id: int, student_grad: bool = False, merge: bool = True
) -> FourLogProbs:
    """All four passes; the teacher's never carry gradients, the student's only if `student_grad`."""
    with torch.no_grad():
        teacher_image, teacher_ablated = both_contexts(teacher, batch, vocab_size, pad_id, merge)
    with torch.set_grad_enabled(student_grad):
        student_image, student_ablated = both_contexts(student, batch, vocab_size, pad_id, merge)
    return FourLogProbs(
        student_image, student_ablated, teacher_image, teacher_ablated, batch.response_ids, batch.response_mask
    )
