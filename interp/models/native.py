"""The native backend: a Hugging Face causal LM wrapped in place, read through its family row.

Forward hooks capture the residual stream, the attention and MLP outputs (as added to the
residual: after a sandwich norm, times a residual multiplier), the per-head ``z`` (the output
projection's input) and MoE router logits; interp's attention function (registered in
transformers' attention interface) hands every layer's post-rotary q/k/v to the layer's probe,
which computes fused attention statistics from the very tensors the softmax sees. The model's
numbers are unchanged: the attention function delegates to the implementation the model was set
to (SDPA, or the module's own eager code for eager models, e.g. with softcapping or sinks).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, ExitStack

import torch
from torch import nn

from interp.errors import UnsupportedModelError
from interp.models.attention import AttentionProbe, register_attention_function
from interp.models.families import Family, family_for, get_submodule, scalar
from interp.models.family_modules import FamilyModules
from interp.models.hf_compat import cache_argument, returned_cache
from interp.models.hooked import Forward, HookedLM
from interp.models.hooks import all_hook_names
from interp.models.interventions import AblationMethod, probe_ablation
from interp.models.native_sites import HookSites
from interp.models.placement import input_device
from interp.models.weights import HeadWeights, onloaded, read_head_weights


def _kv_heads(config: object, family: Family) -> int:
    if family.n_kv_heads is not None:
        return family.n_kv_heads(config)
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads


class NativeLM(FamilyModules, HookedLM):
    """A Hugging Face causal LM of a family in :data:`interp.models.families.FAMILIES`."""

    backend = "native"

    def __init__(self, model: nn.Module, tokenizer: object, *, name: str | None = None) -> None:
        self.family: Family = family_for(model)
        self.model = model.eval()
        self.tokenizer = tokenizer
        config = model.config
        self.config = config
        self.name = name or getattr(config, "_name_or_path", "") or config.model_type
        self.n_layers: int = config.num_hidden_layers
        self.n_heads: int = config.num_attention_heads
        self.n_kv_heads: int = _kv_heads(config, self.family)
        self.d_model: int = config.hidden_size
        self.d_head: int = getattr(config, "head_dim", None) or self.d_model // self.n_heads
        self.d_vocab: int = config.vocab_size
        self.n_ctx: int = getattr(config, "max_position_embeddings", None) or config.n_positions
        self.parallel = self.family.parallel(config)
        self._layers = get_submodule(model, self.family.layers)
        routed = [i for i, layer in enumerate(self._layers) if self._has(layer, "router")]
        neurons = [
            i
            for i, layer in enumerate(self._layers)
            if self._has(layer, "mlp_in") and self._has(layer, "mlp_down")
        ]
        self.hook_names = all_hook_names(
            self.n_layers,
            positions=self.family.positions is not None,
            router_layers=routed,
            mlp_layers=neurons,
            parallel=self.parallel,
        )
        eager = getattr(config, "_attn_implementation", None) == "eager" or not getattr(
            type(model), "_supports_sdpa", True
        )
        model.set_attn_implementation(register_attention_function(eager=eager))
        self._probes = []
        for index, layer in enumerate(self._layers):
            attention = get_submodule(layer, self.family.attn)
            # Re-use a probe an earlier wrapper of the same model installed: replacing it would
            # leave that wrapper's runs looking at probes the model no longer calls.
            probe = getattr(attention, "_interp_probe", None) or AttentionProbe(index)
            attention._interp_probe = probe
            self._probes.append(probe)

    @property
    def _hf_root(self) -> nn.Module:
        return self.model

    @property
    def _blocks(self) -> nn.ModuleList:
        return self._layers

    @property
    def device(self) -> torch.device:
        """Where input ids go and every output comes back: the input embedding's (execution)
        device, also for a model accelerate split across devices or offloaded."""
        return input_device(self.model)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ----------------------------------------------------------------- forward
    def _forward(self, request: Forward) -> tuple[torch.Tensor, object | None]:
        kv = request.past_key_values
        kv_cache = {} if kv is None else {cache_argument(self.model): kv}
        keep = {"logits_to_keep": request.logits_to_keep} if request.logits_to_keep else {}
        with ExitStack() as stack:
            self._install(stack, request)
            positions = request.position_ids()
            output = self.model(
                input_ids=request.tokens,
                attention_mask=request.attention_mask,
                **({"position_ids": positions} if positions is not None else {}),
                use_cache=request.use_cache,
                **kv_cache,
                **keep,
            )
        return output.logits, returned_cache(output) if request.use_cache else None

    def _install(
        self, stack: ExitStack, request: Forward, captures: list[str] | None = None
    ) -> None:
        """Register exactly the hooks the request captures or edits (``captures``: capture only
        these names here, default all); ``stack`` removes them."""
        plan = request.plan
        plan.context = request.context
        for probe in self._probes:
            probe.plan = plan
            stack.callback(setattr, probe, "plan", None)
        sites = HookSites(stack, request, captures)
        family, config = self.family, self.config
        sites.output(
            "hook_embed", self.model, family.embed, scalar(family.embed_multiplier, config)
        )
        if family.positions is not None:
            sites.output("hook_pos_embed", self.model, family.positions)
        sites.output("ln_final.hook_normalized", self.model, family.ln_final)
        residual = scalar(family.residual_multiplier, config)
        for layer, block, prefix in sites.blocks(self._layers):
            attn_out, mlp_out = (
                family.attn_out_norm or family.attn,
                family.mlp_out_norm or family.mlp,
            )
            sites.output(prefix + "hook_attn_out", block, attn_out, residual, copy=True)
            sites.output(prefix + "hook_mlp_out", block, mlp_out, residual, copy=True)
            if family.router is not None:
                sites.output(prefix + "mlp.hook_router_logits", block, family.router)
            sites.output(prefix + "mlp.hook_pre", block, family.mlp_in)
            sites.input(prefix + "mlp.hook_post", block, family.mlp_down)
            sites.input(prefix + "attn.hook_z", block, family.o_proj, heads=self.n_heads)
            sites.result(prefix + "attn.hook_result", block, family.o_proj, self.W_O[layer])

    def _ablation(
        self, heads: dict[int, list[int]], method: AblationMethod
    ) -> AbstractContextManager[None]:
        o_projs = [get_submodule(layer, self.family.o_proj) for layer in self._layers]
        return probe_ablation(self._probes, o_projs, heads, method, self.n_heads)

    # ----------------------------------------------------------------- weights
    def _read_head_weights(self) -> HeadWeights:
        return read_head_weights(
            self._layers, self.family, self.n_heads, self.n_kv_heads, self.d_head, self.device
        )

    @property
    def W_E(self) -> torch.Tensor:
        """Token embedding ``[d_vocab, d_model]`` (raw weights; see ``embedding_scale``)."""
        return self._weight(self.family.embed)

    @property
    def embedding_scale(self) -> float:
        """Factor between ``W_E`` rows and what enters the residual stream: an embedding module
        that scales its output (Gemma: sqrt(d_model)) times the model's embedding multiplier
        (Granite)."""
        embed = get_submodule(self.model, self.family.embed)
        inside = float(getattr(embed, "scalar_embed_scale", 1.0))
        return inside * (scalar(self.family.embed_multiplier, self.config) or 1.0)

    @property
    def W_U(self) -> torch.Tensor:
        """Unembedding ``[d_model, d_vocab]`` (before the family's logit multiplier/softcap)."""
        return self._weight(self.family.unembed).T

    @property
    def b_U(self) -> torch.Tensor:
        module = get_submodule(self.model, self.family.unembed)
        with onloaded(module):
            bias = getattr(module, "bias", None)
            bias = bias.detach().to(self.device) if bias is not None else None
        return (
            bias
            if bias is not None
            else torch.zeros(self.d_vocab, dtype=self.dtype, device=self.device)
        )

    def _weight(self, path: str) -> torch.Tensor:
        """A module's weight on :attr:`device` (loaded from an offload for the read)."""
        module = get_submodule(self.model, path)
        with onloaded(module):
            return module.weight.detach().to(self.device)

    def attention_scale(self, layer: int) -> float:
        """The factor on ``q·k`` the softmax uses with this layer's ``hook_q``/``hook_k`` (as the
        model passed it on its last forward pass: OPT scales q in its projection and passes 1)."""
        scale = self._probes[self._layer_index(layer)].scale
        if scale is None:
            self.run(torch.tensor([[0, 0]]), prepend_bos=False)
            scale = self._probes[layer].scale
        return scale

    # ----------------------------------------------------------------- the model's computation
    def decoder_layers(self) -> list[nn.Module]:
        """The Hugging Face decoder layers: ``layer(hidden, **causal_context(...))``."""
        return list(self._layers)

    def rotary_embedding(self, x: torch.Tensor, positions: torch.Tensor) -> object:
        """The model's rotary ``(cos, sin)`` for ``positions`` (None for models without rotary)."""
        return hf_rotary_embedding(self.model, self.family, x, positions)

    def causal_mask(self, x: torch.Tensor, positions: torch.Tensor) -> object:
        """The mask the model's layers expect for an unpadded causal input ``x [B, T, d]``."""
        return hf_causal_mask(self.model.config, x, positions)

    def _has(self, layer: nn.Module, field: str) -> bool:
        """Whether ``layer`` has the row's module ``field`` (MoE layers lack dense-MLP parts,
        dense layers of an MoE model lack a router)."""
        path = getattr(self.family, field)
        if path is None:
            return False
        try:
            get_submodule(layer, path)
        except UnsupportedModelError:
            return False
        return True


def hf_rotary_embedding(
    model: nn.Module, family: Family, x: torch.Tensor, positions: torch.Tensor
) -> object:
    """A Hugging Face model's rotary ``(cos, sin)`` for ``positions`` (None without rotary)."""
    base = get_submodule(model, family.layers.rsplit(".", 1)[0])
    rotary = getattr(base, "rotary_emb", None)
    return rotary(x, positions) if rotary is not None else None


def hf_causal_mask(config: object, x: torch.Tensor, positions: torch.Tensor) -> object:
    """The mask a Hugging Face model's layers expect for an unpadded causal input ``x``."""
    from transformers.masking_utils import create_causal_mask

    return create_causal_mask(
        config=config,
        inputs_embeds=x,
        attention_mask=None,
        position_ids=positions,
        **{cache_argument(create_causal_mask): None},
    )
