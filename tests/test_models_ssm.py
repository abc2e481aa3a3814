"""The SSM backend (MambaLM) on tiny random Mamba / Mamba-2 models: logits equal Hugging Face's
forward, captured states rerun through the recurrence reproduce the mixer output, hooks agree
with the model's own scan, and attention-only parts of the interface fail with one typed error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import interp
from interp.errors import InvalidArgumentError, UnknownHookError, UnsupportedModelError
from interp.models.ssm import MambaLM
from interp.models.ssm_tiny import tiny_ssm
from interp.models.tiny import word_tokenizer

VARIANTS = ("mamba", "falcon_mamba", "mamba2")


def _lm(variant: str, dtype=torch.float64, **kw) -> MambaLM:
    model = tiny_ssm(variant, dtype=dtype, **kw)
    return interp.load_model(model, tokenizer=word_tokenizer(96), device="cpu")


def _tokens(batch=2, length=13, seed=0):
    return torch.randint(0, 96, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logits_equal_hf_forward(variant, dtype):
    lm = _lm(variant, dtype)
    assert isinstance(lm, MambaLM)
    tokens = _tokens()
    logits, cache = lm.run(tokens, capture="blocks.**", prepend_bos=False)
    with torch.no_grad():
        reference = lm.model(tokens).logits
    assert torch.equal(logits, reference)  # hooks change nothing
    # the residual stream adds up: resid_post = resid_pre + mixer_out
    for layer in range(lm.n_layers):
        p = f"blocks.{layer}."
        torch.testing.assert_close(
            cache[p + "hook_resid_post"], cache[p + "hook_resid_pre"] + cache[p + "hook_mixer_out"]
        )
    assert "blocks.0.mixer.hook_state" not in cache  # state-sized hooks only when named


@pytest.mark.parametrize("variant", VARIANTS)
def test_captured_states_reproduce_the_mixer_output_float64(variant):
    lm = _lm(variant)
    layer, p = 1, "blocks.1.mixer."
    names = [p + h for h in ("hook_x", "hook_gate", "hook_C", "hook_log_abar", "hook_bbar")]
    names += [p + "hook_state", p + "hook_y", "blocks.1.hook_mixer_out"]
    _, cache = lm.run(_tokens(), capture=names, prepend_bos=False)
    x, gate, C = cache[p + "hook_x"], cache[p + "hook_gate"], cache[p + "hook_C"]
    log_abar, bbar, state = (
        cache[p + "hook_log_abar"],
        cache[p + "hook_bbar"],
        cache[p + "hook_state"],
    )
    D = lm.ssm_parameters(layer)["D"]
    b, t, c = x.shape
    # the recurrence, step by step, from the captured discretized parameters
    if variant != "mamba2":
        decay, inject, readout = log_abar.exp(), bbar * x[..., None], C[:, :, None, :]
    else:
        heads = log_abar.shape[-1]
        decay = log_abar.exp()[..., None, None]
        inject = x.reshape(b, t, heads, -1)[..., None] * bbar[:, :, :, None, :]
        readout = C.repeat_interleave(heads // C.shape[2], 2)[:, :, :, None, :]
    h = torch.zeros_like(state[:, 0])
    for step in range(t):
        h = decay[:, step] * h + inject[:, step]
        torch.testing.assert_close(state[:, step], h, rtol=1e-12, atol=1e-12)
    y = (state * readout).sum(-1).reshape(b, t, c) + D * x
    torch.testing.assert_close(cache[p + "hook_y"], y, rtol=1e-12, atol=1e-12)
    # through the model's own gate / gated norm and output projection
    mixer = lm.model.backbone.layers[layer].mixer
    with torch.no_grad():
        gated = y * F.silu(gate) if variant != "mamba2" else mixer.norm(y, gate)
        out = mixer.out_proj(gated)
    # transformers' torch scan casts its input to float32 even in a float64 model
    torch.testing.assert_close(out, cache["blocks.1.hook_mixer_out"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_hook_y_equals_the_models_own_scan(variant):
    """The scan output the model feeds its output projection (seen by a test-local hook) equals
    interp's recomputed scan output, gated: within float32 rounding (the model's scan dtype)."""
    lm = _lm(variant, torch.float32)
    mixer = lm.model.backbone.layers[0].mixer
    seen = {}
    handle = mixer.out_proj.register_forward_pre_hook(lambda m, a: seen.setdefault("in", a[0]))
    try:
        _, cache = lm.run(_tokens(), capture=["blocks.0.mixer.hook_y", "blocks.0.mixer.hook_gate"])
    finally:
        handle.remove()
    y, gate = cache["blocks.0.mixer.hook_y"], cache["blocks.0.mixer.hook_gate"]
    with torch.no_grad():
        gated = y * F.silu(gate) if variant != "mamba2" else mixer.norm(y, gate)
    torch.testing.assert_close(gated, seen["in"], rtol=1e-4, atol=1e-5)


def test_mamba2_chunk_sizes_agree():
    """Mamba-2's chunked scan with chunks of 4 and of 32 tokens: same logits (to rounding), the
    same captures (interp's hooks do not depend on the model's chunking)."""
    names = ["blocks.0.mixer.hook_state", "blocks.0.mixer.hook_delta", "blocks.1.hook_resid_pre"]
    small, large = _lm("mamba2", chunk_size=4), _lm("mamba2", chunk_size=32)
    a_logits, a = small.run(_tokens(length=11), capture=names)
    b_logits, b = large.run(_tokens(length=11), capture=names)
    torch.testing.assert_close(a_logits, b_logits, rtol=1e-5, atol=1e-6)
    for name in names:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_padding_and_edits():
    lm = _lm("mamba")
    tokens = _tokens(batch=1, length=9)
    alone, _ = lm.run(tokens, prepend_bos=False)
    padded = torch.cat([tokens, torch.zeros(1, 3, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 9), torch.zeros(1, 3)], 1).long()
    logits, _ = lm.run(padded, attention_mask=mask, prepend_bos=False)
    torch.testing.assert_close(logits[:, :9], alone)  # right padding: causal
    zero = {"blocks.0.hook_mixer_out": torch.zeros(())}
    _, cache = lm.run(tokens, capture="blocks.0.hook_res*", edits=zero, prepend_bos=False)
    torch.testing.assert_close(cache["blocks.0.hook_resid_post"], cache["blocks.0.hook_resid_pre"])
    with pytest.raises(InvalidArgumentError, match="cannot be edited"):
        lm.run(tokens, edits={"blocks.0.mixer.hook_delta": torch.zeros(())})


def test_state_capture_is_guarded(monkeypatch):
    lm = _lm("mamba")
    monkeypatch.setattr("interp.models.ssm.PATTERN_LIMIT", 100)
    with pytest.raises(InvalidArgumentError, match="limit is 100"):
        lm.run(_tokens(), capture="blocks.*.mixer.hook_state")
    _, cache = lm.run(_tokens(), capture="blocks.*.mixer.*")  # globs skip the state: no error
    assert "blocks.0.mixer.hook_delta" in cache and "blocks.0.mixer.hook_state" not in cache
    with pytest.raises(UnknownHookError):
        lm.run(_tokens(), capture="blocks.0.attn.hook_pattern")


def test_attention_parts_raise_one_typed_error():
    lm = _lm("mamba2")
    for attempt in (
        lambda: lm.W_Q,
        lambda: lm.W_O,
        lambda: lm.ablate_heads([(0, 0)]),
        lambda: lm.run(_tokens(), attention_stats=True),
        lambda: lm.attn_output(0, torch.zeros(1, 1)),
        lambda: lm.attention_scale(0),
        lambda: lm.mlp(0, torch.zeros(1, 16)),
    ):
        with pytest.raises(UnsupportedModelError):
            attempt()


def test_load_model_from_a_folder(tmp_path):
    model = tiny_ssm("mamba")
    model.save_pretrained(tmp_path)
    word_tokenizer(96).save_pretrained(tmp_path)
    lm = interp.load_model(str(tmp_path), device="cpu")
    assert isinstance(lm, MambaLM) and lm.variant == "mamba"
    tokens = _tokens(batch=1)
    with torch.no_grad():
        torch.testing.assert_close(lm.forward(tokens, prepend_bos=False), model(tokens).logits)
    torch.testing.assert_close(
        lm.unembed(
            lm.run(tokens, capture="blocks.1.hook_resid_post", prepend_bos=False)[1][
                "blocks.1.hook_resid_post"
            ]
        ),
        lm.forward(tokens, prepend_bos=False),
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_recomputed_hooks_are_what_the_models_scan_receives(variant, monkeypatch):
    """The scan function transformers calls, wrapped to record its arguments: interp's scan
    input, B, C and Delta equal them bit for bit (same torch operations, same dtype)."""
    import importlib

    module = importlib.import_module(f"transformers.models.{variant}.modeling_{variant}")
    name = "mamba2_scan_forward" if variant == "mamba2" else "mamba_scan_forward"
    original, seen = getattr(module, name), []

    def recording(mixer, *args, **kwargs):
        seen.append(args)
        return original(mixer, *args, **kwargs)

    monkeypatch.setattr(module, name, recording)
    lm = _lm(variant, torch.float32)
    hooks = ["hook_x", "hook_B", "hook_C", "hook_delta"]
    _, cache = lm.run(_tokens(), capture=[f"blocks.0.mixer.{h}" for h in hooks])
    x, B, C, delta = (cache[f"blocks.0.mixer.{h}"] for h in hooks)
    mixer = lm.model.backbone.layers[0].mixer
    if variant == "mamba2":
        hidden, b, c, dt = seen[0][:4]
        assert torch.equal(hidden, x)
        assert torch.equal(b, B.flatten(2)) and torch.equal(c, C.flatten(2))
        expected = F.softplus(dt + mixer.dt_bias.to(dt.dtype))
    else:
        hidden, step, b, c = seen[0][:4]
        assert torch.equal(hidden, x.transpose(1, 2))
        assert torch.equal(b, B) and torch.equal(c, C)
        expected = F.softplus(step + mixer.dt_proj.bias.float().to(step.dtype)[..., None])
        expected = expected.transpose(1, 2)
    assert torch.equal(expected, delta)


def test_weights_norms_and_parameters():
    lm = _lm("mamba2")
    backbone = lm.model.backbone
    assert torch.equal(lm.W_E, backbone.embeddings.weight) and torch.equal(
        lm.W_U.T, lm.model.lm_head.weight
    )
    assert lm.b_U.shape == (lm.d_vocab,) and not lm.b_U.any()
    x = torch.randn(2, 3, lm.d_model, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(lm.norm(1, "mixer", x), backbone.layers[1].norm(x))
        torch.testing.assert_close(lm.unembed(x), lm.model.lm_head(backbone.norm_f(x)))
    with pytest.raises(UnsupportedModelError, match="one norm"):
        lm.norm(1, "attn", x)
    params = lm.ssm_parameters(1)
    A_log = backbone.layers[1].mixer.A_log.detach().float()
    per_head = lm.d_inner // lm.n_ssm_heads
    expected = -torch.exp(A_log).repeat_interleave(per_head)[:, None].expand(-1, lm.d_state)
    torch.testing.assert_close(params["A"], expected)
    assert params["D"].shape == (lm.d_inner,)
    assert lm.norm_weights()["ln_mixer"].shape == (lm.n_layers, lm.d_model)
