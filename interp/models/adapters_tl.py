"""TransformerLens adapter: a HookedLM view of a TransformerLens ``TransformerBridge``.

Everything runs through TransformerLens' own hook points (``model.hooks(fwd_hooks=...)``), so a
model a user already built, edited or hooked in TransformerLens is analysed as it is. Names map
one to one onto TransformerLens' except where the meaning differs:

- ``attn.hook_q`` / ``attn.hook_k`` are post-rotary here, so rotary models read TransformerLens'
  ``attn.hook_rot_q`` / ``attn.hook_rot_k`` (its ``hook_q``/``hook_k`` are pre-rotary). Keys and
  values stay un-repeated for grouped-query attention: ``[batch, pos, kv_heads, d_head]``.
- ``ln_final.hook_normalized`` is the final norm's output, the bridge's ``ln_final.hook_out``.
- Attention statistics hook the post-rotary q/k and call :func:`interp.kernels.attention_stats`
  with the layer's own attention scale.

Per-head weights come from TransformerLens' stacked ``W_Q`` ... ``b_O`` (keys/values expanded
to every query head for GQA, zero biases where the checkpoint has none). KV-cache continuation is
not offered: TransformerLens' q/k hooks see only the new tokens' keys.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import nn

from interp._checks import Check
from interp.models.architectures import ARCHITECTURES, Architecture
from interp.models.attention import StatsRequest, as_stats_request, layer_stats
from interp.models.hooked import HookedLM, Inputs, NormKind, _check_finite, check_logits_to_keep
from interp.models.hooks import (
    ActivationCache,
    all_hook_names,
    resolve_hook_names,
    split_layer_name,
)
from interp.models.weights import HeadWeights

# The Hugging Face class a TransformerLens config names -> our family table row.
TL_FAMILIES = {
    "GPT2LMHeadModel": "gpt2",
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "mistral",
    "Qwen2ForCausalLM": "qwen2",
    "GemmaForCausalLM": "gemma",
    "GPTNeoXForCausalLM": "gpt_neox",
}


def _tl_architecture(cfg: object) -> Architecture:
    source = getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)
    if source not in TL_FAMILIES:
        supported = ", ".join(sorted(TL_FAMILIES))
        raise ValueError(
            f"unsupported TransformerLens architecture {source!r}; the adapter supports {supported} "
            "(for another causal LM, pass the Hugging Face model to interp.load_model instead)"
        )
    return ARCHITECTURES[TL_FAMILIES[source]]


class TransformerLensLM(HookedLM):
    """HookedLM interface over a TransformerLens ``TransformerBridge`` (TransformerLens >= 4).

    Build it with ``interp.load_model(tl_model)``. ``model`` is the TransformerLens object and
    ``config`` its ``cfg``; everything else behaves like the native backend.
    """

    backend = "transformer_lens"

    def __init__(
        self, model: nn.Module, tokenizer: object | None = None, *, name: str | None = None
    ) -> None:
        cfg = getattr(model, "cfg", None)
        if cfg is None or not hasattr(model, "hooks"):
            raise TypeError(
                f"expected a TransformerLens TransformerBridge, got {type(model).__name__}"
            )
        tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                "this TransformerLens model has no tokenizer; pass one: load_model(model, tokenizer=tok)"
            )
        self.arch = _tl_architecture(cfg)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = cfg
        self.name = name or getattr(cfg, "model_name", None) or self.arch.family
        self.n_layers: int = cfg.n_layers
        self.n_heads: int = cfg.n_heads
        self.n_kv_heads: int = getattr(cfg, "n_key_value_heads", None) or self.n_heads
        self.d_model: int = cfg.d_model
        self.d_head: int = cfg.d_head
        self.d_vocab: int = cfg.d_vocab
        self.n_ctx: int = cfg.n_ctx
        self.hook_names = all_hook_names(self.n_layers)
        self._layers = model.blocks
        self._qk_source = self._find_qk_source()
        self._scales = [_attention_scale(block.attn, cfg, self.d_head) for block in model.blocks]

    @property
    def device(self) -> torch.device:
        return self.model.W_E.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.W_E.dtype

    # ----------------------------------------------------------------- running
    @torch.inference_mode()
    def run(
        self,
        inputs: Inputs,
        capture: str | list[str] | None = None,
        attention_stats: StatsRequest | bool | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        prepend_bos: bool = True,
        past_key_values: object | None = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
    ) -> tuple[torch.Tensor, ActivationCache]:
        """Forward pass capturing the requested hooks; same contract as :meth:`HookedLM.run`."""
        check_logits_to_keep(logits_to_keep)
        if past_key_values is not None or use_cache:
            raise ValueError(
                "KV-cache continuation is not available through the TransformerLens adapter; "
                "load the Hugging Face model with interp.load_model for decoding with a cache"
            )
        tokens, attention_mask = self._as_tokens(inputs, attention_mask, prepend_bos)
        self.check_length(tokens.shape[1])
        names = resolve_hook_names(capture, self.hook_names)
        stats = as_stats_request(attention_stats, self.device)
        self._check_request(names, stats, tokens, 0)
        device = self.device
        padding = attention_mask.to(device).bool() if attention_mask is not None else None
        recorder = _Recorder(self, stats, padding)
        hooks = recorder.hooks(names)
        # An explicit all-ones mask keeps TransformerLens from guessing padding from pad ids.
        mask = padding.long() if padding is not None else torch.ones_like(tokens, device=device)
        with self.model.hooks(fwd_hooks=hooks):
            logits = self.model(tokens.to(device), return_type="logits", attention_mask=mask)
        if logits_to_keep:
            logits = logits[:, -logits_to_keep:]
        cache = ActivationCache({name: recorder.outputs[name] for name in names})
        cache.attention_stats = recorder.stats_out
        _check_finite(logits, cache, recorder.stats_checks)
        return logits, cache

    def _check_request(
        self, names: list[str], stats: StatsRequest | None, tokens: torch.Tensor, past: int
    ) -> None:
        if getattr(self.config, "parallel_attn_mlp", False) and any(
            n.endswith("hook_resid_mid") for n in names
        ):
            raise KeyError(
                f"{self.name} runs attention and MLP in parallel: hook_resid_mid does not exist"
            )
        super()._check_request(names, stats, tokens, past)  # pattern size, sliding window

    def tl_hook_name(self, name: str) -> str:
        """The TransformerLens hook point that carries our hook ``name`` (q/k: see ``_qk_source``).

        Every other name is TransformerLens' own (``blocks.{l}.hook_resid_pre``, ``attn.hook_z``...).
        """
        layer, suffix = split_layer_name(name)
        if name == "ln_final.hook_normalized":
            return "ln_final.hook_out"
        if suffix in ("attn.hook_q", "attn.hook_k") and self._qk_source == "rot":
            return f"blocks.{layer}.attn.hook_rot_{suffix[-1]}"
        return name

    def _find_qk_source(self) -> str:
        """Where post-rotary q/k come from: ``"plain"`` (no rotary: ``hook_q``/``hook_k``),
        ``"rot"`` (``hook_rot_q``/``hook_rot_k``) or ``"rotate"`` (the bridge's attention has
        the hook points but never fires them, as for GPT-NeoX: its own ``_apply_rotary_pos_emb``
        is applied to the pre-rotary ``hook_q``/``hook_k`` with the ``hook_cos``/``hook_sin``
        tables). A two-token forward tells whether ``hook_rot_q`` fires."""
        points = self.model.hook_dict
        if "blocks.0.attn.hook_rot_q" not in points:
            return "plain"
        fired = []
        with (
            torch.inference_mode(),
            self.model.hooks(
                fwd_hooks=[("blocks.0.attn.hook_rot_q", lambda t, hook: fired.append(1))]
            ),
        ):
            self.model(torch.zeros(1, 2, dtype=torch.long, device=self.device), return_type=None)
        if fired:
            return "rot"
        attn = self._layers[0].attn
        if hasattr(attn, "_apply_rotary_pos_emb") and "blocks.0.attn.hook_cos" in points:
            return "rotate"
        return "unavailable"

    # ----------------------------------------------------------------- weights
    @functools.cached_property
    def _head_weights(self) -> HeadWeights:
        model, groups = self.model, self.n_heads // self.n_kv_heads
        shapes = {
            "b_Q": (self.n_heads, self.d_head),
            "b_K": None,
            "b_V": None,
            "b_O": (self.d_model,),
        }
        shapes["b_K"] = shapes["b_V"] = shapes["b_Q"]
        values = {}
        for key in HeadWeights.__dataclass_fields__:
            try:
                value = getattr(model, key).detach()
            except AttributeError:  # bias-free projections
                value = torch.zeros(
                    self.n_layers, *shapes[key], dtype=self.dtype, device=self.device
                )
            if key[-1] in "KV" and value.shape[1] != self.n_heads:
                value = value.repeat_interleave(groups, dim=1)
            values[key] = value
        return HeadWeights(**values)

    @property
    def W_E(self) -> torch.Tensor:
        """Token embedding ``[d_vocab, d_model]`` (raw weights; see ``embedding_scale``)."""
        return self.model.W_E.detach()

    @property
    def W_U(self) -> torch.Tensor:
        """Unembedding ``[d_model, d_vocab]``."""
        return self.model.W_U.detach()

    @property
    def b_U(self) -> torch.Tensor:
        bias = getattr(self.model.unembed, "b_U", None)
        return (
            bias.detach()
            if bias is not None
            else torch.zeros(self.d_vocab, dtype=self.dtype, device=self.device)
        )

    def norm_weights(self) -> dict[str, torch.Tensor]:
        """Effective norm scales, as :meth:`HookedLM.norm_weights` (Gemma: ``1 + w``)."""
        attn = torch.stack([self._scale_of(block.ln1) for block in self._layers])
        mlp = torch.stack([self._scale_of(block.ln2) for block in self._layers])
        return {"ln_attn": attn, "ln_mlp": mlp, "ln_final": self._scale_of(self.model.ln_final)}

    def _scale_of(self, norm: nn.Module) -> torch.Tensor:
        """A norm's effective scale (the bridge holds the Hugging Face weight, so Gemma's ``w``
        gets its offset); ones when TransformerLens folded it into the next weights."""
        weight = getattr(norm, "w", None)
        return (
            weight.detach() + self.arch.norm_offset
            if weight is not None
            else torch.ones(self.d_model, dtype=self.dtype, device=self.device)
        )

    def norm(self, layer: int | None, kind: NormKind, x: torch.Tensor) -> torch.Tensor:
        """Apply the model's own norm: ``"attn"``/``"mlp"`` of ``layer``, or ``"final"``."""
        if kind == "final":
            module = self.model.ln_final
        elif kind in ("attn", "mlp"):
            module = getattr(self._layer(layer), "ln1" if kind == "attn" else "ln2")
        else:
            raise ValueError(f"norm kind must be 'attn', 'mlp' or 'final', got {kind!r}")
        with torch.inference_mode():
            return module(x.to(self.device, self.dtype))

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Apply layer ``layer``'s MLP (without its norm) to ``x [..., d_model]``."""
        with torch.inference_mode():
            return self._layer(layer).mlp(x.to(self.device, self.dtype))

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm then unembedding: residual ``[..., d_model]`` -> logits ``[..., d_vocab]``."""
        with torch.inference_mode():
            return self.model.unembed(self.norm(None, "final", x))


def _attention_scale(attn: nn.Module, cfg: object, d_head: int) -> float:
    """The factor on q·k: the wrapped Hugging Face module's ``scaling`` when there is one (a
    bridge), else TransformerLens' ``1 / attn_scale`` (``use_attn_scale=False``: 1)."""
    hf_scaling = getattr(getattr(attn, "original_component", None), "scaling", None)
    if hf_scaling is not None:
        return float(hf_scaling)
    if not getattr(cfg, "use_attn_scale", True):
        return 1.0
    scale = getattr(cfg, "attn_scale", -1.0)
    return 1.0 / scale if scale > 0 else 1.0 / math.sqrt(d_head)


class _Recorder:
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
            raise NotImplementedError(
                f"this TransformerLens model ({type(lm._layers[0].attn).__name__}) exposes no post-rotary "
                "q/k hooks; for hook_q/hook_k and attention statistics load its Hugging Face model "
                "with interp.load_model instead"
            )
        for layer in sorted(qk_layers):
            hooks += self._qk_hooks(layer)
        return hooks

    def _store(self, name: str) -> Callable:
        def hook(tensor: torch.Tensor, hook: object) -> None:
            self.outputs[name] = tensor.detach()

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
            self.stats, qk["q"], qk["k"], self.lm._scales[layer], self.padding, self.stats_checks
        )
