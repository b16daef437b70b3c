"""Update rules on hand-made log-probs against METHOD.md's formulas, written again here in float64 numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vlod_core.losses import kl, sampled_token_losses
from vlod_core.losses import token_kls as _token_kls
from vlod_core.scoring import FourLogProbs
from vlod_core.steering import RULES, SteeringConfig, average, eta_from_gradients, objective

B, T, V = 2, 3, 5


def token_kls(s_i, s_x, t_i, t_x, mask, detach_prior=True, prior_for_target=None):
    """`losses.token_kls` on four loose tensors (ids unused by the KLs)."""
    ids = torch.zeros(mask.shape, dtype=torch.long)
    return _token_kls(FourLogProbs(s_i, s_x, t_i, t_x, ids, mask, prior_for_target), detach_prior)


MASK = torch.tensor([[True, True, True], [True, True, False]])  # the second response is one token shorter
GAMMA, LAM = 1.5, 0.3  # not the defaults, and a λ big enough to matter


def _logits(seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(B, T, V, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.fixture()
def logprobs():
    """Four (B, T, V) log-prob tensors; the teacher's image context differs a lot from its ablated one."""
    student_image, student_ablated = _logits(1), _logits(2)
    teacher_image, teacher_ablated = _logits(3, 3.0), _logits(4)
    return tuple(torch.log_softmax(x, dim=-1) for x in (student_image, student_ablated, teacher_image, teacher_ablated))


@pytest.fixture()
def losses(logprobs):
    # No mask here: padding positions carry real non-zero values, which the rules must ignore.
    return token_kls(*logprobs, torch.ones(B, T, dtype=torch.bool))


# ---- the reference, straight from METHOD.md ---------------------------------------------------------------


def _np(x):
    return x.detach().double().numpy()


def _kl(logp, logq):
    return np.sum(np.exp(logp) * (logp - logq), axis=-1)


def _reference_tokens(logprobs):
    s_i, s_x, t_i, t_x = (_np(x) for x in logprobs)
    unnormalised = s_x + t_i - t_x
    target = unnormalised - np.log(np.sum(np.exp(unnormalised), axis=-1, keepdims=True))
    return {"std": _kl(s_i, t_i), "lang": _kl(s_x, t_x), "vis": _kl(s_i, target), "vds": _kl(t_i, t_x)}


def _mean(x, mask, how):
    m = _np(mask.double())
    if how == "token":
        return float(np.sum(x * m) / np.sum(m))
    return float(np.mean(np.sum(x * m, axis=1) / np.sum(m, axis=1)))


def _reference_loss(rule, tokens, how="response", gamma=GAMMA, lam=LAM):
    real = _np(MASK).astype(bool)
    vds = tokens["vds"]
    high = (vds > np.quantile(vds[real], 0.7)).astype(float)
    low = (vds > np.quantile(vds[real], 0.4)).astype(float)
    std, lang, vis = tokens["std"], tokens["lang"], tokens["vis"]

    def mean(x):
        return _mean(x, MASK, how)

    if rule == "standard":
        return mean(std)
    if rule in ("vgs", "vgs_anchored"):
        return mean(std) + gamma * mean(vis) + lam * mean(high * lang)
    if rule == "vgs_no_lp":
        return mean(std) + gamma * mean(vis)
    if rule == "vgs_adaptive":
        weight = np.where(high > 0, gamma, np.where(low > 0, gamma / 2, 0.0))
        return mean(std) + mean(weight * vis) + lam * mean(high * lang)
    if rule == "lang_steer":
        return mean(std) + gamma * mean(lang) + lam * mean(high * vis)
    raise AssertionError(rule)


# ---- tests -----------------------------------------------------------------------------------------------


def test_token_kls_match_reference(logprobs, losses):
    reference = _reference_tokens(logprobs)
    for name in ("std", "lang", "vis", "vds"):
        np.testing.assert_allclose(_np(losses[name]), reference[name], rtol=1e-10, atol=1e-12, err_msg=name)
    masked = token_kls(*logprobs, MASK)
    assert torch.all(masked["std"][~MASK] == 0) and torch.all(losses["std"][~MASK] != 0)


