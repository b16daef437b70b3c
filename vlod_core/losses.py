"""Every per-token loss of decomposed on-policy distillation, as pure functions of scored log-probs.

Each function takes `(B, T, V)` log-probs over the pair's shared vocabulary (or a `FourLogProbs` holding
them) and returns `(B, T)`, zero where the response mask is False (METHOD.md, "Per-token quantities"):

- `std`  = KL(pI ‖ qI)                 monolithic on-policy distillation
- `lang` = KL(px ‖ qx)                 the language prior, image ablated on both sides
- `vis`  = KL(pI ‖ q*), log q* = log px + log qI − log qx − log Z   (px detached by default)
- `vds`  = KL(qI ‖ qx)                 how much the image changes the teacher

plus, on the sampled token, the exact additive split of the log-ratio (`logratio = logratio_lang +
logratio_vis`) and the sampled-token estimator's surrogates. The KLs do not add up (`std ≠ lang + vis`).
This module is the one home of these formulas: the loop, inspection, the occlusion map and the geometry
all call it.
"""

from __future__ import annotations

import torch


def kl(logp: torch.Tensor, logq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(p ‖ q) per position from (B, T, V) log-probs -> (B, T)."""
    out = (logp.exp() * (logp - logq)).sum(-1)
    return out if mask is None else out * mask


def visual_target(student_ablated: torch.Tensor, teacher_image: torch.Tensor, teacher_ablated: torch.Tensor):
    """log q*: the student's own language prior plus the teacher's visual gain, renormalised. (B, T, V)."""
    return torch.log_softmax(student_ablated + teacher_image - teacher_ablated, dim=-1)


def token_logprob(logprobs: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log-prob of each sampled id: (B, T, V), (B, T) -> (B, T)."""
    return logprobs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def _prior(four, detach_prior: bool) -> torch.Tensor:
    """The text-only log-probs inside q*: the anchor's when the batch carries one, else the student's."""
    prior = four.anchor_ablated if four.anchor_ablated is not None else four.student_ablated
    return prior.detach() if detach_prior else prior


def token_kls(four, detach_prior: bool = True) -> dict[str, torch.Tensor]:
    """`std`, `lang`, `vis` and `vds` per token of a fully scored batch, each (B, T)."""
    mask = four.response_mask.to(four.student_image.dtype)
    target = visual_target(_prior(four, detach_prior), four.teacher_image, four.teacher_ablated)
    return {
        "std": kl(four.student_image, four.teacher_image, mask),
        "lang": kl(four.student_ablated, four.teacher_ablated, mask),
        "vis": kl(four.student_image, target, mask),
        "vds": kl(four.teacher_image, four.teacher_ablated, mask),
    }


def image_only_losses(four) -> dict[str, torch.Tensor]:
    """ℓStd alone, for a batch scored in the image context only; the other terms are NaN (not measured)."""
    std = kl(four.student_image, four.teacher_image, four.response_mask.to(four.student_image.dtype))
    unknown = torch.full_like(std, float("nan")).detach()
    return {"std": std, "lang": unknown, "vis": unknown, "vds": unknown}


def sampled_logratios(four) -> dict[str, torch.Tensor]:
    """The exact split of log pI(y) − log qI(y) on the sampled tokens: total = language + visual."""
    ids, mask = four.response_ids, four.response_mask.to(four.student_image.dtype)
    s_i, s_x = token_logprob(four.student_image, ids), token_logprob(four.student_ablated, ids)
    t_i, t_x = token_logprob(four.teacher_image, ids), token_logprob(four.teacher_ablated, ids)
    language = s_x - t_x
    visual = (s_i - s_x) - (t_i - t_x)
    return {"logratio": (s_i - t_i) * mask, "logratio_lang": language * mask, "logratio_vis": visual * mask}


def sampled_token_losses(four, detach_prior: bool = True) -> dict[str, torch.Tensor]:
    """Sampled-token estimator: per token, advantage (−log-ratio, detached) times the student's log-prob.

    Its gradient is the single-sample estimate of the full KL's gradient for the token actually sampled
    (unbiased for std and vis; for lang only approximately, since y is drawn from pI, not px). `vds` stays
    the full KL: it only gates tokens.
    """
    ids, mask = four.response_ids, four.response_mask.to(four.student_image.dtype)
    target = visual_target(_prior(four, detach_prior), four.teacher_image, four.teacher_ablated)
    s_i, s_x = token_logprob(four.student_image, ids), token_logprob(four.student_ablated, ids)
    ratios = {
        "std": (s_i - token_logprob(four.teacher_image, ids), s_i),
        "lang": (s_x - token_logprob(four.teacher_ablated, ids), s_x),
        "vis": (s_i - token_logprob(target, ids), s_i),
    }
    surrogates = {name: ratio.detach() * taken * mask for name, (ratio, taken) in ratios.items()}
    return surrogates | {"vds": kl(four.teacher_image, four.teacher_ablated, mask)}


def per_token_losses(four, estimator: str = "full", detach_prior: bool = True) -> dict[str, torch.Tensor]:
    """The per-token losses an update rule combines: full-vocabulary KLs or the sampled-token estimator.

    A batch scored without the image-free context gets ℓStd alone (the others NaN).
    """
    if four.student_ablated is None:
        return image_only_losses(four)
    if estimator == "sampled":
        return sampled_token_losses(four, detach_prior)
    return token_kls(four, detach_prior)
