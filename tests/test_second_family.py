"""The core against a second model family: a tiny random Qwen2-VL pair (vlod_core/testing/second_family.py).

The same properties the toy LLaVA pair is held to, on a family with 3-D (M-RoPE) positions computed from
`mm_token_type_ids`, image tensors flattened over patches with per-image `image_grid_thw`, and image tokens
wrapped in start/end markers. Nothing here special-cases the family: if one of these fails, something
LLaVA-specific is hiding in the core.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import scoring_batch
from vlod_core.decomposition import decompose
from vlod_core.inputs import render_prompt
from vlod_core.losses import token_kls
from vlod_core.pair import PairSpec, load_pair
from vlod_core.sampling import GREEDY, SamplingConfig, generate, structural_token_ids
from vlod_core.scoring import score_four
from vlod_core.toy import world
from vlod_core.testing.second_family import IMAGE_PAD, build_qwen2vl_pair

# Three question lengths and three response lengths, so padding differs in every row and in both contexts.
QUESTIONS = ("what ?", "which shape is blue ?", "how many shapes are there in this picture ?")
RESPONSES = ("yes", "it is red", "there are two shapes here .")
ABLATIONS = ("remove", "blank", "blur")


@pytest.fixture(scope="module")
def qwen_pair(tmp_path_factory):
    teacher, student = build_qwen2vl_pair(tmp_path_factory.mktemp("qwen2vl"), seed=0)
    return load_pair(PairSpec(teacher=str(teacher), student=str(student), device="cpu"))


@pytest.fixture(scope="module")
def images():
    return [ex.image() for ex in world.sample_examples(len(QUESTIONS), seed=11)]


def _responses(pair) -> list[list[int]]:
    tok = pair.tokenizer
    return [tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for text in RESPONSES]


def _score(pair, images, questions, responses, ablation="remove", merge=False):
    batch = scoring_batch(pair, images, list(questions), responses, ablation)
    four = score_four(pair.teacher, pair.student, batch, pair.vocab_size, pair.tokenizer.pad_token_id, merge=merge)
    return batch, four


FOUR_FIELDS = ("student_image", "student_ablated", "teacher_image", "teacher_ablated")


def test_pair_is_really_qwen2vl_with_its_own_inputs(qwen_pair, images):
    assert type(qwen_pair.teacher).__name__ == "Qwen2VLForConditionalGeneration"
    assert type(qwen_pair.student).__name__ == "Qwen2VLForConditionalGeneration"
    assert qwen_pair.teacher.config.text_config.hidden_size != qwen_pair.student.config.text_config.hidden_size
    # Saved as the stock Qwen2VLProcessor, loaded for images only (torchvision is not installed here).
    assert type(qwen_pair.processor).__name__ == "Qwen2VLProcessor"
    assert all("built for images only" in note for note in qwen_pair.notes)
    tok = qwen_pair.tokenizer
    assert len({len(tok(q)["input_ids"]) for q in QUESTIONS}) == len(QUESTIONS)
    assert len({len(r) for r in _responses(qwen_pair)}) == len(RESPONSES)
    batch = scoring_batch(qwen_pair, images, list(QUESTIONS), _responses(qwen_pair))
    kwargs = batch.context("student", "image").model_kwargs
    # The family-specific inputs the core must carry through untouched.
    assert {"image_grid_thw", "mm_token_type_ids", "pixel_values"} <= kwargs.keys()
    assert kwargs["pixel_values"].dim() == 2  # patches of all images flattened together, not (B, C, H, W)
    image_tokens = kwargs["input_ids"] == tok.convert_tokens_to_ids(IMAGE_PAD)
    assert image_tokens.sum(-1).tolist() == [4, 4, 4]
    assert torch.equal(kwargs["mm_token_type_ids"].bool(), image_tokens)
    assert "image_grid_thw" not in batch.context("student", "ablated").model_kwargs
    assert not batch.context("student", "ablated").model_kwargs["mm_token_type_ids"].any()


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_logratio_splits_exactly(qwen_pair, images, ablation):
    _, four = _score(qwen_pair, images, QUESTIONS, _responses(qwen_pair), ablation)
    values = decompose(four, qwen_pair.tokenizer).values
    torch.testing.assert_close(values["logratio"], values["logratio_lang"] + values["logratio_vis"], atol=1e-5, rtol=0)
    assert values["logratio"].abs().max() > 1e-2  # random, different models: the split is not trivially 0 = 0


def _reference(four, b: int, t: int) -> dict[str, float]:
    """The four KLs of one position from their definitions, in float64 numpy (METHOD.md / decomposition.py)."""
    s_i, s_x, t_i, t_x = (getattr(four, name)[b, t].detach().double().numpy() for name in FOUR_FIELDS)
    p_i, p_x, q_i = np.exp(s_i), np.exp(s_x), np.exp(t_i)
    # q*(v) proportional to px(v) * qI(v) / qx(v)
    unnormalised = np.exp(s_x + t_i - t_x)
    log_target = np.log(unnormalised / unnormalised.sum())
    return {
        "std_kl": float(np.sum(p_i * (s_i - t_i))),
        "lang_kl": float(np.sum(p_x * (s_x - t_x))),
        "vis_kl": float(np.sum(p_i * (s_i - log_target))),
        "vds": float(np.sum(q_i * (t_i - t_x))),
    }


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_kls_match_float64_reference(qwen_pair, images, ablation):
    _, four = _score(qwen_pair, images, QUESTIONS, _responses(qwen_pair), ablation)
    values = decompose(four, qwen_pair.tokenizer).values
    mask = four.response_mask
    for b in range(mask.shape[0]):
        for t in range(mask.shape[1]):
            if not mask[b, t]:
                for key in ("std_kl", "lang_kl", "vis_kl", "vds"):
                    assert values[key][b, t] == 0
                continue
            for key, expected in _reference(four, b, t).items():
                assert float(values[key][b, t]) == pytest.approx(expected, abs=1e-5), (key, b, t)
    # The image matters to the teacher, so the comparisons above are not between near-identical contexts.
    assert values["vds"].max() > 1e-2


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_batched_scoring_equals_one_at_a_time(qwen_pair, images, ablation):
    responses = _responses(qwen_pair)
    _, batched = _score(qwen_pair, images, QUESTIONS, responses, ablation)
    for row in range(len(QUESTIONS)):
        one = slice(row, row + 1)
        _, alone = _score(qwen_pair, images[one], QUESTIONS[one], responses[one], ablation)
        n = len(responses[row])
        assert int(batched.response_mask[row].sum()) == n
        for name in FOUR_FIELDS:
            torch.testing.assert_close(
                getattr(batched, name)[row, :n], getattr(alone, name)[0, :n], atol=1e-4, rtol=0, msg=f"{name} row {row}"
            )


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_merged_passes_equal_separate_passes(qwen_pair, images, ablation):
    responses = _responses(qwen_pair)
    _, merged = _score(qwen_pair, images, QUESTIONS, responses, ablation, merge=True)
    _, separate = _score(qwen_pair, images, QUESTIONS, responses, ablation, merge=False)
    mask = merged.response_mask
    for name in FOUR_FIELDS:
        torch.testing.assert_close(getattr(merged, name)[mask], getattr(separate, name)[mask], atol=1e-4, rtol=0)


def test_scoring_equals_a_plain_forward_on_the_processors_own_encoding(qwen_pair, images):
    """Independent of inputs.py: the processor encodes prompt + response text itself, one row, no padding.

    Batch-vs-single and merged-vs-separate only show the core is consistent; this shows it is right (the
    re-laid `mm_token_type_ids`, hence the 3-D positions, are what the processor would have produced).
    """
    processor, tok = qwen_pair.processor, qwen_pair.tokenizer
    responses = _responses(qwen_pair)
    _, four = _score(qwen_pair, images, QUESTIONS, responses)
    for row, (question, text, response) in enumerate(zip(QUESTIONS, RESPONSES, responses)):
        n = len(response)
        for with_image, field in ((True, "image"), (False, "ablated")):
            full = render_prompt(processor, question, with_image) + f" {text} {tok.eos_token}"
            kwargs = {"text": [full], "return_tensors": "pt"}
            if with_image:
                kwargs["images"] = [images[row]]
            encoded = processor(**kwargs)
            assert encoded["input_ids"][0, -n:].tolist() == response
            for role in ("teacher", "student"):
                model = getattr(qwen_pair, role)
                with torch.no_grad():
                    logits = model(**encoded, use_cache=False).logits[0, -n - 1 : -1, : qwen_pair.vocab_size]
                expected = torch.log_softmax(logits.float(), dim=-1)
                torch.testing.assert_close(
                    getattr(four, f"{role}_{field}")[row, :n], expected, atol=1e-4, rtol=0, msg=f"{role} {field} {row}"
                )


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_response_ids_sit_at_the_response_positions_of_both_contexts(qwen_pair, images, ablation):
    responses = _responses(qwen_pair)
    batch = scoring_batch(qwen_pair, images, list(QUESTIONS), responses, ablation)
    for ctx in (batch.context("student", "image"), batch.context("student", "ablated")):
        ids, attention = ctx.model_kwargs["input_ids"], ctx.model_kwargs["attention_mask"]
        for row, response in enumerate(responses):
            start, n = ctx.prompt_lengths[row], len(response)
            assert ids[row, start : start + n].tolist() == batch.response_ids[row, :n].tolist() == response
            assert int(attention[row].sum()) == start + n  # right padding only, nothing after the response
            assert ids[row, start - 1] == qwen_pair.tokenizer.convert_tokens_to_ids("<|assistant|>")


def test_student_gradients_reach_the_vision_tower(qwen_pair, images):
    batch = scoring_batch(qwen_pair, images, list(QUESTIONS), _responses(qwen_pair))
    pad = qwen_pair.tokenizer.pad_token_id
    four = score_four(qwen_pair.teacher, qwen_pair.student, batch, qwen_pair.vocab_size, pad, student_grad=True)
    assert not four.teacher_image.requires_grad
    token_kls(four)["vis"].sum().backward()
    try:
        vision_grads = [p.grad for p in qwen_pair.student.model.visual.parameters() if p.grad is not None]
        assert vision_grads and any(g.abs().sum() > 0 for g in vision_grads)
    finally:
        qwen_pair.student.zero_grad(set_to_none=True)


@pytest.mark.parametrize("config", [GREEDY, SamplingConfig(temperature=1.0, max_new_tokens=6)])
def test_generate_with_image_returns_clean_ids(qwen_pair, images, config):
    forbidden = set(structural_token_ids(qwen_pair.tokenizer))
    assert qwen_pair.tokenizer.convert_tokens_to_ids(IMAGE_PAD) in forbidden
    out = generate(qwen_pair.student, qwen_pair.processor, list(QUESTIONS), images, config, generator_seed=0)
    assert len(out) == len(QUESTIONS)
    for ids in out:
        assert isinstance(ids, list) and 1 <= len(ids) <= config.max_new_tokens
        assert all(isinstance(i, int) and 0 <= i < qwen_pair.vocab_size for i in ids)
        assert not forbidden & set(ids)
        assert qwen_pair.tokenizer.eos_token_id not in ids[:-1]
    # Samples are valid inputs to the scorer (the on-policy loop).
    _, four = _score(qwen_pair, images, QUESTIONS, out)
    assert torch.isfinite(four.teacher_image[four.response_mask]).all()


def test_batched_greedy_generation_equals_one_at_a_time(qwen_pair, images):
    """Left padding for generation must not move the 3-D positions of a row's tokens."""
    batched = generate(qwen_pair.student, qwen_pair.processor, list(QUESTIONS), images, GREEDY)
    for row in range(len(QUESTIONS)):
        alone = generate(qwen_pair.student, qwen_pair.processor, [QUESTIONS[row]], images[row : row + 1], GREEDY)
        assert batched[row] == alone[0]
