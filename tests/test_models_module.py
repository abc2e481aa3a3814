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


def _fused_with_layer(module: nn.Module, layer: int) -> nn.Module:
    """A one-layer fused module of the same kind holding ``module``'s layer-``layer`` weights."""
    kind = type(module)
    options = {"nonlinearity": module.nonlinearity} if kind is nn.RNN else {}
    size = module.input_size if layer == 0 else module.hidden_size
    single = kind(size, module.hidden_size, batch_first=True, **options).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(single, f"{name}_l0").copy_(getattr(module, f"{name}_l{layer}"))
    return single


@pytest.mark.parametrize("kind", [nn.GRU, nn.LSTM, nn.RNN])
@pytest.mark.parametrize("batch_first", [True, False])
def test_fused_layers_run_unrolled_and_match_torch(kind, batch_first):
    torch.manual_seed(1)
    rnn = kind(3, 5, num_layers=2, batch_first=batch_first).double()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    inputs = x if batch_first else x.transpose(0, 1)
    want_output, want_final = rnn(inputs)  # torch's fused kernel, no hooks
    (output, final), cache = HookedModule(rnn).run(inputs, capture=["hook_state"])
    torch.testing.assert_close(output, want_output, rtol=0, atol=1e-12)
    for got, want in zip(final if kind is nn.LSTM else (final,),
                         want_final if kind is nn.LSTM else (want_final,), strict=True):  # fmt: skip
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    states = cache["hook_state"]  # [B, T, layers * (h [+ c])]
    assert states.shape == (4, 7, 20 if kind is nn.LSTM else 10)
    expected = want_output if batch_first else want_output.transpose(0, 1)
    torch.testing.assert_close(states[..., 5:10], expected, rtol=0, atol=1e-12)
    # layer 0's every-step h from torch's own kernel for that layer alone
    layer0, layer0_final = _fused_with_layer(rnn, 0)(x)
    torch.testing.assert_close(states[..., :5], layer0, rtol=0, atol=1e-12)
    if kind is nn.LSTM:
        torch.testing.assert_close(states[:, -1, 10:15], layer0_final[1][0], rtol=0, atol=1e-12)
        torch.testing.assert_close(states[:, -1, 15:], want_final[1][1], rtol=0, atol=1e-12)


def test_unbatched_fused_input():
    torch.manual_seed(3)
    lstm = nn.LSTM(2, 3, proj_size=2).double()
    x = torch.randn(5, 2, dtype=torch.float64)
    want_output, (want_h, want_c) = lstm(x)
    (output, (h, c)), cache = HookedModule(lstm).run(x, capture="hook_state")
    assert cache["hook_state"].shape == (5, 2 + 3)
    torch.testing.assert_close(output, want_output, rtol=0, atol=1e-12)
    torch.testing.assert_close(cache["hook_state"][:, :2], want_output, rtol=0, atol=1e-12)
    torch.testing.assert_close((h, c), (want_h, want_c), rtol=0, atol=1e-12)


