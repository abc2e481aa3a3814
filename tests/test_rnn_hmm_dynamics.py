"""Noise-driven dynamics: a hand-built ReLU net with a planted orbit and planted kick neurons.

The planted net (:func:`planted_net`) has ``k`` clusters of ``r`` units each holding a total
activity ("mass") of 1, one pair of kick neurons per cluster and a few bystander units. In
cluster ``j`` the kick pre-activation is ``u − θ`` (``u ~ N(0, 1)`` the noise): with ``θ`` the
95% quantile a kick fires with probability 0.05 per step; the pair ``(p_j, q_j)`` then carries
``κ_j = L (p_j − q_j) = clamp(L (u − θ), 0, mass)``, which moves the whole mass to cluster
``j + 1`` on the next step and empties cluster ``j`` (``−2L p_j``); a refractory term stops a
second kick. So (exactly): states with a kick active switch output on the next step
(residency 1, kick zone); every other state waits ``1 + G`` steps with ``G ~ Geometric(0.05)``
(cluster zone); ablating ``p_j`` or ``q_j`` traps the orbit in one cluster (transition rate → 0),
ablating a bystander changes nothing, ablating a cluster unit speeds the orbit up.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm

from interp.errors import InvalidArgumentError
from interp.rnn import dynamics as D
from interp.rnn.dynamics_analysis import analyze_noise_rnn
from interp.rnn.dynamics_result import NoiseDynamics
from interp.rnn.hmm_net import NoiseRNN

K, R, BYSTANDERS, THETA, L = 3, 4, 3, float(norm.ppf(0.95)), 1e4


def planted_net() -> tuple[NoiseRNN, torch.Tensor, list[int]]:
    c = K * R
    size = c + 2 * K + BYSTANDERS
    w = torch.zeros(size, size, dtype=torch.float64)
    w_in = torch.zeros(size, 2, dtype=torch.float64)
    out = torch.zeros(K, size, dtype=torch.float64)

    def units(j):
        return range(j * R, (j + 1) * R)

    def p(j):
        return c + j

    def q(j):
        return c + K + j

    for j in range(K):
        before = (j - 1) % K
        for unit in units(j):
            w[unit, unit] = 1.0
            w[unit, p(before)] += L / R
            w[unit, q(before)] -= L / R
            w[unit, p(j)] -= 2 * L
            out[j, unit] = 10.0
        for row, extra in ((p(j), 0.0), (q(j), 1.0 / L)):
            w_in[row, 0] = 1.0
            for i in range(K):
                for unit in units(i):
                    w[row, unit] = -(THETA + extra) if i == j else -10.0
            w[row, p(j)] -= 10 * L
            w[row, q(j)] += 10 * L
    w_in[c + 2 * K :, 1] = 0.05
    net = NoiseRNN(2, size, K).double()
    with torch.no_grad():
        net.weight_hh.copy_(w)
        net.weight_ih.copy_(w_in)
        net.out.weight.copy_(out)
    h0 = torch.zeros(size, dtype=torch.float64)
    h0[list(units(0))] = 1.0 / R
    return net, h0, list(range(c, c + 2 * K))


def expected_residency(p: float, horizon: int) -> float:
    """E[min(1 + G, horizon)], G ~ Geometric(p) on {1, 2, ...}."""
    n = np.arange(2, horizon + 1)
    probs = (1 - p) ** (n - 2) * p
    return float((n * probs).sum() + horizon * (1 - probs.sum()))


@pytest.fixture(scope="module")
def planted():
    net, h0, kick = planted_net()
    result = analyze_noise_rnn(net, h0=h0, steps=1000, seed=0, fixed_point_starts=8)
    return net, kick, result


def test_planted_kick_neurons_are_recovered_exactly(planted):
    net, kick, result = planted
    assert result.kick["kick"] == kick
    assert result.kick["ablated_rate"] == 0.0
    baseline = result.kick["baseline"]
    assert 0.03 < baseline < 0.06  # ≈ 1 / E[residency]
    assert float(result.random_rates.double().mean()) > 0.5 * baseline
    bystanders = list(range(K * R + 2 * K, K * R + 2 * K + BYSTANDERS))
    assert torch.all(result.kick_cut[bystanders] == 0)
    assert torch.all(result.kick_cut[: K * R] < 0)  # fewer units per cluster: faster orbit


def test_planted_switches_become_certain_one_step_before_at_the_kick_neurons(planted):
    _, kick, result = planted
    c = result.commitment
    assert c["n_switches"] > 20 and c["committed"] == c["n_switches"]
    assert c["lag_counts"] == [0, c["n_switches"]]  # certain exactly one step before: the kick
    assert c["top_drive"] == kick and c["overlap"] == len(kick)


def test_planted_zones_and_residency_times(planted):
    _, kick, result = planted
    kicking = result.states[:, kick].sum(-1) > 0
    assert kicking.any()
    assert torch.equal(result.zone == 0, kicking)
    assert torch.equal(result.zone == 2, ~kicking)
    assert torch.all(result.residency[kicking] == 1)
    measured = float(result.residency[~kicking].double().mean())
    assert measured == pytest.approx(expected_residency(0.05, 50), abs=0.6)
    assert result.zone_summary["cluster"]["count"] == int((~kicking).sum())


def test_planted_orbit_phase_tracks_the_symbol(planted):
    _, _, result = planted
    assert result.phase["decoding_accuracy"] == 1.0
    order = result.phase["symbol_order"]
    start = order.index(0)
    rotated = order[start:] + order[:start]
    assert rotated in ([0, 1, 2], [0, 2, 1])
    emitted = result.emitted
    switches = emitted[1:][emitted[1:] != emitted[:-1]]
    before = emitted[:-1][emitted[1:] != emitted[:-1]]
    assert torch.all(switches == (before + 1) % K)  # the planted cycle 0 → 1 → 2 → 0


def test_planted_result_round_trips_and_draws(planted, tmp_path):
    _, _, result = planted
    path = result.save(tmp_path / "dyn")
    loaded = NoiseDynamics.load(path)
    assert torch.equal(loaded.residency, result.residency)
    assert loaded.kick == result.kick and loaded.zone_summary == result.zone_summary
    assert set(result.figures()) == {"state_space", "phase", "residency", "kick"}
    assert "kick neurons [12, 13, 14, 15, 16, 17]" in result.table()
    assert result.fixed_points["collapsed_fraction"] == 0.0  # planted clusters hold without input


def test_batched_residency_equals_the_per_state_loop():
    net, h0, _ = planted_net()
    g = torch.Generator().manual_seed(3)
    states, _ = D.noisy_trajectory(net, 40, generator=g, h0=h0.view(1, -1))
    noise = torch.randn(40, 5, 30, 2, generator=g, dtype=torch.float64)
    batched = D.residency_times(net, states[0], noise=noise)
    assert torch.equal(batched, D.residency_times_loop(net, states[0], noise))


def test_local_instability_is_the_relu_jacobian():
    torch.manual_seed(0)
    net = NoiseRNN(3, 12, 3).double()
    with torch.no_grad():
        net.weight_hh.mul_(4)
    h, u = torch.rand(6, 12, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    counts, radius = D.local_instability(net, h, u)
    for k in range(6):
        jac = torch.func.jacrev(lambda x, k=k: net.step(x, u[k]))(h[k])
        moduli = np.abs(np.linalg.eigvals(jac.detach().numpy()))
        assert int(counts[k]) == int((moduli > 1 + 1e-6).sum())
        assert float(radius[k]) == pytest.approx(moduli.max())


def test_zone_thresholds():
    residency = torch.tensor([1.0, 2.0, 8.0, 9.0, 9.0])
    prob = torch.tensor([0.9, 0.9, 0.9, 0.9, 0.5])
    assert D.zones(residency, prob).tolist() == [0, 1, 1, 2, 3]


def test_contracting_net_collapses_to_one_fixed_point_without_input():
    torch.manual_seed(1)
    net = NoiseRNN(4, 10, 3).double()
    with torch.no_grad():
        net.weight_hh.mul_(0.5 / torch.linalg.matrix_norm(net.weight_hh, 2))
    result = analyze_noise_rnn(
        net, steps=60, kick_starts=8, kick_steps=10, n_random=2, fixed_point_starts=32
    )
    assert result.fixed_points["n"] == 1 and result.fixed_points["classes"] == ["stable"]
    assert result.fixed_points["norms"][0] < 1e-5  # q < 1e-12 at contraction 0.5
    assert result.fixed_points["collapsed_fraction"] == 1.0


def test_bad_inputs():
    with pytest.raises(InvalidArgumentError, match="NoiseRNN"):
        analyze_noise_rnn(torch.nn.Linear(2, 2))
    net, _, _ = planted_net()
    with pytest.raises(InvalidArgumentError, match="generator= or noise="):
        D.residency_times(net, torch.zeros(2, net.hidden_size, dtype=torch.float64))
