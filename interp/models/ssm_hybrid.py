"""Hybrid attention + SSM language models (Hugging Face Bamba and Jamba) behind :class:`HookedLM`.

A hybrid decoder layer is ``h = h + mixer(input_layernorm(h))``, then ``h = h +
feed_forward(pre_ff_layernorm(h))``, where the mixer is either a Mamba / Mamba-2 block
(``layer.mamba``) or softmax attention (``layer.self_attn``); ``lm.layer_kinds[l]`` says which
(``"selective"`` or ``"attention"``). Hooks: ``hook_embed``, ``blocks.{l}.hook_resid_pre`` /
``hook_resid_post``, ``hook_mlp_out`` (no ``hook_resid_mid``: the base class derives it from
``hook_attn_out``, which SSM layers lack; it is ``resid_pre`` plus the mixer's output); on SSM layers ``hook_mixer_out`` and
the mixer hooks of :class:`~interp.models.ssm.MambaLM` (same recomputation, same guards); on
attention layers ``hook_attn_out`` and ``attn.hook_pattern`` (named explicitly; the model is
switched to transformers' eager attention so that the pattern is the one the softmax computed);
``ln_final.hook_normalized``. Per-head weights of an attention layer: :meth:`attention_ov`
(the all-layer ``W_Q``... arrays of a transformer do not exist here and raise
:class:`~interp.errors.UnsupportedModelError`).
"""

from __future__ import annotations

from contextlib import ExitStack

import torch
from torch import nn

from interp.errors import InvalidArgumentError, UnsupportedModelError
from interp.models.hf_compat import first
from interp.models.hooked import Forward
from interp.models.native_sites import HookSites
from interp.models.ssm import MambaLM
from interp.models.ssm_sites import MIXER_HOOKS, fixed_parameters, variant_of
from interp.models.weights import HeadWeights

HYBRIDS = ("bamba", "jamba")


def is_hybrid_model(model: object) -> bool:
    """Whether ``model`` is a Hugging Face hybrid this backend wraps (Bamba, Jamba)."""
    return getattr(getattr(model, "config", None), "model_type", None) in HYBRIDS


