"""The per-token decomposition of scored responses, detached and labelled, for people to look at.

Seven numbers per response token (METHOD.md, "Per-token quantities"; the formulas live in `losses.py`):
`std_kl` = KL(pI ‖ qI), `lang_kl` = KL(px ‖ qx), `vis_kl` = KL(pI ‖ q*), `vds` = KL(qI ‖ qx), and the exact
split of the sampled token's log-ratio, `logratio = logratio_lang + logratio_vis`. The KLs do not add up
(`std_kl ≠ lang_kl + vis_kl`); the app shows both views and never claims they do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vlod_core.losses import sampled_logratios, token_kls

PER_TOKEN_FIELDS = ("std_kl", "lang_kl", "vis_kl", "vds", "logratio", "logratio_lang", "logratio_vis")


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
        kls = token_kls(four, detach_prior)
        ratios = sampled_logratios(four)
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
