"""The TransformerLens adapter over every family row: a TransformerBridge booted offline on a tiny
random-init model must give what the native backend gives on the same weights.

For each row of :data:`interp.models.families.FAMILIES`, the tiny model is saved to a folder and
``TransformerBridge.boot_transformers(folder, hf_model=model)`` wraps it (no hub access). Then, on
a right-padded batch: logits, ``hook_embed``, ``hook_resid_pre/post``,
``hook_attn_out``, ``hook_mlp_out``, ``attn.hook_z``, ``attn.hook_v``, post-rotary
``attn.hook_k`` and ``attn.hook_q`` (compared as ``q * attention_scale``: TransformerLens'
``hook_q`` is the projection's output, and OPT folds the scale into it), the fused attention
statistics (sliding windows, softcaps and sinks read from the wrapped module), per-head weights,
norm scales, the embedding scale, ``norm``/``mlp``/``attn_output``/``unembed`` and head
ablations.

:func:`interp.models.adapters_tl.tl_status` states what TransformerLens 4.3 does with each family
(for the README support table); a family the bridge cannot boot is tested to fail exactly as
stated, and the route each note names for post-rotary q/k is the one the adapter takes, so the
table cannot go stale silently.
"""

from __future__ import annotations

import pytest
import torch

import interp
from interp.models import StatsRequest
from interp.models.adapters_tl import TL_NOTES, TransformerLensLM, tl_families, tl_status
from interp.models.families import FAMILIES
from tests.tiny import tiny_hf_model

TEXT = "w5 w9 w14 w5 w9 w30 w31 w7 w8 w20 w21"
BATCH = [TEXT, "w3 w4 w5 w6"]
# Family -> (status, note) under TransformerLens 4.3, as the adapter states it for the README
# support table; every entry is asserted here.
TL_STATUS: dict[str, tuple[str, str]] = {name: tl_status(name) for name in FAMILIES}
# The q/k route the notes name (the rest: hook_rot_q/k, or hook_q/k without rotary).
QK_ROUTES = {"gptj": "probe", "gpt_neox": "rotate", "falcon": "rotate", "phi3": "rotate"}
QK_ROUTES |= {"gpt2": "plain", "opt": "plain"}
WEIGHTS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "W_E", "W_U", "b_U")


def boot_bridge(model, tokenizer, folder):
    """A TransformerBridge over ``model``, booted offline from a folder it is saved to. The
    tokenizer is reloaded by its own class (AutoTokenizer would pick the family's class)."""
    from transformer_lens.model_bridge import TransformerBridge

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return TransformerBridge.boot_transformers(
        str(folder),
        hf_model=model,
        tokenizer=type(tokenizer).from_pretrained(folder),
        device="cpu",
    )


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def pair(request, tokenizer, tmp_path_factory):
    """(family, native HookedLM, TransformerLens-adapted HookedLM or None when boot fails)."""
    name = request.param
    native = interp.load_model(
        tiny_hf_model(name, vocab_size=len(tokenizer)), tokenizer=tokenizer, device="cpu"
    )
    folder = tmp_path_factory.mktemp(name)
    model = tiny_hf_model(name, vocab_size=len(tokenizer))
    if TL_STATUS[name][0] == "fails at boot":
        with pytest.raises(ValueError, match="Could not determine supported architecture"):
            boot_bridge(model, tokenizer, folder)
        return name, native, None
    # TransformerLens' Qwen2 adapter swaps the tokenizer for one rebuilt as Qwen2Tokenizer from
    # the folder (right for a real checkpoint, not for the test's word tokenizer): pass ours.
    bridged = interp.load_model(boot_bridge(model, tokenizer, folder), tokenizer=tokenizer)
    return name, native, bridged


def _stats_request(lm, inputs) -> StatsRequest:
    tokens, _ = lm._as_tokens(inputs, None, True)
    batch, length = tokens.shape
    previous = (torch.arange(length) - 1).expand(batch, length)
    return StatsRequest(
        targets=torch.stack([previous, torch.zeros_like(previous)], dim=-1),
        key_ranges=torch.tensor([[0, 3], [3, length]]).expand(batch, 2, 2),
    )


def _names() -> list[str]:
    return [
        "hook_embed",
        "blocks.*.hook_resid_pre",
        "blocks.*.hook_resid_post",
        "blocks.*.hook_attn_out",
        "blocks.*.hook_mlp_out",
        "blocks.*.attn.hook_z",
        "blocks.*.attn.hook_v",
        "ln_final.hook_normalized",
        "blocks.*.attn.hook_q",
        "blocks.*.attn.hook_k",
    ]


def _close(got: torch.Tensor, want: torch.Tensor, real: torch.Tensor, name: str) -> None:
    """Equal at real (unpadded) positions, within float32 rounding of the values' magnitude."""
    got, want = got[real], want[real]
    scale = max(want.abs().max().item(), 1.0)
    torch.testing.assert_close(got, want, atol=2e-5 * scale, rtol=0, msg=name)


