"""Attribution patching (Nanda 2023) on a tiny random-init Llama.

References: the analytic gradient taken with ``torch.autograd`` on the Hugging Face model itself
(no interp hooks: ``inputs_embeds`` for the layer-0 residual, a zero offset added to ``o_proj``'s
input for per-head ``z``), central finite differences of patched runs in float64 for the
post-rotary keys and queries (HF's RMSNorm works in float32 even then, so the steps are
not tiny), and the sum over positions for ``positions="all"``.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import interp
from interp.patching import activation_patching, attribution_patching, logit_diff
from tests.tiny import tiny_hf_model

CLEAN = ["w5 w9 w14 w5 w9 w30 w31 w7", "w8 w9 w14 w8 w9 w30 w31 w7"]
CORRUPT = ["w6 w9 w14 w6 w9 w30 w31 w7", "w11 w9 w14 w11 w9 w30 w31 w7"]
ANSWERS, WRONG = ["w5", "w8"], ["w6", "w11"]


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_hf_model("llama", vocab_size=len(tokenizer))


@pytest.fixture(scope="module")
def lm(model, tokenizer):
    return interp.load_model(model, tokenizer=tokenizer)


def _ids(tokenizer, words):
    return torch.tensor([tokenizer.convert_tokens_to_ids(w) for w in words])


def _hf_metric(logits, tokenizer):
    rows = torch.arange(logits.shape[0])
    last = logits[:, -1]
    return last[rows, _ids(tokenizer, ANSWERS)] - last[rows, _ids(tokenizer, WRONG)]


def test_layer0_residual_equals_the_gradient_wrt_the_embeddings(lm, model, tokenizer):
    result = attribution_patching(
        lm, CLEAN, CORRUPT, logit_diff(lm, ANSWERS, WRONG), sites="resid_pre", layers=[0]
    )
    clean, corrupt = lm.to_tokens(CLEAN), lm.to_tokens(CORRUPT)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        clean_embeds = embed(clean)
    corrupt_embeds = embed(corrupt).detach().requires_grad_(True)
    metric = _hf_metric(model(inputs_embeds=corrupt_embeds).logits, tokenizer)
    (grad,) = torch.autograd.grad(metric.sum(), corrupt_embeds)
    expected = ((clean_embeds - corrupt_embeds.detach()) * grad).sum(-1)  # [batch, pos]
    torch.testing.assert_close(result.per_example[0] - metric.detach(), expected.T, atol=1e-6, rtol=1e-4)  # fmt: skip
    torch.testing.assert_close(result.baseline, metric.detach(), atol=1e-6, rtol=0)


def test_per_head_z_equals_the_gradient_at_o_proj(lm, model, tokenizer):
    layer = 1
    result = attribution_patching(
        lm, CLEAN, CORRUPT, logit_diff(lm, ANSWERS, WRONG), sites="z", layers=[layer]
    )
    o_proj = model.model.layers[layer].self_attn.o_proj
    seen = {}

    def offset(module, args):
        seen["z"] = args[0].detach()
        seen["delta"] = torch.zeros_like(args[0], requires_grad=True)
        return (args[0] + seen["delta"],)

    handle = o_proj.register_forward_pre_hook(offset)
    try:
        with torch.no_grad():
            model(lm.to_tokens(CLEAN))
        clean_z = seen["z"]
        metric = _hf_metric(model(lm.to_tokens(CORRUPT)).logits, tokenizer)
        (grad,) = torch.autograd.grad(metric.sum(), seen["delta"])
    finally:
        handle.remove()
    per_head = ((clean_z - seen["z"]) * grad).reshape(2, 9, lm.n_heads, lm.d_head).sum(-1)
    expected = per_head.permute(1, 2, 0)  # [pos, heads, batch]
    torch.testing.assert_close(result.per_example[0] - metric.detach(), expected, atol=1e-6, rtol=1e-4)  # fmt: skip


@pytest.mark.parametrize(("site", "cells"), [("k", [(0, 4, 1), (1, 8, 0)]), ("q", [(1, 8, 2)])])
def test_keys_and_queries_equal_finite_differences(tokenizer, site, cells):
    lm = interp.load_model(
        tiny_hf_model("llama", vocab_size=len(tokenizer)).double(), tokenizer=tokenizer
    )
    metric = logit_diff(lm, ANSWERS, WRONG)
    result = attribution_patching(lm, CLEAN, CORRUPT, metric, sites=site)
    hook = f"blocks.{{}}.attn.hook_{site}"
    _, clean = lm.run(CLEAN, capture=f"blocks.*.attn.hook_{site}")
    _, corrupt = lm.run(CORRUPT, capture=f"blocks.*.attn.hook_{site}")
    eps = 0.05  # HF's RMSNorm computes in float32 even in a float64 model: no tiny steps
    for layer, pos, head in cells:
        name = hook.format(layer)
        step = clean[name][:, pos, head] - corrupt[name][:, pos, head]

        def moved(alpha, name=name, pos=pos, head=head, step=step):
            def edit(x, ctx):
                x = x.clone()
                x[:, pos, head] += alpha * step
                return x

            logits, _ = lm.run(CORRUPT, edits={name: edit})
            return _hf_metric(logits, tokenizer)

        slope = (moved(eps) - moved(-eps)) / (2 * eps)
        estimate = result.per_example[layer, pos, head] - result.baseline
        torch.testing.assert_close(estimate, slope, atol=1e-6, rtol=1e-2)
        assert slope.abs().max() > 1e-5  # the cell matters


def test_all_positions_is_the_sum_over_positions(lm):
    metric = logit_diff(lm, ANSWERS, WRONG)
    each = attribution_patching(lm, CLEAN, CORRUPT, metric, sites=["mlp_out", "v"])
    together = attribution_patching(
        lm, CLEAN, CORRUPT, metric, sites=["mlp_out", "v"], positions="all"
    )
    for site in ("mlp_out", "v"):
        summed = each[site].effects.sum(1)
        torch.testing.assert_close(together[site].effects, summed, atol=1e-6, rtol=1e-5)


def test_zero_ablation_attribution_is_minus_activation_times_gradient(lm, model, tokenizer):
    result = attribution_patching(
        lm, CLEAN, None, logit_diff(lm, ANSWERS, WRONG), sites="resid_pre", layers=[0],
        ablation="zero",
    )  # fmt: skip
    embeds = model.get_input_embeddings()(lm.to_tokens(CLEAN)).detach().requires_grad_(True)
    metric = _hf_metric(model(inputs_embeds=embeds).logits, tokenizer)
    (grad,) = torch.autograd.grad(metric.sum(), embeds)
    expected = (-embeds.detach() * grad).sum(-1).T
    torch.testing.assert_close(result.per_example[0] - metric.detach(), expected, atol=1e-6, rtol=1e-4)  # fmt: skip
    assert result.method == "attribution patching (zero ablation)"


def test_attribution_tracks_activation_patching_and_backends_agree(lm, tokenizer):
    metric = logit_diff(lm, ANSWERS, WRONG)
    exact = activation_patching(lm, CLEAN, CORRUPT, metric, sites="z")
    estimate = attribution_patching(lm, CLEAN, CORRUPT, metric, sites="z")
    assert estimate.values.shape == exact.values.shape and estimate.axes == exact.axes
    for field in ("clean_metric", "corrupted_metric", "baseline"):
        torch.testing.assert_close(getattr(estimate, field), getattr(exact, field), atol=1e-5, rtol=0)  # fmt: skip
    pair = torch.stack([exact.effects.reshape(-1), estimate.effects.reshape(-1)])
    assert torch.corrcoef(pair)[0, 1] > 0.5  # a random tiny model: loosely linear
    from nnsight import LanguageModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = interp.load_model(
            LanguageModel(tiny_hf_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer)
        )
    theirs = attribution_patching(
        other, CLEAN, CORRUPT, logit_diff(other, ANSWERS, WRONG), sites="z"
    )
    torch.testing.assert_close(theirs.per_example, estimate.per_example, atol=1e-6, rtol=1e-5)


def test_transformer_lens_bridge_gives_the_same_attribution(lm, tokenizer, tmp_path):
    from tests.test_models_adapters import _boot_bridge

    bridge = interp.load_model(
        _boot_bridge(tiny_hf_model("llama", vocab_size=len(tokenizer)), tokenizer, tmp_path)
    )
    sites = ["resid_pre", "mlp_out", "z", "k"]
    mine = attribution_patching(lm, CLEAN, CORRUPT, logit_diff(lm, ANSWERS, WRONG), sites=sites)
    theirs = attribution_patching(
        bridge, CLEAN, CORRUPT, logit_diff(bridge, ANSWERS, WRONG), sites=sites
    )
    for site in sites:
        torch.testing.assert_close(
            theirs[site].per_example, mine[site].per_example, atol=1e-5, rtol=1e-4
        )
