"""Gradient geometry against plain backward passes, a flattened float64 reference and a finite difference."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch

from vlod_core.geometry import NAMES, PAIRS, geometry_of_losses, module_group, three_gradients, three_gradients_retained
from helpers import scoring_batch
from vlod_core.losses import token_kls
from vlod_core.scoring import FourLogProbs, gather_response_logits, score_four
from vlod_core.steering import average
from vlod_core.toy.train import PromptCache


def _batch(pair, examples):
    cache = PromptCache(pair.processor)
    # Different lengths on purpose (padding), and enough tokens for 10 VDS bins.
    responses = [cache.answer(ex.answer)[: 2 + i % 3] for i, ex in enumerate(examples)]
    return scoring_batch(pair, [ex.image() for ex in examples], [ex.question for ex in examples], responses)


def _per_token(pair, student, batch, detach_prior=True):
    """A fresh forward of the four passes; per-token std/lang/vis/vds carrying the student's graph."""
    four = score_four(pair.teacher, student, batch, pair.vocab_size, pair.tokenizer.pad_token_id, student_grad=True)
    return token_kls(four, detach_prior=detach_prior)


def _named(model):
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _separate_backward(pair, student, batch, mask=None, how="response"):
    """Each gradient from its own fresh forward and a plain `.backward()`, read from `.grad`."""
    out = {}
    for name in NAMES:
        student.zero_grad(set_to_none=True)
        losses = _per_token(pair, student, batch)
        average(losses[name], batch.response_mask if mask is None else mask, how).backward()
        out[name] = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for _, p in _named(student)]
    student.zero_grad(set_to_none=True)
    return out


def _flat_summary(named, grads, keep=None):
    """Norms and angles from fully flattened, concatenated float64 gradient vectors (of the kept parameters)."""
    keep = keep or [True] * len(named)
    flat = {k: torch.cat([g.double().flatten() for g, kept in zip(grads[k], keep) if kept]).numpy() for k in NAMES}
    norms = {k: float(np.linalg.norm(v)) for k, v in flat.items()}
    angles = {}
    for a, b in PAIRS:
        if norms[a] == 0 or norms[b] == 0:  # e.g. g_lang on the vision tower: no image, no gradient
            angles[f"{a}-{b}"] = float("nan")
            continue
        cos = float(flat[a] @ flat[b]) / (norms[a] * norms[b])
        angles[f"{a}-{b}"] = math.degrees(math.acos(max(-1.0, min(1.0, cos))))
    return norms, angles


def _assert_summary(got, norms, angles, where):
    for k in NAMES:
        assert got["norms"][k] == pytest.approx(norms[k], rel=1e-4, abs=1e-9), (where, k)
    for key, value in angles.items():
        if math.isnan(value):
            assert math.isnan(got["angles"][key]), (where, key)
        else:
            assert got["angles"][key] == pytest.approx(value, abs=2e-2), (where, key)


@pytest.fixture()
def student(toy_pair):
    return copy.deepcopy(toy_pair.student).eval()


def test_three_gradients_equal_separate_backward_passes(toy_pair, examples, student):
    batch = _batch(toy_pair, examples)
    params = [p for _, p in _named(student)]
    losses = _per_token(toy_pair, student, batch)
    means = {n: average(losses[n], batch.response_mask) for n in NAMES}
    fast = three_gradients(means, params)
    losses = _per_token(toy_pair, student, batch)  # three_gradients freed the graph: a fresh one
    retained = three_gradients_retained({n: average(losses[n], batch.response_mask) for n in NAMES}, params)
    reference = _separate_backward(toy_pair, student, batch)
    for name in NAMES:
        assert len(fast[name]) == len(params)
        for (pname, _), got, again, want in zip(_named(student), fast[name], retained[name], reference[name]):
            torch.testing.assert_close(got, want, atol=1e-7, rtol=1e-4, msg=f"{name} {pname}")
            torch.testing.assert_close(again, want, atol=1e-7, rtol=1e-4, msg=f"{name} {pname} (retained)")
    # Not vacuous: every gradient is non-zero and the three differ.
    norms = {n: sum(float(g.double().pow(2).sum()) for g in fast[n]) ** 0.5 for n in NAMES}
    assert all(v > 1e-6 for v in norms.values()), norms
    diff = sum(float((a - b).double().pow(2).sum()) for a, b in zip(fast["std"], fast["vis"])) ** 0.5
    assert diff > 1e-3 * norms["std"]


