"""TransformerLens hook functions for :class:`interp.models.adapters_tl.TransformerLensLM`.

:class:`Recorder` turns one run's request into TransformerLens ``fwd_hooks``: captures stored
under interp's names, post-rotary q/k delivered from whichever hook point carries them (see
``TransformerLensLM._find_qk_source``), and the fused attention statistics computed from them with
each layer's scale, sliding window, softcap and sinks (read once per model by
:func:`attention_scale` and :func:`attention_features`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from interp._checks import Check
from interp.errors import UnsupportedModelError
from interp.models.attention import AttentionFeatures, StatsRequest, layer_stats
from interp.models.hooks import split_layer_name

if TYPE_CHECKING:
    from interp.models.adapters_tl import TransformerLensLM


def attention_scale(attn: nn.Module, cfg: object, d_head: int) -> float:
    """The factor on q·k: the wrapped Hugging Face module's ``scaling`` when there is one (a
    bridge), else TransformerLens' ``1 / attn_scale`` (``use_attn_scale=False``: 1)."""
    hf_scaling = getattr(getattr(attn, "original_component", None), "scaling", None)
    if hf_scaling is not None:
        return float(hf_scaling)
    if not getattr(cfg, "use_attn_scale", True):
        return 1.0
    scale = getattr(cfg, "attn_scale", -1.0)
    return 1.0 / scale if scale > 0 else 1.0 / math.sqrt(d_head)


def attention_features(model: nn.Module, attn: nn.Module) -> AttentionFeatures:
    """The sliding window, logit softcap and sinks of one layer, read from the Hugging Face
    attention module the bridge wraps, as that module passes them to its attention function:
    its own ``sliding_window`` (``None`` on a full-attention layer of a mixed model), else the
    config's (Mistral, Starcoder2 keep it there); ``attn_logit_softcapping`` (Gemma-2); the
    learned ``sinks`` (GPT-OSS). Without a wrapped module (a bridge over a custom component),
    the config's values."""
    hf = getattr(attn, "original_component", None)
    config = getattr(hf, "config", None) or getattr(
        model.__dict__.get("original_model"), "config", None
    )
    window = (
        hf.sliding_window
        if hf is not None and hasattr(hf, "sliding_window")
        else getattr(config, "sliding_window", None)
    )
    softcap = getattr(hf, "attn_logit_softcapping", None)
    if softcap is None:
        softcap = getattr(config, "attn_logit_softcapping", None)
    sinks = getattr(hf, "sinks", None)
    return AttentionFeatures(
        window=window,
        softcap=float(softcap) if softcap is not None else None,
        sinks=sinks.detach() if isinstance(sinks, torch.Tensor) else None,
    )


class Recorder:
    """TransformerLens hook functions for one run: store captures, compute attention stats."""

    def __init__(
        self, lm: TransformerLensLM, stats: StatsRequest | None, padding: torch.Tensor | None
    ) -> None:
        self.lm = lm
        self.stats = stats
        self.padding = padding
        self.outputs: dict[str, torch.Tensor] = {}
        self.stats_out: dict[int, object] = {}
        self.stats_checks: list[Check] = []
        self._qk: dict[int, dict[str, torch.Tensor]] = {}
        self._wanted: set[str] = set()
        self._stats_layers: set[int] = set()
        self.detach = True  # False when the run keeps the autograd graph

    def hooks(self, names: list[str]) -> list[tuple[str, Callable]]:
        lm = self.lm
        qk_layers: set[int] = set()
        hooks = []
        for name in names:
            layer, suffix = split_layer_name(name)
            if suffix in ("attn.hook_q", "attn.hook_k"):
                self._wanted.add(name)
                qk_layers.add(layer)
            else:
                hooks.append((lm.tl_hook_name(name), self._store(name)))
        if self.stats is not None:
            layers = self.stats.layers  # validated by HookedLM._check_request
            self._stats_layers = set(layers if layers is not None else range(lm.n_layers))
            qk_layers |= self._stats_layers
        if qk_layers and lm._qk_source == "unavailable":
            raise UnsupportedModelError(
                f"this TransformerLens model ({type(lm._layers[0].attn).__name__}) exposes no post-rotary "
                "q/k hooks; for hook_q/hook_k and attention statistics load its Hugging Face model "
                "with interp.load_model instead"
            )
        for layer in sorted(qk_layers):
            hooks += self._qk_hooks(layer)
        return hooks

    def _store(self, name: str) -> Callable:
        def hook(tensor: torch.Tensor, hook: object) -> None:
            self.outputs[name] = tensor.detach() if self.detach else tensor

        return hook

    def _qk_hooks(self, layer: int) -> list[tuple[str, Callable]]:
        """Hooks that deliver layer ``layer``'s post-rotary q and k ``[B, T, H, D]``."""
        prefix = f"blocks.{layer}.attn."
        if self.lm._qk_source != "rotate":
            return [
                (self.lm.tl_hook_name(prefix + f"hook_{kind}"), self._deliverer(layer, kind))
                for kind in "qk"
            ]
        parts: dict[str, torch.Tensor] = {}

        def collect(kind: str) -> Callable:
            def hook(tensor: torch.Tensor, hook: object) -> None:
                parts[kind] = tensor.detach()
                if len(parts) == 4:
                    q, k = self.lm._layers[layer].attn._apply_rotary_pos_emb(
                        parts["q"].transpose(1, 2),
                        parts["k"].transpose(1, 2),
                        parts["cos"],
                        parts["sin"],
                    )
                    parts.clear()
                    self._deliver(layer, "q", q.transpose(1, 2))
                    self._deliver(layer, "k", k.transpose(1, 2))

            return hook

        return [(prefix + f"hook_{kind}", collect(kind)) for kind in ("q", "k", "cos", "sin")]

    def _deliverer(self, layer: int, kind: str) -> Callable:
        return lambda tensor, hook: self._deliver(layer, kind, tensor.detach())

    def _deliver(self, layer: int, kind: str, value: torch.Tensor) -> None:
        """Store a post-rotary q/k ``[B, T, H, D]`` if captured; run the stats once both arrived."""
        name = f"blocks.{layer}.attn.hook_{kind}"
        if name in self._wanted:
            self.outputs[name] = value
        if layer in self._stats_layers:
            seen = self._qk.setdefault(layer, {})
            seen[kind] = value.transpose(1, 2)  # [B, H, T, D]
            if len(seen) == 2:
                self._compute(layer, self._qk.pop(layer))

    def _compute(self, layer: int, qk: dict[str, torch.Tensor]) -> None:
        self.stats_out[layer] = layer_stats(
            self.stats,
            qk["q"],
            qk["k"],
            self.lm._scales[layer],
            self.padding,
            self.stats_checks,
            self.lm._features[layer],
        )
