"""TransformerLens (TransformerBridge) and nnsight adapters: same captures as the native backend.

Each library wraps its own copy of the same tiny random-init Hugging Face model (same seed, so
identical weights), and every capture, the logits, the attention statistics and the weights must
agree with the native HookedLM on that model. Offline: the bridge boots from a folder written
with ``save_pretrained`` and is handed the model object.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import interp
from interp.models import HookedLM, StatsRequest, adapters
from interp.models.adapters_nnsight import NNsightLM
from interp.models.adapters_tl import TransformerLensLM
from tests.tiny import tiny_hf_model

FAMILIES = ["gpt2", "llama", "gpt_neox"]
TEXT = "w5 w9 w14 w5 w9 w30 w31 w7 w8 w20 w21"
BATCH = [TEXT, "w3 w4 w5 w6"]  # right-padded second row
CAPTURE = [
    "hook_embed",
    "blocks.*.hook_resid_pre",
    "blocks.*.hook_resid_post",
    "blocks.*.hook_attn_out",
    "blocks.*.hook_mlp_out",
    "blocks.*.attn.hook_*",  # q, k, v (post-rotary), z
    "blocks.*.attn.hook_pattern",  # a glob never takes the pattern: it is named
    "ln_final.hook_normalized",
]
WEIGHTS = ["W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "W_E"]


def _boot_bridge(model, tokenizer, folder):
    """A TransformerBridge over ``model``, booted offline from a folder it is saved to."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return TransformerBridge.boot_transformers(
        str(folder), hf_model=model, tokenizer=AutoTokenizer.from_pretrained(folder), device="cpu"
    )


@pytest.fixture(scope="module")
def natives(tokenizer):
    return {
        f: interp.load_model(
            tiny_hf_model(f, vocab_size=len(tokenizer)), tokenizer=tokenizer, device="cpu"
        )
        for f in FAMILIES
    }


@pytest.fixture(scope="module")
def bridges(tokenizer, tmp_path_factory):
    return {
        f: interp.load_model(
            _boot_bridge(
                tiny_hf_model(f, vocab_size=len(tokenizer)), tokenizer, tmp_path_factory.mktemp(f)
            )
        )
        for f in FAMILIES
    }


@pytest.fixture(scope="module")
def nnsights(tokenizer):
    from nnsight import LanguageModel

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # LanguageModel is deprecated in favour of TransformersModel
        wrapped = {
            f: LanguageModel(tiny_hf_model(f, vocab_size=len(tokenizer)), tokenizer=tokenizer)
            for f in FAMILIES
        }
    return {f: interp.load_model(model) for f, model in wrapped.items()}


def _capture(family: str) -> list[str]:
    return CAPTURE + (
        [] if family == "gpt_neox" else ["blocks.*.hook_resid_mid"]
    )  # parallel residual


def _assert_same_run(native: HookedLM, adapted: HookedLM, inputs, family: str) -> None:
    capture = _capture(family)
    tokens, real = native._as_tokens(inputs, None, True)  # real: None without padding
    batch, length = tokens.shape
    previous = (torch.arange(length) - 1).expand(batch, length)  # -1 (none) for query 0
    stats = StatsRequest(
        targets=torch.stack([previous, torch.zeros_like(previous)], dim=-1),
        key_ranges=torch.tensor([[0, 3], [3, length]]).expand(batch, 2, 2),
    )
    logits, cache = adapted.run(inputs, capture=capture, attention_stats=stats)
    ref_logits, ref = native.run(inputs, capture=capture, attention_stats=stats)
    real = torch.ones(ref_logits.shape[:2], dtype=torch.bool) if real is None else real.bool()
    torch.testing.assert_close(logits[real], ref_logits[real], atol=1e-4, rtol=0)
    assert sorted(cache) == sorted(ref)
    for name, value in ref.items():
        assert cache[name].shape == value.shape, name
        got, want = (cache[name], value)
        if name.endswith("hook_pattern"):  # [batch, heads, query, key]: the real query rows
            got, want = got.transpose(1, 2), want.transpose(1, 2)
        got, want = got[real], want[real]
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0, msg=name)

    def rows(stats: torch.Tensor) -> torch.Tensor:  # [layers, batch, heads, query, ...] -> real
        return stats.movedim(1, 0).movedim(3, 1)[real]

    for field in ("lse", "max_prob", "target_prob", "range_mass"):
        got, want = rows(cache.stats(field)), rows(ref.stats(field))
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    assert torch.equal(rows(cache.stats("argmax")), rows(ref.stats("argmax")))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("inputs", [TEXT, BATCH], ids=["single", "padded"])
def test_bridge_captures_match_native(family, inputs, natives, bridges):
    assert isinstance(bridges[family], TransformerLensLM)
    _assert_same_run(natives[family], bridges[family], inputs, family)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("inputs", [TEXT, BATCH], ids=["single", "padded"])
