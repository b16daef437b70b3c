"""Per-token quantities of decomposed on-policy distillation, as pure functions of log-probabilities.

Every function takes `(B, T, V)` log-probs over the full (shared) vocabulary and returns `(B, T)` with
masked positions set to 0 (METHOD.md, "Per-token quantities"):

- `std_kl`  = KL(pI || qI)                 monolithic on-policy distillation
- `lang_kl` = KL(px || qx)                 the language prior, image ablated on both sides
- `vis_kl`  = KL(pI || q*), log q* = log px + log qI - log qx - log Z   (px detached by default)
- `vds`     = KL(qI || qx)                 how much the image changes the teacher

and on the sampled token the exact additive split of the log-ratio:
`logratio = logratio_lang + logratio_vis`. The KLs do not add up (`std_kl != lang_kl + vis_kl`); the
app shows both views and never claims they do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PER_TOKEN_FIELDS = ("std_kl", "lang_kl", "vis_kl", "vds", "logratio", "logratio_lang", "logratio_vis")


def kl(logp: torch.Tensor, logq: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(p || q) per position from (B, T, V) log-probs -> (B, T)."""
    out = (logp.exp() * (logp - logq)).sum(-1)
    return out if mask is None else out * mask


def visual_target(student_ablated: torch.Tensor, teacher_image: torch.Tensor, teacher_ablated: torch.Tensor):
    """log q*: the student's own language prior plus the teacher's visual gain, renormalised. (B, T, V)."""
    return torch.log_softmax(student_ablated + teacher_image - teacher_ablated, dim=-1)


def token_kls(
    student_image: torch.Tensor,
    student_ablated: torch.Tensor,
    teacher_image: torch.Tensor,
    teacher_ablated: torch.Tensor,
    mask: torch.Tensor,
    detach_prior: bool = True,
    prior_for_target: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """`std`, `lang`, `vis` and `vds` per token, each (B, T) and 0 where `mask` is False.

    `prior_for_target` replaces the student's current text-only log-probs inside q* (the anchored variant
    passes the initial student's); otherwise `student_ablated`, detached when `detach_prior`.
    """
    mask = mask.to(student_image.dtype)
    prior = prior_for_target if prior_for_target is not None else student_ablated
    if detach_prior:
        prior = prior.detach()
    target = visual_target(prior, teacher_image, teacher_ablated)
    return {
        "std": kl(student_image, teacher_image, mask),
        "lang": kl(student_ablated, teacher_ablated, mask),
        "vis": kl(student_image, target, mask),
        "vds": kl(teacher_image, teacher_ablated, mask),
    }


def token_logprob(logprobs: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log-prob of each sampled id: (B, T, V), (B, T) -> (B, T)."""
    return logprobs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def sampled_logratios(
    student_image: torch.Tensor,
    student_ablated: torch.Tensor,
    teacher_image: torch.Tensor,
    teacher_ablated: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The exact split of log pI(y) - log qI(y) on the sampled tokens: total = language + visual."""
    mask = mask.to(student_image.dtype)
    s_i, s_x = token_logprob(student_image, ids), token_logprob(student_ablated, ids)
    t_i, t_x = token_logprob(teacher_image, ids), token_logprob(teacher_ablated, ids)
    language = s_x - t_x
    visual = (s_i - s_x) - (t_i - t_x)
    return {"logratio": (s_i - t_i) * mask, "logratio_lang": language * mask, "logratio_vis": visual * mask}


@dataclass
class Decomposition:
    """Detached per-token numbers of a batch, with the tokens as text. Each tensor is (B, T)."""

    tokens: list[list[str]]
    ids: torch.Tensor
    mask: torch.Tensor
    values: dict[str, torch.Tensor]  # keys: PER_TOKEN_FIELDS

    def rows(self, b: int = 0) -> list[dict]:
        """One dict per response token of row `b`: token, id and the seven per-token numbers."""
        n = int(self.mask[b].sum())
        return [
            {"token": self.tokens[b][t], "id": int(self.ids[b, t])}
            | {k: float(self.values[k][b, t]) for k in PER_TOKEN_FIELDS}
            for t in range(n)
        ]

    def to_dict(self) -> dict:
        return {"responses": [self.rows(b) for b in range(len(self.tokens))]}


def decompose(four, tokenizer, detach_prior: bool = True) -> Decomposition:
    """All per-token quantities of a `FourLogProbs`, detached on the CPU."""
    with torch.no_grad():
        args = (four.student_image, four.student_ablated, four.teacher_image, four.teacher_ablated)
        kls = token_kls(*args, four.response_mask, detach_prior=detach_prior)
        ratios = sampled_logratios(*args, four.response_ids, four.response_mask)
    values = {
        "std_kl": kls["std"],
        "lang_kl": kls["lang"],
        "vis_kl": kls["vis"],
        "vds": kls["vds"],
        **ratios,
    }
    ids = four.response_ids.cpu()
    mask = four.response_mask.cpu()
    tokens = [tokenizer.convert_ids_to_tokens(ids[b][mask[b]].tolist()) for b in range(ids.shape[0])]
    return Decomposition(tokens, ids, mask, {k: v.detach().cpu() for k, v in values.items()})
