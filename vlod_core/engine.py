"""The one way vlod runs a pair: encode the rows once, let the student answer, score the answers four ways.

The training step, `inspect`, the occlusion map, the top-k view, the gradient geometry and evaluation all
call `rollout` (or `score_responses` when the answers are given), so every change to how a batch is
encoded, sampled or scored lands everywhere at once. The per-token losses of the scored batch come from
`vlod_core.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

from vlod_core.inputs import CONTEXTS, PromptBatch, build_scoring_batch, encode_rows
from vlod_core.sampling import GREEDY, SamplingConfig, generate_encoded
from vlod_core.scoring import FourLogProbs, score_four


@dataclass
class Rollout:
    """A scored batch: the encoded prompts, the responses (token ids) and the four log-prob tensors."""

    prompts: PromptBatch
    responses: list[list[int]]
    four: FourLogProbs


def encode(pair, images: list[Image.Image], questions: list[str], ablation: str = "remove", contexts=CONTEXTS):
    """`inputs.encode_rows` with the pair's processors, on the pair's device."""
    return encode_rows(
        pair.processor, images, questions, ablation, contexts, teacher_processor=pair.teacher_processor
    ).to(pair.device)


def sample(
    model,
    pair,
    prompts: PromptBatch,
    config: SamplingConfig = GREEDY,
    seed: int | None = None,
    role: str = "student",
    context: str = "image",
) -> list[list[int]]:
    """`model`'s answers in one context of the prompts (encoded for `role`), each at least EOS."""
    responses = generate_encoded(model, pair.tokenizer, prompts.encoded[(role, context)], config, seed)
    eos = pair.tokenizer.eos_token_id
    return [response or [eos] for response in responses]


def score_responses(
    pair,
    prompts: PromptBatch,
    responses: list[list[int]],
    *,
    student=None,
    student_grad: bool = False,
    contexts: tuple[str, ...] | None = None,
    anchor=None,
    merge: bool = False,
) -> FourLogProbs:
    """Score given responses four ways (two when `contexts=("image",)`); `student` defaults to the pair's."""
    batch = build_scoring_batch(prompts, responses, pair.tokenizer.pad_token_id, contexts)
    student = student if student is not None else pair.student
    return score_four(
        pair.teacher, student, batch, pair.vocab_size, pair.tokenizer.pad_token_id, student_grad, merge, anchor
    )


def rollout(
    pair,
    images: list[Image.Image],
    questions: list[str],
    *,
    responses: list[list[int]] | None = None,
    sampling: SamplingConfig = SamplingConfig(),
    seed: int | None = 0,
    ablation: str = "remove",
    contexts: tuple[str, ...] = CONTEXTS,
    student=None,
    sampler=None,
    student_grad: bool = False,
    anchor=None,
    merge: bool = False,
) -> Rollout:
    """Encode once, sample with the student unless `responses` are given, and score.

    `student` is the model that is scored (a DDP wrapper while training), `sampler` the one that answers
    (the plain model; default: `student`, else the pair's student). `merge` scores both contexts in one call
    per model (DDP needs one forward per backward).
    """
    prompts = encode(pair, images, questions, ablation, contexts)
    if responses is None:
        with torch.no_grad():
            responses = sample(sampler or student or pair.student, pair, prompts, sampling, seed)
    four = score_responses(
        pair,
        prompts,
        responses,
        student=student,
        student_grad=student_grad,
        contexts=contexts,
        anchor=anchor,
        merge=merge,
    )
    return Rollout(prompts, responses, four)