def test_nnsight_captures_match_native(family, inputs, natives, nnsights):
    assert isinstance(nnsights[family], NNsightLM)
    _assert_same_run(natives[family], nnsights[family], inputs, family)


@pytest.mark.parametrize("backend", ["bridges", "nnsights"])
def test_gqa_shapes_and_attributes(backend, natives, request):
    lm, native = request.getfixturevalue(backend)["llama"], natives["llama"]
    for attribute in (
        "n_layers",
        "n_heads",
        "n_kv_heads",
        "d_model",
        "d_head",
        "d_vocab",
        "n_ctx",
        "bos_token_id",
    ):
        assert getattr(lm, attribute) == getattr(native, attribute), attribute
    assert (lm.n_heads, lm.n_kv_heads) == (4, 2)
    tokens = lm.to_tokens(TEXT)
    assert torch.equal(tokens, native.to_tokens(TEXT)) and lm.to_str_tokens(
        TEXT
    ) == native.to_str_tokens(TEXT)
    _, cache = lm.run(
        tokens, capture=["blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_z"]
    )
    assert cache["blocks.0.attn.hook_q"].shape == (1, tokens.shape[1], 4, lm.d_head)
    assert cache["blocks.0.attn.hook_k"].shape == (1, tokens.shape[1], 2, lm.d_head)
    assert cache["blocks.0.attn.hook_z"].shape == (1, tokens.shape[1], 4, lm.d_head)
    assert interp.load_model(lm) is lm


@pytest.mark.parametrize(
    ("family", "backend"),
    [(f, b) for f in FAMILIES for b in ("bridges", "nnsights")],
)
def test_weights_norms_and_mlp_match(family, backend, natives, tokenizer, request):
    lm, native = request.getfixturevalue(backend)[family], natives[family]
    for name in WEIGHTS:
        assert torch.equal(getattr(lm, name), getattr(native, name)), name
    head = tiny_hf_model(family, vocab_size=len(tokenizer)).get_output_embeddings()
    assert torch.equal(lm.W_U, head.weight.detach().T)
    for key, value in native.norm_weights().items():
        assert torch.equal(lm.norm_weights()[key], value), key
    x = torch.randn(2, 3, lm.d_model, generator=torch.Generator().manual_seed(1))
    for kind, layer in (("attn", 0), ("mlp", 1), ("final", None)):
        torch.testing.assert_close(
            lm.norm(layer, kind, x), native.norm(layer, kind, x), atol=1e-5, rtol=0
        )
    torch.testing.assert_close(lm.mlp(1, x), native.mlp(1, x), atol=1e-5, rtol=0)
    # unembed is final norm + W_U: applied to the last residual it reproduces the logits
    logits, cache = lm.run(TEXT, capture=f"blocks.{lm.n_layers - 1}.hook_resid_post")
    torch.testing.assert_close(
        lm.unembed(cache[f"blocks.{lm.n_layers - 1}.hook_resid_post"]), logits, atol=1e-5, rtol=0
    )


def test_nnsight_continues_from_a_kv_cache(nnsights):
    lm = nnsights["llama"]
    tokens = lm.to_tokens(TEXT)
    full, ref = lm.run(tokens, capture="blocks.1.hook_resid_post", attention_stats=True)
    _, prefix = lm.run(tokens[:, :-2], use_cache=True)
    logits, cache = lm.run(
        tokens[:, -2:],
        capture=["blocks.1.hook_resid_post", "blocks.1.attn.hook_k"],
        attention_stats=True,
        past_key_values=prefix.past_key_values,
        use_cache=True,
    )
    torch.testing.assert_close(logits, full[:, -2:], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        cache["blocks.1.hook_resid_post"],
        ref["blocks.1.hook_resid_post"][:, -2:],
        atol=1e-5,
        rtol=0,
    )
    assert cache["blocks.1.attn.hook_k"].shape[1] == tokens.shape[1]  # cached keys included
    torch.testing.assert_close(cache.stats("lse"), ref.stats("lse")[..., -2:], atol=1e-5, rtol=0)


