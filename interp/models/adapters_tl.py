"""TransformerLens adapter: a HookedLM view of a TransformerLens ``TransformerBridge``.

Everything runs through TransformerLens' own hook points (``model.hooks(fwd_hooks=...)``), so a
model a user already built, edited or hooked in TransformerLens is analysed as it is. Names map
one to one onto TransformerLens' except where the meaning differs:

- ``attn.hook_q`` / ``attn.hook_k`` are post-rotary here, so rotary models read TransformerLens'
  ``attn.hook_rot_q`` / ``attn.hook_rot_k`` (its ``hook_q``/``hook_k`` are pre-rotary). Keys and
  values stay un-repeated for grouped-query attention: ``[batch, pos, kv_heads, d_head]``.
- ``ln_final.hook_normalized`` is the final norm's output, the bridge's ``ln_final.hook_out``.
- Attention statistics hook the post-rotary q/k and call :func:`interp.kernels.attention_stats`
  with the layer's own attention scale, sliding window, softcap and sinks (read from the wrapped
  Hugging Face module). ``attn.hook_q`` is TransformerLens' projection output, so for OPT (which
  folds the scale into its query projection) it differs from the native backend's by
  ``attention_scale(layer)``; ``hook_q * attention_scale`` is the same in both.
- A bridge that fires no post-rotary q/k hook but runs the wrapped attention module (GPT-J) gets
  interp's attention probe installed on that module, as the native backend does: its attention
  implementation becomes interp's (eager code kept for an eager model).

The accepted architectures are derived from the family table (:func:`tl_families`); the family
row also locates the norms, MLP, output projection and head of the wrapped model, so ``norm``,
``mlp``, ``attn_output`` and ``unembed`` include the family's output norms and multipliers as the
native ones do. Per-head weights come from TransformerLens' stacked ``W_Q`` ... ``b_O`` (keys/
values expanded to every query head for GQA, zero biases where the checkpoint has none). KV-cache
continuation is not offered: TransformerLens' q/k hooks see only the new tokens' keys. The hook
functions live in :mod:`interp.models.adapters_tl_hooks`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from interp.errors import InputTypeError, InvalidArgumentError, UnsupportedModelError
from interp.models.adapters_tl_hooks import Recorder, attention_features, attention_scale
from interp.models.attention import AttentionProbe, register_attention_function
from interp.models.edits import apply_edits
from interp.models.families import FAMILIES, Family, get_submodule, scalar
from interp.models.family_modules import FamilyModules
from interp.models.hooked import Forward, HookedLM
from interp.models.hooks import all_hook_names, split_layer_name
from interp.models.interventions import AblationMethod, probe_ablation
from interp.models.native import hf_causal_mask, hf_rotary_embedding
from interp.models.weights import HeadWeights

# What TransformerLens 4.3's TransformerBridge does with each family row, measured by
# tests/test_models_adapters_families.py on tiny random-init models (which asserts every entry):
# status "works" (logits, every hook, post-rotary q/k, attention statistics with windows,
# softcaps and sinks, per-head weights, norms, ablations equal the native backend) or
# "fails at boot"; the note says how the adapter gets there where it is not the plain route.
_WORKS = "works"
TL_NOTES: dict[str, str] = {
    "ministral": "TransformerLens 4.3 has no MinistralForCausalLM adapter (only ministral3): "
    "boot_transformers raises 'Could not determine supported architecture from config'",
    "gptj": "the bridge fires no post-rotary q/k hook; interp's attention probe is installed on "
    "the wrapped GPT-J attention (eager code kept) for hook_q/hook_k and statistics",
    "gpt_neox": "post-rotary q/k rebuilt from hook_q/hook_k with the bridge's hook_cos/hook_sin",
    "falcon": "post-rotary q/k rebuilt from hook_q/hook_k with the bridge's hook_cos/hook_sin",
    "phi3": "post-rotary q/k rebuilt from hook_q/hook_k with the bridge's hook_cos/hook_sin",
    "opt": "hook_q is the projection output: it differs from native by attention_scale(layer) "
    "(OPT folds the scale into q_proj); hook_q * attention_scale is equal",
    "qwen2": "the bridge swaps the tokenizer for one rebuilt from the folder as Qwen2Tokenizer "
    "(right for a real checkpoint); pass tokenizer= to load_model to keep another",
    "mistral": "sliding window read from the config (the attention module holds none)",
    "starcoder2": "sliding window read from the config (the attention module holds none)",
    "gemma2": "attention softcap and per-layer windows read from the wrapped attention module",
    "gpt_oss": "learned sinks and per-layer windows read from the wrapped attention module",
}
TL_STATUS: dict[str, str] = {"ministral": "fails at boot"}


def tl_status(family: str) -> tuple[str, str]:
    """``(status, note)`` of a family row under the TransformerLens bridge (see ``TL_NOTES``)."""
    return TL_STATUS.get(family, _WORKS), TL_NOTES.get(family, "")


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


# Hooks the attention probe provides when the bridge fires no post-rotary q/k (``"probe"``).
_PROBED = ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_pattern")


class TransformerLensLM(FamilyModules, HookedLM):
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
        self.hook_names = all_hook_names(self.n_layers, parallel=self.parallel, per_head=False)
        self._layers = model.blocks
        self._probes: list[AttentionProbe] = []
        self._qk_source = self._find_qk_source()
        if self._qk_source == "probe":
            self._install_probes()
        self._scales = [attention_scale(block.attn, cfg, self.d_head) for block in model.blocks]
        self._features = [attention_features(model, block.attn) for block in model.blocks]

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
        plan = request.plan
        padding = plan.key_padding
        # With the probe, the wrapped attention modules capture q/k/v and compute the statistics
        # into the plan themselves; TransformerLens' hooks carry everything else.
        probed = self._qk_source == "probe"
        recorder = Recorder(self, None if probed else plan.stats, padding)
        recorder.outputs = plan.outputs
        recorder.stats_out = plan.stats_out
        recorder.stats_checks = plan.stats_checks
        names = request.names
        if probed:
            names = [n for n in names if split_layer_name(n)[1] not in _PROBED]
        recorder.detach = plan.detach
        hooks = self._edit_hooks(request) + recorder.hooks(names)
        # An explicit all-ones mask keeps TransformerLens from guessing padding from pad ids.
        tokens = request.tokens
        mask = padding.long() if padding is not None else torch.ones_like(tokens)
        with contextlib.ExitStack() as stack:
            for probe in self._probes:
                probe.plan = plan
                stack.callback(setattr, probe, "plan", None)
            stack.enter_context(self.model.hooks(fwd_hooks=hooks + self._ablation_hooks))
            logits = self.model(tokens, return_type="logits", attention_mask=mask)
        if request.logits_to_keep:
            logits = logits[:, -request.logits_to_keep :]
        return logits, None

    def _edit_hooks(self, request: Forward) -> list[tuple[str, Callable]]:
        """The run's edits as TransformerLens hooks returning the replacement (registered before
        the capture hooks, so captures see the edited values). q/k/v edits go through interp's
        attention probe where the bridge runs it; post-rotary q/k edits need a hook point that
        carries them."""
        hooks = []
        for name, edits in request.plan.edits.items():
            suffix = split_layer_name(name)[1]
            if suffix in _PROBED and self._qk_source == "probe":
                continue  # the attention probe applies it
            if suffix in ("attn.hook_q", "attn.hook_k") and self._qk_source not in ("plain", "rot"):
                raise UnsupportedModelError(
                    f"{name} cannot be edited through this TransformerLens bridge "
                    f"({self.family.name}): it fires no hook after rotary; load the Hugging Face "
                    "model with interp.load_model to edit post-rotary q/k"
                )

            def edit(tensor: torch.Tensor, hook: object, name=name, edits=edits) -> torch.Tensor:
                return apply_edits(edits, tensor, request.context(name))

            hooks.append((self.tl_hook_name(name), edit))
        return hooks

    _ablation_hooks: list = []

    @contextlib.contextmanager
    def _ablation(self, heads: dict[int, list[int]], method: AblationMethod):
        """Ablations as TransformerLens hooks added to every run inside the block: ``"zero"``
        on ``attn.hook_z``, ``"uniform"`` on the post-rotary query hook (through the attention
        probe where the bridge fires none)."""
        if method == "uniform" and self._qk_source == "probe":
            with probe_ablation(self._probes, [], heads, method, self.n_heads):
                yield
            return
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
        """The hook whose zeroed heads make those heads attend uniformly: the post-rotary query,
        or for ``"rotate"`` bridges the pre-rotary one (rotary is linear: zero stays zero, and
        these families have no query norm after it)."""
        if self._qk_source not in ("plain", "rot", "rotate"):
            raise UnsupportedModelError(
                f"uniform ablation needs a query hook, which this TransformerLens model "
                f"({self.family.name}) does not fire; use method='zero'"
            )
        if self._qk_source == "rotate":
            return f"blocks.{layer}.attn.hook_q"
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
        tables), or ``"probe"`` (neither, but the bridge runs the wrapped Hugging Face attention
        module, which calls transformers' attention interface, as for GPT-J: interp's attention
        probe is installed there, as in the native backend). A two-token forward tells whether
        ``hook_rot_q`` fires and whether the wrapped module runs."""
        points = self.model.hook_dict
        if "blocks.0.attn.hook_rot_q" not in points:
            return "plain"
        fired, ran = [], []
        attn = self._layers[0].attn
        wrapped = getattr(attn, "original_component", None)
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.inference_mode())
            stack.enter_context(
                self.model.hooks(
                    fwd_hooks=[("blocks.0.attn.hook_rot_q", lambda t, hook: fired.append(1))]
                )
            )
            if isinstance(wrapped, nn.Module):
                hook = wrapped.register_forward_pre_hook(lambda module, args: ran.append(1))
                stack.callback(hook.remove)
            self.model(torch.zeros(1, 2, dtype=torch.long, device=self.device), return_type=None)
        if fired:
            return "rot"
        if hasattr(attn, "_apply_rotary_pos_emb") and "blocks.0.attn.hook_cos" in points:
            return "rotate"
        hf_class = type(self.model.__dict__.get("original_model"))
        if ran and getattr(hf_class, "_supports_attention_backend", False):
            return "probe"
        return "unavailable"

    def _install_probes(self) -> None:
        """Route the wrapped model's attention through interp's attention function (its own
        eager code for an eager model, as TransformerLens sets it, so the bridge's pattern hooks
        still see weights) with a probe on every layer's attention module."""
        model = self._hf_model
        eager = getattr(model.config, "_attn_implementation", None) == "eager" or not getattr(
            type(model), "_supports_sdpa", True
        )
        model.set_attn_implementation(register_attention_function(eager=eager))
        for index, layer in enumerate(self.decoder_layers()):
            attention = get_submodule(layer, self.family.attn)
            # the bridge puts its own component in the Hugging Face tree, around the module
            attention = getattr(attention, "original_component", attention)
            probe = getattr(attention, "_interp_probe", None) or AttentionProbe(index)
            attention._interp_probe = probe
            self._probes.append(probe)

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
        layer = self._layer_index(layer)
        if self._qk_source != "probe":
            return self._scales[layer]
        if self._probes[layer].scale is None:  # recorded by the attention function on each call
            self.run(torch.tensor([[0, 0]]), prepend_bos=False)
        return self._probes[layer].scale

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

    # Norms, the MLP, the output projection and the unembedding are the Hugging Face modules the
    # bridge wraps, found through the family row (FamilyModules, shared with the native backend).
    @property
    def _hf_root(self) -> nn.Module:
        return self._hf_model

    @property
    def _blocks(self) -> nn.ModuleList:
        return self._hf_model.get_submodule(self.family.layers)

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
