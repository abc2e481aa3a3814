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

import contextlib
import math
from collections.abc import Callable

import torch
from torch import nn

from interp._checks import Check
from interp.errors import InputTypeError, InvalidArgumentError, UnsupportedModelError
from interp.models.attention import AttentionFeatures, StatsRequest, layer_stats
from interp.models.families import FAMILIES, Family, get_submodule, scalar
from interp.models.hf_compat import first as _first
from interp.models.hooked import Forward, HookedLM
from interp.models.hooks import all_hook_names, split_layer_name
from interp.models.interventions import AblationMethod
from interp.models.native import hf_causal_mask, hf_rotary_embedding
from interp.models.protocol import NormKind
from interp.models.weights import HeadWeights


def tl_families() -> dict[str, str]:
    """The Hugging Face causal-LM class a TransformerLens config names -> our family row, for
    every row of :data:`FAMILIES` (derived from transformers' own auto-class table)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return {
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[name]: name
        for name in FAMILIES
        if name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    }


def _tl_family(cfg: object) -> Family:
    source = getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)
    families = tl_families()
    if source not in families:
        raise UnsupportedModelError(
            f"unsupported TransformerLens architecture {source!r}; the adapter supports "
            f"{', '.join(sorted(families))} (for another causal LM, pass the Hugging Face model "
            "to interp.load_model instead)"
        )
    return FAMILIES[families[source]]


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
            raise InputTypeError(
                f"expected a TransformerLens TransformerBridge, got {type(model).__name__}"
            )
        tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise InvalidArgumentError(
                "this TransformerLens model has no tokenizer; pass one: load_model(model, tokenizer=tok)"
            )
        self.family = _tl_family(cfg)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = cfg
        self.name = name or getattr(cfg, "model_name", None) or self.family.name
        self.n_layers: int = cfg.n_layers
        self.n_heads: int = cfg.n_heads
        self.n_kv_heads: int = getattr(cfg, "n_key_value_heads", None) or self.n_heads
        self.d_model: int = cfg.d_model
        self.d_head: int = cfg.d_head
        self.d_vocab: int = cfg.d_vocab
        self.n_ctx: int = cfg.n_ctx
        self.parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
        self.hook_names = all_hook_names(self.n_layers, parallel=self.parallel)
        self._layers = model.blocks
        self._qk_source = self._find_qk_source()
        self._scales = [_attention_scale(block.attn, cfg, self.d_head) for block in model.blocks]
        self._features = [_attention_features(model, block.attn) for block in model.blocks]

    @property
    def device(self) -> torch.device:
        return self.model.W_E.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.W_E.dtype

    # ----------------------------------------------------------------- running
    def _forward(self, request: Forward) -> tuple[torch.Tensor, object | None]:
        """The forward pass through TransformerLens' hook points."""
        if request.past_key_values is not None or request.use_cache:
            raise InvalidArgumentError(
                "KV-cache continuation is not available through the TransformerLens adapter; "
                "load the Hugging Face model with interp.load_model for decoding with a cache"
            )
        padding = request.plan.key_padding
        recorder = _Recorder(self, request.plan.stats, padding)
        recorder.outputs = request.plan.outputs
        recorder.stats_out = request.plan.stats_out
        recorder.stats_checks = request.plan.stats_checks
        hooks = recorder.hooks(request.names)
        # An explicit all-ones mask keeps TransformerLens from guessing padding from pad ids.
        tokens = request.tokens
        mask = padding.long() if padding is not None else torch.ones_like(tokens)
        with self.model.hooks(fwd_hooks=hooks + self._ablation_hooks):
            logits = self.model(tokens, return_type="logits", attention_mask=mask)
        if request.logits_to_keep:
            logits = logits[:, -request.logits_to_keep :]
        return logits, None

    _ablation_hooks: list = []

    @contextlib.contextmanager
    def _ablation(self, heads: dict[int, list[int]], method: AblationMethod):
        """Ablations as TransformerLens hooks added to every run inside the block: ``"zero"``
        on ``attn.hook_z``, ``"uniform"`` on the post-rotary query hook."""
        added = []
        for layer, chosen in heads.items():
            name = f"blocks.{layer}.attn.hook_z" if method == "zero" else self._query_hook(layer)

            def zero(tensor: torch.Tensor, hook: object, chosen=chosen) -> torch.Tensor:
                tensor = tensor.clone()
                tensor[:, :, chosen] = 0
                return tensor

            added.append((name, zero))
        before = self._ablation_hooks
        self._ablation_hooks = [*before, *added]
        try:
            yield
        finally:
            self._ablation_hooks = before

    def _query_hook(self, layer: int) -> str:
        if self._qk_source not in ("plain", "rot"):
            raise UnsupportedModelError(
                f"uniform ablation needs a post-rotary query hook, which this TransformerLens "
                f"model ({self.family.name}) does not fire; use method='zero'"
            )
        return self.tl_hook_name(f"blocks.{layer}.attn.hook_q")

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
    def _read_head_weights(self) -> HeadWeights:
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
    def embedding_scale(self) -> float:
        """Factor between ``W_E`` rows and what enters the residual stream (Gemma's
        sqrt(d_model) inside its embedding module, Granite's embedding multiplier), read from the
        wrapped Hugging Face model through the family row as the native backend does."""
        embed = get_submodule(self._hf_model, self.family.embed)
        inside = float(getattr(embed, "scalar_embed_scale", 1.0))
        return inside * (scalar(self.family.embed_multiplier, self._hf_model.config) or 1.0)

    def attention_scale(self, layer: int) -> float:
        """The factor on ``q·k`` the softmax uses with this layer's ``hook_q``/``hook_k``.

        TransformerLens' ``hook_q`` is the projection's output, so for a model that folds the
        scale into its query projection (OPT) this is the module's ``scaling`` where the native
        backend, which sees the already scaled q, reports 1: ``hook_q * attention_scale`` is the
        same in both."""
        return self._scales[self._layer_index(layer)]

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

    # Norms, the MLP and the output projection are the Hugging Face modules the bridge wraps,
    # found through the family row (the same modules, weights and extras as the native backend:
    # output norms, residual multipliers, parallel blocks' shared norm).
    def _norm_module(self, layer: int | None, kind: NormKind) -> nn.Module | None:
        if kind == "final":
            return get_submodule(self._hf_model, self.family.ln_final)
        if kind not in ("attn", "mlp"):
            raise InvalidArgumentError(f"norm kind must be 'attn', 'mlp' or 'final', got {kind!r}")
        path = self.family.ln_attn if kind == "attn" else self.family.ln_mlp
        block = self.decoder_layers()[self._layer_index(layer)]
        return get_submodule(block, path) if path is not None else None

    def norm_weights(self) -> dict[str, torch.Tensor]:
        """Effective norm scales, as :meth:`NativeLM.norm_weights` (Gemma: ``1 + w``; ones where
        a norm has no weight or a sublayer reads the raw residual)."""

        def scale(module: nn.Module | None) -> torch.Tensor:
            weight = getattr(module, "weight", None)
            if weight is None:
                return torch.ones(self.d_model, dtype=self.dtype, device=self.device)
            return weight.detach() + self.family.norm_offset

        layers = range(self.n_layers)
        return {
            "ln_attn": torch.stack([scale(self._norm_module(i, "attn")) for i in layers]),
            "ln_mlp": torch.stack([scale(self._norm_module(i, "mlp")) for i in layers]),
            "ln_final": scale(self._norm_module(None, "final")),
        }

    def norm(self, layer: int | None, kind: NormKind, x: torch.Tensor) -> torch.Tensor:
        """Apply the model's own norm: ``"attn"``/``"mlp"`` of ``layer``, or ``"final"``
        (identity where the sublayer reads the raw residual, as in OLMo-2)."""
        module = self._norm_module(layer, kind)
        x = self._as_residual(x, "norm")
        with torch.inference_mode():
            return module(x) if module is not None else x

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """What layer ``layer``'s MLP adds to the residual stream from its normalized input ``x
        [..., d_model]``: the MLP (MoE: router and experts), then the family's output norm and
        residual multiplier, as :meth:`NativeLM.mlp`."""
        block = self.decoder_layers()[self._layer_index(layer)]
        x = self._as_residual(x, "mlp")
        with torch.inference_mode():
            if self.family.mlp_fn is not None:
                out = self.family.mlp_fn(block, x)
            else:
                out = _first(get_submodule(block, self.family.mlp)(x))
            return self._sublayer_output(block, self.family.mlp_out_norm, out)

    def attn_output(self, layer: int, z: torch.Tensor) -> torch.Tensor:
        """What layer ``layer``'s attention adds to the residual from its per-head ``z [..., heads,
        d_head]``: the output projection, output norm and residual multiplier."""
        block = self.decoder_layers()[self._layer_index(layer)]
        if not isinstance(z, torch.Tensor) or z.shape[-2:] != (self.n_heads, self.d_head):
            raise InvalidArgumentError(
                f"attn_output takes z [..., heads={self.n_heads}, d_head={self.d_head}], got "
                f"{tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__}"
            )
        with torch.inference_mode():
            flat = z.to(self.device, self.dtype).flatten(-2)
            out = get_submodule(block, self.family.o_proj)(flat)
            return self._sublayer_output(block, self.family.attn_out_norm, out)

    def _sublayer_output(self, block: nn.Module, out_norm: str | None, out: torch.Tensor):
        if out_norm is not None:
            out = get_submodule(block, out_norm)(out)
        multiplier = scalar(self.family.residual_multiplier, self._hf_model.config)
        return out * multiplier if multiplier is not None else out

    # ----------------------------------------------------------------- the model's computation
    @property
    def _hf_model(self) -> nn.Module:
        model = self.model.__dict__.get("original_model")
        if model is None:
            raise UnsupportedModelError(
                "this TransformerBridge holds no Hugging Face model (original_model)"
            )
        return model

    def decoder_layers(self) -> list[nn.Module]:
        """The Hugging Face decoder layers the bridge wraps (for surrogates such as the LM
        Raptor, which re-run layers outside a forward pass)."""
        return list(self._hf_model.get_submodule(self.family.layers))

    def rotary_embedding(self, x: torch.Tensor, positions: torch.Tensor) -> object:
        return hf_rotary_embedding(self._hf_model, self.family, x, positions)

    def causal_mask(self, x: torch.Tensor, positions: torch.Tensor) -> object:
        return hf_causal_mask(self._hf_model.config, x, positions)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        """Final norm, unembedding, then the family's logit multiplier and final softcap:
        residual ``[..., d_model]`` -> logits ``[..., d_vocab]`` (as :meth:`NativeLM.unembed`)."""
        normed = self.norm(None, "final", x)
        config = self._hf_model.config
        with torch.inference_mode():
            logits = get_submodule(self._hf_model, self.family.unembed)(normed)
            multiplier = scalar(self.family.logit_multiplier, config)
            if multiplier is not None:
                logits = logits * multiplier
            cap = scalar(self.family.final_softcap, config)
            return torch.tanh(logits / cap) * cap if cap is not None else logits


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


def _attention_features(model: nn.Module, attn: nn.Module) -> AttentionFeatures:
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
            self.stats,
            qk["q"],
            qk["k"],
            self.lm._scales[layer],
            self.padding,
            self.stats_checks,
            self.lm._features[layer],
        )
