"""Hybrid attention + SSM models (Bamba, Jamba) through load_model: logits equal Hugging Face's
forward, the residual stream adds up, SSM layers' operators reproduce their scan and attention
layers' operators their attention output, per-layer kinds in the mixer analysis."""

from __future__ import annotations

import functools

import pytest
import torch

import interp
from interp.errors import InvalidArgumentError, UnsupportedModelError
from interp.mixers import analyze_mixers, interaction_operators
from interp.models.ssm_hybrid import HybridLM
from interp.models.tiny import word_tokenizer

SMALL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "vocab_size": 96,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 32,
}
CONFIGS = {
    "jamba": {
        "attn_layer_period": 2,
        "attn_layer_offset": 1,
        "num_experts": 1,
        "mamba_d_state": 4,
        "mamba_expand": 2,
        "mamba_dt_rank": 4,
    },
    "bamba": {
        "attn_layer_indices": [1],
        "mamba_n_heads": 4,
        "mamba_d_head": 16,
        "mamba_d_state": 4,
        "mamba_n_groups": 1,
        "mamba_chunk_size": 8,
    },
}
TOKENS = torch.randint(0, 96, (2, 9), generator=torch.Generator().manual_seed(0))


@functools.cache
def _hybrid(kind: str) -> HybridLM:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(kind, **SMALL, **CONFIGS[kind])
    model = AutoModelForCausalLM.from_config(config).double().eval()
    return interp.load_model(model, tokenizer=word_tokenizer(96), device="cpu")


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_hybrid_logits_and_residual_stream(kind):
    lm = _hybrid(kind)
    assert isinstance(lm, HybridLM) and lm.layer_kinds == ["selective", "attention"]
    names = ["blocks.**", "blocks.1.attn.hook_pattern", "blocks.0.mixer.hook_state"]
    logits, cache = lm.run(TOKENS, capture=names, prepend_bos=False)
    with torch.no_grad():
        assert torch.equal(logits, lm.model(TOKENS).logits)
    for layer, mixer in enumerate(("hook_mixer_out", "hook_attn_out")):
        p = f"blocks.{layer}."
        total = cache[p + "hook_resid_pre"] + cache[p + mixer] + cache[p + "hook_mlp_out"]
        torch.testing.assert_close(cache[p + "hook_resid_post"], total)
    pattern = cache["blocks.1.attn.hook_pattern"]
    assert pattern.shape == (2, lm.n_heads, 9, 9)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, lm.n_heads, 9, dtype=torch.float64))
    assert "blocks.0.attn.hook_pattern" not in lm.hook_names
    assert "blocks.1.mixer.hook_delta" not in lm.hook_names


@pytest.mark.parametrize("kind", list(CONFIGS))
def test_hybrid_operators_reproduce_each_layer(kind):
    lm = _hybrid(kind)
    names = ["blocks.0.mixer.hook_x", "blocks.0.mixer.hook_y", "blocks.1.hook_resid_pre"]
    _, cache = lm.run(TOKENS[:1], capture=[*names, "blocks.1.hook_attn_out"])
    ssm = interaction_operators(lm, TOKENS[:1], 0)
    y = ssm.apply(cache["blocks.0.mixer.hook_x"][0])
    torch.testing.assert_close(y, cache["blocks.0.mixer.hook_y"][0], rtol=1e-12, atol=1e-12)
    attention = interaction_operators(lm, TOKENS[:1], 1)
    x = lm.norm(1, "attn", cache["blocks.1.hook_resid_pre"])[0]
    torch.testing.assert_close(attention.apply(x), cache["blocks.1.hook_attn_out"][0])
    result = analyze_mixers(lm, TOKENS[:1])
    assert result.kinds == ["selective", "attention"] and result.ranks[1] == lm.n_heads


def test_hybrid_errors():
    lm = _hybrid("bamba")
    with pytest.raises(UnsupportedModelError, match="attention_ov"):
        _ = lm.W_V
    with pytest.raises(InvalidArgumentError, match="is attention, not selective"):
        lm.ssm_parameters(1)
    with pytest.raises(InvalidArgumentError, match="is selective, not attention"):
        lm.attention_ov(0)
    with pytest.raises(UnsupportedModelError):
        lm.run(TOKENS, attention_stats=True)
