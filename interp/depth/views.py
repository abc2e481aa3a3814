"""What the depth analyses need from a block-stacked network, for each supported architecture.

A :class:`DepthView` names the module whose output is layer 0 (the embedding), the L blocks, the
final norm, how many prefix tokens (CLS, registers) precede the patch tokens, and how to split a
block into its two residual branches (attention, MLP) so Raptor can scale them. Per-layer states
are read by :class:`interp.models.HookedModule` (forward hooks on those modules) while the model
runs its own forward pass.

Supported: the project's :class:`~interp.depth.vit.DigitsViT`; Hugging Face ``ViTModel`` /
``Dinov2Model`` / ``Dinov2WithRegistersModel`` (and their ``...ForImageClassification``
wrappers); timm ``VisionTransformer`` models, recognised by their structure (``patch_embed``,
``pos_embed``, ``num_prefix_tokens``, ``blocks``, ``norm``; layer 0 is the output of ``norm_pre``,
i.e. the tokens after class/register tokens and positions are added) with timm ``Block``s (``norm1``,
``attn``, ``ls1``, ``drop_path1``, ``norm2``, ``mlp``, ``ls2``, ``drop_path2``); any module with
``embed=`` and ``layers=`` paths given (states only, unless its blocks have ``attn_branch`` /
``mlp_branch`` methods).

timm itself cannot be imported in this project's environment (it needs torchvision, which has no
build for the project's torch), so the timm support is tested against a module that reproduces
timm's ``Block`` and ``VisionTransformer.forward_features`` exactly, and against real timm only
where it imports.

For Raptor, :func:`branches` also splits Hugging Face Llama-style decoder layers (Llama, Mistral,
Qwen2, Gemma: ``input_layernorm`` -> ``self_attn``, ``post_attention_layernorm`` -> ``mlp``); their
attention branch needs the rotary position embeddings and the causal mask, passed as ``context``
(see :mod:`interp.depth.raptor_lm`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from interp.depth.vit import Block, DigitsViT
from interp.models.hf_compat import first
from interp.models.hooks import glob_to_regex
from interp.models.module import HookedModule

Branch = Callable[[torch.Tensor], torch.Tensor]
TIMM_BLOCK = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")
TIMM_VIT = ("patch_embed", "pos_embed", "num_prefix_tokens", "blocks", "norm")
DECODER_LAYER = ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")


@dataclasses.dataclass
class DepthView:
    """A network seen as embed -> block_1 .. block_L -> final norm."""

    model: nn.Module
    embed_path: str
    layer_paths: list[str]
    final_norm: nn.Module | None
    n_prefix: int
    name: str

    @property
    def n_layers(self) -> int:
        return len(self.layer_paths)

    @property
    def layers(self) -> list[nn.Module]:
        modules = dict(self.model.named_modules())
        return [modules[path] for path in self.layer_paths]

    def states(self, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Per-layer token states [L+1, N, T, D]: embedding output, then every block's output."""
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"inputs must be a tensor of images, got {type(inputs).__name__}")
        if len(inputs) == 0:
            raise ValueError("inputs is empty")
        paths = [self.embed_path, *self.layer_paths]
        hooked = HookedModule(self.model)
        batches = []
        for begin in range(0, len(inputs), batch_size):
            _, cache = hooked.run(inputs[begin : begin + batch_size], capture=paths)
            batches.append(torch.stack([cache[p] for p in paths]))
        return torch.cat(batches, dim=1).float()


def _expand(model: nn.Module, pattern: str) -> list[str]:
    """Module paths matching ``pattern``, where ``*`` stands for one path segment (``blocks.*``
    matches ``blocks.3`` but not ``blocks.3.attn``), in numeric order (blocks.10 after blocks.9)."""
    names = [name for name, _ in model.named_modules() if name]
    regex = glob_to_regex(pattern)
    matches = [n for n in names if regex.fullmatch(n)]
    if not matches:
        close = [n for n in names if pattern.split("*")[0].rstrip(".") in n][:8]
        raise ValueError(f"no module matches {pattern!r}; modules include {close or names[:8]}")
    return sorted(
        matches, key=lambda n: [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in n.split(".")]
    )


