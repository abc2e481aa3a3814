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


def test_lstm_without_recurrence_has_its_analytic_fixed_point():
    # W_hh = W_ih = 0: c <- σ(b_f) c + σ(b_i) tanh(b_g), h <- σ(b_o) tanh(c); one fixed point
    # c* = σ(b_i) tanh(b_g) / (1 - σ(b_f)), h* = σ(b_o) tanh(c*); eigenvalues σ(b_f) (c) and 0 (h)
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 3, batch_first=True).double()
    with torch.no_grad():
        lstm.weight_hh_l0.zero_()
        lstm.weight_ih_l0.zero_()
        lstm.bias_hh_l0.zero_()
    b_i, b_f, b_g, b_o = lstm.bias_ih_l0.detach().chunk(4)
    c_star = torch.sigmoid(b_i) * torch.tanh(b_g) / (1 - torch.sigmoid(b_f))
    h_star = torch.sigmoid(b_o) * torch.tanh(c_star)
    fp = find_fixed_points(
        as_recurrent(lstm), initial_states=torch.randn(100, 6, dtype=torch.float64), n_starts=64
    )
    assert len(fp) == 1 and fp.classes == ["stable"], fp.table()
    torch.testing.assert_close(fp.points[0], torch.cat([h_star, c_star]), rtol=0, atol=1e-8)
    want = torch.sort(torch.cat([torch.sigmoid(b_f), torch.zeros(3, dtype=torch.float64)])).values
    torch.testing.assert_close(torch.sort(fp.eigenvalues[0].abs()).values, want, rtol=0, atol=1e-8)


