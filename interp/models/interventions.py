"""Head ablations, as context managers that always clean up.

Two standard ways to switch a head off:

- ``"uniform"`` (Wu et al. 2024's masking of retrieval heads): the head's query is zeroed as the
  softmax sees it (after any q norm and rotary), so every attention logit is 0 and the head attends
  uniformly over the keys it may see, still writing the mean of their values. Zeroing the query
  projection's output instead would be wrong wherever a norm spans several heads (OLMo-2).
- ``"zero"`` (zero-ablation): the head's output ``z`` is zeroed before ``W_O`` by a pre-hook on
  the output projection, so the head writes nothing to the residual stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Literal

import torch
from torch import nn

from interp.errors import InvalidArgumentError

AblationMethod = Literal["uniform", "zero"]
ABLATION_METHODS = ("uniform", "zero")


def group_heads_by_layer(model, heads: Sequence[tuple[int, int]]) -> dict[int, list[int]]:
    """``{layer: [heads]}`` from ``(layer, head)`` pairs, each checked against the model's size."""
    by_layer: dict[int, list[int]] = {}
    for pair in heads:
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise InvalidArgumentError(f"heads must be (layer, head) pairs, got {pair!r}")
        layer, head = (int(v) for v in pair)
        if not (0 <= layer < model.n_layers and 0 <= head < model.n_heads):
            raise InvalidArgumentError(
                f"head (layer={layer}, head={head}) outside {model.n_layers} layers x "
                f"{model.n_heads} heads; pass (layer, head) pairs"
            )
        by_layer.setdefault(layer, []).append(head)
    return by_layer


def zero_head_outputs(stack: ExitStack, o_proj: nn.Module, heads: list[int], n_heads: int) -> None:
    """Zero ``heads``' slices of the output projection's input (``z``) until ``stack`` closes."""
    weight = o_proj.weight
    keep = torch.ones(n_heads, 1, device=weight.device, dtype=weight.dtype)
    keep[heads] = 0.0

    def zero_outputs(module, args, keep=keep):
        z = args[0]
        heads_view = z.reshape(*z.shape[:-1], keep.shape[0], -1) * keep
        return (heads_view.reshape(z.shape), *args[1:])

    stack.callback(o_proj.register_forward_pre_hook(zero_outputs).remove)


@contextmanager
def probe_ablation(
    probes: Sequence[object],
    o_projs: Sequence[nn.Module],
    heads: dict[int, list[int]],
    method: AblationMethod,
    n_heads: int,
) -> Iterator[None]:
    """Ablate through the attention probes (``"uniform"``) or the output projections
    (``"zero"``) of a model wrapped with interp's attention function."""
    with ExitStack() as stack:
        for layer, chosen in heads.items():
            if method == "uniform":
                probe = probes[layer]
                before = list(probe.zero_heads)
                probe.zero_heads = sorted({*before, *chosen})
                stack.callback(setattr, probe, "zero_heads", before)
            else:
                zero_head_outputs(stack, o_projs[layer], chosen, n_heads)
        yield
