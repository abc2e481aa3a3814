"""Unrolled, step-by-step equivalents of torch's recurrent modules (same weights, same math).

torch's fused ``nn.RNN``/``nn.GRU``/``nn.LSTM`` only return the top layer's outputs and the final
state. :func:`as_recurrent` wraps such a module (or an ``nn.*Cell``) in a module that implements
:class:`interp.rnn.protocol.Recurrent`, so every step's full state is visible and fixed-point or
automaton analyses can differentiate ``step`` with ``torch.func``; :func:`unrolled_forward` is
the fused module's own call computed step by step (what ``HookedModule`` runs to record states).

State layout (one vector per sequence):

- ``nn.RNN`` / ``nn.GRU`` with ``L`` layers: ``[h_0, ..., h_{L-1}]`` (layer 0 first), ``L*H`` values.
- ``nn.LSTM``: ``[h_0, ..., h_{L-1}, c_0, ..., c_{L-1}]``, i.e. ``[h; c]`` with ``h`` of size
  ``proj_size`` when the LSTM has a projection.
- cells: the same with ``L = 1``.

The adapter computes the eval-mode function: inter-layer dropout is never applied.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from interp.rnn.protocol import Recurrent, unroll


def rnn_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    nonlinearity: str = "tanh",
) -> Tensor:
    """Elman update ``φ(W_ih x + b_ih + W_hh h + b_hh)`` as in ``nn.RNNCell``."""
    pre = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def gru_cell(
    x: Tensor,
    h: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
) -> Tensor:
    """GRU update with torch's gate order (reset, update, new) as in ``nn.GRUCell``."""
    i_r, i_z, i_n = F.linear(x, w_ih, b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
    reset = torch.sigmoid(i_r + h_r)
    update = torch.sigmoid(i_z + h_z)
    new = torch.tanh(i_n + reset * h_n)
    return (1 - update) * new + update * h


def lstm_cell(
    x: Tensor,
    h: Tensor,
    c: Tensor,
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor | None = None,
    b_hh: Tensor | None = None,
    w_hr: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """LSTM update with torch's gate order (input, forget, cell, output) and optional projection."""
    i, f, g, o = (F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    if w_hr is not None:
        h = F.linear(h, w_hr)
    return h, c


_FUSED = (nn.RNN, nn.GRU, nn.LSTM)
_CELLS = (nn.RNNCell, nn.GRUCell, nn.LSTMCell)
_ACCEPTED = "nn.RNN, nn.GRU, nn.LSTM, nn.RNNCell, nn.GRUCell, nn.LSTMCell, or a model with initial_state/step/readout"


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.RNN | nn.RNNCell):
        return "rnn_tanh" if module.nonlinearity == "tanh" else "rnn_relu"
    return "gru" if isinstance(module, nn.GRU | nn.GRUCell) else "lstm"


class RecurrentModule(nn.Module):
    """A torch recurrent module seen through the :class:`Recurrent` protocol (build with :func:`as_recurrent`).

    ``module`` keeps its parameters (this wrapper adds none except those of ``readout``), so
    ``functional_call`` works with names like ``"module.weight_hh_l0"``.
    """

    def __init__(
        self, module: nn.Module, readout: Callable[[Tensor], Tensor] | None = None
    ) -> None:
        super().__init__()
        self.module = module
        self.kind = _kind(module)
        self.fused = isinstance(module, _FUSED)
        self.num_layers = module.num_layers if self.fused else 1
        self.hidden_size = module.hidden_size
        proj = getattr(module, "proj_size", 0) or 0
        self.output_size_h = proj if proj > 0 else module.hidden_size
        self.input_size = module.input_size
        layers = self.num_layers
        self.state_size = layers * (
            self.output_size_h + self.hidden_size if self.kind == "lstm" else self.hidden_size
        )
        self.readout_module = readout

    def _weights(self, layer: int) -> tuple[Tensor | None, ...]:
        suffix = f"_l{layer}" if self.fused else ""

        def get(name: str) -> Tensor:
            return getattr(self.module, name)

        bias = self.module.bias
        weights = (
            get(f"weight_ih{suffix}"),
            get(f"weight_hh{suffix}"),
            get(f"bias_ih{suffix}") if bias else None,
            get(f"bias_hh{suffix}") if bias else None,
        )
        if self.kind == "lstm":
            proj = getattr(self.module, "proj_size", 0) or 0
            weights = (*weights, get(f"weight_hr{suffix}") if proj > 0 else None)
        return weights

    def _layer_states(self, h: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        hs = list(h[..., : self.num_layers * self.output_size_h].split(self.output_size_h, dim=-1))
        cs = (
            list(h[..., self.num_layers * self.output_size_h :].split(self.hidden_size, dim=-1))
            if self.kind == "lstm"
            else []
        )
        return hs, cs

    def initial_state(self, batch: int) -> Tensor:
        weight = self._weights(0)[0]
        return torch.zeros(batch, self.state_size, dtype=weight.dtype, device=weight.device)

    def step(self, h: Tensor, x: Tensor) -> Tensor:
        hs, cs = self._layer_states(h)
        inp = x
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            weights = self._weights(layer)
            if self.kind == "lstm":
                inp, c = lstm_cell(inp, hs[layer], cs[layer], *weights)
                new_c.append(c)
            elif self.kind == "gru":
                inp = gru_cell(inp, hs[layer], *weights)
            else:
                inp = rnn_cell(
                    inp,
                    hs[layer],
                    *weights,
                    nonlinearity="tanh" if self.kind == "rnn_tanh" else "relu",
                )
            new_h.append(inp)
        return torch.cat(new_h + new_c, dim=-1)

    def top_output(self, h: Tensor) -> Tensor:
        """The top layer's ``h`` in a state (what the fused module returns as its output)."""
        start = (self.num_layers - 1) * self.output_size_h
        return h[..., start : start + self.output_size_h]

    def readout(self, h: Tensor) -> Tensor:
        top = self.top_output(h)
        return top if self.readout_module is None else self.readout_module(top)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x [B, T, I]`` (always batch first) -> ``(outputs [B, T, O], states [B, T, H])``."""
        states = unroll(self, x)
        return self.readout(states), states

    def to_torch_state(self, h: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """Convert ``[B, H]`` states to torch's layout: ``h_n [L, B, H]`` (LSTM: ``(h_n, c_n)``)."""
        hs, cs = self._layer_states(h)
        if not self.fused:
            return (hs[0], cs[0]) if self.kind == "lstm" else hs[0]
        h_n = torch.stack(hs)
        return (h_n, torch.stack(cs)) if self.kind == "lstm" else h_n

    def from_torch_state(self, state: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        """Inverse of :meth:`to_torch_state`: torch's ``h_0`` (or ``(h_0, c_0)``) -> ``[B, H]``."""
        if self.kind == "lstm":
            h_n, c_n = state
            parts = [*h_n.unbind(0), *c_n.unbind(0)] if self.fused else [h_n, c_n]
        else:
            parts = list(state.unbind(0)) if self.fused else [state]
        return torch.cat(parts, dim=-1)


StepCallback = Callable[[int, Tensor], Tensor | None]


def unrolled_forward(
    module: nn.RNN | nn.GRU | nn.LSTM,
    input: Tensor,
    hx: Tensor | tuple[Tensor, Tensor] | None = None,
    *,
    on_step: StepCallback | None = None,
) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
    """``module(input, hx)`` for a fused ``nn.RNN``/``nn.GRU``/``nn.LSTM``, computed one step at a time.

    Returns exactly what the fused module returns (``output``, ``h_n`` or ``(h_n, c_n)``, in its
    ``batch_first`` layout, unbatched inputs included) from the same weights, but every step's full
    state ``[B, state]`` (``[state]`` when unbatched; layout in the module docstring) passes
    through ``on_step(t, state)``, which may return a replacement state: the later steps,
    ``output`` and ``h_n`` then follow from it. :class:`interp.models.HookedModule` swaps this in for a fused module's ``forward`` so
    the states it records are the ones the outputs come from.
    """
    if not isinstance(module, _FUSED):
        raise TypeError(f"unrolled_forward needs an nn.RNN/GRU/LSTM, got {type(module).__name__}")
    if isinstance(input, nn.utils.rnn.PackedSequence):
        raise TypeError("per-step unrolling does not take a PackedSequence; pass a padded tensor")
    if module.bidirectional:
        raise ValueError("a bidirectional RNN has no causal step function; it cannot be unrolled")
    if module.training and module.dropout and module.num_layers > 1:
        raise ValueError(
            "the unrolled step omits inter-layer dropout; call module.eval() (or set dropout=0)"
        )
    if input.dim() not in (2, 3):
        raise ValueError(
            f"expected input [time, features] or batched [batch, time, features] "
            f"([time, batch, features] without batch_first), got {tuple(input.shape)}"
        )
    adapter = RecurrentModule(module)
    unbatched = input.dim() == 2
    if unbatched:
        x = input.unsqueeze(0)
        if hx is not None:
            hx = tuple(s.unsqueeze(1) for s in hx) if isinstance(hx, tuple) else hx.unsqueeze(1)
    else:
        x = input if module.batch_first else input.transpose(0, 1)
    if x.shape[1] == 0:
        raise ValueError("the input sequence is empty (0 time steps)")
    h = adapter.from_torch_state(hx) if hx is not None else adapter.initial_state(x.shape[0])
    outputs = []
    for t in range(x.shape[1]):
        h = adapter.step(h, x[:, t])
        if on_step is not None:  # unbatched calls see (and edit) a [state] vector
            replaced = on_step(t, h[0] if unbatched else h)
            if replaced is not None:
                h = replaced.unsqueeze(0) if unbatched else replaced
        outputs.append(adapter.top_output(h))
    output = torch.stack(outputs, dim=1)
    final = adapter.to_torch_state(h)
    if unbatched:
        output = output.squeeze(0)
        final = tuple(s.squeeze(1) for s in final) if isinstance(final, tuple) else final.squeeze(1)
    elif not module.batch_first:
        output = output.transpose(0, 1)
    return output, final


def as_recurrent(module: nn.Module, readout: Callable[[Tensor], Tensor] | None = None) -> Recurrent:
    """View ``module`` as a :class:`Recurrent` model with the same weights.

    ``module``: ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` (any ``num_layers``, ``batch_first`` either way,
    ``proj_size`` allowed, not bidirectional) or ``nn.RNNCell`` / ``nn.GRUCell`` / ``nn.LSTMCell``.
    ``readout`` (e.g. the ``nn.Linear`` that follows the RNN) maps the top layer's ``h`` to outputs;
    without it the readout is the top layer's ``h`` itself. Models that already implement the
    protocol are returned unchanged when no readout is given.

    The adapter's ``forward``/``unroll`` take inputs batch first, ``[B, T, I]``, whatever the
    module's ``batch_first``.
    """
    if isinstance(module, _FUSED + _CELLS):
        if isinstance(module, _FUSED) and module.bidirectional:
            raise ValueError(
                "a bidirectional RNN reads the future, so it has no causal step function; "
                "adapt each direction as its own unidirectional module"
            )
        if readout is not None and not callable(readout):
            raise TypeError(
                f"readout must be callable (e.g. an nn.Linear), got {type(readout).__name__}"
            )
        return RecurrentModule(module, readout)
    if isinstance(module, Recurrent):
        if readout is not None:
            raise ValueError(
                f"{type(module).__name__} already has its own readout; do not pass readout="
            )
        return module
    raise TypeError(f"as_recurrent cannot adapt {type(module).__name__}; accepted: {_ACCEPTED}")
