"""Per-head weights in TransformerLens layout, read from a Hugging Face causal LM.

Shapes: ``W_Q, W_K, W_V [layers, heads, d_model, d_head]``, ``W_O [layers, heads, d_head,
d_model]``, biases ``b_Q, b_K, b_V [layers, heads, d_head]``, ``b_O [layers, d_model]``. Keys
and values are expanded to every query head (GQA: head h reads kv head h // (heads / kv_heads)).
Activations are row vectors: ``q = x @ W_Q[l, h] + b_Q[l, h]`` (before rotary).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from interp.models.families import Family, get_submodule


@dataclass(frozen=True)
class HeadWeights:
    W_Q: torch.Tensor
    W_K: torch.Tensor
    W_V: torch.Tensor
    W_O: torch.Tensor
    b_Q: torch.Tensor
    b_K: torch.Tensor
    b_V: torch.Tensor
    b_O: torch.Tensor


def _linear(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight as [in, out], bias [out]) for nn.Linear and GPT-2's Conv1D alike."""
    weight = module.weight.detach()
    bias = module.bias.detach() if getattr(module, "bias", None) is not None else None
    matrix = weight if type(module).__name__ == "Conv1D" else weight.T
    if bias is None:
        bias = torch.zeros(matrix.shape[1], dtype=matrix.dtype, device=matrix.device)
    return matrix, bias


def _split_heads(matrix: torch.Tensor, bias: torch.Tensor, heads: int, d_head: int):
    """[d_model, heads*d_head] -> [heads, d_model, d_head] and bias -> [heads, d_head]."""
    d_model = matrix.shape[0]
    return matrix.view(d_model, heads, d_head).permute(1, 0, 2), bias.view(heads, d_head)


def _layer_qkv(layer: nn.Module, family: Family, n_heads: int, n_kv: int, d_head: int):
    """``[(W, b)] * 3`` for q, k, v of one layer: ``W [heads, d_model, d_head]`` (k/v: kv heads)."""
    if family.qkv == "separate":
        paths = (family.q_proj, family.k_proj, family.v_proj)
        parts = [_linear(get_submodule(layer, p)) for p in paths]
        counts = (n_heads, n_kv, n_kv)
        return [_split_heads(m, b, c, d_head) for (m, b), c in zip(parts, counts, strict=True)]
    matrix, bias = _linear(get_submodule(layer, family.fused_qkv))
    d_model = matrix.shape[0]
    if family.qkv == "stacked":  # [q heads | k heads | v heads]
        sizes = [n_heads * d_head, n_kv * d_head, n_kv * d_head]
        columns = matrix.split(sizes, dim=1)
        biases = bias.split(sizes)
        counts = (n_heads, n_kv, n_kv)
        return [
            _split_heads(m, b, c, d_head) for m, b, c in zip(columns, biases, counts, strict=True)
        ]
    # grouped: [kv group, (its queries..., key, value), d_head]
    per_group = n_heads // n_kv
    blocks = matrix.view(d_model, n_kv, per_group + 2, d_head)
    bias_blocks = bias.view(n_kv, per_group + 2, d_head)
    q = blocks[:, :, :per_group].reshape(d_model, n_heads, d_head).permute(1, 0, 2)
    bq = bias_blocks[:, :per_group].reshape(n_heads, d_head)
    k, v = (blocks[:, :, i].permute(1, 0, 2) for i in (per_group, per_group + 1))
    bk, bv = bias_blocks[:, per_group], bias_blocks[:, per_group + 1]
    return [(q, bq), (k, bk), (v, bv)]


@contextlib.contextmanager
def onloaded(module: nn.Module) -> Iterator[None]:
    """Inside the block, weights that accelerate offloaded (to the CPU or disk, ``meta`` on the
    module) are loaded onto their execution device; tensors read inside stay valid after it."""
    try:
        from accelerate.utils import align_module_device, has_offloaded_params
    except ImportError:  # accelerate absent: nothing can be offloaded
        yield
        return
    with contextlib.ExitStack() as stack:
        for sub in module.modules():
            if has_offloaded_params(sub):
                stack.enter_context(align_module_device(sub))
        yield


def read_head_weights(
    layers: nn.ModuleList,
    family: Family,
    n_heads: int,
    n_kv_heads: int,
    d_head: int,
    device: torch.device | None = None,
) -> HeadWeights:
    """Stack every layer's per-head weights (GQA expanded) into TransformerLens-shaped tensors.

    Layers of a model split by accelerate may live on several devices or be offloaded: each is
    read with its weights loaded and moved to ``device`` (default: where layer 0's weights are).
    """
    groups = n_heads // n_kv_heads
    per_layer: dict[str, list[torch.Tensor]] = {k: [] for k in HeadWeights.__dataclass_fields__}
    for layer in layers:
        with onloaded(layer):
            (wq, bq), (wk, bk), (wv, bv) = _layer_qkv(layer, family, n_heads, n_kv_heads, d_head)
            wo, bo = _linear(get_submodule(layer, family.o_proj))
        if groups > 1:
            wk, bk, wv, bv = (t.repeat_interleave(groups, dim=0) for t in (wk, bk, wv, bv))
        device = device if device is not None else wq.device
        per_layer["W_Q"].append(wq.to(device))
        per_layer["W_K"].append(wk.to(device))
        per_layer["W_V"].append(wv.to(device))
        per_layer["W_O"].append(wo.reshape(n_heads, d_head, -1).to(device))
        per_layer["b_Q"].append(bq.to(device))
        per_layer["b_K"].append(bk.to(device))
        per_layer["b_V"].append(bv.to(device))
        per_layer["b_O"].append(bo.to(device))
    return HeadWeights(**{k: torch.stack(v) for k, v in per_layer.items()})
