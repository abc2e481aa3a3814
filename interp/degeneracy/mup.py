"""μP leaky-tanh RNN: the width-scaled network of Huang et al. (arXiv 2410.03972, NeurIPS 2025).

The paper scales width under the maximal-update parameterization (μP) with a fixed
feature-learning strength ``γ``, so that a wider net is neither lazier nor more over-driven::

    h(t+1) − h(t) = τ ( −h(t) + (1/N) J φ(h(t)) + U x(t) ),      φ = tanh, τ = 0.1
    f(t)          = W_readout φ(h(t)) / (γ N)
    η             = γ η0                                          (the optimizer's step)

with ``J_ij ~ N(0, N)`` (variance ``N``, so ``(1/N) J`` has entries of variance ``1/N``: the
usual O(1) recurrent drive at initialization), ``U_ij ~ N(0, 1)``, ``W_readout ~ N(0, 1)`` and
``h(0) = 0``. There is no bias (the equations have none). Varying ``γ`` at fixed width is the
paper's feature-learning axis; at fixed ``γ`` the output starts at ``O(1/(γ √N))`` and every layer
moves by ``O(1)`` in function space per step under Adam, at every width.

Parameter names follow the other kinds so weight metrics apply unchanged: ``weight_hh`` holds
``J`` (the effective recurrent matrix is ``W_h = J / N``, see :meth:`MuPLeakyNet.recurrent_matrix`),
``weight_ih`` holds ``U`` and ``out.weight`` holds ``W_readout``. ``lr_scale`` (= ``γ``) tells the
ensemble trainer to use ``η = γ η0``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from interp.rnn.nets import RecurrentNet, register_net

KIND = "mup_leaky"


class MuPLeakyNet(RecurrentNet):
    """Leaky tanh RNN in μP (see the module docstring for the equations and initialization)."""

    kind = KIND

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        gamma: float = 1.0,
        tau: float = 0.1,
    ) -> None:
        for label, value in (("gamma", gamma), ("tau", tau)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{label} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{label} must be finite and > 0, got {value!r}")
        if tau > 1:
            raise ValueError(f"tau must be in (0, 1] (the Euler step of the leak), got {tau!r}")
        super().__init__(input_size, hidden_size, output_size, gamma=float(gamma), tau=float(tau))
        self.gamma, self.tau = float(gamma), float(tau)
        n = hidden_size
        self.weight_hh = nn.Parameter(torch.randn(n, n) * math.sqrt(n))  # J_ij ~ N(0, N)
        self.weight_ih = nn.Parameter(torch.randn(n, input_size))  # U_ij ~ N(0, 1)
        self.out = nn.Linear(n, output_size, bias=False)
        with torch.no_grad():
            self.out.weight.normal_()  # W_readout ~ N(0, 1)

    @property
    def lr_scale(self) -> float:
        """The factor of the learning rate under μP: ``η = γ η0``."""
        return self.gamma

    def recurrent_matrix(self, weight_hh: Tensor | None = None) -> Tensor:
        """The effective recurrent matrix ``W_h = J / N`` (of this net, or of a given ``J``)."""
        j = self.weight_hh if weight_hh is None else weight_hh
        return j / self.hidden_size

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        drive = torch.tanh(h) @ self.weight_hh.mT / self.hidden_size + x @ self.weight_ih.mT
        return h + self.tau * (drive - h)

    def readout(self, h: Tensor) -> Tensor:
        return torch.tanh(h) @ self.out.weight.mT / (self.gamma * self.hidden_size)


register_net(KIND, MuPLeakyNet)
