"""HookedModule: capture activations of any torch module by module path.

Paths are ``named_modules`` names (``"blocks.3"``, ``"encoder.layer.*.output"``); glob patterns
expand against them. Recurrent layers (``nn.RNN``/``nn.GRU``/``nn.LSTM`` and their cells) also
offer ``"<path>.hook_state"``: every time step's state ``[batch, time, state]`` (all layers'
``h`` in order, then, for an LSTM, all layers' ``c``), obtained by
unrolling an equivalent step-by-step cell with the same weights (the fused kernels never show
intermediate states, and an LSTM's cell state ``c`` is part of its state).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack

import torch
from torch import nn

from interp.models.hooks import ActivationCache, resolve_hook_names

STATE_HOOK = "hook_state"
_FUSED = (nn.RNN, nn.GRU, nn.LSTM)


def _first_tensor(output: object) -> torch.Tensor:
    while isinstance(output, tuple | list):
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"module output is {type(output).__name__}, not a tensor")
    return output


class HookedModule:
    """Wrap ``module``; ``run(inputs, capture=[paths])`` returns ``(output, cache)``."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._modules = dict(module.named_modules())
        self._modules.pop("", None)
        self.hook_names = list(self._modules) + [
            f"{path}.{STATE_HOOK}" for path, m in self._modules.items() if isinstance(m, _FUSED)
        ]
        if isinstance(module, _FUSED):
            self.hook_names.append(STATE_HOOK)

    def __repr__(self) -> str:
        return f"HookedModule({type(self.module).__name__}, {len(self._modules)} submodules)"

    def run(
        self, inputs: object, capture: str | Sequence[str] | None = None, **kwargs
    ) -> tuple[object, ActivationCache]:
        """Call the module on ``inputs`` (a tensor, or a tuple of positional args) capturing the
        requested module outputs (first tensor of tuple outputs), detached."""
        names = resolve_hook_names(capture, self.hook_names)
        cache = ActivationCache()
        args = inputs if isinstance(inputs, tuple) else (inputs,)
        with ExitStack() as stack, torch.no_grad():
            for name in names:
                if name == STATE_HOOK or name.endswith("." + STATE_HOOK):
                    path = name[: -len(STATE_HOOK)].rstrip(".")
                    target = self._modules[path] if path else self.module
                    hook = _state_hook(name, cache)
                    handle = target.register_forward_pre_hook(hook, with_kwargs=True)
                else:
                    handle = self._modules[name].register_forward_hook(
                        lambda m, i, o, name=name: cache.__setitem__(
                            name, _first_tensor(o).detach()
                        )
                    )
                stack.callback(handle.remove)
            output = self.module(*args, **kwargs)
        for name, value in cache.items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise FloatingPointError(f"non-finite values (NaN/inf) in activation {name!r}")
        return output, cache


def _state_hook(name: str, cache: ActivationCache):
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        from interp.rnn import as_recurrent, unroll

        x = args[0] if args else kwargs["input"]
        initial = args[1] if len(args) > 1 else kwargs.get("hx")
        if x.dim() == 2:
            raise ValueError(
                f"{name}: per-step capture needs a batched input [batch, time, features]"
            )
        if not getattr(module, "batch_first", False):
            x = x.transpose(0, 1)
        adapter = as_recurrent(module)
        h0 = adapter.from_torch_state(initial) if initial is not None else None
        cache[name] = unroll(adapter, x, h0).detach()

    return hook
