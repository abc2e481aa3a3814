"""The transformers-release differences interp bridges, on stand-ins for both releases' APIs."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from interp.models.hf_compat import cache_argument, first, returned_cache


def mask_5_17(config, inputs_embeds, attention_mask, past_key_values, position_ids=None):
    """create_causal_mask as transformers 5.17 spells it."""


def mask_5_24(config, inputs_embeds, attention_mask, cache, position_ids=None):
    """create_causal_mask as transformers 5.24 spells it."""


class Old(nn.Module):
    def forward(self, input_ids=None, past_key_values=None, use_cache=None):
        return input_ids


class New(nn.Module):
    def forward(self, input_ids=None, cache=None, use_cache=None):
        return input_ids


def test_the_cache_argument_is_read_from_the_signature():
    assert cache_argument(mask_5_17) == "past_key_values"
    assert cache_argument(mask_5_24) == "cache"
    assert cache_argument(Old()) == "past_key_values"  # a model: its class's forward
    assert cache_argument(New()) == "cache"


def test_the_returned_cache_is_found_under_either_field():
    kv = object()
    assert returned_cache(SimpleNamespace(past_key_values=kv)) is kv
    assert returned_cache(SimpleNamespace(cache=kv, past_key_values=None)) is kv
    assert returned_cache(SimpleNamespace(logits=1)) is None


def test_first_takes_a_bare_tensor_or_a_tuples_lead():
    x = torch.ones(2, 3)
    assert first(x) is x and first((x, None)) is x
