"""Small trainable recurrent networks that implement the :class:`~interp.rnn.protocol.Recurrent` protocol.

Kinds (``make_net(kind, input_size, hidden_size, output_size)``):

- ``rnn_tanh`` / ``rnn_relu``: Elman RNN ``h <- φ(W h + U x + b)``.
- ``gru``: torch's GRU equations (gate order reset, update, new).
- ``lstm``: torch's LSTM equations; the state is ``[h; c]`` (``2 * hidden_size`` values), the
  readout reads ``h``.
- ``leaky``: ``h <- (1 - 1/τ) h + φ(W h + U x + b) / τ`` with one trainable time constant per
  neuron, ``τ = 1 + softplus(ρ) >= 1`` (Khajehabdollahi et al. 2023; ``nonlinearity`` "relu" as in
  the paper, or "tanh").

Every net's ``forward(x [B, T, I])`` returns ``(outputs [B, T, O], states [B, T, H])`` and the
``step`` uses only parameters (no buffers or in-place state), so ``torch.func.functional_call``,
``vmap`` and ``stack_module_state`` work on it. ``net.config`` rebuilds the architecture via
``make_net(**config)``; other modules can add kinds with :func:`register_net`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.models.recurrent import gru_cell, lstm_cell, rnn_cell
from interp.rnn.protocol import unroll

NONLINEARITIES = ("tanh", "relu")


def _uniform(*shape: int, bound: float) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class RecurrentNet(nn.Module):
    """Base class: a recurrent core (subclass ``step``) plus a linear readout ``out``."""

    kind = "base"

    def __init__(self, input_size: int, hidden_size: int, output_size: int, **options: Any) -> None:
        super().__init__()
        for label, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("output_size", output_size),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        self._options = options
        self.out = nn.Linear(hidden_size, output_size)

    @property
    def config(self) -> dict[str, Any]:
        """Everything ``make_net(**config)`` needs to rebuild this architecture."""
        return {
            "kind": self.kind,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "output_size": self.output_size,
            **self._options,
        }

    @property
    def state_size(self) -> int:
        return self.hidden_size

    def initial_state(self, batch: int) -> Tensor:
        weight = self.out.weight
        return torch.zeros(batch, self.state_size, dtype=weight.dtype, device=weight.device)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def hidden(self, h: Tensor) -> Tensor:
        """The part of the state the readout sees (all of it, except for the LSTM's cell)."""
        return h

    def readout(self, h: Tensor) -> Tensor:
        return self.out(self.hidden(h))

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x [B, T, I]`` -> ``(outputs [B, T, O], states [B, T, H])``."""
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"expected inputs [batch, time, {self.input_size}], got {tuple(x.shape)}"
            )
        states = unroll(self, x, h0)
        return self.readout(states), states

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())


class ElmanNet(RecurrentNet):
    """Vanilla RNN ``h <- φ(W_hh h + W_ih x + b)``, torch's default uniform initialisation."""

    def __init__(
        self, input_size: int, hidden_size: int, output_size: int, *, nonlinearity: str = "tanh"
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, output_size)
        self.kind = f"rnn_{nonlinearity}"
        self.nonlinearity = nonlinearity
        bound = 1 / math.sqrt(hidden_size)
        self.weight_ih = _uniform(hidden_size, input_size, bound=bound)
        self.weight_hh = _uniform(hidden_size, hidden_size, bound=bound)
        self.bias = _uniform(hidden_size, bound=bound)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        return rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias, None, self.nonlinearity)


class GRUNet(RecurrentNet):
    """GRU with torch's equations and initialisation."""

    kind = "gru"

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__(input_size, hidden_size, output_size)
        bound = 1 / math.sqrt(hidden_size)
        self.weight_ih = _uniform(3 * hidden_size, input_size, bound=bound)
        self.weight_hh = _uniform(3 * hidden_size, hidden_size, bound=bound)
        self.bias_ih = _uniform(3 * hidden_size, bound=bound)
        self.bias_hh = _uniform(3 * hidden_size, bound=bound)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        return gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class LSTMNet(RecurrentNet):
    """LSTM with torch's equations; state ``[h; c]``; forget-gate bias starts at 1."""

    kind = "lstm"

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__(input_size, hidden_size, output_size)
        bound = 1 / math.sqrt(hidden_size)
        self.weight_ih = _uniform(4 * hidden_size, input_size, bound=bound)
        self.weight_hh = _uniform(4 * hidden_size, hidden_size, bound=bound)
        self.bias_ih = _uniform(4 * hidden_size, bound=bound)
        self.bias_hh = _uniform(4 * hidden_size, bound=bound)
        with torch.no_grad():
            self.bias_ih[hidden_size : 2 * hidden_size] += 1.0

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    def hidden(self, h: Tensor) -> Tensor:
        return h[..., : self.hidden_size]

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        hidden, cell = h[..., : self.hidden_size], h[..., self.hidden_size :]
        hidden, cell = lstm_cell(
            x, hidden, cell, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh
        )
        return torch.cat([hidden, cell], dim=-1)