def _at_real_queries(value: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Statistics ``[layers, batch, heads, query, ...]`` at the real queries (a padded query's
    statistics are whatever each backend's masking leaves there)."""
    assert value.shape[1] == real.shape[0] and value.shape[3] == real.shape[1], value.shape
    mask = real[None, :, None, :]
    mask = mask.reshape(*mask.shape, *[1] * (value.dim() - 4)).expand_as(value)
    return value[mask]


def test_bridge_matches_native(pair):
    """On a right-padded batch (its first row is unpadded, so both cases are covered)."""
    name, native, lm = pair
    inputs = BATCH
    if lm is None:
        pytest.skip(f"{name}: {TL_STATUS[name][1]}")
    assert isinstance(lm, TransformerLensLM) and lm.family.name == name
    assert lm._qk_source == QK_ROUTES.get(name, lm._qk_source), "the note's route"
    assert lm._qk_source in ("plain", "rot", "rotate", "probe")
    stats = _stats_request(native, inputs)
    names = _names()
    logits, cache = lm.run(inputs, capture=names, attention_stats=stats)
    ref_logits, ref = native.run(inputs, capture=names, attention_stats=stats)
    _, mask = native._as_tokens(inputs, None, True)
    real = torch.ones(ref_logits.shape[:2], dtype=torch.bool) if mask is None else mask.bool()
    _close(logits, ref_logits, real, "logits")
    assert sorted(cache) == sorted(ref)
    for hook, value in ref.items():
        got = cache[hook]
        if hook.endswith("attn.hook_q"):  # q·k·scale is what the softmax sees in both
            layer = int(hook.split(".")[1])
            got = got * lm.attention_scale(layer)
            value = value * native.attention_scale(layer)
        assert got.shape == value.shape, hook
        _close(got, value, real, hook)
    for field in ("lse", "max_prob", "target_prob", "range_mass", "argmax"):
        got, want = (
            _at_real_queries(cache.stats(field), real),
            _at_real_queries(ref.stats(field), real),
        )
        torch.testing.assert_close(got, want, atol=2e-5, rtol=0, msg=field)


def test_bridge_weights_norms_and_scales_match_native(pair):
    name, native, lm = pair
    if lm is None:
        pytest.skip(f"{name}: {TL_STATUS[name][1]}")
    for weight in WEIGHTS:
        got, want = getattr(lm, weight), getattr(native, weight)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0, msg=weight)
    for key, value in native.norm_weights().items():
        torch.testing.assert_close(lm.norm_weights()[key], value, msg=key)
    assert lm.embedding_scale == pytest.approx(native.embedding_scale)
    x = torch.randn(2, 3, lm.d_model, generator=torch.Generator().manual_seed(1))
    z = torch.randn(2, 3, lm.n_heads, lm.d_head, generator=torch.Generator().manual_seed(2))
    last = lm.n_layers - 1
    for kind, layer in (("attn", 0), ("mlp", last), ("final", None)):
        torch.testing.assert_close(lm.norm(layer, kind, x), native.norm(layer, kind, x))
    for layer in range(lm.n_layers):
        torch.testing.assert_close(lm.mlp(layer, x), native.mlp(layer, x), msg=f"mlp {layer}")
        torch.testing.assert_close(lm.attn_output(layer, z), native.attn_output(layer, z))
    torch.testing.assert_close(lm.unembed(x), native.unembed(x))
    # unembed of the last residual reproduces the bridge's own logits
    logits, cache = lm.run(TEXT, capture=f"blocks.{last}.hook_resid_post")
    _close(lm.unembed(cache[f"blocks.{last}.hook_resid_post"]), logits, slice(None), "unembed")
    assert (lm.n_heads, lm.n_kv_heads, lm.d_head, lm.parallel) == (
        native.n_heads,
        native.n_kv_heads,
        native.d_head,
        native.parallel,
    )


def test_every_row_maps_to_a_bridge_architecture():
    """The adapter's accepted architectures are derived from the family table: one per row."""
    assert sorted(tl_families().values()) == sorted(FAMILIES)
    assert set(TL_NOTES) <= set(FAMILIES)
    assert {status for status, _ in TL_STATUS.values()} == {"works", "fails at boot"}


def test_bridge_head_ablation_matches_native(pair):
    """Ablating heads (1, 0) and (0, 2) through the bridge gives the native backend's logits
    (``"zero"`` on ``hook_z``; ``"uniform"`` through the post-rotary query hook, the pre-rotary
    one where the bridge rotates outside its hooks - GPT-NeoX, Falcon, Phi-3: zero stays zero -
    or the probe - GPT-J)."""
    name, native, lm = pair
    if lm is None:
        pytest.skip(f"{name}: {TL_STATUS[name][1]}")
    heads = [(1, 0), (0, 2)]
    plain = lm(TEXT)
    for method in ("zero", "uniform"):
        with lm.ablate_heads(heads, method):
            logits = lm(TEXT)
        with native.ablate_heads(heads, method):
            expected = native(TEXT)
        _close(logits, expected, slice(None), f"{method} ablation")
        assert (logits - plain).abs().max() > 1e-6, method  # the ablation changed something
