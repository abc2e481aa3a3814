"""attention_stats through HookedLM.run on a right-padded batch, on both backends.

The statistics come from the model's own post-rotary q/k and masks; they must equal the ones read
off the explicitly requested pattern, and lse must equal the float64 log-sum-exp recomputed from
the captured hook_q / hook_k with the model's scale, causal mask and padding mask.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from interp.models.attention import StatsRequest  # noqa: E402

TEXTS = ["w1 w2 w3 w4 w5 w6 w7 w8 w9", "w10 w11 w12 w13", "w14 w15 w16 w17 w18 w19"]
LENGTHS = [10, 5, 7]  # with BOS
CAPTURE = ["blocks.*.attn.hook_pattern", "blocks.*.attn.hook_q", "blocks.*.attn.hook_k"]


@pytest.fixture
def sharp_lm(tiny_lm):
    """tiny_lm with its query projections scaled up (restored exactly afterwards): random-init
    logits are ~0.01, so attention would be nearly uniform and a wrong scale or mask hard to see."""
    weights = [m.q_proj.weight for n, m in tiny_lm.model.named_modules() if n.endswith("self_attn")]
    assert len(weights) == tiny_lm.n_layers
    saved = [w.detach().clone() for w in weights]
    with torch.no_grad():
        for w in weights:
            w.mul_(60)
    try:
        yield tiny_lm
    finally:
        with torch.no_grad():
            for w, original in zip(weights, saved, strict=True):
                w.copy_(original)


def _model_scale(lm) -> float:
    scales = {m.scaling for m in lm.model.modules() if hasattr(m, "scaling")}
    assert len(scales) == 1, scales
    return scales.pop()


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_stats_equal_pattern_on_padded_batch(sharp_lm, backend):
    tokens = sharp_lm.to_tokens(TEXTS)
    b, t = tokens.shape
    real = torch.arange(t)[None, :] < torch.tensor(LENGTHS)[:, None]  # right padding
    assert t == max(LENGTHS) and torch.equal(tokens != sharp_lm.tokenizer.pad_token_id, real)

    pos = torch.arange(t)
    targets = torch.stack([pos - 1, torch.zeros_like(pos), torch.full_like(pos, 6)], -1)
    targets = targets[None].expand(b, -1, -1).clone()  # previous token, BOS, key 6
    ranges = torch.tensor([[1, 3], [2, 9]]).expand(b, -1, -1).contiguous()
    request = StatsRequest(targets=targets, key_ranges=ranges, backend=backend)
    _, cache = sharp_lm.run(TEXTS, capture=CAPTURE, attention_stats=request)

    pattern = cache.stack("attn.hook_pattern").double()  # [L, B, H, T, T]
    assert (pattern[:, 1, :, :, 5:] == 0).all()  # padding keys of the short text get nothing
    tol = dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cache.stats("max_prob").double(), pattern.amax(-1), **tol)
    at_argmax = pattern.gather(-1, cache.stats("argmax")[..., None])[..., 0]
    torch.testing.assert_close(at_argmax, pattern.amax(-1), **tol)  # top-1 up to float32 ties
    tgt = targets[None, :, None].expand(pattern.shape[:-1] + (3,))
    want = torch.where(tgt >= 0, pattern.gather(-1, tgt.clamp(min=0)), 0.0)
    torch.testing.assert_close(cache.stats("target_prob").double(), want, **tol)
    want = torch.stack([pattern[..., 1:3].sum(-1), pattern[..., 2:9].sum(-1)], -1)
    torch.testing.assert_close(cache.stats("range_mass").double(), want, **tol)

    allowed = (pos[None, :] <= pos[:, None])[None] & real[:, None, :]  # [B, T(query), T(key)]
    scale = _model_scale(sharp_lm)
    lse = []
    for layer in range(sharp_lm.n_layers):
        q = cache[f"blocks.{layer}.attn.hook_q"].double().transpose(1, 2)  # [B, H, T, D]
        k = cache[f"blocks.{layer}.attn.hook_k"].double().transpose(1, 2)
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        logits = (scale * q @ k.transpose(-1, -2)).masked_fill(~allowed[:, None], -torch.inf)
        lse.append(torch.logsumexp(logits, dim=-1))
    lse = torch.stack(lse)
    assert lse.std() > 0.3  # sharp enough that a wrong scale or mask would show
    torch.testing.assert_close(cache.stats("lse").double(), lse, **tol)
