"""A tiny Mamba trained here on a simple sequence task, to analyse a mixer that learned something.

The task is a delayed copy: random tokens ``x_1 .. x_T`` over a small alphabet, and at every
position ``t > lag`` the model must predict ``x_{t - lag}`` (as the next-token target of position
``t``). Solving it needs memory of exactly ``lag`` steps, which a selective SSM can hold in its
state; the interaction operators of the trained layers show how.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from interp.errors import InvalidArgumentError


def delayed_copy_batch(
    batch: int, length: int, vocab: int, lag: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``[batch, length]`` and targets (``-100`` where there is nothing to copy yet)."""
    tokens = torch.randint(0, vocab, (batch, length), generator=generator)
    targets = torch.full_like(tokens, -100)
    targets[:, lag:] = tokens[:, :-lag]
    return tokens, targets


@dataclass
class TrainedSSM:
    """A trained tiny SSM LM with its task settings, final loss and held-out accuracy."""

    model: nn.Module
    variant: str
    lag: int
    vocab: int
    length: int
    loss: float
    accuracy: float


def train_delayed_copy(
    variant: str = "mamba",
    *,
    lag: int = 2,
    vocab: int = 8,
    length: int = 24,
    steps: int = 300,
    batch: int = 32,
    lr: float = 3e-3,
    d_model: int = 16,
    layers: int = 2,
    seed: int = 0,
) -> TrainedSSM:
    """Train a tiny Mamba / Mamba-2 (:func:`interp.models.ssm_tiny.tiny_ssm`) with Adam on the
    delayed copy; accuracy is measured on 256 fresh sequences."""
    from interp.models.ssm_tiny import tiny_ssm

    if not 1 <= lag < length:
        raise InvalidArgumentError(f"lag must be in 1..length-1={length - 1}, got {lag!r}")
    model = tiny_ssm(variant, layers=layers, d_model=d_model, vocab=vocab, seed=seed)
    model.train()
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        tokens, targets = delayed_copy_batch(batch, length, vocab, lag, g)
        logits = model(tokens).logits
        loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    tokens, targets = delayed_copy_batch(256, length, vocab, lag, g)
    with torch.no_grad():
        predicted = model(tokens).logits.argmax(-1)
    known = targets != -100
    accuracy = float((predicted[known] == targets[known]).float().mean())
    return TrainedSSM(model, variant, lag, vocab, length, float(loss.detach()), accuracy)
