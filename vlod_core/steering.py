"""Update rules: how per-token losses become the scalar the student descends (METHOD.md, "VGS").

Every rule is a pure function of the per-token losses `(B, T)` (std, lang, vis, vds) and a mask, returning
the unscaled objective's terms. The loop then applies the rule's scale η, which for the steering rules is
`‖g_std‖ / ‖g_std + γ·g_steer‖` (so steering turns the update without changing its size) — measured from
the gradients (`eta="auto"`, detached) or fixed, as the paper does (0.41 for a 2B student at γ = 2).

- `standard`      ℓStd
- `vgs`           ℓStd + γ·ℓVis + λ·ℓLP,  ℓLP = 1[VDS > Q0.7]·ℓLang   (language preservation)
- `vgs_no_lp`     the same with λ = 0 (the paper's ablation)
- `vgs_adaptive`  γ per token by VDS quantile: 0 below Q0.4, γ/2 up to Q0.7, γ above
- `vgs_anchored`  `vgs` whose target q* uses the *initial* student's text-only distribution (our variant)
- `lang_steer`    ℓStd + γ·ℓLang + λ·ℓVP,  ℓVP = 1[VDS > Q0.7]·ℓVis    (the inverse control)

`estimator="sampled"` swaps each full-vocabulary KL for the sampled-token estimator of on-policy
distillation (`losses.sampled_token_losses`): per token, advantage = −(log p(y) − log q(y)) (detached)
times log p(y).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

RULES = ("standard", "vgs", "vgs_no_lp", "vgs_adaptive", "vgs_anchored", "lang_steer")


@dataclass(frozen=True)
class SteeringConfig:
    rule: str = "standard"
    gamma: float = 2.0  # weight of the steering term
    lam: float = 0.01  # weight of the preservation term (λ)
    eta: float | str = "auto"  # "auto": measured from the gradients; or a fixed scale
    eta_every: int = 1  # with eta="auto": re-measure every k steps, reuse in between
    eta_rows: int = 0  # with eta="auto": measure η on the batch's first k rows (0: all of them; `eta_sample.py`)
    preserve_quantile: float = 0.7  # LP / VP act on tokens above this VDS quantile (top 30%)
    adaptive_low_quantile: float = 0.4  # vgs_adaptive: γ_t = 0 below this quantile
    estimator: str = "full"  # "full" (full-vocabulary KL) or "sampled" (sampled-token estimator)
    detach_prior: bool = True  # stop-gradient on the student's text-only log-probs inside q*
    average: str = "response"  # "response": mean over each response's tokens, then responses; "token": all tokens

    def __post_init__(self):
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}; got {self.rule!r}")
        if not self.gamma >= 0:  # also refuses NaN
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if not self.lam >= 0:
            raise ValueError(f"lam (λ) must be >= 0, got {self.lam}")
        if isinstance(self.eta, str):
            if self.eta != "auto":
                raise ValueError(f"eta must be 'auto' or a positive number, got {self.eta!r}")
        elif not 0 < self.eta <= 10:
            raise ValueError(f"eta must be in (0, 10], got {self.eta}")
        if self.eta_every < 1:
            raise ValueError(f"eta_every must be >= 1, got {self.eta_every}")
        if isinstance(self.eta_rows, bool) or not isinstance(self.eta_rows, int) or self.eta_rows < 0:
            raise ValueError(f"eta_rows must be a whole number >= 0 (0: the whole batch), got {self.eta_rows!r}")
        if not 0 < self.adaptive_low_quantile < self.preserve_quantile < 1:
            raise ValueError("need 0 < adaptive_low_quantile < preserve_quantile < 1")
        if self.estimator not in ("full", "sampled"):
            raise ValueError(f"estimator must be 'full' or 'sampled', got {self.estimator!r}")
        if self.average not in ("response", "token"):
            raise ValueError(f"average must be 'response' or 'token', got {self.average!r}")

    @property
    def steers(self) -> bool:
        return self.rule != "standard"

    @property
    def steering_term(self) -> str | None:
        """Which loss the rule adds with weight γ."""
        return None if self.rule == "standard" else ("lang" if self.rule == "lang_steer" else "vis")

    @property
    def effective_lam(self) -> float:
        return 0.0 if self.rule in ("standard", "vgs_no_lp") else self.lam

    def to_dict(self) -> dict:
        return asdict(self)


def average(per_token: torch.Tensor, mask: torch.Tensor, how: str = "response") -> torch.Tensor:
    """Mean of a (B, T) loss over masked tokens: per response then over responses, or over all tokens."""
    mask = mask.to(per_token.dtype)
    if how == "token":
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    per_response = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (B,)
    has_tokens = (mask.sum(-1) > 0).to(per_token.dtype)
    return (per_response * has_tokens).sum() / has_tokens.sum().clamp(min=1)


def vds_quantile(vds: torch.Tensor, mask: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of VDS over the batch's real tokens (METHOD.md default: the current batch)."""
    values = vds[mask.bool()]
    return torch.quantile(values.float(), q) if values.numel() else vds.new_tensor(float("inf"))


