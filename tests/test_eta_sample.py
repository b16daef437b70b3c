"""η from the batch's first rows (`SteeringConfig(eta_rows=k)`, `eta_sample.py`): the whole batch's η when k
covers the batch, an approximation otherwise, and the loop trains with it."""

from __future__ import annotations

import copy
import math

import pytest

from vlod_core import eta_sample
from vlod_core.distill import DistillConfig, distill
from vlod_core.engine import rollout
from vlod_core.losses import per_token_losses
from vlod_core.steering import SteeringConfig, objective, steered_gradients
from vlod_core.toy import world
from vlod_core.toy.source import toy_data


def _scored(pair, student, rows=8):
    examples = world.sample_examples(rows, seed=6)
    return rollout(
        pair, [e.image() for e in examples], [e.question for e in examples], seed=2, student=student, student_grad=True
    )


def test_eta_rows_is_validated_and_applies_only_below_the_batch():
    with pytest.raises(ValueError, match="eta_rows"):
        SteeringConfig(rule="vgs", eta_rows=-1)
    config = SteeringConfig(rule="vgs", eta_rows=8)
    assert eta_sample.applies(config, 32) and not eta_sample.applies(config, 8)
    assert not eta_sample.applies(SteeringConfig(rule="vgs"), 32)
    assert not eta_sample.applies(SteeringConfig(rule="vgs", eta_rows=8, detach_prior=False), 32)
    assert not eta_sample.applies(SteeringConfig(rule="lang_steer", eta_rows=8), 32)  # g_steer: image-free pass


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["vgs", "vgs_adaptive"])
def test_subsample_eta_is_the_whole_batchs_when_it_covers_the_batch(toy_pair, rule):
    student = copy.deepcopy(toy_pair.student).train()
    params = [p for p in student.parameters() if p.requires_grad]
    scored = _scored(toy_pair, student)
    steering = SteeringConfig(rule=rule, eta_rows=len(scored.responses))
    losses = per_token_losses(scored.four, steering.estimator, steering.detach_prior)
    exact, _ = steered_gradients(objective(steering, losses, scored.four.response_mask), params)
    measured = eta_sample.subsample_eta(toy_pair, student, scored, steering, params)
    assert measured == pytest.approx(exact, rel=1e-5)
    half = eta_sample.subsample_eta(toy_pair, student, scored, SteeringConfig(rule=rule, eta_rows=4), params)
    assert math.isfinite(half) and half > 0 and half != pytest.approx(exact, rel=1e-9)  # a different estimate


@pytest.mark.slow
def test_the_loop_trains_with_eta_from_the_first_rows(toy_pair):
    config = DistillConfig(
        steps=2, batch=8, steering=SteeringConfig(rule="vgs", eta_rows=4), eval_examples=1, answer_examples=0
    )
    calls = []
    original = eta_sample.subsample_eta

    def counting(*args, **kwargs):
        calls.append(original(*args, **kwargs))
        return calls[-1]

    eta_sample.subsample_eta = counting
    try:
        result = distill(toy_pair, config, toy_data(eval_rows=1, show_rows=0), evaluate_model=False)
    finally:
        eta_sample.subsample_eta = original
    records = result.card.records
    assert len(calls) == 2
    assert [r["eta"] for r in records] == pytest.approx(calls)
    assert all(0 < r["eta"] < 10 for r in records)