def test_quantile_sets_are_what_the_formulas_say(losses):
    """Five real tokens: linear-interpolated Q0.7 leaves the top two above it, Q0.4 the top three."""
    vds = _np(losses["vds"])[_np(MASK).astype(bool)]
    assert len(set(vds.round(8))) == 5  # distinct, so the sets are unambiguous
    assert int((vds > np.quantile(vds, 0.7)).sum()) == 2
    assert int((vds > np.quantile(vds, 0.4)).sum()) == 3


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("how", ["response", "token"])
def test_each_rule_matches_reference(rule, how, logprobs, losses):
    config = SteeringConfig(rule=rule, gamma=GAMMA, lam=LAM, eta=1.0, average=how)
    terms = objective(config, losses, MASK)
    expected = _reference_loss(rule, _reference_tokens(logprobs), how)
    assert float(terms.combined(1.0)) == pytest.approx(expected, rel=1e-9)
    assert float(terms.combined(0.37)) == pytest.approx(0.37 * expected, rel=1e-9)
    assert float(terms.std) == pytest.approx(_reference_loss("standard", _reference_tokens(logprobs), how), rel=1e-9)


def test_rules_differ_from_each_other(losses):
    values = {
        rule: float(objective(SteeringConfig(rule=rule, gamma=GAMMA, lam=LAM), losses, MASK).combined())
        for rule in ("standard", "vgs", "vgs_no_lp", "vgs_adaptive", "lang_steer")
    }
    assert len({round(v, 9) for v in values.values()}) == len(values), values


def test_padding_values_are_ignored(losses):
    garbage = {k: v.clone() for k, v in losses.items()}
    for name, values in garbage.items():
        values[~MASK] = 1e3 if name == "vds" else 7.0  # padding with the largest VDS of all
    for rule in RULES:
        config = SteeringConfig(rule=rule, gamma=GAMMA, lam=LAM)
        a, b = objective(config, losses, MASK), objective(config, garbage, MASK)
        assert float(a.combined()) == pytest.approx(float(b.combined()), rel=1e-12), rule


def test_vds_pool_sets_the_quantiles(losses):
    """Data-parallel runs pass the global batch's VDS values; the quantiles must come from them."""
    config = SteeringConfig(rule="vgs_adaptive", gamma=GAMMA, lam=LAM)
    own = losses["vds"][MASK]
    default = float(objective(config, losses, MASK).combined())
    assert float(objective(config, losses, MASK, vds_pool=own).combined()) == pytest.approx(default, rel=1e-12)
    # A pool whose quantiles sit above every token here: no token is "high", none gets γ or γ/2.
    above = own.max() + torch.arange(1.0, 6.0, dtype=own.dtype)
    terms = objective(config, losses, MASK, vds_pool=above)
    assert float(terms.steer) == 0.0 and terms.preserve is not None and float(terms.preserve) == 0.0
    assert float(terms.combined()) == pytest.approx(float(average(losses["std"], MASK)), rel=1e-12)


def test_response_average_differs_from_token_average(losses):
    by_response = float(average(losses["std"], MASK, "response"))
    by_token = float(average(losses["std"], MASK, "token"))
    x = _np(losses["std"])
    assert by_response == pytest.approx(((x[0, :3].sum() / 3) + (x[1, :2].sum() / 2)) / 2, rel=1e-12)
    assert by_token == pytest.approx((x[0, :3].sum() + x[1, :2].sum()) / 5, rel=1e-12)
    assert by_response != pytest.approx(by_token, rel=1e-6)


def test_average_guards_empty_masks(losses):
    one_empty = MASK.clone()
    one_empty[1] = False
    x = _np(losses["std"])
    assert float(average(losses["std"], one_empty, "response")) == pytest.approx(x[0].mean(), rel=1e-12)
    for how in ("response", "token"):
        value = float(average(losses["std"], torch.zeros_like(MASK), how))
        assert value == 0.0 and math.isfinite(value)


def test_anchored_target_uses_the_given_prior(logprobs):
    s_i, s_x, t_i, t_x = logprobs
    anchor = torch.log_softmax(_logits(9), dim=-1)
    anchored = token_kls(s_i, s_x, t_i, t_x, MASK, prior_for_target=anchor)
    unnormalised = _np(anchor) + _np(t_i) - _np(t_x)
    target = unnormalised - np.log(np.sum(np.exp(unnormalised), axis=-1, keepdims=True))
    expected = _kl(_np(s_i), target) * _np(MASK)
    np.testing.assert_allclose(_np(anchored["vis"]), expected, rtol=1e-10, atol=1e-12)
    plain = token_kls(s_i, s_x, t_i, t_x, MASK)
    assert not torch.allclose(plain["vis"], anchored["vis"])
    torch.testing.assert_close(plain["std"], anchored["std"])  # only the target moves


