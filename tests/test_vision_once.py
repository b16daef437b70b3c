"""The student's image features are computed once per step: sampling and the image-context scoring pass share them.

`engine.rollout` encodes the student's image features before sampling (with their graph when the scoring pass
needs gradients), answers from a detached copy and scores with the originals. These tests hold the shared path
to the plain one (the same responses given to `rollout`, so each pass encodes its own pixels): the same
log-probs and the same gradients, with the toy's frozen tower and with a trainable one (real students train
theirs). And the geometry's extra pass reuses the step's teacher log-probs.
"""

from __future__ import annotations

import copy

import pytest
import torch
from family_pairs import family_pairs_fixture  # noqa: F401 - the session fixture `family_pairs`

from vlod_core import decoding
from vlod_core.engine import rollout, shares_image_features
from vlod_core.geometry import module_group
from vlod_core.sampling import SamplingConfig
from vlod_core.toy import world


def _loss(four) -> torch.Tensor:
    mask = four.response_mask.unsqueeze(-1)
    return ((four.student_image.exp() * (four.student_image - four.teacher_image)) * mask).sum()


def _shared_and_plain(pair, student, rows: int = 6):
    examples = world.sample_examples(rows, seed=4)
    images, questions = [e.image() for e in examples], [e.question for e in examples]
    params = [p for p in student.parameters() if p.requires_grad]
    calls = []
    original = decoding.encode_images

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    decoding.encode_images = counting
    try:
        shared = rollout(
            pair,
            images,
            questions,
            sampling=SamplingConfig(max_new_tokens=6),
            seed=3,
            student=student,
            student_grad=True,
        )
    finally:
        decoding.encode_images = original
    assert calls, "the shared path did not run"
    grads_shared = torch.autograd.grad(_loss(shared.four), params, allow_unused=True)
    plain = rollout(pair, images, questions, responses=shared.responses, student=student, student_grad=True)
    grads_plain = torch.autograd.grad(_loss(plain.four), params, allow_unused=True)
    return shared, plain, params, grads_shared, grads_plain


def _check(shared, plain, named, grads_shared, grads_plain, trainable_tower: bool):
    torch.testing.assert_close(shared.four.student_image, plain.four.student_image, rtol=0, atol=1e-6)
    torch.testing.assert_close(shared.four.teacher_image, plain.four.teacher_image, rtol=0, atol=0)
    tower_grads = 0
    for (name, _), a, b in zip(named, grads_shared, grads_plain):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)
            if module_group(name) == "vision tower" and a.abs().sum() > 0:
                tower_grads += 1
    if trainable_tower is not None:
        assert (tower_grads > 0) == trainable_tower


@pytest.mark.slow
@pytest.mark.parametrize("trainable_tower", [False, True], ids=["frozen-tower", "trainable-tower"])
def test_shared_features_leave_logprobs_and_gradients_unchanged_on_the_toy_pair(toy_pair, trainable_tower):
    student = copy.deepcopy(toy_pair.student).train()
    assert shares_image_features(student)
    for name, p in student.named_parameters():
        if module_group(name) == "vision tower":
            p.requires_grad_(trainable_tower)
    named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    shared, plain, _, gs, gp = _shared_and_plain(toy_pair, student)
    _check(shared, plain, named, gs, gp, trainable_tower)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llava", "smolvlm", "qwen2_5_vl", "gemma3"])
def test_shared_features_leave_logprobs_and_gradients_unchanged_on_each_family(family_pairs, family):
    pair = family_pairs.pair(family)
    student = copy.deepcopy(pair.student).train()
    for p in student.parameters():
        p.requires_grad_(True)  # every tower trains, as a real student's does
    named = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
    if not shares_image_features(student):
        pytest.skip(f"{family}: dropout or batch norm in the model, features are not shared")
    shared, plain, _, gs, gp = _shared_and_plain(pair, student, rows=3)
    _check(shared, plain, named, gs, gp, trainable_tower=None)  # equal gradients, zero or not


def test_models_with_dropout_do_not_share_features(toy_pair):
    student = copy.deepcopy(toy_pair.student)
    assert shares_image_features(student)
    attention = next(m for n, m in student.named_modules() if "vision_tower" in n and n.endswith("self_attn"))
    attention.dropout = 0.1  # what a checkpoint with `attention_dropout: 0.1` builds
    assert not shares_image_features(student)
