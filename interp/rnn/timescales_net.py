"""The leaky RNN of Khajehabdollahi et al. 2023 with one trainable time constant per neuron.

Kind ``timescale_rnn``::

    h ← LeakyReLU((1 − 1/τ) ⊙ h + (W_hh h + b + W_in x) / τ)

with ``τ`` per neuron, trainable, clamped to ``τ ≥ 1`` (in the forward pass and after every
optimiser step), initialised ``1 + U(0, 1)``; the diagonal of ``W_hh`` is zeroed in every forward
pass (no self-connections); the readout is linear, two logits per head. The paper's initial
state is ``0.1·U(0, 1)`` per sequence: :func:`~interp.rnn.timescales_training.train_curriculum`
draws it per batch from its seeded generator; :meth:`initial_state` (the protocol's, which has no
generator) returns its mean ``0.05``. ``negative_slope`` is LeakyReLU's (torch's default 0.01;
``1.0`` makes the net linear, which the validation tests use).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.errors import InvalidArgumentError
from interp.rnn.nets import RecurrentNet, register_net


class TimescaleRNN(RecurrentNet):
    """Leaky LeakyReLU RNN with per-neuron ``τ ≥ 1`` and no self-connections."""

    kind = "timescale_rnn"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        negative_slope: float = 0.01,
        train_tau: bool = True,
    ) -> None:
        if not 0 <= negative_slope <= 1:
            raise InvalidArgumentError(f"negative_slope must be in [0, 1], got {negative_slope!r}")
        super().__init__(
            input_size,
            hidden_size,
            output_size,
            negative_slope=negative_slope,
            train_tau=train_tau,
        )
        self.negative_slope = negative_slope
        bound = 1 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound))
        self.tau = nn.Parameter(1 + torch.rand(hidden_size), requires_grad=train_tau)

    @property
    def time_constants(self) -> Tensor:
        """τ per neuron (clamped to ≥ 1), in steps."""
        return self.tau.clamp(min=1.0)

    def recurrent_weight(self) -> Tensor:
        """``W_hh`` with its diagonal zeroed."""
        return self.weight_hh * (1 - torch.eye(self.hidden_size, dtype=self.weight_hh.dtype))

    def initial_state(self, batch: int) -> Tensor:
        weight = self.weight_hh
        return torch.full((batch, self.hidden_size), 0.05, dtype=weight.dtype, device=weight.device)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        inv_tau = 1 / self.time_constants
        drive = F.linear(h, self.recurrent_weight(), self.bias) + F.linear(x, self.weight_ih)
        return F.leaky_relu((1 - inv_tau) * h + inv_tau * drive, self.negative_slope)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project ``τ`` back to ``τ ≥ 1`` (after an optimiser step)."""
        self.tau.clamp_(min=1.0)


register_net("timescale_rnn", TimescaleRNN)
