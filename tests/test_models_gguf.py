"""Direct ``.gguf`` loading: parity with the model the file was written from, and the cache.

The file is written the way llama.cpp's converter writes a Llama checkpoint (GGUF tensor names,
q/k rows permuted into GGML's rotary layout, a byte-level BPE vocabulary), so loading it runs
transformers' real GGUF reader and un-permutation, then interp's dequantize-once cache.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerBase

import interp
from interp.models import registry
from tests.tiny import gguf_vocabulary, tiny_hf_model, write_llama_gguf


@pytest.fixture
def gguf_file(tmp_path, monkeypatch):
    """A tiny Llama written as GGUF, its source model, and an empty private INTERP_CACHE."""
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    model = tiny_hf_model("llama", vocab_size=len(gguf_vocabulary()))
    return write_llama_gguf(model, tmp_path / "tiny.gguf"), model


@pytest.fixture
def spy_loads(monkeypatch):
    """Record the ``gguf_file`` argument of every AutoModelForCausalLM.from_pretrained call."""
    calls: list[str | None] = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        calls.append(kwargs.get("gguf_file"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    return calls


def test_gguf_file_loads_with_the_source_models_logits(gguf_file):
    path, source = gguf_file
    lm = interp.load_model(str(path), device="cpu")
    assert (lm.n_layers, lm.n_heads, lm.n_kv_heads, lm.d_head) == (2, 4, 2, 8)
    tokens = lm.to_tokens("the cat sat")  # byte-level: BOS, 't', 'he', 'Ġ', 'c', ...
    assert tokens[0, 0] == gguf_vocabulary().index("<bos>") and tokens.shape[1] == 11
    with torch.no_grad():
        expected = source(tokens).logits
    torch.testing.assert_close(lm(tokens), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        lm.W_Q[0, 1, :, 0], source.model.layers[0].self_attn.q_proj.weight[8]
    )


def test_gguf_cache_is_reused_and_never_left_half_written(gguf_file, spy_loads, monkeypatch):
    path, _ = gguf_file
    root = registry.cache_dir() / "gguf"

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    # Fail after the model weights are written but before the tokenizer: nothing may remain.
    with monkeypatch.context() as patch:
        patch.setattr(PreTrainedTokenizerBase, "save_pretrained", fail)
        with pytest.raises(RuntimeError, match="disk full"):
            interp.load_model(str(path), device="cpu")
    assert spy_loads == [path.name]
    assert not root.exists() or not any(root.iterdir()), list(root.iterdir())
    spy_loads.clear()
    first = interp.load_model(str(path), device="cpu")
    assert spy_loads == [path.name, None]  # converted from the GGUF, then read from the cache
    (folder,) = root.iterdir()
    assert (folder / "config.json").exists() and (folder / "tokenizer.json").exists()
    second = interp.load_model(str(path), device="cpu")
    assert spy_loads == [path.name, None, None]  # the second load never reads the GGUF
    assert [row["name"] for row in registry.cached_models()] == [folder.name]
    assert torch.equal(first.W_Q, second.W_Q)
