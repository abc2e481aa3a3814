"""Per-member early stopping at a loss threshold, and the relative weight change diagnostic.

Huang et al. (arXiv 2410.03972) train every network until its task MSE falls below a threshold
(flip-flop 0.001, delayed discrimination 0.01, sine 0.05, path integration 0.05) with a patience
of 3, so that the nets of an ensemble are compared at matched loss rather than after a fixed
number of steps. Here a member stops at the first step where its training loss has been below the
threshold for ``patience`` consecutive steps (each step is one fresh batch, the analogue of the
paper's epochs).
"""

from __future__ import annotations

import torch
from torch import Tensor


class Stopper:
    """Tracks which members still train. ``update(step, losses [N])`` -> active mask ``[N]`` bool.

    ``stop_step[i]`` is the step at which member ``i`` stopped (its parameters are those that
    produced that step's loss; no update is applied from that step on), −1 while it trains or if
    it never reaches the threshold. With ``threshold=None`` nobody stops.
    """

    def __init__(self, n_models: int, threshold: float | None, patience: int = 3) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.threshold, self.patience = threshold, patience
        self.streak = torch.zeros(n_models, dtype=torch.long)
        self.stop_step = torch.full((n_models,), -1, dtype=torch.long)

    @property
    def active(self) -> Tensor:
        return self.stop_step < 0

    def update(self, step: int, losses: Tensor) -> Tensor:
        """Record this step's training losses; return who still takes an optimizer step now."""
        if self.threshold is None:
            return self.active
        below = losses.detach().cpu() < self.threshold
        self.streak = torch.where(below, self.streak + 1, torch.zeros_like(self.streak))
        newly = self.active & (self.streak >= self.patience)
        self.stop_step[newly] = step
        return self.active

    def final_loss(self, losses: Tensor) -> Tensor:
        """``[N]``: each member's training loss at its stopping step (else at the last step)."""
        last = losses.shape[0] - 1
        rows = torch.where(
            self.stop_step >= 0, self.stop_step, torch.full_like(self.stop_step, last)
        )
        return losses[rows, torch.arange(losses.shape[1])].clone()


def relative_change(final: Tensor, initial: Tensor) -> Tensor:
    """``‖W_T − W_0‖_F / ‖W_0‖_F`` per member of stacked parameters ``[N, ...]`` -> ``[N]``.

    ≪ 1: lazy training (the net stays near its random initialization); ≫ 1: the weights were
    driven far from it (over-driven, e.g. Adam steps much larger than the initial weights).
    """
    delta = (final.detach().double() - initial.double()).flatten(1).norm(dim=1)
    return delta / initial.double().flatten(1).norm(dim=1).clamp_min(1e-30)
