"""Tiny random-init models of every family in the family table, and an offline word-level
tokenizer: for tests, for the support table, and for trying the API without any download.

``tiny_model(family)`` builds a 2-layer model from transformers' own config class for that
family, with the family's features switched on where a config field does it (sliding windows
shorter than a test text, softcaps that bite, multipliers that are not 1, MoE routers).
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from interp.errors import UnknownNameError
from interp.models.families import FAMILIES


def word_tokenizer(size: int = 96) -> PreTrainedTokenizerFast:
    """Words ``w0 .. w{size-4}`` plus <unk>, <bos>, <pad>; whitespace-split."""
    vocab = {"<unk>": 0, "<bos>": 1, "<pad>": 2}
    vocab.update({f"w{i}": i + 3 for i in range(size - 3)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<bos>", pad_token="<pad>"
    )


_SMALL = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "max_position_embeddings": 128,
    "bos_token_id": 1,
    "pad_token_id": 2,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
}
_WINDOW = 4  # sliding windows shorter than the test texts, so that they matter
_MOE = {"num_local_experts": 4, "num_experts_per_tok": 2}
# What each family needs on top of _SMALL to be tiny and to exercise its features.
TINY_OVERRIDES: dict[str, dict] = {
    "mistral": {"sliding_window": _WINDOW},
    "ministral": {
        "sliding_window": _WINDOW,
        "layer_types": ["sliding_attention", "full_attention"],
    },
    "starcoder2": {"sliding_window": _WINDOW, "use_bias": True},
    "gemma2": {"sliding_window": _WINDOW, "attn_logit_softcapping": 2.0}
    | {"final_logit_softcapping": 3.0, "query_pre_attn_scalar": 8},
    "gemma3_text": {"sliding_window": _WINDOW, "sliding_window_pattern": 2}
    | {"query_pre_attn_scalar": 8, "final_logit_softcapping": 3.0},
    "granite": {"embedding_multiplier": 2.0, "residual_multiplier": 0.5}
    | {"attention_multiplier": 0.3, "logits_scaling": 4.0},
    "cohere": {"logit_scale": 0.5, "use_qk_norm": False},
    "stablelm": {"use_parallel_residual": True, "partial_rotary_factor": 0.5},
    "phi": {"partial_rotary_factor": 0.5, "qk_layernorm": False},
    "olmo": {"clip_qkv": None},
    "mixtral": _MOE,
    "qwen3_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16}
    | {"decoder_sparse_step": 1, "mlp_only_layers": [0]},
    "olmoe": {"num_experts": 4, "num_experts_per_tok": 2},
    "gpt_oss": _MOE
    | {"sliding_window": _WINDOW, "intermediate_size": 32}
    | {"layer_types": ["sliding_attention", "full_attention"], "rope_scaling": None},
    "smollm3": {"no_rope_layers": [1, 0]},
    "gpt2": {"n_embd": 32, "n_head": 4, "n_positions": 128, "n_inner": 64},
    "gpt_neox": {"rotary_pct": 0.5, "use_parallel_residual": True},
    "gptj": {"n_embd": 32, "n_head": 4, "n_positions": 128, "rotary_dim": 4, "n_inner": 64},
    "opt": {"ffn_dim": 64, "word_embed_proj_dim": 32, "enable_bias": True},
    "falcon": {"multi_query": True, "parallel_attn": True, "alibi": False, "bias": True},
}
_NO_HEAD_DIM = {"gpt2", "gptj", "opt", "falcon", "gpt_neox", "phi", "stablelm", "cohere"}


def tiny_model(
    family: str, *, vocab_size: int = 96, layers: int = 2, seed: int = 0, **overrides
) -> torch.nn.Module:
    """A random-init causal LM of ``family`` (any row of ``interp.models.families.FAMILIES``)
    small enough for unit tests (float32, eval mode), built from transformers' own config class.

    ``overrides`` replace config fields (``hidden_size=64, head_dim=16``...) for hand-built models.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    if family not in FAMILIES:
        raise UnknownNameError(f"unknown family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    torch.manual_seed(seed)
    fields = dict(_SMALL, num_hidden_layers=layers, vocab_size=vocab_size)
    if family in _NO_HEAD_DIM:
        fields.pop("head_dim")
    if FAMILIES[family].n_kv_heads is not None:  # no grouped-query attention in the config
        fields.pop("num_key_value_heads")
    fields |= TINY_OVERRIDES.get(family, {})
    config = AutoConfig.for_model(family, **(fields | overrides))
    return AutoModelForCausalLM.from_config(config).eval()
