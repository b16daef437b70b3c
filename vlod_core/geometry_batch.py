"""Gradient geometry of one on-policy batch, without training: what `vlod geometry` and page 2 show.

The student samples responses with the image, the four passes score them (`engine.rollout`), and the three
gradients are taken with `torch.autograd.grad`, which returns them without writing `.grad`: the shared
(cached) student is read, never changed, and no copy of it is made (that would double memory for a real
model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from vlod_core.engine import rollout
from vlod_core.geometry import GradGeometry, geometry_of_losses
from vlod_core.losses import token_kls
from vlod_core.pair import ModelPair
from vlod_core.inputs import ablation_setting
from vlod_core.sampling import SamplingConfig
from vlod_core.settings import check, setting


@dataclass(frozen=True)
class GeometryConfig:
    """One measurement of the angles: `vlod geometry`'s flags and page 2's form."""

    batch: int = setting(32, low=1, high=256, help="questions in the batch (each answered once by the student)")
    seed: int = setting(
        0, low=0, high=2**31 - 1, step=1, help="which questions and which sampled answers", label="Seed"
    )
    bins: int = setting(
        10, low=0, high=20, step=1, help="equal-count VDS bins of the response tokens (0: none)", label="VDS bins"
    )
    ablation: str = ablation_setting()
    max_new_tokens: int = setting(6, low=1, high=4096, help="length limit of the student's answers")

    def __post_init__(self):
        check(self)


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
    with torch.enable_grad():
        scored = rollout(pair, images, questions, sampling=sampling, seed=seed, ablation=ablation, student_grad=True)
        losses = token_kls(scored.four, detach_prior)
        named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
        return geometry_of_losses(named, losses, scored.four.response_mask, bins)
