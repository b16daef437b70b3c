"""η from the first rows of a batch: the steering scale without a second VJP through the whole image graph.

η = ‖g_std‖ / ‖g_std + g_steer‖ needs g_std on its own, so measuring it on the whole batch costs one more
VJP through the image context's graph than a fixed η (`steering.steered_gradients`). With
`SteeringConfig(eta_rows=k)` the loop measures η on the batch's first k rows instead: those rows are encoded
again, the student scores them in the image context (a k-row forward with its own small graph), and two VJPs
of that graph give g_std and g_steer; the teacher's log-probs and the student's image-free ones are the
step's own, sliced. The update itself is then the whole batch's exact gradient of η·(ℓStd + γ·ℓSteer + λ·ℓLP),
one backward as for a fixed η. Only η is approximate: `bench/step_cost.py` prints its error against the
whole batch's η, and `tests/test_steering.py` checks that it is the whole batch's when k covers it.

Needs `detach_prior` and a rule that steers with ℓVis (then ℓStd and ℓVis see the student only through its
image pass); the loop measures η on the whole batch otherwise (`lang_steer`), and when running data-parallel.
"""

from __future__ import annotations

import torch

from vlod_core.engine import encode
from vlod_core.inputs import build_scoring_batch
from vlod_core.losses import per_token_losses
from vlod_core.scoring import FourLogProbs, context_logprobs
from vlod_core.steering import SteeringConfig, eta_from_gradients, objective


def applies(steering: SteeringConfig, rows: int) -> bool:
    """Whether η is measured on a subsample of a batch of `rows` rows."""
    # ℓLang-steering rules' g_steer runs through the image-free pass, which is not re-run for the rows.
    return (
        bool(steering.eta_rows)
        and steering.eta_rows < rows
        and steering.detach_prior
        and steering.steering_term == "vis"
    )


def subsample_eta(pair, student, scored, steering: SteeringConfig, params: list[torch.Tensor]) -> float:
    """η of `scored` (an `engine.Rollout` scored in both contexts) measured on its first `eta_rows` rows."""
    k = steering.eta_rows
    prompts = scored.prompts
    sub = encode(pair, prompts.images[:k], prompts.questions[:k], prompts.ablation, contexts=("image",))
    batch = build_scoring_batch(sub, scored.responses[:k], pair.tokenizer.pad_token_id, ("image",))
    steps = batch.response_ids.shape[1]
    full = scored.four

    def rows(t):
        return None if t is None else t[:k, :steps].detach()

    with torch.enable_grad():
        image = context_logprobs(student, batch.context("student", "image"), steps, pair.vocab_size)
        four = FourLogProbs(
            image,
            rows(full.student_ablated),
            rows(full.teacher_image),
            rows(full.teacher_ablated),
            batch.response_ids,
            batch.response_mask,
            rows(full.anchor_ablated),
        )
        losses = per_token_losses(four, steering.estimator, steering.detach_prior)
        terms = objective(steering, losses, batch.response_mask)
        g_std = torch.autograd.grad(terms.std, params, retain_graph=True, allow_unused=True)
        g_steer = torch.autograd.grad(terms.steer, params, allow_unused=True)
    zeros = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_std)]
    return eta_from_gradients(zeros, [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_steer)])
