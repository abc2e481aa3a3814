"""N-parity and N-DMS exactly as Khajehabdollahi et al. 2023 (arXiv 2309.12927), one head per N.

One bit per step (input size 1, values 0/1). The sequence length ``M`` is drawn once per batch,
uniformly from ``{N_max + 2, …, N_max + 2 + 3·N_max − 1}`` (``N_max`` the largest N among the
heads). Labels are read at the last step only:

- ``nparity``: bits ~ Bernoulli(p) with ``p ~ U(0, 1)`` drawn per sequence;
  label = (sum of the last N bits) mod 2.
- ``ndms``: balanced bits (p = 0.5); label = ``1[x[−N] == x[−1]]``.

``make_task("nparity", n=[2, 3, 4])`` has three heads (``output_size`` = 2 per head); ``y`` is
``[B, M, heads]`` class ids and the loss is the sum of the heads' cross-entropies
(:meth:`NBitTask.loss_value`). (The older ``parity`` / ``dms`` tasks of :mod:`interp.rnn.tasks`
use ±1 balanced bits and one head; these follow the timescales paper.)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.errors import InvalidArgumentError
from interp.rnn.tasks import Task, TaskBatch, _check_batch, _check_split, register_task


def _heads(n: Any) -> list[int]:
    values = [n] if isinstance(n, int) and not isinstance(n, bool) else n
    try:
        heads = [int(v) for v in values]
    except (TypeError, ValueError) as error:
        raise InvalidArgumentError(f"N must be an int or a list of ints, got {n!r}") from error
    if not heads or any(v < 1 or v != w for v, w in zip(heads, values, strict=True)):
        raise InvalidArgumentError(f"every N must be an int >= 1, got {n!r}")
    if len(set(heads)) != len(heads):
        raise InvalidArgumentError(f"the heads' N must be distinct, got {heads}")
    return heads


class NBitTask(Task):
    """Base of ``nparity`` / ``ndms``: bits in, one 2-class head per N, answer at the last step."""

    loss = "ce_heads"
    input_size = 1

    def __init__(self, n: int | list[int] = 2) -> None:
        heads = _heads(n)
        super().__init__(n=heads if len(heads) > 1 else heads[0])
        self.heads = heads
        self.n_max = max(heads)
        self.output_size = 2 * len(heads)
        low = self.n_max + 2
        self.lengths = (low, low + 3 * self.n_max)  # [low, high)

    def _bits(self, batch: int, steps: int, generator: torch.Generator) -> Tensor:
        raise NotImplementedError

    def _label(self, bits: Tensor, n: int) -> Tensor:
        raise NotImplementedError

    def sample(self, batch, generator, *, split="train", length=None):
        _check_batch(batch)
        _check_split(split)
        if length is None:
            steps = int(torch.randint(*self.lengths, (1,), generator=generator))
        elif length < self.n_max + 1:
            raise InvalidArgumentError(
                f"{self.name} with N_max={self.n_max} needs length >= {self.n_max + 1}, got {length}"
            )
        else:
            steps = int(length)
        bits = self._bits(batch, steps, generator)
        y = torch.zeros(batch, steps, len(self.heads), dtype=torch.long)
        for i, n in enumerate(self.heads):
            y[:, -1, i] = self._label(bits, n)
        mask = torch.zeros(batch, steps, dtype=torch.bool)
        mask[:, -1] = True
        return TaskBatch(bits.float().unsqueeze(-1), y, mask)

    def inputs(self, trials: int, steps: int, generator: torch.Generator) -> Tensor:
        """Input with the task's statistics for ``steps`` steps: ``[trials, steps, 1]``."""
        return self._bits(trials, steps, generator).float().unsqueeze(-1)

    def head_logits(self, outputs: Tensor) -> Tensor:
        """``[..., 2·heads]`` -> ``[..., heads, 2]``."""
        return outputs.reshape(*outputs.shape[:-1], len(self.heads), 2)

    def loss_value(self, outputs: Tensor, batch: TaskBatch) -> Tensor:
        """Sum over heads of the cross-entropy at the answer step (mean over the batch)."""
        logits = self.head_logits(outputs)[batch.mask]  # [B, heads, 2]
        target = batch.y[batch.mask]  # [B, heads]
        return F.cross_entropy(logits.reshape(-1, 2), target.reshape(-1), reduction="sum") / len(
            target
        )

    def head_accuracies(self, outputs: Tensor, batch: TaskBatch) -> Tensor:
        """Accuracy of each head, ``[heads]``."""
        logits = self.head_logits(outputs.detach())[batch.mask]
        return (logits.argmax(-1) == batch.y[batch.mask]).double().mean(0)

    def accuracy(self, outputs, batch):
        return float(self.head_accuracies(outputs, batch).mean())


class NParity(NBitTask):
    """N-parity with ``p ~ U(0, 1)`` per sequence."""

    name = "nparity"

    def _bits(self, batch, steps, generator):
        p = torch.rand(batch, 1, generator=generator)
        return (torch.rand(batch, steps, generator=generator) < p).long()

    def _label(self, bits, n):
        return bits[:, -n:].sum(1) % 2


class NDMS(NBitTask):
    """N-delayed match-to-sample with balanced bits."""

    name = "ndms"

    def _bits(self, batch, steps, generator):
        return torch.randint(0, 2, (batch, steps), generator=generator)

    def _label(self, bits, n):
        return (bits[:, -n] == bits[:, -1]).long()


register_task("nparity", NParity)
register_task("ndms", NDMS)
