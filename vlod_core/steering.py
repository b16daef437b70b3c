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

from types import MappingProxyType

from dataclasses import asdict, dataclass, field

import torch

from vlod_core.settings import check, setting


@dataclass(frozen=True)
class Rule:
    """An update rule as the CLI's choices, the app's picker and the docs name it."""

    name: str
    objective: str  # the terms it descends, in METHOD.md's notation
    description: str
    steering_term: str | None = None  # the loss it adds with weight γ
    preserved_term: str | None = None  # the loss it keeps on the top-VDS tokens with weight λ


REGISTRY = MappingProxyType(
    {
        rule.name: rule
        for rule in (
            Rule("standard", "ℓStd", "standard on-policy distillation: the full reverse KL to the teacher"),
            Rule("vgs", "ℓStd + γ·ℓVis + λ·ℓLP", "the paper's Visual Gradient Steering", "vis", "lang"),
            Rule("vgs_no_lp", "ℓStd + γ·ℓVis", "VGS without language preservation (the paper's ablation)", "vis"),
            Rule("vgs_adaptive", "ℓStd + γ_t·ℓVis + λ·ℓLP", "VGS with γ per token by VDS quantile", "vis", "lang"),
            Rule(
                "vgs_anchored", "ℓStd + γ·ℓVis* + λ·ℓLP", "VGS whose q* uses the initial student's prior", "vis", "lang"
            ),
            Rule(
                "lang_steer",
                "ℓStd + γ·ℓLang + λ·ℓVP",
                "steering toward language instead (the inverse control)",
                "lang",
                "vis",
            ),
        )
    }
)
RULES = tuple(REGISTRY)


def rule_label(name: str) -> str:
    """'vgs: ℓStd + γ·ℓVis + λ·ℓLP (the paper's Visual Gradient Steering)', the picker's wording."""
    rule = REGISTRY[name]
    return f"{rule.name}: {rule.objective} ({rule.description})"


def _eta(text: str) -> float | str:
    """'auto' or a positive number up to 10."""
    value = text if text == "auto" else float(text)
    if value != "auto" and not 0 < value <= 10:
        raise ValueError(f"eta must be 'auto' or a number in (0, 10], got {text!r}")
    return value


@dataclass(frozen=True)
class SteeringConfig:
    rule: str = setting("standard", choices=RULES, flag="--steering", help="the update rule", label="Update rule")
    gamma: float = setting(
        2.0,
        low=0.0,
        high=10.0,
        step=0.5,
        help="γ, weight of the steering term (ℓVis, or ℓLang for lang_steer)",
        label="γ, steering weight",
    )
    lam: float = setting(
        0.01,
        low=0.0,
        high=10.0,
        step=0.01,
        fmt="%.3f",
        help="λ, weight of the preservation term (ℓLP or ℓVP)",
        label="λ, preservation weight",
    )
    eta: float | str = setting(
        "auto", parse=_eta, help="η: 'auto' (measured from the gradients each step) or a fixed scale, e.g. 0.41"
    )
    eta_every: int = setting(1, low=1, high=100_000, help="with eta 'auto': re-measure η every k steps")
    eta_rows: int = setting(
        0, low=0, high=4096, help="with eta 'auto': measure η on the batch's first k rows (0: the whole batch)"
    )
    preserve_quantile: float = setting(
        0.7, low=0.0, high=1.0, help="LP / VP act on the tokens above this VDS quantile (the top 30%)"
    )
    adaptive_low_quantile: float = setting(0.4, low=0.0, high=1.0, help="vgs_adaptive: γ_t = 0 below this quantile")
    estimator: str = setting(
        "full", choices=("full", "sampled"), help="full-vocabulary KL, or the sampled-token estimator"
    )
    detach_prior: bool = setting(True, help="stop-gradient on the student's text-only log-probs inside q*")
    average: str = setting(
        "response",
        choices=("response", "token"),
        help="mean over each response's tokens then responses, or over all tokens",
    )

    def __post_init__(self):
        check(self)
        if isinstance(self.eta, str):
            if self.eta != "auto":
                raise ValueError(f"eta must be 'auto' or a positive number, got {self.eta!r}")
        elif isinstance(self.eta, bool) or not 0 < self.eta <= 10:
            raise ValueError(f"eta must be in (0, 10], got {self.eta}")
        if not 0 < self.adaptive_low_quantile < self.preserve_quantile < 1:
            raise ValueError("need 0 < adaptive_low_quantile < preserve_quantile < 1")

    @property
    def steers(self) -> bool:
        return self.rule != "standard"

    @property
    def steering_term(self) -> str | None:
        """Which loss the rule adds with weight γ."""
        return REGISTRY[self.rule].steering_term

    @property
    def effective_lam(self) -> float:
        return self.lam if REGISTRY[self.rule].preserved_term else 0.0

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


DYNAMICS_BINS = 3  # equal-count VDS bins the loop logs ℓLang and ℓVis in, step by step (the paper's Fig. 4)


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
    by_vds: dict[str, list[float]] = field(default_factory=dict)  # ℓLang, ℓVis per VDS bin, low → high

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
            preserved = REGISTRY[config.rule].preserved_term
            preserve = config.effective_lam * average(losses[preserved] * high, mask, how)
    logs["lp"] = float(average((losses["lang"] * high).detach(), mask, how))
    return Objective(std, steer, preserve, logs, by_vds_bin(losses, mask, threshold))


def by_vds_bin(losses: dict[str, torch.Tensor], mask: torch.Tensor, threshold) -> dict[str, list[float]]:
    """ℓLang and ℓVis averaged over the tokens of each of `DYNAMICS_BINS` equal-count VDS bins (NaN where a bin
    is empty, as when ties at VDS = 0 fill a lower bin's edge)."""
    vds = losses["vds"].detach()
    edges = [threshold(i / DYNAMICS_BINS) for i in range(1, DYNAMICS_BINS)]
    inf = vds.new_tensor(float("inf"))
    bins = [mask & (vds > low) & (vds <= high) for low, high in zip([-inf, *edges], [*edges, inf])]
    return {
        name: [float(average(losses[name].detach(), b, "token")) if b.any() else float("nan") for b in bins]
        for name in ("lang", "vis")
    }


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


def measured_eta(terms: Objective, params: list[torch.Tensor]) -> float:
    """η of a steering rule's terms, measured from two VJPs; the graph is kept for the caller's own backward
    (data-parallel training and TRL's trainer, where the framework runs the backward pass)."""
    return eta_from_gradients(_gradients(terms.std, params, retain=True), _gradients(terms.steer, params, retain=True))