def test_contracting_lstm_point_matches_forward_iteration():
    torch.manual_seed(0)
    lstm = nn.LSTM(2, 4, batch_first=True).double()
    with torch.no_grad():
        lstm.weight_hh_l0.mul_(0.2)  # a contraction: forward iteration converges to its point
    model = as_recurrent(lstm)
    u = torch.tensor([0.5, -1.0], dtype=torch.float64)
    h = torch.zeros(1, 8, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(2000):
            h = model.step(h, u[None])
    fp = find_fixed_points(
        model, initial_states=torch.randn(100, 8, dtype=torch.float64), n_starts=64, inputs=u
    )
    assert len(fp) == 1 and fp.classes == ["stable"], fp.table()
    torch.testing.assert_close(fp.points[0], h[0], rtol=0, atol=1e-8)
    eps = 1e-6
    basis = torch.eye(8, dtype=torch.float64)[2]
    with torch.no_grad():
        column = (
            model.step(fp.points + eps * basis, fp.inputs)
            - model.step(fp.points - eps * basis, fp.inputs)
        ) / (2 * eps)
    torch.testing.assert_close(fp.jacobians[:, :, 2], column, rtol=1e-5, atol=1e-7)


class TanhMap:
    """A user model, not an nn.Module, in float32: ``h <- tanh(W h + x)`` with ``W = diag(2, 0.5)``.

    Unit 1 has fixed points 0 and ±a (a = tanh(2a)); unit 2 only 0. So three points: (0, 0), a
    saddle (eigenvalues 2, 0.5), and (±a, 0), stable (eigenvalues 2(1 - a²), 0.5).
    """

    input_size = 2

    def __init__(self) -> None:
        self.weight = torch.diag(torch.tensor([2.0, 0.5]))

    def initial_state(self, batch):
        return torch.zeros(batch, 2)

    def step(self, h, x):
        return torch.tanh(h @ self.weight.T + x)

    def readout(self, h):
        return h


def test_user_protocol_object_runs_in_its_own_dtype():
    a = brentq(lambda v: float(torch.tanh(torch.tensor(2 * v, dtype=torch.float64))) - v, 0.1, 1)
    states = torch.rand(200, 2, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fp = find_fixed_points(TanhMap(), initial_states=states, n_starts=128, noise=0.05)
    assert fp.points.dtype == torch.float32 and fp.settings["dtype"] == "torch.float32"
    assert len(fp) == 3 and sorted(fp.classes) == ["saddle", "stable", "stable"], fp.table()
    order = torch.argsort(fp.points[:, 0])
    want = torch.tensor([[-a, 0.0], [0.0, 0.0], [a, 0.0]], dtype=torch.float32)
    torch.testing.assert_close(fp.points[order], want, rtol=0, atol=1e-5)
    moduli = torch.sort(fp.eigenvalues.abs(), dim=-1).values[order]
    lam = 2 * (1 - a * a)
    want_eig = torch.tensor([[lam, 0.5], [0.5, 2.0], [lam, 0.5]], dtype=torch.float32)  # lam < 0.5
    torch.testing.assert_close(moduli, want_eig, rtol=0, atol=1e-4)
    with pytest.raises(TypeError, match=r"cannot cast it to torch.float64.*dtype=torch.float32"):
        find_fixed_points(TanhMap(), initial_states=states, dtype=torch.float64)


def test_leaky_net_points_and_time_constant_eigenvalues():
    # the leaky update h <- (1 - 1/τ) h + tanh(2h)/τ has the fixed points of h <- tanh(2h), and at
    # ±a the eigenvalue of unit i is (1 - 1/τ_i) + 2 (1 - a²)/τ_i
    net = make_net("leaky", 1, 3, 3, nonlinearity="tanh").double()
    tau = torch.tensor([2.0, 5.0, 3.0], dtype=torch.float64)
    with torch.no_grad():
        net.weight_hh.copy_(2 * torch.eye(3))
        net.weight_ih.zero_()
        net.bias.zero_()
        net.tau_raw.copy_(torch.log(torch.expm1(tau - 1)))
    a = brentq(lambda v: torch.tanh(torch.tensor(2.0 * v)).item() - v, 0.1, 1.0, xtol=1e-15)
    states = torch.rand(300, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fp = find_fixed_points(net, initial_states=states * 2 - 1, n_starts=400, noise=0.05)
    assert len(fp) == 27, fp.table()
    stable = fp.stable
    assert int(stable.sum()) == 8
    torch.testing.assert_close(fp.points[stable].abs(), torch.full((8, 3), a, dtype=torch.float64))
    want = (1 - 1 / tau) + 2 * (1 - a * a) / tau
    jac = torch.diagonal(fp.jacobians[stable], dim1=-2, dim2=-1)
    torch.testing.assert_close(jac, want.expand(8, 3), rtol=0, atol=1e-6)


def test_hard_state_regularized_cell_fixed_points_are_its_self_mapping_centroids():
    net = make_net(
        "state_regularized", 2, 4, 1, seed=0, n_centroids=6, straight_through=True
    ).double()
    net.eval()
    centroids = net.centroids.detach()
    u = torch.tensor([1.0, 0.0], dtype=torch.float64)
    # brute force: every step lands on a centroid, so the fixed points are the centroids that the
    # step maps to themselves
    with torch.no_grad():
        _, alpha = net.step_with_attention(centroids, u.expand(6, 2))
    fixed = torch.flatten(torch.nonzero(alpha.argmax(-1) == torch.arange(6)))
    assert 0 < len(fixed) < 6
    starts = torch.cat([centroids.repeat(20, 1), torch.rand(100, 4, dtype=torch.float64) * 2 - 1])
    fp = find_fixed_points(net, initial_states=starts, n_starts=200, noise=0.01, inputs=u)
    found = torch.cdist(fp.points, centroids).argmin(-1)
    assert sorted(found.tolist()) == fixed.tolist(), fp.table()
    # step(h) is exactly the centroid, so the distance to it is sqrt(2 q) < sqrt(2 q_tol)
    distance = (fp.points - centroids[found]).norm(dim=-1)
    torch.testing.assert_close(distance, (2 * fp.q).sqrt(), rtol=1e-6, atol=1e-12)
    assert distance.max() < 1.5e-6
    # the hard step is piecewise constant: Jacobian 0, so every point is (super)stable
    assert set(fp.classes) == {"stable"} and fp.jacobians.abs().max() == 0


def test_straight_through_jacobian_in_training_is_the_soft_cells():
    hard = make_net("state_regularized", 2, 4, 1, seed=0, n_centroids=5, straight_through=True)
    soft = make_net("state_regularized", 2, 4, 1, seed=0, n_centroids=5)
    h, x = torch.randn(3, 4), torch.randn(3, 2)

    def jacobian(net):
        return torch.func.vmap(torch.func.jacrev(lambda h, x: net.step(h[None], x[None])[0]))(h, x)

    with torch.no_grad():
        assert torch.cdist(hard.step(h, x), hard.centroids).min(-1).values.max() < 1e-6
    torch.testing.assert_close(jacobian(hard), jacobian(soft))  # training mode: straight-through
    hard.eval()
    assert jacobian(hard).abs().max() == 0


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