def _hf_base(model: nn.Module) -> tuple[nn.Module, str]:
    for attribute in ("vit", "dinov2"):
        if hasattr(model, attribute) and isinstance(getattr(model, attribute), nn.Module):
            return getattr(model, attribute), f"{attribute}."
    return model, ""


def view_of(model: Any, *, embed: str | None = None, layers: str | None = None) -> DepthView:
    """Build the :class:`DepthView` of a model (see the module docstring for what is supported)."""
    if isinstance(model, DepthView):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(
            "model must be a torch module (DigitsViT, a Hugging Face ViT/DINOv2, or any module with "
            f"embed=/layers= paths), got {type(model).__name__}"
        )
    if embed is not None or layers is not None:
        if embed is None or layers is None:
            raise ValueError(
                "give both embed= (module path of layer 0) and layers= (glob of the blocks)"
            )
        return DepthView(model, embed, _expand(model, layers), None, 1, type(model).__name__)
    if isinstance(model, DigitsViT):
        paths = [f"blocks.{i}" for i in range(len(model.blocks))]
        return DepthView(model, "embed", paths, model.norm, 1, "digits-ViT")
    if all(hasattr(model, attribute) for attribute in TIMM_VIT):
        n = len(model.blocks)
        embed = (
            "norm_pre" if isinstance(getattr(model, "norm_pre", None), nn.Module) else "pos_drop"
        )
        return DepthView(
            model,
            embed,
            [f"blocks.{i}" for i in range(n)],
            model.norm,
            int(model.num_prefix_tokens),
            f"{type(model).__name__}({n} blocks, dim {getattr(model, 'embed_dim', '?')})",
        )
    base, prefix = _hf_base(model)
    config = getattr(base, "config", None)
    if config is not None and hasattr(base, "embeddings") and hasattr(base, "layernorm"):
        stack = (
            "layers"
            if isinstance(getattr(base, "layers", None), nn.ModuleList)
            else "encoder.layer"
        )
        n = config.num_hidden_layers
        registers = int(getattr(config, "num_register_tokens", 0) or 0)
        return DepthView(
            model,
            f"{prefix}embeddings",
            [f"{prefix}{stack}.{i}" for i in range(n)],
            base.layernorm,
            1 + registers,
            f"{type(base).__name__}({n} layers, dim {config.hidden_size})",
        )
    raise TypeError(
        f"don't know the block structure of {type(model).__name__}; pass embed='path.to.embedding' "
        "and layers='path.to.blocks.*'"
    )


def branches(layer: nn.Module, context: dict[str, Any] | None = None) -> tuple[Branch, Branch]:
    """The attention and MLP residual branches of a pre-norm block: x + a(x), then x + m(x).

    Each branch includes the block's own pre-norm and LayerScale, and no drop-path (Raptor trains
    without stochastic depth). ``context`` carries what a decoder layer's attention needs besides
    x (``position_embeddings``, ``attention_mask``, ``position_ids``); vision blocks ignore it.
    """
    if isinstance(layer, Block) or (hasattr(layer, "attn_branch") and hasattr(layer, "mlp_branch")):
        return layer.attn_branch, layer.mlp_branch
    if hasattr(layer, "layernorm_before") and hasattr(layer, "layernorm_after"):  # HF ViTLayer
        return (
            lambda x: first(layer.attention(layer.layernorm_before(x))),
            lambda x: layer.mlp(layer.layernorm_after(x)),
        )
    if hasattr(layer, "norm1") and hasattr(layer, "layer_scale1"):  # HF Dinov2Layer
        return (
            lambda x: layer.layer_scale1(first(layer.attention(layer.norm1(x)))),
            lambda x: layer.layer_scale2(layer.mlp(layer.norm2(x))),
        )
    if all(hasattr(layer, attribute) for attribute in TIMM_BLOCK):  # timm Block
        return (
            lambda x: layer.ls1(layer.attn(layer.norm1(x))),
            lambda x: layer.ls2(layer.mlp(layer.norm2(x))),
        )
    if all(hasattr(layer, a) for a in DECODER_LAYER) and not hasattr(
        layer, "pre_feedforward_layernorm"
    ):
        return _decoder_branches(layer, context)
    raise TypeError(
        f"cannot split a {type(layer).__name__} into attention and MLP branches; Raptor supports "
        "DigitsViT blocks, HF ViTLayer / Dinov2Layer, timm Blocks, HF Llama-style decoder layers "
        "(Llama, Mistral, Qwen2, Gemma) and blocks with attn_branch/mlp_branch methods"
    )


