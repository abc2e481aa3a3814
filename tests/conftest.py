"""Shared fixtures: tiny random-init models of each supported family, and the embedded model."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

from tests.tiny import tiny_hf_model, word_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return word_tokenizer(96)


@pytest.fixture(scope="session", params=["llama", "gpt2", "gpt_neox"])
def tiny_family(request):
    return request.param


@pytest.fixture(scope="session")
def tiny_models(tokenizer):
    """One tiny random-init HF model per family, with a word-level tokenizer."""
    torch.manual_seed(0)
    return {
        family: tiny_hf_model(family, vocab_size=len(tokenizer))
        for family in ("llama", "gpt2", "gpt_neox")
    }


@pytest.fixture(scope="session")
def tiny_lm(tiny_models, tokenizer):
    """A HookedLM over the tiny Llama (GQA: 4 query heads, 2 KV heads)."""
    import interp

    return interp.load_model(tiny_models["llama"], tokenizer=tokenizer, device="cpu")


@pytest.fixture(scope="session")
def embedded():
    """The embedded SmolLM2-135M-Instruct (converted once into the interp cache)."""
    import interp

    return interp.load_model(device="cpu")
