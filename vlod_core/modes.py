"""Eval mode for a while: measuring or sampling a student in the middle of training must not leave it in eval
mode (dropout off) for the next step, nor flip a shared model's mode for good."""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """`model.eval()` inside the block; its own mode (training or not) restored after, whatever happens."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
