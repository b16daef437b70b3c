"""Gradient geometry of one on-policy batch, without training: what `vlod geometry` and page 2 show.

The student samples responses with the image, the four passes score them, and the three gradients are
taken with `torch.autograd.grad`, which returns them without writing `.grad`: the shared (cached) student
is read, never changed, and no copy of it is made (that would double memory for a real model).
"""

from __future__ import annotations

import torch
from PIL import Image

from vlod_core.decomposition import token_kls
from vlod_core.geometry import GradGeometry, geometry_of_losses
from vlod_core.inputs import build_scoring_batch
from vlod_core.pair import ModelPair
from vlod_core.sampling import SamplingConfig, generate
from vlod_core.scoring import score_four
from vlod_core.toy import world


def toy_batch(batch: int, seed: int) -> tuple[list[Image.Image], list[str]]:
    examples = world.sample_examples(batch, seed=seed)
    return [ex.image() for ex in examples], [ex.question for ex in examples]


def batch_geometry(
    pair: ModelPair,
    images: list[Image.Image],
    questions: list[str],
    seed: int = 0,
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=6),
    ablation: str = "remove",
    bins: int = 10,
    detach_prior: bool = True,
) -> GradGeometry:
    """Norms and angles of g_std, g_lang, g_vis on the student's own samples for (image, question) rows."""
    student = pair.student  # eval mode since load_pair: no dropout, the geometry of the model as it is
    eos = pair.tokenizer.eos_token_id
    responses = [
        r or [eos] for r in generate(student, pair.processor, questions, images, sampling, generator_seed=seed)
    ]
    batch = build_scoring_batch(pair.processor, images, questions, responses, ablation).to(pair.device)
    four = score_four(pair.teacher, student, batch, pair.vocab_size, pair.tokenizer.pad_token_id, student_grad=True)
    losses = token_kls(
        four.student_image,
        four.student_ablated,
        four.teacher_image,
        four.teacher_ablated,
        four.response_mask,
        detach_prior,
    )
    named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    with torch.enable_grad():
        return geometry_of_losses(named, losses, batch.response_mask, bins)
