"""as_recurrent must reproduce torch's fused recurrent modules exactly (float64), step by step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from interp.rnn import Recurrent, as_recurrent, unroll


def _fused_cases():  # built inside the float64 fixture
    return [
        nn.RNN(3, 5, num_layers=1, nonlinearity="tanh"),
        nn.RNN(3, 5, num_layers=2, nonlinearity="relu", batch_first=True),
        nn.GRU(3, 4, num_layers=3, batch_first=True),
        nn.GRU(3, 4, bias=False),
        nn.LSTM(3, 4, num_layers=2, batch_first=True),
        nn.LSTM(3, 6, num_layers=2, proj_size=2),
    ]


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.parametrize("index", range(6))
def test_fused_modules_match_unrolled_adapter(index):
    torch.manual_seed(index)
    module = _fused_cases()[index].double()
    adapter = as_recurrent(module)
    assert isinstance(adapter, Recurrent)
    x = torch.randn(2, 7, 3)
    lstm = isinstance(module, nn.LSTM)
    layers = module.num_layers
    h_size = module.proj_size or module.hidden_size if lstm else module.hidden_size
    h0 = torch.randn(layers, 2, h_size)
    init = (h0, torch.randn(layers, 2, module.hidden_size)) if lstm else h0
    seq = x if module.batch_first else x.transpose(0, 1)
    out, final = module(seq, init)
    out = out if module.batch_first else out.transpose(0, 1)
    states = unroll(adapter, x, adapter.from_torch_state(init))
    assert states.shape == (2, 7, adapter.state_size)
    torch.testing.assert_close(adapter.readout(states), out, rtol=0, atol=1e-12)
    mine = adapter.to_torch_state(states[:, -1])
    for a, b in zip(mine if lstm else (mine,), final if lstm else (final,), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "cell",
    [nn.RNNCell(3, 4), nn.RNNCell(3, 4, nonlinearity="relu"), nn.GRUCell(3, 4), nn.LSTMCell(3, 4)],
)
def test_cells_match_step(cell):
    cell = cell.double()
    adapter = as_recurrent(cell, readout=nn.Linear(4, 2).double())
    x = torch.randn(5, 3)
    if isinstance(cell, nn.LSTMCell):
        h, c = torch.randn(5, 4), torch.randn(5, 4)
        want = cell(x, (h, c))
        got = adapter.step(torch.cat([h, c], -1), x)
        torch.testing.assert_close(got, torch.cat(want, -1), rtol=0, atol=1e-12)
    else:
        h = torch.randn(5, 4)
        torch.testing.assert_close(adapter.step(h, x), cell(x, h), rtol=0, atol=1e-12)
    outputs, states = adapter(torch.randn(5, 6, 3))
    assert outputs.shape == (5, 6, 2) and states.shape == (5, 6, adapter.state_size)


def test_adapter_step_works_with_torch_func():
    module = nn.GRU(2, 3, num_layers=2).double()
    adapter = as_recurrent(module)
    h, x = torch.randn(4, 6), torch.randn(4, 2)
    jac = torch.func.vmap(torch.func.jacrev(lambda h, x: adapter.step(h[None], x[None])[0]))(h, x)
    eps = 1e-6
    column = (
        adapter.step(h + eps * torch.eye(6)[1], x) - adapter.step(h - eps * torch.eye(6)[1], x)
    ) / (2 * eps)
    torch.testing.assert_close(jac[:, :, 1], column, rtol=1e-6, atol=1e-8)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="bidirectional"):
        as_recurrent(nn.GRU(2, 3, bidirectional=True))
    with pytest.raises(TypeError, match="accepted"):
        as_recurrent(nn.Linear(2, 3))
    with pytest.raises(ValueError, match=r"\[batch, time, input_size\]"):
        unroll(as_recurrent(nn.GRU(2, 3)), torch.randn(4, 2))
    with pytest.raises(TypeError, match="not a recurrent model"):
        unroll(nn.Linear(2, 2), torch.randn(1, 2, 2))
