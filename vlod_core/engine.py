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
    image_features=None,
) -> list[list[int]]:
    """`model`'s answers in one context of the prompts (encoded for `role`), each at least EOS."""
    encoded = prompts.encoded[(role, context)]
    responses = generate_encoded(model, pair.tokenizer, encoded, config, seed, image_features)
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
    student_image_features=None,
    frozen: FourLogProbs | None = None,
) -> FourLogProbs:
    """Score given responses four ways (two when `contexts=("image",)`); `student` defaults to the pair's.

    `student_image_features`: the student's features of the image context (`score_four`); `frozen`: an earlier
    scoring of the same responses whose teacher passes are reused."""
    batch = build_scoring_batch(prompts, responses, pair.tokenizer.pad_token_id, contexts)
    student = student if student is not None else pair.student
    return score_four(
        pair.teacher,
        student,
        batch,
        pair.vocab_size,
        pair.tokenizer.pad_token_id,
        student_grad,
        merge,
        anchor,
        student_image_features,
        frozen,
    )


def shares_image_features(model) -> bool:
    """Whether `model`'s image features can be computed once for sampling and scoring: it takes them as
    `mm_encoder_outputs`, and nothing in it acts differently in training and evaluation mode (dropout,
    batch norm), since sampling runs in evaluation mode and the training step's scoring in training mode."""
    from vlod_core.decoding import _accepts

    plain = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(plain, "base_model") or not _accepts(plain, "mm_encoder_outputs"):
        return False
    for module in plain.modules():
        if isinstance(module, torch.nn.modules.batchnorm._NormBase):
            return False
        for name in ("p", "dropout", "attention_dropout"):
            value = getattr(module, name, 0.0)
            if isinstance(value, float) and value > 0:
                return False
    return True


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
    features = None
    if responses is None:
        scorer = student if student is not None else pair.student
        answerer = sampler or scorer
        if answerer is scorer and not merge and shares_image_features(scorer):
            # The vision tower runs once: its features (with their graph when the student's pass needs
            # gradients) answer the prompts, detached, and then enter the scoring pass.
            from vlod_core.decoding import encode_images

            plain = scorer.get_base_model() if hasattr(scorer, "get_base_model") else scorer
            with torch.set_grad_enabled(student_grad):
                features = encode_images(plain, prompts.encoded[("student", "image")])
        with torch.no_grad():
            from vlod_core.decoding import detached

            answer_features = detached(features) if features is not None else None
            responses = sample(answerer, pair, prompts, sampling, seed, image_features=answer_features)
    four = score_responses(
        pair,
        prompts,
        responses,
        student=student,
        student_grad=student_grad,
        contexts=contexts,
        anchor=anchor,
        merge=merge,
        student_image_features=features,
    )
    return Rollout(prompts, responses, four)