def test_prior_inside_target_is_detached_by_default(logprobs):
    s_i, s_x, t_i, t_x = (x.clone().requires_grad_(True) for x in logprobs)
    detached = token_kls(s_i, s_x, t_i, t_x, MASK)["vis"].sum()
    assert torch.autograd.grad(detached, s_x, allow_unused=True)[0] is None
    live = token_kls(s_i, s_x, t_i, t_x, MASK, detach_prior=False)["vis"].sum()
    assert torch.autograd.grad(live, s_x)[0].abs().max() > 1e-6


def test_eta_from_gradients_matches_formula():
    generator = torch.Generator().manual_seed(5)
    shapes = [(3, 4), (7,), (2, 2, 2)]
    g_std = [torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes]
    g_vis = [torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes]
    eta = eta_from_gradients(g_std, [GAMMA * g for g in g_vis])
    flat_std = np.concatenate([_np(g).ravel() for g in g_std])
    flat_vis = np.concatenate([_np(g).ravel() for g in g_vis])
    expected = np.linalg.norm(flat_std) / np.linalg.norm(flat_std + GAMMA * flat_vis)
    assert eta == pytest.approx(expected, rel=1e-9)
    # What η is for: the scaled steered step is as long as the standard one.
    assert eta * np.linalg.norm(flat_std + GAMMA * flat_vis) == pytest.approx(np.linalg.norm(flat_std), rel=1e-9)
    assert eta_from_gradients(g_std, [torch.zeros_like(g) for g in g_std]) == pytest.approx(1.0)


def _four(z_image, z_ablated, logprobs, ids):
    _, _, t_i, t_x = logprobs
    return FourLogProbs(torch.log_softmax(z_image, -1), torch.log_softmax(z_ablated, -1), t_i, t_x, ids, MASK)