class HybridLM(MambaLM):
    """A Hugging Face ``BambaForCausalLM`` or ``JambaForCausalLM``, wrapped in place."""

    backend = "ssm-hybrid"

    def __init__(self, model: nn.Module, tokenizer: object, *, name: str | None = None) -> None:
        if not is_hybrid_model(model):
            raise UnsupportedModelError(
                f"the hybrid backend wraps {', '.join(HYBRIDS)}, got "
                f"{getattr(model.config, 'model_type', None)!r}"
            )
        model.set_attn_implementation("eager")  # the pattern is returned by eager attention
        self.model, self.tokenizer, self.config = model.eval(), tokenizer, model.config
        config = model.config
        self.name = name or getattr(config, "_name_or_path", "") or config.model_type
        self._layers = model.model.layers
        self.n_layers = len(self._layers)
        self.layer_kinds = [
            "selective" if hasattr(block, "mamba") else "attention" for block in self._layers
        ]
        if "selective" not in self.layer_kinds:
            raise UnsupportedModelError(f"{self.name} has no SSM layer")
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.d_model = config.hidden_size
        self.d_head = getattr(config, "head_dim", None) or self.d_model // self.n_heads
        self.d_vocab, self.n_ctx = config.vocab_size, 2**31 - 1
        mixer = self._layers[self.layer_kinds.index("selective")].mamba
        self.variant = variant_of(mixer)
        self.d_inner, self.d_state = mixer.intermediate_size, mixer.ssm_state_size
        self.n_ssm_heads = getattr(mixer, "num_heads", 0) if self.variant == "mamba2" else 0
        names = ["hook_embed"]
        for layer, kind in enumerate(self.layer_kinds):
            own = ("hook_attn_out", "attn.hook_pattern") if kind == "attention" else MIXER_HOOKS
            own = own if kind == "attention" else (*own, "hook_mixer_out")
            hooks = ["hook_resid_pre", *own, "hook_mlp_out", "hook_resid_post"]
            names += [f"blocks.{layer}.{h}" for h in hooks]
        self.hook_names = [*names, "ln_final.hook_normalized"]

    def __repr__(self) -> str:
        attention = self.layer_kinds.count("attention")
        return (
            f"HybridLM({self.name!r}, layers={self.n_layers} ({attention} attention), "
            f"ssm={self.variant}, heads={self.n_heads}, d_model={self.d_model})"
        )

    def _install(self, stack: ExitStack, request: Forward) -> None:
        sites = HookSites(stack, request)
        sites.output("hook_embed", self.model.model, "embed_tokens")
        sites.output("ln_final.hook_normalized", self.model.model, "final_layernorm")
        for layer, block, prefix in sites.blocks(self._layers):
            sites.output(prefix + "hook_mlp_out", block, "feed_forward")
            if self.layer_kinds[layer] == "attention":
                sites.output(prefix + "hook_attn_out", block, "self_attn")
                if prefix + "attn.hook_pattern" in request.names:
                    self._pattern(stack, request, block.self_attn, prefix + "attn.hook_pattern")
                continue
            self._mixer_hooks(stack, sites, request, block, "mamba", prefix)

    def _pattern(self, stack: ExitStack, request: Forward, attention, name: str) -> None:
        outputs, detach = request.plan.outputs, request.plan.detach

        def hook(module, args, output):
            weights = output[1]
            outputs[name] = weights.detach() if detach else weights

        stack.enter_context(attention.register_forward_hook(hook))

    # ----------------------------------------------------------------- per-layer structure
    def _kind(self, layer: int, kind: str) -> nn.Module:
        block = self._layers[self._layer_index(layer)]
        if self.layer_kinds[layer] != kind:
            raise InvalidArgumentError(
                f"{self.name} layer {layer} is {self.layer_kinds[layer]}, not {kind}; {kind} "
                "layers: "
                f"{[i for i, k in enumerate(self.layer_kinds) if k == kind]}"
            )
        return block.mamba if kind == "selective" else block.self_attn

    def ssm_parameters(self, layer: int) -> dict[str, torch.Tensor]:
        return fixed_parameters(self._kind(layer, "selective"))

    def attention_ov(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """An attention layer's ``W_V [heads, d_model, d_head]`` (key/value heads expanded to
        every query head) and ``W_O [heads, d_head, d_model]`` (TransformerLens layout)."""
        attention = self._kind(layer, "attention")
        v = attention.v_proj.weight.detach().T.reshape(self.d_model, self.n_kv_heads, self.d_head)
        v = v.permute(1, 0, 2).repeat_interleave(self.n_heads // self.n_kv_heads, dim=0)
        o = attention.o_proj.weight.detach().T.reshape(self.n_heads, self.d_head, self.d_model)
        return v, o

    def _read_head_weights(self) -> HeadWeights:
        raise UnsupportedModelError(
            f"{self.name} mixes attention and SSM layers: there are no all-layer W_Q/W_K/W_V/W_O "
            "arrays; read an attention layer's value/output maps with lm.attention_ov(layer)"
        )

    def mixer(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        return self._kind(layer, "selective")(x)

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return first(self._layers[self._layer_index(layer)].feed_forward(x))

    # ----------------------------------------------------------------- weights and norms
    @property
    def W_E(self) -> torch.Tensor:
        return self.model.model.embed_tokens.weight.detach()

    def norm_weights(self) -> dict[str, torch.Tensor]:
        return {
            "ln_mixer": torch.stack([b.input_layernorm.weight.detach() for b in self._layers]),
            "ln_mlp": torch.stack([b.pre_ff_layernorm.weight.detach() for b in self._layers]),
            "ln_final": self.model.model.final_layernorm.weight.detach(),
        }

    def norm(self, layer: int | None, kind: str, x: torch.Tensor) -> torch.Tensor:
        """``"final"``, or layer ``layer``'s ``"mixer"`` (alias ``"attn"``) or ``"mlp"`` norm."""
        if kind == "final":
            module = self.model.model.final_layernorm
        elif kind in ("mixer", "attn", "mlp"):
            block = self._layers[self._layer_index(layer)]
            module = block.pre_ff_layernorm if kind == "mlp" else block.input_layernorm
        else:
            raise InvalidArgumentError(f"norm kind must be mixer, attn, mlp or final, got {kind!r}")
        x = self._as_residual(x, "norm")
        with torch.inference_mode():
            return module(x)

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.norm(None, "final", x)
        with torch.inference_mode():
            return self.model.lm_head(normed)
