"""Hook sites of the native backend: where each hook name lives in a Hugging Face model, and the
PyTorch hooks that capture and edit it.

A site is a module boundary: the output of a module (``output``; times a family multiplier so
that the value is what enters the residual stream), the first input of a module (``input``), or
the per-head results of the attention output projection (``result``). A hook is registered only
where the run captures or edits that name. An edited value is written back (divided by the
multiplier, flattened back from heads), and a capture stores the edited value.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import torch
from torch import nn

from interp.models.edits import apply_edits
from interp.models.families import get_submodule
from interp.models.hf_compat import first


def _replace_first(output: object, value: torch.Tensor) -> object:
    return (value, *output[1:]) if isinstance(output, tuple) else value


class HookSites:
    """The capture/edit hooks of one forward request (see :class:`interp.models.hooked.Forward`)."""

    def __init__(self, stack: ExitStack, request, captures: list[str] | None = None) -> None:
        self.stack = stack
        self.request = request
        self.wanted = set(request.names if captures is None else captures)
        self.edits = request.plan.edits
        self.outputs = request.plan.outputs
        self.detach = request.plan.detach
        self.shape = tuple(request.tokens.shape)
        self.layers = {
            name.split(".", 2)[1]
            for name in [*self.wanted, *self.edits]
            if name.startswith("blocks.")
        }

    def wants_layer(self, prefix: str) -> bool:
        return prefix.split(".")[1] in self.layers

    def blocks(self, layers: nn.ModuleList) -> Iterator[tuple[int, nn.Module, str]]:
        """``(layer, block, "blocks.{layer}.")`` for each layer this request touches, with the
        block's residual hooks (``hook_resid_pre``/``hook_resid_post``) already installed."""
        for layer, block in enumerate(layers):
            prefix = f"blocks.{layer}."
            if not self.wants_layer(prefix):
                continue
            self.input(prefix + "hook_resid_pre", block)
            self.output(prefix + "hook_resid_post", layers, str(layer))
            yield layer, block, prefix

    def _active(self, name: str) -> tuple[bool, list]:
        return name in self.wanted, self.edits.get(name, [])

    def _store(self, name: str, value: torch.Tensor) -> None:
        self.outputs[name] = value.detach() if self.detach else value

    def _positions(self, value: torch.Tensor) -> torch.Tensor:
        """``[batch * pos, ...]`` (layers that flatten their input: OPT's MLP) as ``[batch, pos,
        ...]``; anything else unchanged."""
        batch, length = self.shape
        if value.dim() == 2 and value.shape[0] == batch * length and batch > 0:
            return value.reshape(batch, length, -1)
        return value

    def output(
        self,
        name: str,
        root: nn.Module,
        path: str,
        factor: float | None = None,
        *,
        copy: bool = False,
    ) -> None:
        """``path``'s output (times ``factor``). ``copy`` where the model may add into that output
        in place after the hook ran (Falcon's parallel block does ``mlp_out += attn``)."""
        capture, edits = self._active(name)
        if not (capture or edits):
            return
        ctx = self.request.context

        def hook(module, inputs, output):
            raw = first(output)
            value = self._positions(raw)
            value = value * factor if factor is not None else value
            if edits:
                value = apply_edits(edits, value, ctx(name))
            if capture:
                shared = copy and not edits and factor is None  # still the module's own tensor
                self._store(name, value.clone() if shared else value)
            if edits:
                new = value / factor if factor is not None else value
                return _replace_first(output, new.reshape(raw.shape))
            return None

        handle = get_submodule(root, path).register_forward_hook(hook)
        self.stack.callback(handle.remove)

    def input(self, name: str, root: nn.Module, path: str = "", *, heads: int = 0) -> None:
        """The first input of ``path`` (``root`` itself when empty); ``heads > 0`` shows it as
        ``[..., heads, d_head]`` (``attn.hook_z``)."""
        capture, edits = self._active(name)
        if not (capture or edits):
            return
        ctx = self.request.context

        def hook(module, args, kwargs):
            from_args = bool(args)
            raw = (
                args[0]
                if from_args
                else kwargs["hidden_states" if "hidden_states" in kwargs else "input"]
            )
            value = self._positions(raw)
            if heads:
                value = value.reshape(*value.shape[:-1], heads, -1)
            if edits:
                value = apply_edits(edits, value, ctx(name))
            if capture:
                self._store(name, value)
            if not edits:
                return None
            new = value.reshape(raw.shape)
            if from_args:
                return (new, *args[1:]), kwargs
            key = "hidden_states" if "hidden_states" in kwargs else "input"
            return args, {**kwargs, key: new}

        module = get_submodule(root, path) if path else root
        handle = module.register_forward_pre_hook(hook, with_kwargs=True)
        self.stack.callback(handle.remove)

    def result(self, name: str, root: nn.Module, path: str, W_O: torch.Tensor) -> None:
        """Per-head outputs after the output projection, ``[batch, pos, heads, d_model]``
        (``z_h @ W_O[h]``; the bias is not split among heads). An edit replaces the projection's
        output by the sum of the edited results plus the bias."""
        capture, edits = self._active(name)
        if not (capture or edits):
            return
        ctx = self.request.context
        module = get_submodule(root, path)

        def hook(module, inputs, output):
            z = self._positions(inputs[0])
            z = z.reshape(*z.shape[:-1], W_O.shape[0], W_O.shape[1])
            value = torch.einsum("...hd,hdm->...hm", z, W_O.to(z.device, z.dtype))
            if edits:
                value = apply_edits(edits, value, ctx(name))
            if capture:
                self._store(name, value)
            if not edits:
                return None
            bias = getattr(module, "bias", None)
            summed = value.sum(-2) + (bias if bias is not None else 0)
            return summed.reshape(output.shape)

        self.stack.callback(module.register_forward_hook(hook).remove)
