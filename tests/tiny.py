"""Tiny random-init models, an offline word-level tokenizer, and a GGUF writer for fast tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast


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


def tiny_hf_model(
    family: str, *, vocab_size: int = 96, layers: int = 2, seed: int = 0, **overrides
) -> torch.nn.Module:
    """A random-init causal LM of ``family`` (any row of ``interp.models.families.FAMILIES``)
    small enough for unit tests (float32, eval mode), built from transformers' own config class.

    ``overrides`` replace config fields (``hidden_size=64, head_dim=16``...) for hand-built models.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    from interp.models.families import FAMILIES

    if family not in FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; known: {', '.join(FAMILIES)}")
    torch.manual_seed(seed)
    fields = dict(_SMALL, num_hidden_layers=layers, vocab_size=vocab_size)
    if family in _NO_HEAD_DIM:
        fields.pop("head_dim")
    if FAMILIES[family].n_kv_heads is not None:  # no grouped-query attention in the config
        fields.pop("num_key_value_heads")
    fields |= TINY_OVERRIDES.get(family, {})
    config = AutoConfig.for_model(family, **(fields | overrides))
    return AutoModelForCausalLM.from_config(config).eval()


def gguf_vocabulary() -> list[str]:
    """A byte-level BPE vocabulary: the 256 byte symbols, two specials and two merges' tokens."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return [*bytes_to_unicode().values(), "<|endoftext|>", "<bos>", "\u0120t", "he"]


def _llama_cpp_permute(weight: np.ndarray, n_head: int, n_kv_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py ``LlamaModel.permute``: q/k rows from Hugging Face's
    half-split rotary layout into GGML's interleaved one."""
    if n_head != n_kv_head:
        n_head = n_kv_head
    rows = weight.shape[0] // n_head // 2
    return weight.reshape(n_head, 2, rows, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


_GGUF_LEAVES = {
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def write_llama_gguf(model: torch.nn.Module, path: Path) -> Path:
    """Write a Llama ``model`` (vocabulary :func:`gguf_vocabulary`) as an F32 GGUF file, laid out
    as llama.cpp's converter writes one: GGUF tensor names, q/k rows permuted, byte-level BPE."""
    import gguf

    config = model.config
    vocabulary = gguf_vocabulary()
    if config.vocab_size != len(vocabulary):
        raise ValueError(f"the model needs vocab_size={len(vocabulary)} for the GGUF vocabulary")
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_embedding_length(config.hidden_size)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(vocabulary)
    writer.add_token_types([1] * 256 + [3, 3, 1, 1])  # 3: control
    writer.add_token_merges(["\u0120 t", "h e"])
    writer.add_bos_token_id(vocabulary.index("<bos>"))
    writer.add_eos_token_id(vocabulary.index("<|endoftext|>"))
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    top = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
    for name, tensor in model.state_dict().items():
        module = name.removesuffix(".weight")
        value = tensor.detach().float().numpy()
        if module in top:
            writer.add_tensor(f"{top[module]}.weight", value)
            continue
        _, _, layer, leaf = module.split(".", 3)
        if leaf == "self_attn.q_proj":
            value = _llama_cpp_permute(value, heads, heads)
        elif leaf == "self_attn.k_proj":
            value = _llama_cpp_permute(value, heads, kv_heads)
        writer.add_tensor(f"blk.{layer}.{_GGUF_LEAVES[leaf]}.weight", np.ascontiguousarray(value))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