@dataclass
class Objective:
    """The rule's terms, each a scalar with gradient. `combined(η)` is what gets descended."""

    std: torch.Tensor
    steer: torch.Tensor | None  # γ-weighted term (vis or lang), already multiplied by γ (per token for adaptive)
    preserve: torch.Tensor | None  # λ-weighted term, already multiplied by λ
    logs: dict[str, float]

    def combined(self, eta: float = 1.0) -> torch.Tensor:
        total = self.std
        if self.steer is not None:
            total = total + self.steer
        if self.preserve is not None:
            total = total + self.preserve
        return eta * total


def objective(
    config: SteeringConfig, losses: dict[str, torch.Tensor], mask: torch.Tensor, vds_pool: torch.Tensor | None = None
) -> Objective:
    """Build the rule's terms from per-token losses `std`, `lang`, `vis`, `vds` (each (B, T)).

    `vds_pool` (1-D) holds the VDS values the quantiles are taken over; default: this batch's real tokens. The
    loop passes the whole global batch's values when it runs data-parallel, so N processes match one.
    """
    mask = mask.bool()
    how = config.average
    vds = losses["vds"].detach()

    def threshold(q: float) -> torch.Tensor:
        if vds_pool is None:
            return vds_quantile(vds, mask, q)
        return vds_quantile(vds_pool, torch.ones_like(vds_pool, dtype=torch.bool), q)

    high = vds > threshold(config.preserve_quantile)  # (B, T) top-30% image-dependent tokens
    logs = {name: float(average(losses[name].detach(), mask, how)) for name in ("std", "lang", "vis", "vds")}
    logs["lang_high_vds"] = float(average(losses["lang"].detach(), mask & high, "token"))
    std = average(losses["std"], mask, how)
    steer = preserve = None
    if config.steers:
        term = config.steering_term
        if config.rule == "vgs_adaptive":
            low = vds > threshold(config.adaptive_low_quantile)
            weight = torch.where(high, config.gamma, torch.where(low, config.gamma / 2, 0.0))  # (B, T)
            steer = average(weight * losses[term], mask, how)
        else:
            steer = config.gamma * average(losses[term], mask, how)
        if config.effective_lam > 0:
            preserved = "vis" if config.rule == "lang_steer" else "lang"
            preserve = config.effective_lam * average(losses[preserved] * high, mask, how)
    logs["lp"] = float(average((losses["lang"] * high).detach(), mask, how))
    return Objective(std, steer, preserve, logs)


def _gradients(loss: torch.Tensor, params: list[torch.Tensor], retain: bool) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _squared_norm(grads: list[torch.Tensor]) -> float:
    return sum(float(torch.linalg.vector_norm(g, dtype=torch.float64) ** 2) for g in grads)


def steered_gradients(terms: Objective, params: list[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
    """η measured from this batch, and the update's gradient η·(g_std + g_steer + g_preserve), from three VJPs.

    The gradient is assembled from the same VJPs that measure η, so no further backward pass runs. With one
    forward per context (`scoring.py`), g_std and g_steer (ℓVis) traverse the image context's graph only and
    g_preserve (ℓLang) the short image-free one, so measuring η costs about one backward more than a fixed η.
    The sums are taken in place: at most two gradient-sized lists are alive at once.
    """
    total = _gradients(terms.std, params, retain=True)
    std_norm = _squared_norm(total) ** 0.5
    for into, steer in zip(total, _gradients(terms.steer, params, retain=terms.preserve is not None)):
        into.add_(steer)
    eta = std_norm / max(_squared_norm(total) ** 0.5, 1e-12)
    if terms.preserve is not None:
        for into, preserve in zip(total, _gradients(terms.preserve, params, retain=False)):
            into.add_(preserve)
    for grad in total:
        grad.mul_(eta)
    return eta, total


def eta_from_gradients(grad_std: list[torch.Tensor], grad_steer: list[torch.Tensor]) -> float:
    """η = ‖g_std‖ / ‖g_std + g_steer‖ (g_steer already γ-weighted), the step-size-preserving scale."""
    num = _squared_norm([g for g in grad_std if g is not None])
    den = _squared_norm([a + b for a, b in zip(grad_std, grad_steer) if a is not None])
    return (num**0.5) / max(den**0.5, 1e-12)
