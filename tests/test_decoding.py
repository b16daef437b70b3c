"""The decode loop draws `model.generate`'s tokens: greedy and seeded, cut at EOS, structural tokens never.

`sampling.generate_encoded` (the loop in `decoding.py`) is held to `sampling.hf_generate_encoded` (the same
settings through transformers' `generate`, the path vlod used before) on the toy pair and on tiny random pairs
of the real families, whose processors add per-token inputs (Qwen's 3-D positions, Gemma's token types,
SmolVLM's pixel masks) that the loop must carry exactly as `generate` does.
"""

from __future__ import annotations

import copy

import pytest
import torch
from family_pairs import FAMILIES
from family_pairs import family_pairs_fixture  # noqa: F401 - the session fixture `family_pairs`

from vlod_core.decoding import encode_images
from vlod_core.inputs import encode_prompts
from vlod_core.sampling import SamplingConfig, generate_encoded, hf_generate_encoded, left_align, structural_token_ids
from vlod_core.toy import world

SETTINGS = [
    SamplingConfig(greedy=True, max_new_tokens=8),
    SamplingConfig(max_new_tokens=8),
    SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=8),
]


def _encoded(processor, n: int, seed: int, same_length: bool = False) -> dict:
    examples = world.sample_examples(n, seed=seed)
    questions = [ex.question for ex in examples]
    if same_length:  # no padding: `generate` drops the attention mask, and so must the loop
        questions = [questions[0]] * n
    return encode_prompts(processor, questions, [ex.image() for ex in examples])


def _both(model, tokenizer, encoded, config, seed):
    ours = generate_encoded(model, tokenizer, encoded, config, seed)
    reference = hf_generate_encoded(model, tokenizer, encoded, config, seed)
    return ours, reference


@pytest.mark.slow
@pytest.mark.parametrize("config", SETTINGS, ids=["greedy", "t1", "t0.7-p0.9"])
def test_loop_draws_generates_tokens_on_the_toy_pair(toy_pair, config):
    encoded = _encoded(toy_pair.processor, 12, seed=3)
    lengths = encoded["attention_mask"].sum(-1)
    assert lengths.min() < lengths.max()  # rows of different lengths: left padding is exercised
    for seed in (0, 1, 2):
        ours, reference = _both(toy_pair.student, toy_pair.tokenizer, encoded, config, seed)
        assert ours == reference
    eos = toy_pair.tokenizer.eos_token_id
    assert any(r and r[-1] == eos for r in ours)  # some rows stopped: the cut at EOS is exercised


@pytest.mark.slow
def test_loop_without_padding_and_with_min_new_tokens_holds_to_generate(toy_pair):
    student = copy.deepcopy(toy_pair.student)  # the session pair is read-only
    student.generation_config.min_new_tokens = 48  # a checkpoint's own setting: EOS held off for 48 tokens
    config = SamplingConfig(max_new_tokens=48)
    encoded = _encoded(toy_pair.processor, 6, seed=5, same_length=True)
    assert bool((encoded["attention_mask"] == 1).all())
    ours, reference = _both(student, toy_pair.tokenizer, encoded, config, seed=4)
    assert ours == reference
    assert all(len(r) == 48 for r in ours)
    structural = set(structural_token_ids(toy_pair.tokenizer))
    assert not structural & {t for r in ours for t in r}


@pytest.mark.slow
def test_draws_come_from_the_private_generator_only(toy_pair):
    encoded = _encoded(toy_pair.processor, 8, seed=9)
    config = SamplingConfig(max_new_tokens=8)
    torch.manual_seed(0)
    first = generate_encoded(toy_pair.student, toy_pair.tokenizer, encoded, config, 11)
    torch.manual_seed(123)  # the process-wide RNG does not matter
    assert generate_encoded(toy_pair.student, toy_pair.tokenizer, encoded, config, 11) == first
    others = [generate_encoded(toy_pair.student, toy_pair.tokenizer, encoded, config, s) for s in (12, 13)]
    assert any(o != first for o in others)  # the seed does


@pytest.mark.slow
def test_given_image_features_give_the_same_tokens(toy_pair):
    encoded = _encoded(toy_pair.processor, 6, seed=2)
    features = encode_images(toy_pair.student, left_align(encoded))
    assert features is not None
    config = SamplingConfig(max_new_tokens=8)
    plain = generate_encoded(toy_pair.student, toy_pair.tokenizer, encoded, config, 5)
    given = generate_encoded(toy_pair.student, toy_pair.tokenizer, encoded, config, 5, image_features=features)
    assert given == plain


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_loop_draws_generates_tokens_on_each_family(family_pairs, family):
    pair = family_pairs.pair(family)
    examples = world.sample_examples(3, seed=1)
    questions = ["what color is the circle ?", "how many shapes are there in the picture ?", "is it red ?"]
    encoded = encode_prompts(pair.processor, questions, [ex.image() for ex in examples])
    for config in (SamplingConfig(greedy=True, max_new_tokens=6), SamplingConfig(max_new_tokens=6)):
        ours, reference = _both(pair.student, pair.tokenizer, encoded, config, seed=7)
        assert ours == reference, family
        assert any(len(r) > 1 for r in ours)
