"""HookedModule: capture by module path, and per-step states of fused recurrent layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interp.models import HookedModule


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(3)])
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


def test_captures_module_outputs_by_path_and_pattern():
    torch.manual_seed(0)
    model = Stack().double()
    x = torch.randn(5, 4, dtype=torch.float64)
    output, cache = HookedModule(model).run(x, capture=["blocks.?", "head"])
    assert sorted(cache) == ["blocks.0", "blocks.1", "blocks.2", "head"]
    h = x
    for index, block in enumerate(model.blocks):
        torch.testing.assert_close(cache[f"blocks.{index}"], block(h))
        h = h + block(h)
    torch.testing.assert_close(output, model.head(h))
    torch.testing.assert_close(cache["head"], output)


def test_unknown_path_suggests():
    with pytest.raises(KeyError, match="did you mean 'head'"):
        HookedModule(Stack()).run(torch.zeros(1, 4), capture=["haed"])


@pytest.mark.parametrize("kind", [nn.GRU, nn.LSTM, nn.RNN])
@pytest.mark.parametrize("batch_first", [True, False])
def test_fused_recurrent_layers_expose_every_step(kind, batch_first):
    torch.manual_seed(1)
    rnn = kind(3, 5, num_layers=2, batch_first=batch_first).double()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    inputs = x if batch_first else x.transpose(0, 1)
    (output, final), cache = HookedModule(rnn).run(inputs, capture=["hook_state"])
    states = cache["hook_state"]  # [B, T, layers * (h [+ c])]
    top_h = states[..., 5:10]
    expected = output if batch_first else output.transpose(0, 1)
    torch.testing.assert_close(top_h, expected)
    h_n = final[0] if kind is nn.LSTM else final
    torch.testing.assert_close(states[:, -1, :5], h_n[0])
    if kind is nn.LSTM:
        torch.testing.assert_close(states[:, -1, 10:], torch.cat(list(final[1]), dim=-1))


def test_nested_recurrent_layer_with_initial_state():
    torch.manual_seed(2)
    model = nn.ModuleDict({"rnn": nn.GRU(2, 3, batch_first=True)}).double()
    x = torch.randn(2, 6, 2, dtype=torch.float64)
    h0 = torch.randn(1, 2, 3, dtype=torch.float64)
    hooked = HookedModule(model["rnn"])
    assert "hook_state" in hooked.hook_names
    (output, _), cache = hooked.run((x, h0), capture="hook_state")
    torch.testing.assert_close(cache["hook_state"], output)
    assert "rnn.hook_state" in HookedModule(model).hook_names
