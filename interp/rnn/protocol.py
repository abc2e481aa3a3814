"""The step-by-step view of a recurrent network that every RNN analysis in interp uses.

A model is *recurrent* for interp when it exposes three pure functions of tensors:

- ``initial_state(batch) -> h0`` of shape ``[B, H]``,
- ``step(h, x) -> h_next`` with ``h: [B, H]`` and ``x: [B, I]``,
- ``readout(h) -> y`` of shape ``[B, O]`` (the network's output at that state).

The whole state lives in ``h`` (for an LSTM, ``h`` is the concatenation ``[h; c]``), so fixed
points, Jacobians and automata are defined on one vector. ``step`` and ``readout`` must not keep
hidden state between calls, so ``torch.func`` (``vmap``, ``jacrev``, ``functional_call``) applies.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Recurrent(Protocol):
    """A discrete-time dynamical system ``h_t = step(h_{t-1}, x_t)`` with a readout."""

    def initial_state(self, batch: int) -> Tensor:
        """The state before the first input, shape ``[batch, H]``."""
        ...

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        """One update: ``h [B, H]``, ``x [B, I]`` -> next state ``[B, H]``."""
        ...

    def readout(self, h: Tensor) -> Tensor:
        """The output read from a state: ``[B, H]`` -> ``[B, O]`` (also works on ``[..., H]``)."""
        ...


def check_recurrent(model: object) -> Recurrent:
    """Return ``model`` if it implements :class:`Recurrent`, else raise a TypeError saying how."""
    if isinstance(model, Recurrent):
        return model
    missing = [
        name
        for name in ("initial_state", "step", "readout")
        if not callable(getattr(model, name, None))
    ]
    raise TypeError(
        f"{type(model).__name__} is not a recurrent model: it lacks {', '.join(missing)}. "
        "Pass an interp.rnn net, or wrap a torch nn.RNN/GRU/LSTM (or a *Cell) with "
        "interp.rnn.as_recurrent(module, readout=...)."
    )


def state_size(model: Recurrent) -> int:
    """The length ``H`` of the model's state vector."""
    return int(model.initial_state(1).shape[-1])


def unroll(model: Recurrent, x: Tensor, h0: Tensor | None = None) -> Tensor:
    """Run ``model`` over inputs ``x [B, T, I]`` and return every state, ``[B, T, H]``.

    ``states[:, t]`` is the state *after* consuming ``x[:, t]``; ``h0`` (default
    ``model.initial_state(B)``) is the state before ``x[:, 0]`` and is not included.
    """
    check_recurrent(model)
    if not isinstance(x, Tensor) or x.ndim != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"unroll expects inputs of shape [batch, time, input_size], got {shape}")
    batch, steps, _ = x.shape
    h = model.initial_state(batch) if h0 is None else h0
    if h.ndim != 2 or h.shape[0] != batch:
        raise ValueError(f"h0 must have shape [batch={batch}, state_size], got {tuple(h.shape)}")
    states = []
    for t in range(steps):
        h = model.step(h, x[:, t])
        states.append(h)
    if not states:
        return h.new_zeros(batch, 0, h.shape[-1])
    return torch.stack(states, dim=1)