def test_geometry_matches_flattened_float64_reference(toy_pair, examples, student):
    batch = _batch(toy_pair, examples)
    named = _named(student)
    geometry = geometry_of_losses(named, _per_token(toy_pair, student, batch), batch.response_mask, bins=0)
    reference = _separate_backward(toy_pair, student, batch)

    _assert_summary(geometry.global_, *_flat_summary(named, reference), "global")
    groups = {module_group(n) for n, _ in named}
    assert set(geometry.groups) == groups
    assert {"vision tower", "projector", "embeddings", "language layer 00", "language layer 01"} <= groups
    for group in groups:
        in_group = [module_group(n) == group for n, _ in named]
        _assert_summary(geometry.groups[group], *_flat_summary(named, reference, in_group), group)
    # Groups partition the parameters: their squared norms add up to the global one.
    for k in NAMES:
        total = sum(g["norms"][k] ** 2 for g in geometry.groups.values())
        assert total == pytest.approx(geometry.global_["norms"][k] ** 2, rel=1e-6)
    assert geometry.bins == []


def test_vds_bins_equal_count_increasing_and_match_reference(toy_pair, examples, student):
    batch = _batch(toy_pair, examples)
    mask = batch.response_mask
    named = _named(student)
    losses = _per_token(toy_pair, student, batch)
    geometry = geometry_of_losses(named, losses, mask, bins=10)
    bins = geometry.bins
    n_tokens = int(mask.sum())
    assert n_tokens >= 10
    assert len(bins) == 10
    counts = [b["tokens"] for b in bins]
    assert sum(counts) == n_tokens  # every token, exactly once
    assert max(counts) - min(counts) <= 1  # equal count
    vds = losses["vds"].detach()
    assert bins[0]["vds_low"] == pytest.approx(float(vds[mask].min()))
    assert bins[-1]["vds_high"] == pytest.approx(float(vds[mask].max()))
    for low, high in itertools.pairwise(bins):
        assert low["vds_low"] <= low["vds_high"] <= high["vds_low"] <= high["vds_high"]

    # The lowest and highest bins against separate backward passes of the losses masked to the bin's tokens.
    positions = mask.nonzero().tolist()  # [(b, t)] of the real tokens
    order = sorted(range(len(positions)), key=lambda i: float(vds[tuple(positions[i])]))  # by increasing VDS
    for result, members in ((bins[0], order[: bins[0]["tokens"]]), (bins[-1], order[-bins[-1]["tokens"] :])):
        bin_mask = torch.zeros_like(mask)
        for i in members:
            bin_mask[tuple(positions[i])] = True
        assert float(vds[bin_mask].min()) == pytest.approx(result["vds_low"])
        assert float(vds[bin_mask].max()) == pytest.approx(result["vds_high"])
        reference = _separate_backward(toy_pair, student, batch, bin_mask, "token")
        _assert_summary(result, *_flat_summary(named, reference), f"bin {result['vds_low']:.3g}")


def _logprobs64(model, ctx, steps, vocab):
    logits = model(**ctx.model_kwargs, use_cache=False).logits.double()
    return torch.log_softmax(gather_response_logits(logits, ctx.prompt_lengths, steps)[..., :vocab], dim=-1)


