"""The four forward passes of METHOD.md: student and teacher, each with the image and with it ablated.

Each context is its own forward by default: the image-free rows keep their own, much shorter length (no
padding to the image rows'), and a gradient of a loss that only sees one context (ℓStd and ℓVis see the image
context, ℓLang the image-free one) traverses only that context's graph, which is what makes η and the
geometry's many gradients cheap. `merge=True` concatenates both contexts' rows into one call per model
instead (fewer calls, more padding; a test checks the two agree). The logits that predict
each response token are gathered into an aligned `(B, T, V)` tensor and log-softmaxed in float32 over the
pair's shared vocabulary. Only the student's passes carry gradients, and only when asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlod_core.inputs import ContextInputs, ScoringBatch


@dataclass
class FourLogProbs:
    """Log-probabilities over the shared vocabulary at each response position, each `(B, T, V)`.

    The two ablated fields are None when the batch was scored in the image context only. `anchor_ablated`
    holds a frozen reference student's text-only log-probs (the `vgs_anchored` rule's q*), else None.
    """

    student_image: torch.Tensor
    student_ablated: torch.Tensor | None
    teacher_image: torch.Tensor
    teacher_ablated: torch.Tensor | None
    response_ids: torch.Tensor  # (B, T)
    response_mask: torch.Tensor  # (B, T) bool
    anchor_ablated: torch.Tensor | None = None


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


def context_logprobs(model, ctx: ContextInputs, steps: int, vocab_size: int, image_features=None) -> torch.Tensor:
    """(B, T, V) float32 log-probs of the response positions of one (possibly merged) context.

    Only the last positions that hold some row's response get logits (`logits_to_keep`): with right padding
    they are the last L − min(prompt) + 1, which at real sizes (a thousand image tokens, 32 answer tokens)
    spares the output layer almost all of its work. `image_features`: the model's own features of this
    context's images (`decoding.encode_images`), used in place of the pixels.
    """
    length = ctx.model_kwargs["input_ids"].shape[1]
    keep = length - min(ctx.prompt_lengths) + 1
    kwargs = ctx.model_kwargs
    if image_features is not None:
        from vlod_core.decoding import PIXEL_KEYS

        kwargs = {k: v for k, v in kwargs.items() if k not in PIXEL_KEYS}
        kwargs["mm_encoder_outputs"] = {"image": image_features}
    logits = model(**kwargs, use_cache=False, logits_to_keep=keep).logits  # (B, keep, V_model)
    offset = length - logits.shape[1]  # the kept logits start at this position
    starts = [p - offset for p in ctx.prompt_lengths]
    logits = gather_response_logits(logits, starts, steps)[..., :vocab_size]
    return torch.log_softmax(logits.float(), dim=-1)


def both_contexts(
    model,
    image: ContextInputs,
    ablated: ContextInputs | None,
    steps: int,
    vocab_size: int,
    pad_id: int,
    merge=False,
    image_features=None,
):
    """(image, ablated) log-probs of one model, in one batched call when `merge`; ablated is None if absent.

    `image_features` (the image context's, not with `merge`) replace the pixels in the image context's pass."""
    if merge and image_features is not None:
        raise ValueError("image features are reused only when each context has its own pass")
    if ablated is None:
        return context_logprobs(model, image, steps, vocab_size, image_features), None
    if not merge:
        return (
            context_logprobs(model, image, steps, vocab_size, image_features),
            context_logprobs(model, ablated, steps, vocab_size),
        )
    rows = len(image.prompt_lengths)
    logprobs = context_logprobs(model, merge_contexts(image, ablated, pad_id), steps, vocab_size)
    return logprobs[:rows], logprobs[rows:]


def model_logprobs(
    model, batch: ScoringBatch, role: str, vocab_size: int, pad_id: int, merge: bool = False, image_features=None
):
    """`both_contexts` of one model on the inputs built for its role."""
    steps = batch.response_ids.shape[1]
    image, ablated = batch.context(role, "image"), batch.context(role, "ablated")
    return both_contexts(model, image, ablated, steps, vocab_size, pad_id, merge, image_features)


def score_four(
    teacher,
    student,
    batch: ScoringBatch,
    vocab_size: int,
    pad_id: int,
    student_grad: bool = False,
    merge: bool = False,
    anchor=None,
    student_image_features=None,
    frozen: FourLogProbs | None = None,
) -> FourLogProbs:
    """All four passes; the teacher's never carry gradients, the student's only if `student_grad`.

    `anchor`, a frozen copy of the initial student, adds its text-only pass (`vgs_anchored`'s q*).
    `student_image_features` replace the pixels in the student's image pass (`decoding.encode_images` of the
    same images, computed with gradients when the student's pass needs them). `frozen`: an earlier scoring of
    the same batch whose teacher (and anchor) log-probs are reused, since those models never change.
    """
    teacher_image, teacher_ablated, anchor_ablated = _frozen_passes(frozen, batch, anchor)
    with torch.no_grad():
        if teacher_image is None:
            teacher_image, teacher_ablated = model_logprobs(teacher, batch, "teacher", vocab_size, pad_id, merge)
        if anchor_ablated is None and anchor is not None and batch.has_ablated:
            steps = batch.response_ids.shape[1]
            anchor_ablated = context_logprobs(anchor, batch.context("student", "ablated"), steps, vocab_size)
    with torch.set_grad_enabled(student_grad):
        student_image, student_ablated = model_logprobs(
            student, batch, "student", vocab_size, pad_id, merge, student_image_features
        )
    return FourLogProbs(
        student_image,
        student_ablated,
        teacher_image,
        teacher_ablated,
        batch.response_ids,
        batch.response_mask,
        anchor_ablated,
    )


def _frozen_passes(frozen: FourLogProbs | None, batch: ScoringBatch, anchor):
    """(teacher image, teacher ablated, anchor ablated) from an earlier scoring of the same responses, or Nones."""
    if frozen is None or not torch.equal(frozen.response_ids, batch.response_ids):
        return None, None, None
    if batch.has_ablated and frozen.teacher_ablated is None:
        return None, None, None
    if anchor is not None and batch.has_ablated and frozen.anchor_ablated is None:
        return None, None, None
    ablated = frozen.teacher_ablated if batch.has_ablated else None
    return frozen.teacher_image, ablated, frozen.anchor_ablated if batch.has_ablated else None
