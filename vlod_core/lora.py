"""LoRA adapters on the student, through `peft`, without touching the shared student (`--lora R`).

The loaded pair is shared by every session and never written to. A full trainable copy of a 3B student costs
its weights again plus gradients and AdamW states; with LoRA the session's copy is a new module tree whose
frozen weights are *the shared model's storage* (new `Parameter` objects around the same tensors, so the shared
model's own `Parameter`s keep their `requires_grad` and values), and `peft` injects the adapters into that copy.
Only the adapters train; geometry and the optimiser then see only them (`requires_grad`).

Targets are every `nn.Linear` except the output layer (what peft calls "all-linear"): attention, MLP, vision
tower and projector. A rank must be at least 1 and at most the smallest targeted layer's smaller side.
Never call `merge_and_unload()` on the copy: merging writes into the shared weights.
"""

from __future__ import annotations

import copy

import torch


def target_layers(model) -> list[tuple[str, torch.nn.Linear]]:
    """(name, layer) of every linear layer LoRA adapts: all of them except the output embeddings."""
    head = model.get_output_embeddings()
    return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and m is not head]


def check_lora_rank(model, rank: int) -> None:
    """A `ValueError` naming the field when the rank cannot be used on this model."""
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"lora rank must be a whole number >= 1, got {rank!r}")
    layers = target_layers(model)
    if not layers:
        raise ValueError("lora: the model has no linear layers to adapt")
    name, smallest = min(layers, key=lambda item: min(item[1].in_features, item[1].out_features))
    limit = min(smallest.in_features, smallest.out_features)
    if rank > limit:
        raise ValueError(
            f"lora rank {rank} is larger than the smallest targeted layer ({name}: {smallest.in_features} -> "
            f"{smallest.out_features}); use a rank of at most {limit}"
        )


def weight_sharing_copy(model):
    """A copy of the module tree whose parameters are new, frozen `Parameter`s over the same storage."""
    memo = {id(p): torch.nn.Parameter(p.detach(), requires_grad=False) for p in model.parameters()}
    return copy.deepcopy(model, memo)


def lora_student(student, rank: int, alpha: float | None = None, dropout: float = 0.0):
    """A `peft` model over a weight-sharing copy of `student`, with trainable adapters of `rank` only.

    `alpha` defaults to 2·rank. The returned model runs like the student (`forward`, `generate`); its
    trainable parameters are the adapters. `student` itself is left exactly as it was.
    """
    from peft import LoraConfig, get_peft_model

    check_lora_rank(student, rank)
    private = weight_sharing_copy(student)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank if alpha is None else alpha,
        lora_dropout=dropout,
        target_modules=[name for name, _ in target_layers(private)],
    )
    return get_peft_model(private, config)


def enable_gradient_checkpointing(model) -> None:
    """Recompute each layer's activations in the backward pass (on a private copy, in train mode).

    Non-reentrant checkpointing works with frozen inputs (the LoRA case) without `enable_input_require_grads`.
    It is active only while the model is in train mode; sampling (in eval mode) keeps its KV cache, and the
    scoring passes never ask for one.
    """
    model.activation_checkpointing_enable({"use_reentrant": False})
