"""Fixed-point finder against nets whose fixed points are known analytically."""

from __future__ import annotations

import itertools

import pytest
import torch
from scipy.optimize import brentq
from torch import nn

from interp.rnn import as_recurrent, make_net, make_task, train
from interp.rnn.fixed_points import FixedPoints, find_fixed_points


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _diagonal_tanh(units: int = 3, gain: float = 2.0):
    """h_i <- tanh(gain * h_i): per unit fixed points 0 (|λ| = gain) and ±a, a = tanh(gain a)."""
    net = make_net("rnn_tanh", 1, units, units).double()
    with torch.no_grad():
        net.weight_hh.copy_(gain * torch.eye(units))
        net.weight_ih.zero_()
        net.bias.zero_()
        net.out.weight.copy_(torch.eye(units))
        net.out.bias.zero_()
    a = brentq(lambda v: torch.tanh(torch.tensor(gain * v)).item() - v, 0.1, 1.0, xtol=1e-15)
    return net, a


@pytest.mark.parametrize("method", ["lm", "adam", "adam+lm"])
def test_diagonal_tanh_net_has_all_3_to_the_k_points(method):
    net, a = _diagonal_tanh(3)
    states = (
        torch.rand(300, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    )
    fp = find_fixed_points(
        net, initial_states=states, n_starts=400, noise=0.05, method=method, adam_iterations=3000
    )
    assert len(fp) == 27, fp.table()
    expected = {p for p in itertools.product((-a, 0.0, a), repeat=3)}
    found = fp.points
    for p in expected:
        distance = (found - torch.tensor(p, dtype=found.dtype)).norm(dim=-1).min()
        assert distance < 1e-5
    zeros = (fp.points.abs() < 1e-3).sum(-1)
    torch.testing.assert_close(fp.n_unstable, zeros)  # each unit at 0 adds one |λ| = 2 mode
    assert sum(c == "stable" for c in fp.classes) == 8 and fp.classes.count("unstable") == 1
    stable = fp.stable
    # q < 1e-12 pins positions to ~1e-6, so eigenvalues agree to ~1e-5
    want = torch.full((8, 3), 2 * (1 - a * a), dtype=torch.float64)
    torch.testing.assert_close(fp.eigenvalues[stable].abs(), want, rtol=0, atol=1e-5)
    signs = {tuple(r) for r in torch.sign(fp.readouts[stable]).int().tolist()}
    assert signs == set(itertools.product((-1, 1), repeat=3))
    tau = -1 / torch.log(torch.tensor(2 * (1 - a * a)))
    torch.testing.assert_close(
        fp.time_constants[stable],
        torch.full((8, 3), tau.item(), dtype=torch.float64),
        rtol=1e-4,
        atol=0,
    )


def test_input_shifts_the_fixed_point_and_input_jacobian():
    # h <- 0.5 h + u has the single fixed point h* = 2u, ∂step/∂h = 0.5, ∂step/∂u = 1
    model = as_recurrent(nn.RNNCell(2, 2, bias=False, nonlinearity="relu").double())
    with torch.no_grad():
        model.module.weight_hh.copy_(0.5 * torch.eye(2))
        model.module.weight_ih.copy_(torch.eye(2))
    u = torch.tensor([0.3, 0.7], dtype=torch.float64)
    fp = find_fixed_points(
        model,
        inputs=u,
        initial_states=torch.rand(50, 2, dtype=torch.float64),
        n_starts=64,
        noise=0.1,
    )
    assert len(fp) == 1 and fp.classes == ["stable"]
    torch.testing.assert_close(fp.points[0], 2 * u)
    torch.testing.assert_close(fp.jacobians[0], 0.5 * torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(fp.input_jacobians[0], torch.eye(2, dtype=torch.float64))


def test_lstm_through_adapter_points_are_true_fixed_points():
    torch.manual_seed(0)
    model = as_recurrent(nn.LSTM(2, 4, batch_first=True))
    states = torch.randn(100, 8) * 0.5
    fp = find_fixed_points(model, initial_states=states, n_starts=64, inputs=torch.zeros(2))
    assert len(fp) >= 1
    with torch.no_grad():
        m = as_recurrent(model.module.double())
        residual = m.step(fp.points, fp.inputs) - fp.points
    assert residual.norm(dim=-1).max() < 1e-5
    eps = 1e-6
    basis = torch.eye(8, dtype=torch.float64)[2]
    column = (
        m.step(fp.points + eps * basis, fp.inputs) - m.step(fp.points - eps * basis, fp.inputs)
    ) / (2 * eps)
    torch.testing.assert_close(fp.jacobians[:, :, 2], column, rtol=1e-5, atol=1e-7)


def test_trained_flipflop_gru_has_2_to_the_k_stable_points(tmp_path):
    task = make_task("flipflop", bits=2, steps=32)
    net = make_net("gru", 2, 8, 2, seed=0)
    # train past mere sign accuracy: clean attractors need a low loss (~1e-3)
    result = train(net, task, steps=300, lr=2e-2, eval_every=300, progress=False)
    assert result.eval_loss[-1] < 0.01
    fp = find_fixed_points(net, task=task, n_starts=256)
    stable = fp.stable
    assert int(stable.sum()) == 4, fp.table()
    signs = {tuple(r) for r in torch.sign(fp.readouts[stable]).int().tolist()}
    assert signs == {(-1, -1), (-1, 1), (1, -1), (1, 1)}
    assert (fp.n_unstable > 0).any()  # saddles between the memories
    path = fp.save(tmp_path / "fp")
    loaded = FixedPoints.load(path)
    assert loaded.classes == fp.classes and torch.equal(loaded.points, fp.points)
    assert loaded.trajectories is not None and "stable" in loaded.table()
    fig = loaded.figure()
    assert {t.name for t in fig.data} >= {"trajectories", "stable", "saddle"}


def test_duplicates_outliers_and_bad_input():
    net, a = _diagonal_tanh(1)
    states = torch.tensor([[0.9], [-0.9]], dtype=torch.float64)
    fp = find_fixed_points(
        net, initial_states=states, n_starts=100, noise=0.01, outlier_factor=10.0
    )
    assert len(fp) == 2 and fp.counts["duplicates"] == fp.counts["converged"] - 2
    torch.testing.assert_close(fp.points.abs().flatten(), torch.full((2,), a, dtype=torch.float64))
    # with a tiny outlier radius the points (at ±a, not at the starts' centroid 0) are dropped
    tight = find_fixed_points(
        net, initial_states=states, n_starts=100, noise=0.01, outlier_factor=0.5
    )
    assert len(tight) == 0 and tight.counts["outliers"] == 100
    assert "0 points" in tight.table()
    with pytest.raises(ValueError, match="initial_states"):
        find_fixed_points(net)
    with pytest.raises(ValueError, match="method"):
        find_fixed_points(net, initial_states=states, method="newton")
    with pytest.raises(ValueError, match="state size"):
        find_fixed_points(net, initial_states=torch.zeros(4, 3))
    with pytest.raises(ValueError, match="input size"):
        find_fixed_points(net, initial_states=states, inputs=torch.zeros(3))
