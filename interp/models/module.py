"""HookedModule: capture (and edit) activations of any torch module by module path.

Hook names, in TransformerLens style:

- ``"<path>"``: the output of the submodule at that ``named_modules`` path (``"blocks.3"``; the
  first tensor of a tuple output). Glob patterns (``"encoder.layer.*.output"``) expand against
  the names.
- ``"<path>.hook_state"`` (``"hook_state"`` for the wrapped module itself), for every recurrent
  part: the state after each step, stacked over time, ``[batch, time, state]`` (``[time, state]``
  for unbatched calls). What counts as a step:

  - a fused ``nn.RNN``/``nn.GRU``/``nn.LSTM`` (not bidirectional): for the run its ``forward`` is
    swapped for :func:`interp.models.recurrent.unrolled_forward`, the step-by-step computation
    with the same weights, so the outputs *come from* the recorded states (an edit changes them).
    The state is all layers' ``h`` (layer 0 first), then for an LSTM all layers' ``c``.
  - an ``nn.RNNCell``/``nn.GRUCell``/``nn.LSTMCell``: every call (a cell driven by a Python loop);
    an LSTM cell's state is ``[h; c]``. A cell (or a ``step``) used for two sequences in one call
    records both, one after the other, on the same time axis.
  - a module with ``initial_state``/``step``/``readout`` (:class:`interp.rnn.protocol.Recurrent`:
    interp's nets, the state-regularized cell, ``as_recurrent`` adapters, your own): every call of
    its ``step``.

``run(inputs, capture=[...], edit={"rnn.hook_state": fn})`` calls ``fn(state, t)`` on the state of
step ``t`` before anything else sees it; a returned tensor (same shape) replaces the state, so the
following steps and the outputs are computed from it (``None`` keeps it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack

import torch
from torch import Tensor, nn

from interp._checks import all_finite
from interp.models.hooks import ActivationCache, resolve_hook_names
from interp.models.recurrent import _CELLS, _FUSED, unrolled_forward
from interp.rnn.protocol import Recurrent

STATE_HOOK = "hook_state"
_MISSING = object()

StateEdit = Callable[[Tensor, int], Tensor | None]


def _first_tensor(output: object) -> torch.Tensor:
    while isinstance(output, tuple | list):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"module output is {type(output).__name__}, not a tensor")
    return output


def _stepper(module: nn.Module) -> str | None:
    """How ``module`` takes steps: "fused", "cell", "step" (the protocol), or None."""
    if isinstance(module, _FUSED):
        return None if module.bidirectional else "fused"
    if isinstance(module, _CELLS):
        return "cell"
    return "step" if isinstance(module, Recurrent) else None


class _Steps:
    """Collects one recurrent part's states, step by step, applying an optional edit first."""

    def __init__(self, name: str, edit: StateEdit | None) -> None:
        self.name, self.edit, self.states = name, edit, []

    def __call__(self, t: int, state: Tensor) -> Tensor:
        if self.edit is not None:
            new = self.edit(state, t)
            if new is not None:
                if not isinstance(new, Tensor) or new.shape != state.shape:
                    raise ValueError(
                        f"edit of {self.name!r} at step {t} must return None or a tensor of "
                        f"shape {tuple(state.shape)}, got {getattr(new, 'shape', type(new).__name__)}"
                    )
                state = new
        self.states.append(state.detach())
        return state

    def stacked(self) -> Tensor:
        return torch.stack(self.states, dim=1 if self.states[0].dim() > 1 else 0)


def _replace_attribute(stack: ExitStack, module: nn.Module, name: str, value: object) -> None:
    """Set an instance attribute (shadowing the class's method) until ``stack`` closes."""
    previous = module.__dict__.get(name, _MISSING)
    setattr(module, name, value)
    if previous is _MISSING:
        stack.callback(delattr, module, name)
    else:
        stack.callback(setattr, module, name, previous)


