"""The per-token quantities against a float64 brute-force reference, and the exact additive split."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vlod_core.decomposition import PER_TOKEN_FIELDS, decompose
from vlod_core.inputs import build_scoring_batch, encode_rows
from vlod_core.pair import ModelPair
from vlod_core.scoring import score_four
from vlod_core.toy.train import PromptCache


def _responses(pair, examples):
    cache = PromptCache(pair.processor)
    # Different lengths on purpose: exercises padding.
    return [cache.answer(ex.answer)[: 1 + i % 3] for i, ex in enumerate(examples)]


def _batch(pair: ModelPair, examples, ablation="remove"):
    images, questions = [ex.image() for ex in examples], [ex.question for ex in examples]
    prompts = encode_rows(pair.processor, images, questions, ablation)
    return build_scoring_batch(prompts, _responses(pair, examples), pair.tokenizer.pad_token_id)


def _four(pair: ModelPair, examples, ablation="remove", merge=False):
    batch = _batch(pair, examples, ablation)
    return batch, score_four(
        pair.teacher, pair.student, batch, pair.vocab_size, pair.tokenizer.pad_token_id, merge=merge
    )


def _reference(four, b, t):
    """Every per-token quantity of one position, straight from the definitions, in float64 numpy."""
    s_i, s_x, t_i, t_x = (
        x[b, t].double().numpy()
        for x in (four.student_image, four.student_ablated, four.teacher_image, four.teacher_ablated)
    )

    def kl(logp, logq):
        return float(np.sum(np.exp(logp) * (logp - logq)))

    unnormalised = s_x + t_i - t_x
    target = unnormalised - np.log(np.sum(np.exp(unnormalised)))
    y = int(four.response_ids[b, t])
    return {
        "std_kl": kl(s_i, t_i),
        "lang_kl": kl(s_x, t_x),
        "vis_kl": kl(s_i, target),
        "vds": kl(t_i, t_x),
        "logratio": s_i[y] - t_i[y],
        "logratio_lang": s_x[y] - t_x[y],
        "logratio_vis": (s_i[y] - s_x[y]) - (t_i[y] - t_x[y]),
    }


@pytest.mark.parametrize("ablation", ["remove", "blank", "blur"])
def test_every_quantity_matches_float64_reference(toy_pair, examples, ablation):
    _, four = _four(toy_pair, examples, ablation)
    result = decompose(four, toy_pair.tokenizer)
    for b in range(len(examples)):
        for t in range(int(four.response_mask[b].sum())):
            reference = _reference(four, b, t)
            for name in PER_TOKEN_FIELDS:
                assert result.values[name][b, t].item() == pytest.approx(reference[name], abs=2e-5), (name, b, t)
    # Padding positions carry nothing.
    for name in PER_TOKEN_FIELDS:
        assert torch.all(result.values[name][~result.mask] == 0)


def test_logratio_is_exactly_language_plus_visual(toy_pair, examples):
    result = decompose(_four(toy_pair, examples)[1], toy_pair.tokenizer)
    v = result.values
    torch.testing.assert_close(v["logratio"], v["logratio_lang"] + v["logratio_vis"], atol=1e-5, rtol=0)
    assert v["logratio_vis"].abs().max() > 1e-3  # the image does change something: the check is not vacuous


def test_model_against_itself_has_zero_kls(toy_pair, examples):
    same = ModelPair(toy_pair.teacher, toy_pair.teacher, toy_pair.processor, toy_pair.spec, toy_pair.vocab_size)
    result = decompose(_four(same, examples)[1], same.tokenizer)
    for name in ("std_kl", "lang_kl", "vis_kl", "logratio", "logratio_lang", "logratio_vis"):
        assert result.values[name].abs().max() < 1e-5, name
    assert result.values["vds"].max() > 1e-3  # while the image still matters to the teacher


def test_vis_kl_vanishes_when_teacher_equals_student_but_not_otherwise(toy_pair, examples):
    same = ModelPair(toy_pair.student, toy_pair.student, toy_pair.processor, toy_pair.spec, toy_pair.vocab_size)
    assert decompose(_four(same, examples)[1], same.tokenizer).values["vis_kl"].abs().max() < 1e-5
    assert decompose(_four(toy_pair, examples)[1], toy_pair.tokenizer).values["vis_kl"].max() > 1e-3


def test_response_ids_are_identical_in_both_contexts(toy_pair, examples):
    batch, _ = _four(toy_pair, examples)
    image, ablated = batch.context("student", "image"), batch.context("student", "ablated")
    assert batch.context("teacher", "image") is image  # one processor: the teacher scores the same inputs
    for ctx in (image, ablated):
        ids = ctx.model_kwargs["input_ids"]
        for b, p in enumerate(ctx.prompt_lengths):
            n = int(batch.response_mask[b].sum())
            assert ids[b, p : p + n].tolist() == batch.response_ids[b, :n].tolist()
    image_token = toy_pair.processor.image_token_id
    assert (image.model_kwargs["input_ids"] == image_token).any()
    assert not (ablated.model_kwargs["input_ids"] == image_token).any()  # "remove" drops the placeholders


def test_batched_equals_one_at_a_time(toy_pair, examples):
    _, batched = _four(toy_pair, examples)
    for b, ex in enumerate(examples):
        _, single = _four(toy_pair, [ex])
        n = int(single.response_mask[0].sum())
        for name in ("student_image", "student_ablated", "teacher_image", "teacher_ablated"):
            torch.testing.assert_close(getattr(batched, name)[b, :n], getattr(single, name)[0, :n], atol=1e-4, rtol=0)


def test_merged_passes_equal_separate_passes(toy_pair, examples):
    _, merged = _four(toy_pair, examples, merge=True)
    _, separate = _four(toy_pair, examples, merge=False)
    mask = merged.response_mask
    for name in ("student_image", "student_ablated", "teacher_image", "teacher_ablated"):
        torch.testing.assert_close(getattr(merged, name)[mask], getattr(separate, name)[mask], atol=1e-4, rtol=0)


def test_student_gradients_flow_only_when_asked(toy_pair, examples):
    batch = _batch(toy_pair, examples)
    student = copy.deepcopy(toy_pair.student)
    four = score_four(
        toy_pair.teacher, student, batch, toy_pair.vocab_size, toy_pair.tokenizer.pad_token_id, student_grad=True
    )
    assert four.student_image.requires_grad and four.student_ablated.requires_grad
    assert not four.teacher_image.requires_grad and not four.teacher_ablated.requires_grad
