"""Native HookedLM backend: parity with the plain Hugging Face forward on tiny models."""

from __future__ import annotations

import copy

import pytest
import torch

import interp
from tests.tiny import tiny_hf_model

FAMILIES = ["llama", "mistral", "qwen2", "gemma", "gpt2", "gpt_neox"]
ROTARY = ["llama", "mistral", "qwen2", "gemma"]  # separate q/k projections, full rotary
TEXT = "w5 w9 w14 w5 w9 w30 w31 w2 w7 w8 w20 w21"


def _pair(family: str, tokenizer, attention: str = "eager"):
    """A wrapped model and an untouched copy of the same weights running ``attention``."""
    reference = tiny_hf_model(family, vocab_size=len(tokenizer))
    reference.set_attn_implementation(attention)
    lm = interp.load_model(copy.deepcopy(reference), tokenizer=tokenizer, device="cpu")
    return lm, reference


# Parity of logits, residual stream, hook_z through W_O, post-rotary q/k against eager attention
# and W_V against hook_v is checked for every family in tests/test_families.py.


def test_query_weights_reproduce_hook_q_without_rotary(tokenizer):
    lm, _ = _pair("gpt2", tokenizer)
    _, cache = lm.run(
        TEXT, capture=["blocks.0.hook_resid_pre", "blocks.0.attn.hook_q", "blocks.0.attn.hook_k"]
    )
    x = lm.norm(0, "attn", cache["blocks.0.hook_resid_pre"]).double()
    for name, W, b in (("q", lm.W_Q, lm.b_Q), ("k", lm.W_K, lm.b_K)):
        projected = torch.einsum("btm,hmd->bthd", x, W[0].double()) + b[0].double()
        torch.testing.assert_close(
            projected.float(), cache[f"blocks.0.attn.hook_{name}"], atol=1e-5, rtol=0
        )


def test_resid_mid_and_mlp_out_decompose_the_block(tiny_lm):
    hooks = ["hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out"]
    _, cache = tiny_lm.run(TEXT, capture=[f"blocks.1.{h}" for h in hooks])
    c = {h: cache[f"blocks.1.{h}"] for h in hooks}
    torch.testing.assert_close(c["hook_resid_mid"], c["hook_resid_pre"] + c["hook_attn_out"])
    torch.testing.assert_close(c["hook_resid_post"], c["hook_resid_mid"] + c["hook_mlp_out"])
    mlp = tiny_lm.mlp(1, tiny_lm.norm(1, "mlp", c["hook_resid_mid"]))
    torch.testing.assert_close(mlp, c["hook_mlp_out"])


def test_captures_only_what_is_asked(tiny_lm):
    _, cache = tiny_lm.run(TEXT, capture=["blocks.0.attn.hook_z"])
    assert list(cache) == ["blocks.0.attn.hook_z"]
    assert cache["blocks.0.attn.hook_z"].shape == (1, 13, tiny_lm.n_heads, tiny_lm.d_head)
    _, empty = tiny_lm.run(TEXT)
    assert len(empty) == 0 and not empty.attention_stats


def test_padded_batch_matches_single_sequences(tiny_lm):
    texts = ["w5 w6 w7 w8 w9", "w10 w11"]
    logits, _ = tiny_lm.run(texts)
    for row, text in enumerate(texts):
        alone, _ = tiny_lm.run(text)
        length = alone.shape[1]
        torch.testing.assert_close(logits[row, :length], alone[0], atol=1e-5, rtol=0)


def test_gqa_weights_are_expanded_per_query_head(tiny_lm):
    assert tiny_lm.W_K.shape == (tiny_lm.n_layers, tiny_lm.n_heads, tiny_lm.d_model, tiny_lm.d_head)
    groups = tiny_lm.n_heads // tiny_lm.n_kv_heads
    torch.testing.assert_close(tiny_lm.W_K[:, 0], tiny_lm.W_K[:, groups - 1])
    assert not torch.equal(tiny_lm.W_K[:, 0], tiny_lm.W_K[:, groups])


