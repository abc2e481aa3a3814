"""The embedded SmolLM2-135M-Instruct through HookedLM: parity, weights, attention statistics."""

from __future__ import annotations

import pytest
import torch

from interp.models import StatsRequest

pytestmark = pytest.mark.embedded

TEXT = "The cat sat on the mat. The dog sat on the log. The cat"


@pytest.fixture(scope="module")
def reference(embedded):
    """An untouched eager copy of the same checkpoint (read from the interp cache folder)."""
    from transformers import AutoModelForCausalLM

    from interp.models.registry import converted_gguf, embedded_gguf

    model = AutoModelForCausalLM.from_pretrained(
        converted_gguf(embedded_gguf()), attn_implementation="eager"
    )
    return model.eval()


def test_embedded_model_shape(embedded):
    assert (embedded.n_layers, embedded.n_heads, embedded.n_kv_heads, embedded.d_model) == (
        30,
        9,
        3,
        576,
    )
    assert embedded.family.name == "llama"
    assert embedded.to_str_tokens(" cat", prepend_bos=False) == [" cat"]


def test_embedded_logits_and_resid_match_hf(embedded, reference):
    tokens = embedded.to_tokens(TEXT)
    logits, cache = embedded.run(
        tokens, capture=["blocks.*.hook_resid_post", "blocks.5.attn.hook_pattern"]
    )
    with torch.no_grad():
        out = reference(tokens, output_hidden_states=True, output_attentions=True)
    torch.testing.assert_close(logits, out.logits, atol=1e-4, rtol=0)
    # The residual stream carries massive activations (|x| ~ 2.5e4 at BOS, where one float32 ulp
    # is ~2e-3), and eager attention rounds differently from SDPA: compare each position's vector
    # by its relative error rather than elementwise.
    for layer in (0, 14, 28):
        ours, theirs = cache[f"blocks.{layer}.hook_resid_post"], out.hidden_states[layer + 1]
        relative = (ours - theirs).norm(dim=-1) / theirs.norm(dim=-1)
        assert relative.max() < 1e-5, f"layer {layer}: relative error {relative.max():.2e}"
    torch.testing.assert_close(
        cache["blocks.5.attn.hook_pattern"], out.attentions[5], atol=1e-5, rtol=0
    )


def test_embedded_hooks_change_nothing_against_hf_sdpa(embedded, reference):
    """The right reference for "our hooks change nothing": HF's own SDPA forward of the same
    checkpoint ("interp" attention is that path behind a probe). Bit-identical logits, with every
    layer's residual stream, post-rotary q and attention statistics captured on the way."""
    tokens = embedded.to_tokens(TEXT)
    logits, _ = embedded.run(
        tokens,
        capture=["blocks.*.hook_resid_post", "blocks.*.attn.hook_q"],
        attention_stats=StatsRequest(backend="torch"),
    )
    reference.set_attn_implementation("sdpa")
    try:
        with torch.no_grad():
            expected = reference(tokens).logits
    finally:
        reference.set_attn_implementation("eager")
    assert torch.equal(logits, expected), (logits - expected).abs().max()


def test_attention_stats_equal_explicit_pattern(embedded):
    tokens = embedded.to_tokens(TEXT)
    length = tokens.shape[1]
    positions = torch.arange(length)
    targets = torch.stack([(positions - 1).clamp(min=-1), torch.zeros_like(positions)], dim=-1)[
        None
    ]
    ranges = torch.tensor([[[0, 1], [1, length // 2]]])
    request = StatsRequest(targets=targets, key_ranges=ranges, backend="torch")
    _, cache = embedded.run(tokens, capture="blocks.*.attn.hook_pattern", attention_stats=request)
    pattern = cache.stack("attn.hook_pattern").double()  # [L, B, H, T, T]
    torch.testing.assert_close(
        cache.stats("max_prob").double(), pattern.amax(-1), atol=1e-5, rtol=1e-5
    )
    assert torch.equal(cache.stats("argmax"), pattern.argmax(-1))
    previous = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)
    torch.testing.assert_close(
        cache.stats("target_prob")[..., 1:, 0].double(), previous, atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(
        cache.stats("target_prob")[..., 1].double(), pattern[..., 0], atol=1e-5, rtol=1e-5
    )
    mass = pattern[..., 1 : length // 2].sum(-1)
    torch.testing.assert_close(
        cache.stats("range_mass")[..., 1].double(), mass, atol=1e-5, rtol=1e-5
    )


def test_repeated_random_tokens_are_predicted_in_context(embedded):
    """DESIGN.md's measurement: loss on the repeated half of [BOS] r r falls from ~14 to ~3 nats."""
    generator = torch.Generator().manual_seed(0)
    random = torch.randint(1000, 20000, (4, 50), generator=generator)
    tokens = torch.cat([torch.full((4, 1), embedded.bos_token_id), random, random], dim=1)
    logits = embedded(tokens)
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none"
    )
    first, second = losses[:, 1:50].mean().item(), losses[:, 51:].mean().item()
    assert first > 8 and second < 5, (first, second)


def test_embedded_load_is_cached(tmp_path):
    """A second load in a fresh process reads the cached float checkpoint (no GGUF conversion)."""
    import subprocess
    import sys
    import time

    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import interp; interp.load_model(device='cpu')"],
        check=True,
        capture_output=True,
    )
    elapsed = time.perf_counter() - start
    from interp.models.registry import cached_models

    assert any(row["name"].startswith("SmolLM2-135M-Instruct") for row in cached_models())
    print(f"second load of the embedded model in a fresh process: {elapsed:.1f} s")
