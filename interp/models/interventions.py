"""Head ablations on a HookedLM's wrapped HF model, as context managers that always clean up.

Two standard ways to switch a head off:

- ``"uniform"`` (Wu et al. 2024's masking of retrieval heads): the head's query is zeroed by a
  forward hook on the query projection (for fused q/k/v projections, on the query columns). Every
  attention logit is then 0 (rotary embeddings rotate 0 to 0), so the head attends uniformly over
  the keys it may see and still writes the mean of their values.
- ``"zero"`` (zero-ablation): the head's output ``z`` is zeroed before ``W_O`` by a pre-hook on
  the output projection, so the head writes nothing to the residual stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Literal

import torch

from interp.models.architectures import Architecture, get_submodule

AblationMethod = Literal["uniform", "zero"]
ABLATION_METHODS = ("uniform", "zero")


def _query_columns(arch: Architecture, d_head: int, head: int) -> slice:
    if arch.qkv == "neox":  # output features [head, (q, k, v), d_head]
        return slice(head * 3 * d_head, head * 3 * d_head + d_head)
    return slice(head * d_head, (head + 1) * d_head)  # separate q_proj, or gpt2's [q | k | v]


def _group_by_layer(model, heads: Sequence[tuple[int, int]]) -> dict[int, list[int]]:
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        if not (0 <= layer < model.n_layers and 0 <= head < model.n_heads):
            raise ValueError(
                f"head (layer={layer}, head={head}) outside {model.n_layers} layers x "
                f"{model.n_heads} heads; pass (layer, head) pairs"
            )
        by_layer.setdefault(int(layer), []).append(int(head))
    return by_layer


@contextmanager
def ablate_heads(
    model, heads: Sequence[tuple[int, int]], method: AblationMethod = "uniform"
) -> Iterator[None]:
    """Within the block, every ``(layer, head)`` in ``heads`` is ablated by ``method``."""
    if method not in ABLATION_METHODS:
        raise ValueError(
            f"unknown ablation method {method!r}; accepted: {', '.join(ABLATION_METHODS)}"
        )
    arch = model.arch
    layers = get_submodule(model.model, arch.layers)
    with ExitStack() as stack:
        for layer, chosen in _group_by_layer(model, heads).items():
            if method == "uniform":
                path = arch.q_proj if arch.qkv == "separate" else arch.fused_qkv
                module = get_submodule(layers[layer], path)
                width = module.weight.shape[1] if arch.qkv == "gpt2" else module.weight.shape[0]
                keep = torch.ones(width, device=model.device, dtype=model.dtype)
                for head in chosen:
                    keep[_query_columns(arch, model.d_head, head)] = 0.0

                def zero_queries(module, inputs, output, keep=keep):
                    return output * keep

                stack.callback(module.register_forward_hook(zero_queries).remove)
            else:
                module = get_submodule(layers[layer], arch.o_proj)
                keep = torch.ones(model.n_heads, 1, device=model.device, dtype=model.dtype)
                keep[chosen] = 0.0

                def zero_outputs(module, args, keep=keep):
                    z = args[0]
                    heads_view = z.reshape(*z.shape[:-1], keep.shape[0], -1) * keep
                    return (heads_view.reshape(z.shape), *args[1:])

                stack.callback(module.register_forward_pre_hook(zero_outputs).remove)
        yield
