"""Per-member early stopping at a loss threshold, a per-member learning-rate plateau schedule,
and the relative weight change diagnostic.

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


class Plateau:
    """Per-member ``ReduceLROnPlateau`` (mode "min", relative threshold, no cooldown), as
    ``torch.optim.lr_scheduler.ReduceLROnPlateau`` applies it to one optimizer, for each member.

    The "epoch" is a window of ``window`` steps: at the end of each window a member's mean
    training loss over it is the metric; it improves when below ``best · (1 − threshold)``; after
    more than ``patience`` windows without improvement the member's learning-rate factor is
    multiplied by ``factor`` (not below ``min_factor``) and the count restarts. Huang et al. train
    path integration with factor 0.5, patience 40. ``update(step, losses [N])`` -> factors ``[N]``.
    """

    def __init__(
        self,
        n_models: int,
        *,
        factor: float = 0.5,
        patience: int = 40,
        window: int = 1,
        threshold: float = 1e-4,
        min_factor: float = 0.0,
    ) -> None:
        if not 0 < factor < 1 or patience < 0 or window < 1 or threshold < 0 or min_factor < 0:
            raise ValueError(
                "lr_plateau needs 0 < factor < 1, patience >= 0, window >= 1, threshold >= 0 and "
                f"min_factor >= 0; got factor={factor}, patience={patience}, window={window}, "
                f"threshold={threshold}, min_factor={min_factor}"
            )
        self.factor, self.patience, self.window = factor, patience, window
        self.threshold, self.min_factor = threshold, min_factor
        self.scale = torch.ones(n_models, dtype=torch.float64)
        self.best = torch.full((n_models,), float("inf"), dtype=torch.float64)
        self.bad = torch.zeros(n_models, dtype=torch.long)
        self._sum = torch.zeros(n_models, dtype=torch.float64)

    def update(self, step: int, losses: Tensor) -> Tensor:
        """Add this step's losses; at a window's end, judge it. Returns the current factors."""
        self._sum += losses.detach().cpu().double()
        if (step + 1) % self.window:
            return self.scale
        mean, self._sum = self._sum / self.window, torch.zeros_like(self._sum)
        better = mean < self.best * (1 - self.threshold)
        self.best = torch.where(better, mean, self.best)
        self.bad = torch.where(better, torch.zeros_like(self.bad), self.bad + 1)
        reduce = self.bad > self.patience
        lowered = (self.scale * self.factor).clamp_min(self.min_factor)
        self.scale = torch.where(reduce, lowered, self.scale)
        self.bad[reduce] = 0
        return self.scale


def relative_change(final: Tensor, initial: Tensor) -> Tensor:
    """``‖W_T − W_0‖_F / ‖W_0‖_F`` per member of stacked parameters ``[N, ...]`` -> ``[N]``.

    ≪ 1: lazy training (the net stays near its random initialization); ≫ 1: the weights were
    driven far from it (over-driven, e.g. Adam steps much larger than the initial weights).
    """
    delta = (final.detach().double() - initial.double()).flatten(1).norm(dim=1)
    return delta / initial.double().flatten(1).norm(dim=1).clamp_min(1e-30)
