"""Test helpers: the tiny models and tokenizer of :mod:`interp.models.tiny`, and a GGUF writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from interp.models.tiny import tiny_model as tiny_hf_model
from interp.models.tiny import word_tokenizer

__all__ = ["tiny_hf_model", "word_tokenizer", "gguf_vocabulary", "write_llama_gguf"]


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
