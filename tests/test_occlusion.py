"""Occlusion maps and top-k next tokens on the small toy pair: two routes to the same number agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlod_core.engine import rollout
from vlod_core.losses import sampled_logratios
from vlod_core.occlusion import GREY, cell_box, default_grid, occlude, occlusion_map
from vlod_core.topk import DISTRIBUTIONS, from_four
from vlod_core.toy.train import PromptCache


def _answer_ids(pair, example) -> list[int]:
    return PromptCache(pair.processor).answer(example.answer)


def _logratio_vis(pair, image, question, ids, position, ablation="remove") -> float:
    with torch.no_grad():
        four = rollout(pair, [image], [question], responses=[ids], ablation=ablation).four
    return float(sampled_logratios(four)["logratio_vis"][0, position])


def test_the_toy_grid_is_the_models_patch_grid(toy_pair):
    assert default_grid(toy_pair.processor) == (4, 4)
    assert default_grid(object()) == (8, 8)


def test_occlude_greys_exactly_one_cell(examples):
    image = examples[0].image()
    out = np.asarray(occlude(image, (4, 4), 1, 2))
    left, top, right, bottom = cell_box(image.size, (4, 4), 1, 2)
    assert (left, top, right, bottom) == (32, 16, 48, 32)
    assert (out[top:bottom, left:right] == GREY).all()
    untouched = np.ones(out.shape[:2], bool)
    untouched[top:bottom, left:right] = False
    assert (out[untouched] == np.asarray(image)[untouched]).all()


@pytest.mark.parametrize("ablation", ["remove", "blur"])
def test_occlusion_delta_matches_rescoring_the_occluded_image(toy_pair, examples, ablation):
    example = examples[0]
    image, ids = example.image(), _answer_ids(toy_pair, example)
    position = len(ids) - 2  # the content word, just before the end-of-turn token
    state = {k: v.clone() for k, v in toy_pair.student.state_dict().items()}
    result = occlusion_map(
        toy_pair, image, example.question, ids, position, ablation=ablation, fill="grey", batch_size=5
    )
    assert result.delta.shape == (4, 4) and result.grid == (4, 4)
    assert result.baseline == pytest.approx(
        _logratio_vis(toy_pair, image, example.question, ids, position, ablation), abs=1e-5
    )
    # the image-free terms cancel, so any ablation gives the same change; check against the full decomposition
    for row, col in ((0, 0), (2, 3)):
        occluded = occlude(image, (4, 4), row, col)
        direct = _logratio_vis(toy_pair, occluded, example.question, ids, position, "remove")
        intact = _logratio_vis(toy_pair, image, example.question, ids, position, "remove")
        assert result.delta[row, col] == pytest.approx(direct - intact, abs=1e-4)
    assert result.token == toy_pair.tokenizer.convert_ids_to_tokens([ids[position]])[0]
    assert all(torch.equal(state[k], v) for k, v in toy_pair.student.state_dict().items())


def test_occlusion_refuses_a_position_outside_the_response(toy_pair, examples):
    ids = _answer_ids(toy_pair, examples[0])
    with pytest.raises(ValueError, match="outside the response"):
        occlusion_map(toy_pair, examples[0].image(), examples[0].question, ids, len(ids))


def test_top_next_tokens_are_the_largest_probabilities_of_each_distribution(toy_pair, examples):
    example = examples[1]
    ids = _answer_ids(toy_pair, example)
    with torch.no_grad():
        four = rollout(toy_pair, [example.image()], [example.question], responses=[ids]).four
    result = from_four(four, toy_pair.tokenizer, k=3)
    assert result.tokens == toy_pair.tokenizer.convert_ids_to_tokens(ids)
    assert len(result.top) == len(ids)
    for name in DISTRIBUTIONS:
        probs = getattr(four, name)[0].exp()  # (T, V)
        for t, entry in enumerate(result.top):
            values = [p for _, p in entry[name]]
            assert values == sorted(values, reverse=True) and len(values) == 3
            assert values[0] == pytest.approx(float(probs[t].max()), abs=1e-6)
            best = toy_pair.tokenizer.convert_ids_to_tokens([int(probs[t].argmax())])[0]
            assert entry[name][0][0] == best
    with pytest.raises(ValueError):
        from_four(four, toy_pair.tokenizer, k=0)