def test_nnsight_lazy_model_is_dispatched(natives, tokenizer, tmp_path):
    """A TransformersModel loaded by path holds meta tensors until dispatched; the adapter loads it."""
    from nnsight import TransformersModel
    from transformers import AutoTokenizer

    tiny_hf_model("llama", vocab_size=len(tokenizer)).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    lazy = TransformersModel(
        str(tmp_path), task="text-generation", tokenizer=AutoTokenizer.from_pretrained(tmp_path)
    )
    assert next(lazy._module.parameters()).is_meta
    lm = interp.load_model(lazy)
    assert torch.equal(lm.W_Q, natives["llama"].W_Q)
    torch.testing.assert_close(lm(TEXT), natives["llama"](TEXT), atol=1e-5, rtol=0)


def test_unsupported_transformer_lens_architecture(tokenizer, tmp_path):
    """A bridge whose Hugging Face class has no family row (Bloom: ALiBi) gets one clear line."""
    from transformers import BloomConfig, BloomForCausalLM

    from interp.errors import UnsupportedModelError

    config = BloomConfig(vocab_size=len(tokenizer), hidden_size=16, n_layer=1, n_head=2)
    bridge = _boot_bridge(BloomForCausalLM(config).eval(), tokenizer, tmp_path)
    with pytest.raises(
        UnsupportedModelError, match="unsupported TransformerLens architecture 'BloomForCausalLM'"
    ) as caught:
        interp.load_model(bridge)
    message = str(caught.value)
    assert "\n" not in message and "LlamaForCausalLM" in message and "interp.load_model" in message
    # a bridge is placed by its own library: a device map for it is refused, not ignored
    with pytest.raises(ValueError, match="device_map applies to models interp loads"):
        interp.load_model(bridge, device_map={"": "cpu"})


def test_bad_requests_and_objects(bridges, tiny_models):
    lm = bridges["llama"]
    with pytest.raises(ValueError, match="KV-cache continuation"):
        lm.run(TEXT, use_cache=True)
    with pytest.raises(ValueError, match="StatsRequest.layers"):
        lm.run(TEXT, attention_stats=StatsRequest(layers=(5,)))
    with pytest.raises(KeyError, match="hook_resid_mid does not exist"):
        bridges["gpt_neox"].run(TEXT, capture="blocks.0.hook_resid_mid")
    with pytest.raises(KeyError, match="unknown hook name"):
        lm.run(TEXT, capture="blocks.0.hook_resid_psot")
    with pytest.raises(ValueError, match="unknown adapter kind"):
        adapters.adapt(lm.model, "pytorch")
    with pytest.raises(TypeError, match="TransformerLens"):
        TransformerLensLM(tiny_models["llama"])
    with pytest.raises(TypeError, match="nnsight"):
        NNsightLM(tiny_models["llama"])