def _decoder_branches(layer: nn.Module, context: dict[str, Any] | None) -> tuple[Branch, Branch]:
    """A Hugging Face decoder layer's two branches, called as its own ``forward`` calls them."""

    def attention(x: torch.Tensor) -> torch.Tensor:
        if context is None:
            raise ValueError(
                f"the attention of a {type(layer).__name__} needs context= with the rotary "
                "position_embeddings, the causal attention_mask and the position_ids"
            )
        output = layer.self_attn(
            hidden_states=layer.input_layernorm(x),
            attention_mask=context["attention_mask"],
            position_embeddings=context["position_embeddings"],
            position_ids=context["position_ids"],
        )
        return first(output)

    return attention, lambda x: layer.mlp(layer.post_attention_layernorm(x))


def is_language_model(model: Any) -> bool:
    return all(hasattr(model, attr) for attr in ("run", "to_tokens", "n_layers"))


def language_model_states(model: Any, inputs: Any) -> torch.Tensor:
    """Residual stream [L+1, N, T, D] of a HookedLM: resid_pre of block 0, then each resid_post."""
    tokens = model.to_tokens(inputs) if not isinstance(inputs, torch.Tensor) else inputs
    names = ["blocks.0.hook_resid_pre"] + [
        f"blocks.{i}.hook_resid_post" for i in range(model.n_layers)
    ]
    with torch.no_grad():
        _, cache = model.run(tokens, capture=names)
    states = torch.stack([cache[name] for name in names]).float()
    if not torch.isfinite(states).all():
        raise ValueError("the language model produced NaN or inf activations")
    return states


def model_states(
    model: Any, inputs: Any, *, batch_size: int = 256
) -> tuple[torch.Tensor, int, str, str]:
    """(states [L+1, N, T, D], prefix-token count, model name, default token mode) of any model."""
    if is_language_model(model):
        name = str(getattr(model, "name", type(model).__name__))
        return language_model_states(model, inputs), 1, name, "last+mean"
    view = view_of(model)
    return view.states(inputs, batch_size), view.n_prefix, view.name, "cls+mean"


def corpus_windows(model: Any, n: int = 32, length: int = 64, *, start: int = 0) -> torch.Tensor:
    """``n`` token windows [n, 1 + length] of the shipped English corpus, each led by BOS.

    Consecutive, non-overlapping windows of one tokenization, so every row has the same length
    and no padding enters the representations; ``start`` skips that many windows first (windows
    ``start .. start + n - 1``), so disjoint calls give disjoint text.
    """
    from interp.heads.corpus import load_corpus

    if n < 1 or length < 1 or start < 0:
        raise ValueError(f"need n >= 1, length >= 1 and start >= 0; got {n}, {length}, {start}")
    ids = model.to_tokens(load_corpus(), prepend_bos=False)[0]
    if len(ids) < (start + n) * length:
        raise ValueError(
            f"the corpus has {len(ids)} tokens, fewer than {start + n} windows of {length}"
        )
    windows = ids[start * length : (start + n) * length].view(n, length)
    bos = torch.full((n, 1), int(model.bos_token_id), dtype=windows.dtype)
    return torch.cat([bos, windows], dim=1)
