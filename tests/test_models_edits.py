"""Edits, gradients, ragged batches, new hooks and generation on the native and nnsight backends.

References: the model's own clean run (patching it with its own activations changes nothing),
head ablation by the ablation context manager, HF's own ``generate``, a single unpadded run for
a padded row, finite differences for gradients.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import interp
from interp.errors import InvalidArgumentError
from tests.tiny import tiny_hf_model

CLEAN = "w5 w9 w14 w5 w9 w30 w31 w7"
CORRUPT = "w6 w9 w14 w6 w9 w30 w31 w7"


@pytest.fixture(scope="module")
def lm(tokenizer):
    return interp.load_model(tiny_hf_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer)


@pytest.fixture(scope="module")
def nnsight_lm(tokenizer):
    from nnsight import LanguageModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LanguageModel(
            tiny_hf_model("llama", vocab_size=len(tokenizer)), tokenizer=tokenizer
        )
    return interp.load_model(model)


def test_patching_with_own_activations_changes_nothing(lm):
    names = ["blocks.*.hook_resid_pre", "blocks.*.attn.hook_z", "blocks.*.attn.hook_q"]
    logits, cache = lm.run(CLEAN, capture=names)
    patched, _ = lm.run(CLEAN, edits={name: cache[name] for name in cache})
    assert torch.equal(patched, logits)


def test_layer0_resid_pre_patch_reproduces_the_clean_run(lm):
    clean, cache = lm.run(CLEAN, capture="blocks.0.hook_resid_pre")
    patched, _ = lm.run(
        CORRUPT, edits={"blocks.0.hook_resid_pre": cache["blocks.0.hook_resid_pre"]}
    )
    corrupt, _ = lm.run(CORRUPT)
    assert torch.equal(patched, clean) and not torch.allclose(corrupt, clean)


def test_capture_sees_the_edit_and_functions_get_context(lm):
    seen = {}

    def double(x, ctx):
        seen[ctx.hook] = (ctx.layer, ctx.positions.clone())
        return 2 * x

    plain, base = lm.run(CLEAN, capture="blocks.1.hook_attn_out")
    _, edited = lm.run(
        CLEAN, capture="blocks.1.hook_attn_out", edits={"blocks.1.hook_attn_out": double}
    )
    torch.testing.assert_close(edited["blocks.1.hook_attn_out"], 2 * base["blocks.1.hook_attn_out"])
    layer, positions = seen["blocks.1.hook_attn_out"]
    assert layer == 1 and torch.equal(positions, torch.arange(9)[None])


def test_edits_compose_in_order_and_context_manager_first(lm):
    name = "blocks.0.hook_mlp_out"
    _, base = lm.run(CLEAN, capture=name)
    with lm.edits({name: lambda x, ctx: x + 1}):
        _, cache = lm.run(CLEAN, capture=name, edits={name: lambda x, ctx: 3 * x})
    torch.testing.assert_close(cache[name], 3 * (base[name] + 1))
    _, after = lm.run(CLEAN, capture=name)  # the context manager's edit is gone
    assert torch.equal(after[name], base[name])


def test_zeroing_a_head_in_z_equals_zero_ablation(lm):
    def zero_head(z, ctx):
        z = z.clone()
        z[:, :, 2] = 0
        return z

    edited, _ = lm.run(CLEAN, edits={"blocks.1.attn.hook_z": zero_head})
    with lm.ablate_heads([(1, 2)], method="zero"):
        ablated, _ = lm.run(CLEAN)
    assert torch.equal(edited, ablated)


def test_per_head_results_sum_to_the_attention_output(lm):
    names = ["blocks.1.attn.hook_result", "blocks.1.hook_attn_out", "blocks.1.attn.hook_z"]
    _, cache = lm.run(CLEAN, capture=names)
    result = cache["blocks.1.attn.hook_result"]
    assert result.shape == (1, 9, lm.n_heads, lm.d_model)
    torch.testing.assert_close(result.sum(-2) + lm.b_O[1], cache["blocks.1.hook_attn_out"])
    zeroed = result.clone()
    zeroed[:, :, 2] = 0
    edited, _ = lm.run(CLEAN, edits={"blocks.1.attn.hook_result": zeroed})
    with lm.ablate_heads([(1, 2)], method="zero"):
        ablated, _ = lm.run(CLEAN)
    torch.testing.assert_close(edited, ablated, atol=1e-5, rtol=0)


def test_neuron_hooks_and_scores(lm):
    names = [
        "blocks.0.mlp.hook_pre",
        "blocks.0.mlp.hook_post",
        "blocks.0.hook_mlp_out",
        "blocks.0.attn.hook_attn_scores",
        "blocks.0.attn.hook_pattern",
    ]
    _, cache = lm.run(CLEAN, capture=names)
    down = lm.model.model.layers[0].mlp.down_proj
    with torch.inference_mode():
        out = down(cache["blocks.0.mlp.hook_post"])
    torch.testing.assert_close(out, cache["blocks.0.hook_mlp_out"])
    gate = torch.nn.functional.silu(cache["blocks.0.mlp.hook_pre"])
    up = cache["blocks.0.mlp.hook_post"] / gate  # post = act(gate) * up
    assert torch.isfinite(up).all() and cache["blocks.0.mlp.hook_pre"].shape[-1] == 64
    torch.testing.assert_close(
        cache["blocks.0.attn.hook_attn_scores"].softmax(-1), cache["blocks.0.attn.hook_pattern"]
    )
    silenced, _ = lm.run(CLEAN, edits={"blocks.0.mlp.hook_post": torch.zeros(64)})
    with_mlp_zero, _ = lm.run(CLEAN, edits={"blocks.0.hook_mlp_out": torch.zeros(lm.d_model)})
    torch.testing.assert_close(silenced, with_mlp_zero)


def test_bad_edits_are_named(lm):
    with pytest.raises(InvalidArgumentError, match="cannot be edited"):
        lm.run(CLEAN, edits={"blocks.0.attn.hook_pattern": torch.zeros(1)})
    with pytest.raises(InvalidArgumentError, match="does not broadcast"):
        lm.run(CLEAN, edits={"blocks.0.hook_resid_pre": torch.zeros(3)})
    with pytest.raises(
        InvalidArgumentError, match="must return a tensor of the activation's shape"
    ):
        lm.run(CLEAN, edits={"blocks.0.hook_resid_pre": lambda x, ctx: x[:, :1]})
    with pytest.raises(TypeError, match="function fn\\(tensor, ctx\\) or a tensor"):
        lm.run(CLEAN, edits={"blocks.0.hook_resid_pre": 3})
    with pytest.raises(KeyError, match="unknown hook name"):
        lm.run(CLEAN, edits={"blocks.0.hook_nope": torch.zeros(1)})


def test_gradients_reach_captured_activations(lm):
    name = "blocks.0.hook_resid_post"
    logits, cache = lm.run(CLEAN, capture=name, grad=True)
    metric = logits[0, -1, 7] - logits[0, -1, 8]
    (grad,) = torch.autograd.grad(metric, cache[name])
    direction = torch.randn_like(grad)
    eps = 1e-3
    resid = cache[name].detach()
    up, _ = lm.run(CLEAN, edits={name: resid + eps * direction})
    down, _ = lm.run(CLEAN, edits={name: resid - eps * direction})
    finite = ((up[0, -1, 7] - up[0, -1, 8]) - (down[0, -1, 7] - down[0, -1, 8])) / (2 * eps)
    torch.testing.assert_close((grad * direction).sum(), finite, atol=2e-3, rtol=2e-2)
    plain, cache = lm.run(CLEAN, capture=name)
    assert not plain.requires_grad and not cache[name].requires_grad


@pytest.mark.parametrize("side", ["right", "left"])
def test_ragged_batches_pick_each_rows_last_token(lm, side):
    texts = [CLEAN, "w3 w4 w5"]
    logits, cache = lm.run(texts, padding_side=side)
    alone, _ = lm.run(texts[1])
    last = cache.at_last(logits)
    torch.testing.assert_close(last[1], alone[0, -1], atol=1e-5, rtol=0)
    assert cache.attention_mask.sum(1).tolist() == [9, 4]
    assert cache.last_positions.tolist() == ([8, 3] if side == "right" else [8, 8])


def test_greedy_generate_equals_hugging_face(lm, tokenizer):
    model = tiny_hf_model("llama", vocab_size=len(tokenizer))
    prompt = lm.to_tokens(CLEAN)
    with torch.no_grad():
        expected = model.generate(
            prompt, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=2
        )
    out = lm.generate(prompt, max_new_tokens=6, prepend_bos=False, stop_at_eos=False)
    assert torch.equal(out.tokens, expected)


def test_generate_applies_edits_and_captures_every_step(lm):
    out = lm.generate(
        CLEAN, max_new_tokens=4, capture="blocks.0.hook_resid_post", stop_at_eos=False
    )
    assert out.activations("blocks.0.hook_resid_post").shape[1] == 9 + 3
    steered = lm.generate(
        CLEAN,
        max_new_tokens=4,
        edits={"blocks.0.hook_resid_post": lambda x, ctx: x * 0},
        stop_at_eos=False,
    )
    assert steered.new_tokens.shape == out.new_tokens.shape
    # a zeroed residual after layer 0 makes every position's input to layer 1 the same
    zero, _ = lm.run(
        steered.tokens[:, :-1],
        prepend_bos=False,
        edits={"blocks.0.hook_resid_post": torch.zeros(lm.d_model)},
    )
    assert torch.equal(zero[0, -1].argmax(), steered.tokens[0, -1])
    sampled = [
        lm.generate(CLEAN, max_new_tokens=5, do_sample=True, seed=3, stop_at_eos=False).new_tokens
        for _ in range(2)
    ]
    assert torch.equal(sampled[0], sampled[1])
    with pytest.raises(InvalidArgumentError, match="max_new_tokens"):
        lm.generate(CLEAN, max_new_tokens=0)


def test_nnsight_edits_equal_native(lm, nnsight_lm):
    name = "blocks.1.attn.hook_z"
    edit = {name: lambda z, ctx: z * 0.5, "blocks.0.hook_resid_post": lambda x, ctx: x + 0.1}
    native, native_cache = lm.run(CLEAN, capture=[name, "blocks.1.hook_resid_post"], edits=edit)
    adapted, cache = nnsight_lm.run(CLEAN, capture=[name, "blocks.1.hook_resid_post"], edits=edit)
    torch.testing.assert_close(adapted, native, atol=1e-5, rtol=0)
    for key in native_cache:
        torch.testing.assert_close(cache[key], native_cache[key], atol=1e-5, rtol=0)


def test_transformer_lens_edits_equal_native(lm, tokenizer, tmp_path):
    """The same edits through a TransformerBridge of the same weights give the native numbers."""
    from tests.test_models_adapters import _boot_bridge

    bridge = interp.load_model(
        _boot_bridge(tiny_hf_model("llama", vocab_size=len(tokenizer)), tokenizer, tmp_path)
    )
    names = ["blocks.1.attn.hook_z", "blocks.1.hook_resid_post", "blocks.0.attn.hook_q"]
    edit = {
        "blocks.1.attn.hook_z": lambda z, ctx: z * 0.5,
        "blocks.0.hook_resid_post": lambda x, ctx: x + 0.1,
        "blocks.0.attn.hook_q": lambda q, ctx: q * 2,
    }
    native, native_cache = lm.run(CLEAN, capture=names, edits=edit)
    adapted, cache = bridge.run(CLEAN, capture=names, edits=edit)
    torch.testing.assert_close(adapted, native, atol=1e-4, rtol=0)
    for key in native_cache:
        torch.testing.assert_close(cache[key], native_cache[key], atol=1e-4, rtol=0)
    logits, cache = bridge.run(CLEAN, capture="blocks.0.hook_resid_post", grad=True)
    (grad,) = torch.autograd.grad(logits[0, -1, 7], cache["blocks.0.hook_resid_post"])
    assert grad.abs().sum() > 0


def test_query_edits_reach_the_attention_statistics(lm):
    """Zeroed queries attend uniformly: max probability 1/(i+1) at query i, for both backends of
    the statistics, so the statistics see the edited q."""
    for backend in ("torch", "triton"):
        _, cache = lm.run(
            CLEAN,
            attention_stats=interp.models.StatsRequest(backend=backend),
            edits={"blocks.1.attn.hook_q": torch.zeros(1)},
        )
        uniform = 1 / torch.arange(1, 10, dtype=torch.float32)
        max_prob = cache.attention_stats[1].max_prob[0]  # [heads, queries]
        torch.testing.assert_close(max_prob, uniform.expand_as(max_prob))
        assert not torch.allclose(cache.attention_stats[0].max_prob[0], uniform.expand_as(max_prob))
