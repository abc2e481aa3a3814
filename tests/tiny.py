"""Tiny random-init models and an offline word-level tokenizer for fast tests."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GemmaConfig,
    GemmaForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)


def word_tokenizer(size: int = 96) -> PreTrainedTokenizerFast:
    """Words ``w0 .. w{size-4}`` plus <unk>, <bos>, <pad>; whitespace-split."""
    vocab = {"<unk>": 0, "<bos>": 1, "<pad>": 2}
    vocab.update({f"w{i}": i + 3 for i in range(size - 3)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<bos>", pad_token="<pad>"
    )


def tiny_hf_model(
    family: str, *, vocab_size: int = 96, layers: int = 2, seed: int = 0
) -> torch.nn.Module:
    """A random-init causal LM of ``family`` small enough for unit tests (float32, eval mode)."""
    torch.manual_seed(seed)
    llama_like = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
        "gemma": (GemmaConfig, GemmaForCausalLM),
    }
    if family in llama_like:
        config_class, model_class = llama_like[family]
        config = config_class(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=128,
            bos_token_id=1,
            pad_token_id=2,
            eos_token_id=2,
            tie_word_embeddings=False,
        )
        model = model_class(config)
    elif family == "gpt2":
        config = GPT2Config(
            vocab_size=vocab_size,
            n_embd=32,
            n_layer=layers,
            n_head=4,
            n_positions=128,
            bos_token_id=1,
            eos_token_id=2,
        )
        model = GPT2LMHeadModel(config)
    elif family == "gpt_neox":
        config = GPTNeoXConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            max_position_embeddings=128,
            rotary_pct=0.5,
            use_parallel_residual=True,
            bos_token_id=1,
        )
        model = GPTNeoXForCausalLM(config)
    else:
        raise ValueError(f"unknown tiny family {family!r}")
    return model.eval()