def _attach(stack: ExitStack, module: nn.Module, kind: str, steps: _Steps) -> None:
    if kind == "fused":

        def forward(*args, **kwargs):
            if steps.states:
                raise RuntimeError(
                    f"{steps.name!r}: the recurrent module ran a second time in this call; "
                    "hook_state records one sequence per run, so run each sequence separately "
                    "(or capture the module's outputs by its path instead)"
                )
            return unrolled_forward(module, *args, on_step=steps, **kwargs)

        _replace_attribute(stack, module, "forward", forward)
    elif kind == "cell":

        def hook(cell: nn.Module, args: tuple, output: Tensor | tuple[Tensor, Tensor]):
            pair = isinstance(output, tuple)
            state = torch.cat(output, dim=-1) if pair else output
            new = steps(len(steps.states), state)
            if steps.edit is None:
                return None
            # An LSTM cell's state is a concatenated copy of (h, c): hand the (possibly in-place
            # edited) copy back even when the edit returned the same tensor or None.
            return tuple(new.split(cell.hidden_size, dim=-1)) if pair else new

        stack.callback(module.register_forward_hook(hook).remove)
    else:
        original = module.step

        def step(h: Tensor, x: Tensor) -> Tensor:
            return steps(len(steps.states), original(h, x))

        _replace_attribute(stack, module, "step", step)


class HookedModule:
    """Wrap ``module``; ``run(inputs, capture=[names], edit={name: fn})`` returns ``(output, cache)``.

    See the module docstring for the names (module paths and ``<path>.hook_state``).
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._modules = dict(module.named_modules())
        self._steppers = {
            path: kind for path, m in self._modules.items() if (kind := _stepper(m)) is not None
        }
        self._modules.pop("", None)
        self.hook_names = list(self._modules) + [
            f"{path}.{STATE_HOOK}" if path else STATE_HOOK for path in self._steppers
        ]

    def __repr__(self) -> str:
        return f"HookedModule({type(self.module).__name__}, {len(self._modules)} submodules)"

    def _state_path(self, name: str) -> str | None:
        if name == STATE_HOOK:
            return ""
        return name[: -len(STATE_HOOK) - 1] if name.endswith("." + STATE_HOOK) else None

    def run(
        self,
        inputs: object,
        capture: str | Sequence[str] | None = None,
        *,
        edit: Mapping[str, StateEdit] | None = None,
        **kwargs,
    ) -> tuple[object, ActivationCache]:
        """Call the module on ``inputs`` (a tensor, or a tuple of positional args; ``kwargs`` go
        to the call too), capturing the requested names, detached, without gradients.

        ``edit`` maps ``hook_state`` names (exact, no patterns) to ``fn(state, t)``. A name asked
        for exactly whose module did not run raises ``KeyError``; names a glob pattern expanded to
        are left out of the cache when their module did not run.
        """
        names = resolve_hook_names(capture, self.hook_names)
        exact = {capture} if isinstance(capture, str) else set(capture or ())
        edits = dict(edit or {})
        for name in edits:
            if name not in self.hook_names or self._state_path(name) is None:
                states = [n for n in self.hook_names if self._state_path(n) is not None]
                raise KeyError(
                    f"edit applies to recurrent states; {name!r} is not one of {states or 'none'}"
                )
        cache = ActivationCache()
        steps: dict[str, _Steps] = {}
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        with ExitStack() as stack, torch.no_grad():
            for name in dict.fromkeys([*names, *edits]):
                path = self._state_path(name)
                if path is not None:
                    target = self._modules[path] if path else self.module
                    steps[name] = _Steps(name, edits.get(name))
                    _attach(stack, target, self._steppers[path], steps[name])
                else:
                    handle = self._modules[name].register_forward_hook(
                        lambda m, i, o, name=name: cache.__setitem__(
                            name, _first_tensor(o).detach()
                        )
                    )
                    stack.callback(handle.remove)
            output = self.module(*args, **kwargs)
        for name in names:
            if name in steps and steps[name].states:
                cache[name] = steps[name].stacked()
        for name in names:
            if name not in cache:
                if name in exact:
                    raise KeyError(f"{name!r} was requested but its module never ran in this call")
                continue
            if not all_finite(cache[name]):
                raise FloatingPointError(f"non-finite values (NaN/inf) in activation {name!r}")
        return output, cache