def test_sampled_token_losses_values_and_reinforce_gradient(logprobs):
    z_image, z_ablated = _logits(1).requires_grad_(True), _logits(2).requires_grad_(True)
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(8))
    four = _four(z_image, z_ablated, logprobs, ids)
    out = sampled_token_losses(four)

    def pick(x):
        return np.take_along_axis(_np(x), _np(ids)[..., None].astype(int), -1)[..., 0]

    tokens = _reference_tokens((four.student_image, four.student_ablated, *logprobs[2:]))
    s_i, t_i = pick(four.student_image), pick(four.teacher_image)
    m = _np(MASK.double())
    np.testing.assert_allclose(_np(out["std"]), (s_i - t_i) * s_i * m, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(_np(out["vds"]), tokens["vds"] * m, rtol=1e-10, atol=1e-12)

    # d/dz [r · log softmax(z)_y] with r held fixed is r · (onehot(y) − p): the REINFORCE form.
    (grad,) = torch.autograd.grad(out["std"].sum(), z_image)
    p = np.exp(_np(four.student_image))
    onehot = np.eye(V)[_np(ids).astype(int)]
    expected = ((s_i - t_i) * m)[..., None] * (onehot - p)
    np.testing.assert_allclose(_np(grad), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["std", "vis"])
def test_sampled_estimator_is_unbiased_for_the_kl_gradient(name, logprobs):
    """Σ_y pI(y) ∇[surrogate(y)] = ∇ KL: the sampled-token estimator is right in expectation (y ~ pI)."""
    z_image, z_ablated = _logits(1).requires_grad_(True), _logits(2).requires_grad_(True)
    student = (torch.log_softmax(z_image, -1), torch.log_softmax(z_ablated, -1))
    exact = token_kls(*student, *logprobs[2:], MASK)[name]
    want = torch.autograd.grad(exact.sum(), z_image)[0]
    expected_grad = torch.zeros_like(z_image)
    probabilities = torch.softmax(z_image, -1).detach()
    for y in range(V):
        ids = torch.full((B, T), y)
        surrogate = sampled_token_losses(_four(z_image, z_ablated, logprobs, ids))[name]
        weight = probabilities[..., y]  # (B, T): how likely the student was to sample y there
        expected_grad += torch.autograd.grad((weight * surrogate).sum(), z_image)[0]
    torch.testing.assert_close(expected_grad, want, rtol=1e-9, atol=1e-12)
    assert want.abs().max() > 1e-3


def test_kl_of_identical_distributions_is_zero(logprobs):
    assert kl(logprobs[0], logprobs[0]).abs().max() < 1e-12


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"gamma": -1.0}, "gamma"),
        ({"gamma": float("nan")}, "gamma"),
        ({"lam": -0.01}, "lam"),
        ({"lam": float("nan")}, "lam"),
        ({"rule": "vgs_fast"}, "rule"),
        ({"eta": "fast"}, "eta"),
        ({"eta": 0.0}, "eta"),
        ({"eta": -0.41}, "eta"),
        ({"eta": 11.0}, "eta"),
        ({"eta_every": 0}, "eta_every"),
        ({"estimator": "exact"}, "estimator"),
        ({"average": "batch"}, "average"),
        ({"preserve_quantile": 1.2}, "preserve_quantile"),
        ({"adaptive_low_quantile": 0.8}, "adaptive_low_quantile"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SteeringConfig(**kwargs)


def test_valid_configs_are_frozen_and_hashable():
    config = SteeringConfig(rule="vgs", eta=0.41)
    assert hash(config) == hash(SteeringConfig(rule="vgs", eta=0.41))
    with pytest.raises(AttributeError):
        config.gamma = 3.0  # type: ignore[misc]
    assert SteeringConfig(rule="vgs_no_lp").effective_lam == 0.0
    assert SteeringConfig(rule="lang_steer").steering_term == "lang"


def _per_bin_reference(lang, vds, mask, bins=3):
    values = vds[mask]
    edges = [-np.inf, *np.quantile(values, [i / bins for i in range(1, bins)]), np.inf]
    means = []
    for low, high in zip(edges, edges[1:]):
        chosen = mask & (vds > low) & (vds <= high)
        means.append(lang[chosen].mean() if chosen.any() else math.nan)
    return means, [int((mask & (vds > lo) & (vds <= hi)).sum()) for lo, hi in zip(edges, edges[1:])]


def test_fig4_log_averages_each_vds_bin_and_the_bins_partition_the_tokens():
    """The per-bin ℓLang/ℓVis the loop logs (the paper's Fig. 4): equal-count VDS bins of the batch's real
    tokens, each token in exactly one bin, padding in none."""
    from vlod_core.steering import DYNAMICS_BINS

    g = torch.Generator().manual_seed(7)
    shape = (4, 9)
    losses = {name: torch.rand(shape, generator=g, dtype=torch.float64) for name in ("std", "lang", "vis", "vds")}
    mask = torch.rand(shape, generator=g) > 0.25
    losses["lang"][~mask] = 1e6  # padding must not leak into any bin
    logged = objective(SteeringConfig(rule="standard"), losses, mask).by_vds
    lang, vis, vds, m = (*(_np(losses[k]) for k in ("lang", "vis", "vds")), mask.numpy())
    expected_lang, counts = _per_bin_reference(lang, vds, m, DYNAMICS_BINS)
    expected_vis, _ = _per_bin_reference(vis, vds, m, DYNAMICS_BINS)
    np.testing.assert_allclose(logged["lang"], expected_lang, rtol=1e-9)
    np.testing.assert_allclose(logged["vis"], expected_vis, rtol=1e-9)
    assert sum(counts) == m.sum() and min(counts) >= m.sum() // DYNAMICS_BINS - 1  # equal-count, a partition
    assert logged["lang"][-1] == pytest.approx(lang[m & (vds > np.quantile(vds[m], 1 - 1 / DYNAMICS_BINS))].mean())


def test_fig4_log_marks_an_empty_bin_nan():
    """All-zero VDS (a blind teacher): every token ties, the lower bins are empty, not zero."""
    losses = {name: torch.rand(2, 4, dtype=torch.float64) for name in ("std", "lang", "vis")}
    losses["vds"] = torch.zeros(2, 4, dtype=torch.float64)
    logged = objective(SteeringConfig(rule="standard"), losses, torch.ones(2, 4, dtype=torch.bool)).by_vds
    assert math.isnan(logged["lang"][-1]) and logged["lang"][0] == pytest.approx(float(losses["lang"].mean()))