def test_kv_cache_decoding_matches_full_forward(tiny_lm):
    tokens = tiny_lm.to_tokens(TEXT)
    full, _ = tiny_lm.run(tokens)
    prefix, cache = tiny_lm.run(tokens[:, :-1], use_cache=True)
    last, _ = tiny_lm.run(tokens[:, -1:], past_key_values=cache.past_key_values, use_cache=True)
    torch.testing.assert_close(last[0, -1], full[0, -1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_unembed_of_last_residual_reproduces_logits(family, tokenizer):
    lm, _ = _pair(family, tokenizer)
    logits, cache = lm.run(TEXT, capture=f"blocks.{lm.n_layers - 1}.hook_resid_post")
    unembedded = lm.unembed(cache[f"blocks.{lm.n_layers - 1}.hook_resid_post"])
    torch.testing.assert_close(unembedded, logits, atol=1e-5, rtol=0)
    direct = (
        lm.norm(None, "final", cache[f"blocks.{lm.n_layers - 1}.hook_resid_post"]) @ lm.W_U + lm.b_U
    )
    torch.testing.assert_close(direct, logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_hooks_change_nothing_against_hf_sdpa(family, tokenizer):
    """The "interp" attention is HF's SDPA path behind a probe: capturing everything must leave
    the logits bit-identical to HF's own SDPA forward, padded batch included (at the real
    tokens: interp counts positions over real tokens, so pad positions may differ)."""
    lm, reference = _pair(family, tokenizer, attention="sdpa")
    tokens, mask = lm._encode([TEXT, "w3 w4 w5"], prepend_bos=True)
    capture = ["blocks.*.hook_resid_post", "blocks.*.attn.hook_q", "blocks.*.attn.hook_z"]
    logits, _ = lm.run(tokens, capture=capture, attention_stats=True, attention_mask=mask)
    with torch.no_grad():
        expected = reference(tokens, attention_mask=mask).logits
    real = mask.bool()
    assert torch.equal(logits[real], expected[real]), (logits - expected)[real].abs().max()


def _rotate(x: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE (Su et al. 2021) in Hugging Face's half-split layout, float64: dimension pair
    (i, i + d/2) at position p is rotated by the angle p * theta^(-2i/d)."""
    d = x.shape[-1]
    angles = torch.arange(x.shape[1], dtype=torch.float64)[:, None] * theta ** (
        -torch.arange(0, d, 2, dtype=torch.float64) / d
    )
    cos, sin = angles.cos()[None, :, None], angles.sin()[None, :, None]
    first, second = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


@pytest.mark.parametrize("family", ROTARY)
def test_query_key_weights_plus_rotary_reproduce_hook_q_k(family, tokenizer):
    """W_Q/W_K (+ biases) applied to the normed residual, then rotated by RoPE, equal the
    captured post-rotary q/k; W_K is GQA-expanded, so compare against repeated kv heads."""
    lm, reference = _pair(family, tokenizer)
    theta = reference.config.rope_parameters["rope_theta"]
    groups = lm.n_heads // lm.n_kv_heads
    _, cache = lm.run(
        TEXT, capture=["blocks.*.hook_resid_pre", "blocks.*.attn.hook_q", "blocks.*.attn.hook_k"]
    )
    for layer in range(lm.n_layers):
        x = lm.norm(layer, "attn", cache[f"blocks.{layer}.hook_resid_pre"]).double()
        for kind, W, b in (("q", lm.W_Q, lm.b_Q), ("k", lm.W_K, lm.b_K)):
            projected = torch.einsum("btm,hmd->bthd", x, W[layer].double()) + b[layer].double()
            captured = cache[f"blocks.{layer}.attn.hook_{kind}"]
            if kind == "k":
                captured = captured.repeat_interleave(groups, dim=2)
            torch.testing.assert_close(
                _rotate(projected, theta).float(), captured, atol=1e-5, rtol=0, msg=kind
            )


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_norm_weights_are_the_scale_the_norm_applies(family, tokenizer):
    """RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g, with g = norm_weights() (Gemma: 1 + w)."""
    model = tiny_hf_model(family, vocab_size=len(tokenizer))
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__.endswith("RMSNorm"):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
    lm = interp.load_model(model, tokenizer=tokenizer, device="cpu")
    weights = lm.norm_weights()
    x = torch.randn(2, 3, lm.d_model, generator=generator)
    eps = model.config.rms_norm_eps
    normalized = x.double() / (x.double().pow(2).mean(-1, keepdim=True) + eps).sqrt()
    for layer, kind, key in (
        (1, "attn", "ln_attn"),
        (0, "mlp", "ln_mlp"),
        (None, "final", "ln_final"),
    ):
        scale = weights[key] if layer is None else weights[key][layer]
        torch.testing.assert_close(
            lm.norm(layer, kind, x), (normalized * scale.double()).float(), atol=1e-5, rtol=0
        )
