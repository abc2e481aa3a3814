"""The family table: one row per decoder family, everything interp needs to know about it.

A row says where each part of a Hugging Face causal LM lives (module paths relative to the
causal-LM module or to one decoder layer), how its query/key/value projections are laid out, which
norms sit where, and which scalar multipliers the model applies. Every backend and analyzer reads
families through this table only: adding a family is adding a row (``tests/test_families.py``
builds every row from a tiny random config and runs the whole contract on it).

Things that need no row field because the model's own attention call carries them: q/k norms (the
attention function sees q/k after them), rotary embeddings, sliding windows (``sliding_window``),
attention logit softcapping (``softcap``) and learned sinks (``s_aux``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from interp.errors import UnsupportedModelError

Config = object
QKVLayout = Literal["separate", "stacked", "grouped"]


def _attr(name: str, default: float = 1.0) -> Callable[[Config], float]:
    """A config attribute as a scalar (``default`` where the attribute is missing or None)."""

    def read(config: Config) -> float:
        value = getattr(config, name, None)
        return float(default if value is None else value)

    read.__doc__ = f"config.{name} (default {default})"
    return read


def _flag(name: str, default: bool = False) -> Callable[[Config], bool]:
    def read(config: Config) -> bool:
        value = getattr(config, name, None)
        return bool(default if value is None else value)

    read.__doc__ = f"config.{name} (default {default})"
    return read


def _always(value: bool) -> Callable[[Config], bool]:
    return lambda config: value


def _reciprocal(read: Callable[[Config], float]) -> Callable[[Config], float]:
    return lambda config: 1.0 / read(config)


def _opt_mlp(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """OPT keeps its MLP as ``fc1``/``activation_fn``/``fc2`` directly on the decoder layer."""
    return layer.fc2(layer.activation_fn(layer.fc1(x)))


def _all_heads(config: Config) -> int:
    """Families without grouped-query attention: every head has its own key and value."""
    return int(config.num_attention_heads)


def _falcon_kv_heads(config: Config) -> int:
    if getattr(config, "new_decoder_architecture", False):
        return int(config.num_kv_heads)
    return 1 if getattr(config, "multi_query", False) else int(config.num_attention_heads)


@dataclass(frozen=True)
class Family:
    """Where each part of one family's causal LM lives, and the scalars it applies.

    Paths: ``layers``, ``ln_final``, ``embed``, ``unembed``, ``positions`` are relative to the
    causal-LM module; the rest are relative to one decoder layer. ``hook_mlp_out`` is the output of
    ``mlp`` (``mlp_fn(layer, x)`` computes the MLP where it is not one module, as in OPT).

    ``qkv`` layouts (output features of the projection, before splitting heads):
    ``"separate"`` (``q_proj``/``k_proj``/``v_proj``), ``"stacked"`` (one ``fused_qkv`` module,
    ``[q heads | k heads | v heads]``: GPT-2's Conv1D, Phi-3) and ``"grouped"`` (one module,
    ``[kv group, (its queries..., key, value), d_head]``: GPT-NeoX, Falcon in all three of its
    layouts).

    Norms: ``ln_attn``/``ln_mlp`` are the norms the sublayers read (``None``: the sublayer reads the
    raw residual, as in OLMo-2's post-norm blocks; in a parallel block with one shared norm,
    ``ln_mlp`` is that same norm). ``attn_out_norm``/``mlp_out_norm`` are applied to a sublayer's
    output before the residual add (Gemma-2/3 sandwich norms, OLMo-2). ``norm_offset`` is added to a
    stored norm weight to give the scale it multiplies by (Gemma's ``1 + w``).

    Scalars read from the config: ``embed_multiplier`` (applied by the model after the embedding
    module, Granite), ``residual_multiplier`` (on each sublayer output, Granite),
    ``logit_multiplier`` (Cohere's ``logit_scale``, Granite's ``1 / logits_scaling``) and
    ``final_softcap`` (Gemma-2/3: logits = c * tanh(logits / c)). ``parallel(config)`` says whether
    attention and MLP both read the block input.

    ``router``: the MoE router module in a layer (its output's first element is the router logits,
    ``blocks.{l}.mlp.hook_router_logits``). ``mlp_in``/``mlp_down``: the MLP's input projection
    (its output is ``mlp.hook_pre``, the gate's pre-activation in gated MLPs; Phi-3's fused
    ``[gate | up]``) and output projection (its input is ``mlp.hook_post``, the neuron
    activations); layers without them (MoE experts) do not offer these hooks.
    """

    name: str
    layers: str = "model.layers"
    attn: str = "self_attn"
    o_proj: str = "self_attn.o_proj"
    mlp: str = "mlp"
    mlp_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
    ln_attn: str | None = "input_layernorm"
    ln_mlp: str | None = "post_attention_layernorm"
    attn_out_norm: str | None = None
    mlp_out_norm: str | None = None
    ln_final: str = "model.norm"
    embed: str = "model.embed_tokens"
    unembed: str = "lm_head"
    positions: str | None = None
    qkv: QKVLayout = "separate"
    q_proj: str = "self_attn.q_proj"
    k_proj: str = "self_attn.k_proj"
    v_proj: str = "self_attn.v_proj"
    fused_qkv: str = ""
    norm_offset: float = 0.0
    parallel: Callable[[Config], bool] = _always(False)
    n_kv_heads: Callable[[Config], int] | None = None
    embed_multiplier: Callable[[Config], float] | None = None
    residual_multiplier: Callable[[Config], float] | None = None
    logit_multiplier: Callable[[Config], float] | None = None
    final_softcap: Callable[[Config], float | None] | None = None
    router: str | None = None
    mlp_in: str = "mlp.gate_proj"
    mlp_down: str = "mlp.down_proj"
    notes: str = ""


def _row(name: str, **fields: object) -> Family:
    return Family(name=name, **fields)


_SANDWICH = dict(
    ln_mlp="pre_feedforward_layernorm",
    attn_out_norm="post_attention_layernorm",
    mlp_out_norm="post_feedforward_layernorm",
    norm_offset=1.0,
)
_GEMMA2_CAP = dict(
    final_softcap=lambda config: getattr(config, "final_logit_softcapping", None),
)
_GPT2_LIKE = dict(
    layers="transformer.h",
    attn="attn",
    ln_attn="ln_1",
    ln_final="transformer.ln_f",
    embed="transformer.wte",
)

FAMILIES: dict[str, Family] = {
    row.name: row
    for row in (
        _row("llama"),
        _row("mistral", notes="sliding window when config.sliding_window is set"),
        _row("ministral", notes="sliding window"),
        _row("qwen2"),
        _row("qwen3", notes="per-head q/k RMSNorm before rotary"),
        _row("smollm3", notes="no rotary on every 4th layer (NoPE)"),
        _row("gemma", norm_offset=1.0, notes="embeddings scaled by sqrt(d_model)"),
        _row(
            "gemma2",
            **_SANDWICH,
            **_GEMMA2_CAP,
            notes="sandwich norms; attention and final logit softcapping; sliding window layers",
        ),
        _row(
            "gemma3_text",
            **_SANDWICH,
            **_GEMMA2_CAP,
            notes="sandwich norms; per-head q/k norms; sliding window layers (own rotary base)",
        ),
        _row("olmo", notes="LayerNorm without parameters; optional q/k/v clipping"),
        _row(
            "olmo2",
            ln_attn=None,
            ln_mlp=None,
            attn_out_norm="post_attention_layernorm",
            mlp_out_norm="post_feedforward_layernorm",
            notes="post-norm blocks; q/k RMSNorm over the whole projection",
        ),
        _row(
            "granite",
            embed_multiplier=_attr("embedding_multiplier"),
            residual_multiplier=_attr("residual_multiplier"),
            logit_multiplier=_reciprocal(_attr("logits_scaling")),
            notes="embedding, attention, residual and logit multipliers",
        ),
        _row(
            "starcoder2",
            mlp_in="mlp.c_fc",
            mlp_down="mlp.c_proj",
            notes="LayerNorm; biases; sliding window when configured",
        ),
        _row(
            "cohere",
            ln_mlp="input_layernorm",
            parallel=_always(True),
            logit_multiplier=_attr("logit_scale"),
            notes="parallel attention + MLP over one LayerNorm; logit scale",
        ),
        _row(
            "stablelm",
            ln_mlp="post_attention_layernorm|input_layernorm",
            parallel=_flag("use_parallel_residual"),
            notes="LayerNorm; partial rotary; optional parallel residual",
        ),
        _row(
            "phi",
            o_proj="self_attn.dense",
            ln_mlp="input_layernorm",
            ln_final="model.final_layernorm",
            parallel=_always(True),
            notes="parallel attention + MLP over one LayerNorm; partial rotary",
            mlp_in="mlp.fc1",
            mlp_down="mlp.fc2",
        ),
        _row(
            "phi3",
            qkv="stacked",
            fused_qkv="self_attn.qkv_proj",
            notes="fused qkv and gate/up projections",
            mlp_in="mlp.gate_up_proj",
        ),
        _row("mixtral", router="mlp.gate", notes="MoE MLP (top-k router)"),
        _row("qwen3_moe", router="mlp.gate", notes="MoE MLP; per-head q/k RMSNorm"),
        _row(
            "gpt_oss",
            router="mlp.router",
            notes="MoE MLP; learned attention sinks; alternating sliding window layers",
        ),
        _row("olmoe", router="mlp.gate", notes="MoE MLP; q/k RMSNorm over the projection"),
        _row(
            "gpt2",
            **_GPT2_LIKE,
            o_proj="attn.c_proj",
            ln_mlp="ln_2",
            positions="transformer.wpe",
            qkv="stacked",
            fused_qkv="attn.c_attn",
            notes="learned absolute positions; fused qkv (Conv1D)",
            n_kv_heads=_all_heads,
            mlp_in="mlp.c_fc",
            mlp_down="mlp.c_proj",
        ),
        _row(
            "gptj",
            **_GPT2_LIKE,
            o_proj="attn.out_proj",
            ln_mlp="ln_1",
            q_proj="attn.q_proj",
            k_proj="attn.k_proj",
            v_proj="attn.v_proj",
            parallel=_always(True),
            notes="parallel attention + MLP over one LayerNorm; partial rotary",
            n_kv_heads=_all_heads,
            mlp_in="mlp.fc_in",
            mlp_down="mlp.fc_out",
        ),
        _row(
            "gpt_neox",
            layers="gpt_neox.layers",
            attn="attention",
            o_proj="attention.dense",
            ln_final="gpt_neox.final_layer_norm",
            embed="gpt_neox.embed_in",
            qkv="grouped",
            fused_qkv="attention.query_key_value",
            parallel=_flag("use_parallel_residual", True),
            notes="fused qkv interleaved per head; parallel residual (Pythia); partial rotary",
            n_kv_heads=_all_heads,
            mlp_in="mlp.dense_h_to_4h",
            mlp_down="mlp.dense_4h_to_h",
        ),
        _row(
            "falcon",
            layers="transformer.h",
            attn="self_attention",
            o_proj="self_attention.dense",
            ln_attn="ln_attn|input_layernorm",
            ln_mlp="ln_mlp|input_layernorm",
            ln_final="transformer.ln_f",
            embed="transformer.word_embeddings",
            qkv="grouped",
            fused_qkv="self_attention.query_key_value",
            parallel=_flag("parallel_attn", True),
            n_kv_heads=_falcon_kv_heads,
            notes="fused qkv (MQA or grouped); parallel attention + MLP",
            mlp_in="mlp.dense_h_to_4h",
            mlp_down="mlp.dense_4h_to_h",
        ),
        _row(
            "opt",
            layers="model.decoder.layers",
            o_proj="self_attn.out_proj",
            mlp="fc2",
            mlp_fn=_opt_mlp,
            ln_attn="self_attn_layer_norm",
            ln_mlp="final_layer_norm",
            ln_final="model.decoder.final_layer_norm",
            embed="model.decoder.embed_tokens",
            positions="model.decoder.embed_positions",
            notes="learned absolute positions (offset 2); MLP as fc1/fc2 on the layer",
            n_kv_heads=_all_heads,
            mlp_in="fc1",
            mlp_down="fc2",
        ),
    )
}


def family_for(model: nn.Module) -> Family:
    """The row for a Hugging Face causal LM, or one line naming the supported families."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in FAMILIES:
        raise UnsupportedModelError(
            f"unsupported architecture {model_type!r}; supported families: "
            f"{', '.join(sorted(FAMILIES))}. A TransformerLens TransformerBridge or an nnsight "
            "model of one of these families is accepted too"
        )
    return FAMILIES[model_type]


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    """``root.get_submodule(path)``; ``"a|b"`` takes the first alternative the model has (Falcon's
    norms depend on its config). The error names the missing path."""
    for option in path.split("|"):
        try:
            return root.get_submodule(option)
        except AttributeError:
            continue
    raise UnsupportedModelError(f"{type(root).__name__} has no submodule {path!r}")


def scalar(read: Callable[[Config], float | None] | None, config: Config) -> float | None:
    """A row's config scalar, or None where the row has none (or the config disables it)."""
    if read is None:
        return None
    value = read(config)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