def test_gemma_bridge_norm_weights_are_effective_scales(tokenizer, tmp_path):
    """Gemma scales by 1 + w: the bridge (holding HF's raw w) must report the same g as native,
    and RMSNorm(x) = x / rms(x) * g must hold for it."""

    model = tiny_hf_model("gemma", vocab_size=len(tokenizer))
    with torch.no_grad():
        model.model.norm.weight.normal_(generator=torch.Generator().manual_seed(4))
    lm = interp.load_model(_boot_bridge(model, tokenizer, tmp_path))
    final = lm.norm_weights()["ln_final"]
    torch.testing.assert_close(final, 1 + model.model.norm.weight.detach())
    x = torch.randn(3, lm.d_model, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    expected = x / (x.pow(2).mean(-1, keepdim=True) + model.config.rms_norm_eps).sqrt() * final
    torch.testing.assert_close(
        lm.norm(None, "final", x.float()), expected.float(), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("backend", ["native", "bridge", "nnsight"])
def test_logits_to_keep_returns_the_final_positions_of_the_full_logits(
    backend, natives, bridges, nnsights
):
    lm = {"native": natives, "bridge": bridges, "nnsight": nnsights}[backend]["llama"]
    full, _ = lm.run(TEXT)
    last_two, _ = lm.run(TEXT, logits_to_keep=2)
    torch.testing.assert_close(last_two, full[:, -2:], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="logits_to_keep must be 0"):
        lm.run(TEXT, logits_to_keep=-1)


NNSIGHT_CLASSES = ["TransformersModel", "LanguageModel"]
_DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def _nnsight_object(class_name: str, model, tokenizer):
    """nnsight's current class (``TransformersModel(..., task="text-generation")``) or its
    deprecated alias ``LanguageModel``, whose construction (the user's own call) warns."""
    import nnsight

    cls = getattr(nnsight, class_name)
    if class_name == "TransformersModel":
        return cls(model, tokenizer=tokenizer, task="text-generation")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = cls(model, tokenizer=tokenizer)
    # the recorder sees nnsight's deprecation category, so the checks below are not vacuous
    assert any(issubclass(w.category, nnsight.NNsightDeprecationWarning) for w in caught)
    return wrapped


@pytest.mark.parametrize("class_name", NNSIGHT_CLASSES)
def test_nnsight_classes_load_and_run_without_deprecation_warnings(class_name, natives, tokenizer):
    wrapped = _nnsight_object(
        class_name, tiny_hf_model("llama", vocab_size=len(tokenizer)), tokenizer
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lm = interp.load_model(wrapped)
        assert isinstance(lm, NNsightLM)
        _assert_same_run(natives["llama"], lm, BATCH, "llama")
        lm.run(TEXT, capture="blocks.0.hook_resid_post", remote="local")
    escaped = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if issubclass(w.category, _DEPRECATIONS)
    ]
    assert not escaped, escaped


def test_nnsight_remote_local_serializes_the_trace_and_matches(nnsights, monkeypatch):
    """``remote="local"`` is nnsight 0.8.1's LocalSimulationBackend: the trace is serialized and
    deserialized (local modules hidden) as for NDIF, then run here; captures, statistics and
    logits equal a plain local run. nnsight's API key is never copied into interp's objects."""
    import nnsight
    from nnsight.intervention.backends.local import LocalSimulationBackend

    calls = []
    original = LocalSimulationBackend.__call__

    def counted(self, tracer):
        calls.append(type(tracer).__name__)
        return original(self, tracer)

    monkeypatch.setattr(LocalSimulationBackend, "__call__", counted)
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", "interp-test-secret-key")
    lm = nnsights["gpt_neox"]
    capture = _capture("gpt_neox")
    ref_logits, ref = lm.run(BATCH, capture=capture, attention_stats=True)
    assert not calls
    logits, cache = lm.run(BATCH, capture=capture, attention_stats=True, remote="local")
    assert len(calls) == 1  # one serialized round trip
    assert torch.equal(logits, ref_logits) and sorted(cache) == sorted(ref)
    for name, value in ref.items():
        assert torch.equal(cache[name], value), name
    for field in ("lse", "max_prob", "argmax"):
        assert torch.equal(cache.stats(field), ref.stats(field)), field
    assert "interp-test-secret-key" not in repr(lm) + repr(vars(lm)) + repr(cache)


def test_nnsight_remote_refuses_what_ndif_cannot_compute(nnsights):
    """NDIF runs its own copy of the model without interp's probe: q/k and statistics are refused
    in one line before anything is sent; an unknown remote mode is named."""
    from interp.errors import UnsupportedModelError

    lm = nnsights["llama"]
    for kwargs in ({"capture": "blocks.0.attn.hook_q"}, {"attention_stats": True}):
        with pytest.raises(UnsupportedModelError, match="remote=True runs on NDIF's copy") as e:
            lm.run(TEXT, remote=True, **kwargs)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="remote must be False, True or 'local', got 'ndif'"):
        lm.run(TEXT, remote="ndif")
    assert lm.remote is False


def test_nnsight_remote_true_hands_the_trace_to_nnsights_remote_backend(nnsights, monkeypatch):
    """``remote=True`` reaches nnsight's ``trace(remote=True)``; the backend nnsight builds for it
    (NDIF's, here swapped for its local simulation: no network) gets the module-boundary
    captures, which equal a local run."""
    from nnsight.intervention.backends.local import LocalSimulationBackend

    lm = nnsights["llama"]
    asked = []

    def backend(self, remote, blocking, job_id, verbose):
        asked.append(remote)
        return LocalSimulationBackend(self)

    monkeypatch.setattr(type(lm.envoy), "_remote_backend", backend)
    capture = ["blocks.*.hook_resid_post", "blocks.0.attn.hook_z", "hook_embed"]
    ref_logits, ref = lm.run(TEXT, capture=capture)
    logits, cache = lm.run(TEXT, capture=capture, remote=True)
    assert asked == [True]
    assert torch.equal(logits, ref_logits)
    for name, value in ref.items():
        assert torch.equal(cache[name], value), name