class CellLoop(nn.Module):
    """A cell driven by a Python loop, with a linear readout of every step."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell, self.head = cell, nn.Linear(cell.hidden_size, 2)

    def forward(self, x):
        state = None
        outputs = []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            outputs.append(self.head(state[0] if isinstance(state, tuple) else state))
        return torch.stack(outputs, 1)


def _manual_cell_states(cell: nn.Module, x: torch.Tensor, edit_at=None) -> torch.Tensor:
    state, states = None, []
    for t in range(x.shape[1]):
        state = cell(x[:, t], state)
        if t == edit_at:
            state = (
                tuple(torch.zeros_like(s) for s in state) if isinstance(state, tuple) else 0 * state
            )
        states.append(torch.cat(state, -1) if isinstance(state, tuple) else state)
    return torch.stack(states, 1)


@pytest.mark.parametrize("cell", [nn.RNNCell, nn.GRUCell, nn.LSTMCell])
def test_cell_in_a_python_loop_records_every_call(cell):
    torch.manual_seed(4)
    model = CellLoop(cell(3, 4)).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    hooked = HookedModule(model)
    assert "cell.hook_state" in hooked.hook_names
    output, cache = hooked.run(x, capture=["cell.hook_state", "head"])
    want = _manual_cell_states(model.cell, x)
    assert cache["cell.hook_state"].shape == (2, 6, want.shape[-1])
    torch.testing.assert_close(cache["cell.hook_state"], want, rtol=0, atol=0)
    torch.testing.assert_close(output, model(x), rtol=0, atol=0)
    # editing a step's state changes everything after it, as in the manual loop
    zero = HookedModule(model).run(
        x,
        capture="cell.hook_state",
        edit={"cell.hook_state": lambda s, t: 0 * s if t == 2 else None},
    )[1]["cell.hook_state"]
    torch.testing.assert_close(zero, _manual_cell_states(model.cell, x, edit_at=2), rtol=0, atol=0)
    assert not torch.allclose(zero[:, 3:], want[:, 3:])

    # an in-place edit that returns nothing acts the same (the LSTM cell's [h; c] is a copy)
    def zero_in_place(state: torch.Tensor, t: int) -> None:
        if t == 2:
            state.mul_(0)

    in_place = HookedModule(model).run(
        x, capture="cell.hook_state", edit={"cell.hook_state": zero_in_place}
    )[1]["cell.hook_state"]
    torch.testing.assert_close(in_place, zero, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["gru", "lstm", "leaky", "state_regularized"])
def test_protocol_nets_record_every_step(kind):
    from interp.rnn import make_net

    net = make_net(kind, 2, 4, 1, seed=0).double()
    x = torch.randn(3, 5, 2, dtype=torch.float64)
    hooked = HookedModule(net)
    assert "hook_state" in hooked.hook_names and "out" in hooked.hook_names
    (outputs, _), cache = hooked.run(x, capture=["hook_state", "out"])
    h, manual = net.initial_state(3), []
    for t in range(5):
        h = type(net).step(net, h, x[:, t])
        manual.append(h)
    torch.testing.assert_close(cache["hook_state"], torch.stack(manual, 1), rtol=0, atol=0)
    torch.testing.assert_close(outputs, net.readout(torch.stack(manual, 1)), rtol=0, atol=0)
    assert "step" not in net.__dict__, "the step wrapper is removed after the run"


def test_edit_of_fused_gru_state_drives_the_outputs():
    torch.manual_seed(5)
    gru = nn.GRU(2, 3, batch_first=True).double()
    x = torch.randn(2, 8, 2, dtype=torch.float64)
    (output, h_n), cache = HookedModule(gru).run(
        x,
        capture="hook_state",
        edit={"hook_state": lambda s, t: torch.zeros_like(s) if t == 3 else None},
    )
    before, _ = gru(x[:, :3])
    after, after_final = gru(x[:, 4:], torch.zeros(1, 2, 3, dtype=torch.float64))
    torch.testing.assert_close(output[:, :3], before, rtol=0, atol=1e-12)
    assert output[:, 3].abs().max() == 0 and cache["hook_state"][:, 3].abs().max() == 0
    torch.testing.assert_close(output[:, 4:], after, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n, after_final, rtol=0, atol=1e-12)
    assert "forward" not in gru.__dict__, "the fused kernel is restored after the run"


def test_nested_recurrent_layer_with_initial_state():
    torch.manual_seed(2)
    model = nn.ModuleDict({"rnn": nn.GRU(2, 3, batch_first=True)}).double()
    x = torch.randn(2, 6, 2, dtype=torch.float64)
    h0 = torch.randn(1, 2, 3, dtype=torch.float64)
    hooked = HookedModule(model["rnn"])
    assert "hook_state" in hooked.hook_names
    (output, _), cache = hooked.run((x, h0), capture="hook_state")
    torch.testing.assert_close(output, model["rnn"](x, h0)[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(cache["hook_state"], output)
    assert "rnn.hook_state" in HookedModule(model).hook_names


def test_state_capture_errors():
    from interp.rnn import as_recurrent

    adapter = as_recurrent(nn.GRU(2, 3, batch_first=True))
    hooked = HookedModule(adapter)
    assert {"hook_state", "module.hook_state"} <= set(hooked.hook_names)
    x = torch.randn(1, 4, 2)
    # the adapter steps with the module's weights but never calls the fused forward
    with pytest.raises(KeyError, match="never ran"):
        hooked.run(x, capture="module.hook_state")
    with pytest.raises(KeyError, match="recurrent states"):
        hooked.run(x, edit={"module": lambda s, t: s})
    with pytest.raises(ValueError, match="shape"):
        hooked.run(x, capture="hook_state", edit={"hook_state": lambda s, t: s[:, :1]})
    assert "hook_state" not in HookedModule(nn.GRU(2, 3, bidirectional=True)).hook_names


def test_glob_capture_skips_modules_that_did_not_run():
    """A pattern expands to every name; the ones whose module never ran are simply absent."""
    from interp.rnn import as_recurrent

    x = torch.randn(1, 4, 2)
    adapter = as_recurrent(nn.GRU(2, 3, batch_first=True))
    _, cache = HookedModule(adapter).run(x, capture="**")
    assert "hook_state" in cache and "module.hook_state" not in cache  # the fused forward is unused
    assert cache["hook_state"].shape == (1, 4, 3)


def test_a_fused_module_run_twice_in_one_call_is_refused():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(2, 3, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0] + self.rnn(x)[0]

    x = torch.randn(2, 5, 2)
    model = Twice()
    with pytest.raises(RuntimeError, match="ran a second time"):
        HookedModule(model).run(x, capture="rnn.hook_state")
    output, cache = HookedModule(model).run(x, capture="rnn")  # its outputs stay capturable
    with torch.no_grad():
        torch.testing.assert_close(cache["rnn"], model.rnn(x)[0])
        torch.testing.assert_close(output, 2 * model.rnn(x)[0])
