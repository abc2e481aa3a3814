"""Pieces the ensemble trainer needs that do not depend on vectorization: losses and data streams.

``masked_loss``, ``trial_steps`` and ``activity`` are written without boolean indexing so they run
unchanged under ``torch.func.vmap``.
``DataStream`` gives every ensemble member its own seeded sequence of training batches, so a model's
training data depends only on its own data seed, not on which other models share the ensemble.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.rnn.tasks import Task, TaskBatch, split_generator


def masked_loss(outputs: Tensor, y: Tensor, mask: Tensor, kind: str) -> Tensor:
    """Mean task loss over the masked steps: ``mse`` (per channel), ``bce`` (logits) or ``ce``.

    ``outputs [..., T, O]``, ``y [..., T, O]`` (``ce``: ``[..., T]`` class ids), ``mask [..., T]``.
    """
    weight = mask.to(outputs.dtype)
    if kind == "mse":
        per_step = (outputs - y).square().mean(dim=-1)
    elif kind == "bce":
        per_step = F.binary_cross_entropy_with_logits(outputs, y, reduction="none").mean(dim=-1)
    elif kind == "ce":
        logp = outputs.log_softmax(dim=-1)
        per_step = -logp.gather(-1, y.long().unsqueeze(-1)).squeeze(-1)
    else:
        raise ValueError(f"loss must be one of 'mse', 'bce', 'ce'; got {kind!r}")
    return (per_step * weight).sum() / weight.sum().clamp_min(1.0)


def trial_steps(mask: Tensor) -> Tensor:
    """``[..., T]`` bool: the steps of each trial up to and including its last scored step.

    Variable-length trials are right-padded to a common length (``TaskBatch.mask`` False there);
    the padded steps after a trial's last scored step are not part of the trial, so state-based
    quantities (activity penalty, DSA, CKA, Procrustes) leave them out like the task loss does.
    """
    return mask.long().flip(-1).cumsum(-1).flip(-1) > 0


def activity(states: Tensor, mask: Tensor) -> Tensor:
    """Mean squared state ``mean(h²)`` over the trial steps (``trial_steps(mask)``) of ``states [..., T, S]``."""
    weight = trial_steps(mask).to(states.dtype)
    per_step = states.square().mean(dim=-1)
    return (per_step * weight).sum() / weight.sum().clamp_min(1.0)


def stack_batches(batches: list[TaskBatch]) -> TaskBatch:
    """Stack per-model batches into ``[N, B, T, ...]``, right-padding shorter ones (mask False).

    Padding at the end is harmless for causal networks: padded steps never influence masked ones.
    """
    steps = max(b.x.shape[1] for b in batches)

    def pad(t: Tensor) -> Tensor:
        extra = steps - t.shape[1]
        if extra == 0:
            return t
        return torch.cat([t, t.new_zeros(t.shape[0], extra, *t.shape[2:])], dim=1)

    return TaskBatch(
        torch.stack([pad(b.x) for b in batches]),
        torch.stack([pad(b.y) for b in batches]),
        torch.stack([pad(b.mask) for b in batches]),
    )


class DataStream:
    """Per-model training batches, sampled ``prefetch`` batches at a time to amortize overhead.

    Model ``i`` draws from ``split_generator(data_seeds[i], "train")``: the same seed always gives the
    same sequence of batches. ``next()`` returns a :class:`TaskBatch` of shape ``[N, B, T, ...]``.
    """

    def __init__(
        self, task: Task, data_seeds: list[int], batch_size: int, prefetch: int = 16
    ) -> None:
        if batch_size < 1 or prefetch < 1:
            raise ValueError(f"batch_size and prefetch must be >= 1, got {batch_size}, {prefetch}")
        self.task, self.batch_size, self.prefetch = task, batch_size, prefetch
        self.generators = [split_generator(seed, "train") for seed in data_seeds]
        self._chunk: TaskBatch | None = None
        self._next = prefetch

    def _refill(self) -> None:
        size = self.batch_size * self.prefetch
        chunk = stack_batches([self.task.sample(size, g) for g in self.generators])
        shape = (len(self.generators), self.prefetch, self.batch_size)
        self._chunk = TaskBatch(
            chunk.x.reshape(*shape, *chunk.x.shape[2:]),
            chunk.y.reshape(*shape, *chunk.y.shape[2:]),
            chunk.mask.reshape(*shape, *chunk.mask.shape[2:]),
        )
        self._next = 0

    def next(self) -> TaskBatch:
        if self._next == self.prefetch:
            self._refill()
        assert self._chunk is not None
        k = self._next
        self._next += 1
        return TaskBatch(self._chunk.x[:, k], self._chunk.y[:, k], self._chunk.mask[:, k])


def held_out(task: Task, seed: int, batch_size: int, *, length: int | None = None) -> TaskBatch:
    """One test-split batch shared by every model (the reference inputs of the metrics)."""
    return task.sample(batch_size, split_generator(seed, "test"), split="test", length=length)
