"""Gradient geometry: g_std, g_lang, g_vis, their norms and the angles between them (METHOD.md).

Angles are reported over all trainable parameters as one vector, per module group (vision tower,
projector, embeddings, each language layer, final norm / head) and per VDS bin (10 equal-count bins of
the response tokens, each loss masked to its bin: the paper's Fig. 3). Gradients come from plain
sequential `torch.autograd.grad` calls on one retained graph (a test checks them against separate
backward passes and a finite difference). Only per-group dot products and squared norms are kept: no
flattened copy of the parameters is ever built.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import torch

from vlod_core.steering import average

PAIRS = (("std", "lang"), ("std", "vis"), ("lang", "vis"))
NAMES = ("std", "lang", "vis")


def module_group(name: str) -> str:
    """The group of a parameter name, for any of the common VLM layouts."""
    n = name.lower()
    if any(k in n for k in ("vision_tower", "vision_model", "visual.", "vision_encoder")) and "merger" not in n:
        return "vision tower"
    if any(k in n for k in ("multi_modal_projector", "mm_projector", "connector", "merger", "projector")):
        return "projector"
    match = re.search(r"(?:language_model|model|text_model)\.(?:.*\.)?layers\.(\d+)\.", n)
    if match:
        return f"language layer {int(match.group(1)):02d}"
    if "embed_tokens" in n or "wte" in n or "embeddings" in n:
        return "embeddings"
    return "norm / head"


@dataclass
class Reductions:
    """Dot products and squared norms of the three gradients, summed within groups."""

    dots: dict[str, dict[tuple[str, str], float]] = field(default_factory=dict)  # group -> (a, b) -> <ga, gb>

    def add(self, group: str, grads: dict[str, torch.Tensor]) -> None:
        table = self.dots.setdefault(group, {})
        names = [n for n in NAMES if n in grads]
        for i, a in enumerate(names):
            for b in names[i:]:
                value = float((grads[a].double() * grads[b].double()).sum())
                table[(a, b)] = table.get((a, b), 0.0) + value

    def total(self) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for table in self.dots.values():
            for key, value in table.items():
                out[key] = out.get(key, 0.0) + value
        return out


def angle(dots: dict[tuple[str, str], float], a: str, b: str) -> float:
    """Angle in degrees between g_a and g_b from their dot product and norms (nan if either is 0 or absent)."""
    na, nb = dots.get((a, a), float("nan")), dots.get((b, b), float("nan"))
    if not (na > 0 and nb > 0):
        return float("nan")
    cos = dots[(a, b) if (a, b) in dots else (b, a)] / math.sqrt(na * nb)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def summarise(dots: dict[tuple[str, str], float]) -> dict:
    return {
        "norms": {n: math.sqrt(max(dots[(n, n)], 0.0)) if (n, n) in dots else float("nan") for n in NAMES},
        "angles": {f"{a}-{b}": angle(dots, a, b) for a, b in PAIRS},
        "cos": {f"{a}-{b}": (math.cos(math.radians(angle(dots, a, b)))) for a, b in PAIRS},
    }


@dataclass
class GradGeometry:
    """Norms and angles: global, per module group, per VDS bin. Plain floats, ready for JSON."""

    global_: dict
    groups: dict[str, dict]
    bins: list[dict]  # each: {"vds_low", "vds_high", "tokens", "norms", "angles"}

    def to_dict(self) -> dict:
        return {"global": self.global_, "groups": self.groups, "bins": self.bins}

    @classmethod
    def from_dict(cls, data: dict) -> "GradGeometry":
        return cls(data["global"], data["groups"], data["bins"])


def three_gradients(
    losses: dict[str, torch.Tensor], params: list[torch.nn.Parameter], keep_graph: bool = False, names=NAMES
) -> dict[str, list[torch.Tensor]]:
    """∇ of each scalar loss (std, lang, vis; or those of `names`) w.r.t. `params` on one graph, zeros for unused
    parameters. The graph is freed after the last gradient unless `keep_graph` (the VDS bins reuse it).
    """
    out = {}
    for i, name in enumerate(names):
        retain = keep_graph or i < len(names) - 1
        grads = torch.autograd.grad(losses[name], params, retain_graph=retain, allow_unused=True)
        out[name] = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return out


def reduce_gradients(
    named_params: list[tuple[str, torch.nn.Parameter]], grads: dict[str, list[torch.Tensor]]
) -> Reductions:
    reductions = Reductions()
    for index, (name, _) in enumerate(named_params):
        reductions.add(module_group(name), {k: grads[k][index] for k in NAMES if k in grads})
    return reductions


def geometry_of_losses(
    named_params: list[tuple[str, torch.nn.Parameter]],
    per_token: dict[str, torch.Tensor],
    mask: torch.Tensor,
    bins: int = 10,
    how: str = "response",
    bin_std: bool = True,
) -> GradGeometry:
    """The full geometry from per-token losses (B, T) that still carry their graph.

    Each VDS bin takes g_lang and g_vis (two gradients; the paper's Fig. 3 is their angle), and g_std as well
    only when `bin_std` (a third): without it a bin's std norm and std angles are NaN."""
    params = [p for _, p in named_params]
    means = {n: average(per_token[n], mask, how) for n in NAMES}
    reductions = reduce_gradients(named_params, three_gradients_retained(means, params))
    groups = {g: summarise(d) for g, d in sorted(reductions.dots.items())}
    result_bins = []
    vds = per_token["vds"].detach()[mask.bool()]
    if bins > 0 and vds.numel() >= bins:
        order = torch.argsort(vds)
        edges = [order[(len(order) * i) // bins : (len(order) * (i + 1)) // bins] for i in range(bins)]
        flat_index = mask.bool().flatten().nonzero().squeeze(-1)
        for members in edges:
            bin_mask = torch.zeros(mask.numel(), dtype=torch.bool, device=mask.device)
            bin_mask[flat_index[members]] = True
            bin_mask = bin_mask.view_as(mask)
            names = NAMES if bin_std else ("lang", "vis")
            bin_means = {n: average(per_token[n], bin_mask, "token") for n in names}
            grads = three_gradients(bin_means, params, keep_graph=True, names=names)
            dots = reduce_gradients(named_params, grads).total()
            result_bins.append(
                {"vds_low": float(vds[members].min()), "vds_high": float(vds[members].max()), "tokens": len(members)}
                | summarise(dots)
            )
    return GradGeometry(summarise(reductions.total()), groups, result_bins)


def three_gradients_retained(losses: dict[str, torch.Tensor], params: list[torch.nn.Parameter]):
    """`three_gradients` that keeps the graph for further calls."""
    return three_gradients(losses, params, keep_graph=True)
