"""Per-architecture tables: where each part of a Hugging Face causal LM lives.

One :class:`Architecture` row describes a family's module paths, its q/k/v layout and its norm
kind; HookedLM reads everything through this table, so adding a family is adding a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn


@dataclass(frozen=True)
class Architecture:
    """Module paths (relative to the causal-LM module) and layout facts of one model family.

    ``qkv`` says how the query/key/value projections are stored:
    ``"separate"`` (q_proj/k_proj/v_proj ``nn.Linear``), ``"gpt2"`` (one ``Conv1D`` ``c_attn``,
    columns [q | k | v]) or ``"neox"`` (one ``nn.Linear`` whose rows are interleaved per head as
    [head, (q, k, v), d_head]). ``norm_offset`` is added to a norm's stored weight to give the
    scale it multiplies by: Gemma's RMSNorm computes ``x / rms(x) * (1 + w)``, so its offset is 1.
    """

    family: str
    layers: str
    attn: str
    o_proj: str
    mlp: str
    ln_attn: str
    ln_mlp: str
    ln_final: str
    embed: str
    unembed: str
    qkv: Literal["separate", "gpt2", "neox"]
    norm: Literal["rms", "layer"]
    q_proj: str = ""
    k_proj: str = ""
    v_proj: str = ""
    fused_qkv: str = ""
    rotary: bool = True
    norm_offset: float = 0.0

    def parallel_residual(self, config: object) -> bool:
        """True when attention and MLP both read the block input (GPT-NeoX / Pythia)."""
        return self.family == "gpt_neox" and bool(getattr(config, "use_parallel_residual", False))


_LLAMA = dict(
    layers="model.layers",
    attn="self_attn",
    o_proj="self_attn.o_proj",
    mlp="mlp",
    ln_attn="input_layernorm",
    ln_mlp="post_attention_layernorm",
    ln_final="model.norm",
    embed="model.embed_tokens",
    unembed="lm_head",
    qkv="separate",
    norm="rms",
    q_proj="self_attn.q_proj",
    k_proj="self_attn.k_proj",
    v_proj="self_attn.v_proj",
)

ARCHITECTURES: dict[str, Architecture] = {
    "llama": Architecture(family="llama", **_LLAMA),
    "mistral": Architecture(family="mistral", **_LLAMA),
    "qwen2": Architecture(family="qwen2", **_LLAMA),
    "gemma": Architecture(family="gemma", norm_offset=1.0, **_LLAMA),
    "gpt2": Architecture(
        family="gpt2",
        layers="transformer.h",
        attn="attn",
        o_proj="attn.c_proj",
        mlp="mlp",
        ln_attn="ln_1",
        ln_mlp="ln_2",
        ln_final="transformer.ln_f",
        embed="transformer.wte",
        unembed="lm_head",
        qkv="gpt2",
        norm="layer",
        fused_qkv="attn.c_attn",
        rotary=False,
    ),
    "gpt_neox": Architecture(
        family="gpt_neox",
        layers="gpt_neox.layers",
        attn="attention",
        o_proj="attention.dense",
        mlp="mlp",
        ln_attn="input_layernorm",
        ln_mlp="post_attention_layernorm",
        ln_final="gpt_neox.final_layer_norm",
        embed="gpt_neox.embed_in",
        unembed="lm_head",
        qkv="neox",
        norm="layer",
        fused_qkv="attention.query_key_value",
    ),
}


def architecture_for(model: nn.Module) -> Architecture:
    """The table row for a Hugging Face causal LM, or a clear error naming the supported ones."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unsupported architecture {model_type!r}; supported: {supported}")
    return ARCHITECTURES[model_type]


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    """``root.get_submodule`` with an error that names the missing path."""
    try:
        return root.get_submodule(path)
    except AttributeError as error:
        raise ValueError(f"{type(root).__name__} has no submodule {path!r}") from error