class LeakyNet(RecurrentNet):
    """Leaky RNN ``h <- (1 - 1/τ) h + φ(W h + U x + b)/τ``; ``τ = 1 + softplus(ρ)`` per neuron."""

    kind = "leaky"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        nonlinearity: str = "relu",
        tau_init: float = 2.0,
    ) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
        if not tau_init > 1:
            raise ValueError(f"tau_init must be > 1 (τ = 1 + softplus(ρ)), got {tau_init!r}")
        super().__init__(
            input_size, hidden_size, output_size, nonlinearity=nonlinearity, tau_init=tau_init
        )
        self.nonlinearity = nonlinearity
        bound = 1 / math.sqrt(hidden_size)
        self.weight_ih = _uniform(hidden_size, input_size, bound=bound)
        self.weight_hh = _uniform(hidden_size, hidden_size, bound=bound)
        self.bias = _uniform(hidden_size, bound=bound)
        rho = math.log(math.expm1(tau_init - 1))  # inverse softplus
        self.tau_raw = nn.Parameter(torch.full((hidden_size,), rho))

    @property
    def time_constants(self) -> Tensor:
        """τ per neuron (>= 1), in steps."""
        return 1 + F.softplus(self.tau_raw)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        drive = rnn_cell(x, h, self.weight_ih, self.weight_hh, self.bias, None, self.nonlinearity)
        inv_tau = 1 / self.time_constants
        return (1 - inv_tau) * h + inv_tau * drive


NetFactory = Callable[..., RecurrentNet]

_NETS: dict[str, NetFactory] = {
    "rnn_tanh": lambda i, h, o: ElmanNet(i, h, o, nonlinearity="tanh"),
    "rnn_relu": lambda i, h, o: ElmanNet(i, h, o, nonlinearity="relu"),
    "gru": GRUNet,
    "lstm": LSTMNet,
    "leaky": LeakyNet,
}
# Kinds defined elsewhere, registered when their module is imported.
_LAZY = {
    "state_regularized": "interp.rnn.state_regularized",
    "noise_rnn": "interp.rnn.hmm_net",
    "timescale_rnn": "interp.rnn.timescales_net",
}


def register_net(kind: str, factory: NetFactory) -> None:
    """Add a kind: ``factory(input_size, hidden_size, output_size, **options) -> RecurrentNet``.

    The net's ``config`` must contain ``kind`` and its options so ``make_net(**config)`` rebuilds it.
    """
    _NETS[kind] = factory


def known_nets() -> list[str]:
    return sorted(set(_NETS) | set(_LAZY))


def make_net(
    kind: str,
    input_size: int,
    hidden_size: int,
    output_size: int,
    *,
    seed: int | None = None,
    **options: Any,
) -> RecurrentNet:
    """Build a net of ``kind`` (see module docstring); ``seed`` makes the initial weights reproducible."""
    if kind not in _NETS and kind in _LAZY:
        importlib.import_module(_LAZY[kind])  # the module registers the kind
    if kind not in _NETS:
        raise ValueError(f"unknown net kind {kind!r}; known kinds: {', '.join(known_nets())}")
    if seed is None:
        return _build(kind, input_size, hidden_size, output_size, options)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(kind, input_size, hidden_size, output_size, options)


def _build(
    kind: str, input_size: int, hidden_size: int, output_size: int, options: dict[str, Any]
) -> RecurrentNet:
    try:
        return _NETS[kind](input_size, hidden_size, output_size, **options)
    except TypeError as error:
        raise TypeError(f"bad options for net kind {kind!r}: {error}") from error