def test_gradient_matches_finite_difference_in_float64(toy_pair, examples):
    student = copy.deepcopy(toy_pair.student).eval().double()
    teacher = copy.deepcopy(toy_pair.teacher).eval().double()
    batch = _batch(toy_pair, examples)
    image, ablated = batch.context("student", "image"), batch.context("student", "ablated")
    for ctx in (image, ablated):
        ctx.model_kwargs = {k: v.double() if v.is_floating_point() else v for k, v in ctx.model_kwargs.items()}
    steps, vocab, mask = batch.response_ids.shape[1], toy_pair.vocab_size, batch.response_mask
    params = [p for _, p in _named(student)]

    def losses(detach_prior):
        with torch.no_grad():
            t_i, t_x = _logprobs64(teacher, image, steps, vocab), _logprobs64(teacher, ablated, steps, vocab)
        s_i, s_x = _logprobs64(student, image, steps, vocab), _logprobs64(student, ablated, steps, vocab)
        four = FourLogProbs(s_i, s_x, t_i, t_x, batch.response_ids, mask)
        per_token = token_kls(four, detach_prior=detach_prior)
        return {n: average(per_token[n], mask) for n in NAMES}

    generator = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]
    # Transformers' RMSNorm computes in float32 even inside a float64 model, which limits how small the step
    # can be; a Richardson-extrapolated central difference cancels the O(ε²) error at a moderate step.
    step = 2e-4

    def shift(scale):
        with torch.no_grad():
            for p, v in zip(params, direction):
                p.add_(scale * v)

    def central(eps):
        shift(eps)
        with torch.no_grad():
            plus = losses(detach_prior=False)
        shift(-2 * eps)
        with torch.no_grad():
            minus = losses(detach_prior=False)
        shift(eps)
        return {n: (float(plus[n]) - float(minus[n])) / (2 * eps) for n in NAMES}

    def finite_difference():
        fine, coarse = central(step), central(2 * step)
        return {n: (4 * fine[n] - coarse[n]) / 3 for n in NAMES}

    def directional(grads):
        return {n: sum(float((g * v).sum()) for g, v in zip(grads[n], direction)) for n in NAMES}

    numeric = finite_difference()
    analytic = directional(three_gradients(losses(detach_prior=False), params))
    for name in NAMES:
        assert abs(numeric[name]) > 1e-3, name  # the direction actually moves the loss
        assert analytic[name] == pytest.approx(numeric[name], rel=1e-3), name
    # With the prior inside q* detached (the default), g_vis is by design not the full derivative of ℓVis.
    detached = directional(three_gradients(losses(detach_prior=True), params))
    assert detached["std"] == pytest.approx(numeric["std"], rel=1e-3)
    assert detached["vis"] != pytest.approx(numeric["vis"], rel=0.1)


def test_batch_geometry_leaves_the_shared_student_untouched(toy_pair):
    from vlod_core.geometry_batch import batch_geometry
    from vlod_core.toy import world

    before = {k: v.detach().clone() for k, v in toy_pair.student.state_dict().items()}
    examples = world.sample_examples(4, seed=5)
    images, questions = [ex.image() for ex in examples], [ex.question for ex in examples]
    geometry = batch_geometry(toy_pair, images, questions, seed=0, bins=2)
    assert all(p.grad is None for p in toy_pair.student.parameters())
    assert all(torch.equal(v, before[k]) for k, v in toy_pair.student.state_dict().items())
    assert all(geometry.global_["norms"][n] > 0 for n in NAMES)
    assert len(geometry.bins) == 2


def test_bins_without_std_keep_lang_and_vis_and_leave_std_out(toy_pair, examples, student):
    batch = _batch(toy_pair, examples)
    named = _named(student)
    full = geometry_of_losses(named, _per_token(toy_pair, student, batch), batch.response_mask, bins=10)
    lean = geometry_of_losses(
        named, _per_token(toy_pair, student, batch), batch.response_mask, bins=10, bin_std=False
    )
    for key in ("norms", "angles"):  # the whole-batch view is unchanged
        assert lean.global_[key] == pytest.approx(full.global_[key], rel=1e-9)
    for with_std, without in zip(full.bins, lean.bins, strict=True):
        assert without["tokens"] == with_std["tokens"]
        assert without["angles"]["lang-vis"] == pytest.approx(with_std["angles"]["lang-vis"], rel=1e-9)
        for name in ("lang", "vis"):
            assert without["norms"][name] == pytest.approx(with_std["norms"][name], rel=1e-9)
        assert math.isnan(without["norms"]["std"])
        assert math.isnan(without["angles"]["std-lang"]) and math.isnan(without["angles"]["std-vis"])
        assert not math.isnan(with_std["angles"]["std-vis"])
