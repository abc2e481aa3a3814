"""N-parity / N-DMS, the per-neuron-τ leaky RNN, curricula and the timescale analyses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from interp.errors import InvalidArgumentError, UnknownNameError
from interp.rnn.tasks import make_task
from interp.rnn.timescales import autocorrelation, drive, fit_timescale, timescales_of_states
from interp.rnn.timescales_net import TimescaleRNN
from interp.rnn.timescales_training import stage_heads, train_curriculum


def test_nparity_labels_lengths_and_per_sequence_p():
    task = make_task("nparity", n=[2, 5])
    gen = torch.Generator().manual_seed(0)
    lengths = set()
    for _ in range(200):
        batch = task.sample(4, gen)
        lengths.add(batch.x.shape[1])
    assert lengths == set(range(7, 7 + 15))  # {N_max+2, ..., N_max+2+3·N_max−1}
    batch = task.sample(2000, gen, length=40)
    bits = batch.x[..., 0].long()
    for i, n in enumerate([2, 5]):
        assert torch.equal(batch.y[:, -1, i], bits[:, -n:].sum(1) % 2)
    assert batch.mask[:, -1].all() and batch.mask.sum() == 2000
    rates = bits.double().mean(1)  # p ~ U(0, 1) per sequence: rates spread over [0, 1]
    assert float(rates.std()) == pytest.approx(math.sqrt(1 / 12), abs=0.03)


def test_ndms_labels_and_balanced_bits():
    task = make_task("ndms", n=3)
    batch = task.sample(4000, torch.Generator().manual_seed(1), length=10)
    bits = batch.x[..., 0].long()
    assert torch.equal(batch.y[:, -1, 0], (bits[:, -3] == bits[:, -1]).long())
    assert float(bits.double().mean()) == pytest.approx(0.5, abs=0.01)
    assert task.output_size == 2 and task.config == {"name": "ndms", "n": 3}


@pytest.mark.parametrize("bad", [0, -1, [2, 0], "x", [2, 2]])
def test_bad_n_is_one_line_error(bad):
    with pytest.raises(InvalidArgumentError) as info:
        make_task("nparity", n=bad)
    assert "\n" not in str(info.value)


def test_timescale_rnn_is_the_papers_update():
    torch.manual_seed(0)
    net = TimescaleRNN(1, 6, 4)
    assert torch.all((net.tau >= 1) & (net.tau < 2))
    with torch.no_grad():
        net.weight_hh.fill_(0.3)
        net.tau[0] = 0.5  # below the clamp
    h, x = torch.rand(3, 6), torch.rand(3, 1)
    tau = net.tau.detach().clamp(min=1)
    w = net.weight_hh.detach() * (1 - torch.eye(6))
    pre = (1 - 1 / tau) * h + (h @ w.T + net.bias + x @ net.weight_ih.T) / tau
    assert torch.allclose(net.step(h, x), torch.nn.functional.leaky_relu(pre, 0.01))
    jac = torch.func.jacrev(lambda v: net.step(v.unsqueeze(0), x[:1]).squeeze(0))(h[0])
    # no self-connection: the diagonal is the leak (1 - 1/τ)/... only
    slope = torch.where(pre[0] > 0, 1.0, 0.01)
    assert torch.allclose(torch.diagonal(jac), slope * (1 - 1 / tau), atol=1e-6)
    net.clamp_()
    assert float(net.tau.detach().min()) == 1.0


def test_autocorrelation_matches_the_direct_sum():
    x = np.random.default_rng(0).standard_normal((50, 3)).cumsum(0)
    ac = autocorrelation(x, 10)
    c = x - x.mean(0)
    direct = np.stack([(c[: 50 - k] * c[k:]).sum(0) / (50 - k) for k in range(11)])
    assert np.allclose(ac, direct / direct[:1])


def test_aic_prefers_single_for_one_exponential_and_double_for_two():
    t = np.arange(31)
    single = fit_timescale(np.exp(-t / 7.0))
    assert single["model"] == "single" and single["tau_net"] == pytest.approx(7.0, rel=1e-4)
    double = fit_timescale(0.5 * np.exp(-t / 1.5) + 0.5 * np.exp(-t / 12.0))
    assert double["model"] == "double" and double["tau_net"] == pytest.approx(12.0, rel=1e-3)
    assert sorted(double["taus"])[0] == pytest.approx(1.5, rel=1e-3)


def test_linear_leaky_unit_with_known_tau():
    """h ← (1 − 1/τ) h + x/τ, no recurrence: AC(t) = (1 − 1/τ)^t, i.e. τ_ac = −1/log(1 − 1/τ)."""
    net = TimescaleRNN(1, 1, 2, negative_slope=1.0).double()
    with torch.no_grad():
        net.weight_hh.zero_()
        net.bias.zero_()
        net.weight_ih.fill_(1.0)
        net.tau.fill_(10.0)
    inputs = torch.randn(2, 50_500, 1, generator=torch.Generator().manual_seed(0))
    result = timescales_of_states(drive(net, inputs.double(), burn_in=500))
    exact = -1 / math.log(1 - 1 / 10)
    assert result["tau_net"][0] == pytest.approx(exact, rel=0.05)
    from interp.rnn.timescales import jacobian_timescales

    points = jacobian_timescales(net, inputs=torch.zeros(1), n_starts=4, task=make_task("nparity"))
    assert float(points.time_constants[0, 0]) == pytest.approx(exact, rel=1e-9)


def test_linear_rnn_tau_net_is_the_slowest_jacobian_mode():
    """h ← A h + ξ with A = Q diag(λ) Qᵀ, λ_max = 0.9 on the uniform mode: τ ≈ −1/log 0.9."""
    rng = np.random.default_rng(0)
    m = rng.standard_normal((8, 8))
    m[:, 0] = 1
    q, _ = np.linalg.qr(m)
    a = q @ np.diag([0.9, 0.3, 0.2, 0.1, 0, 0, 0, 0]) @ q.T
    noise = rng.standard_normal((2, 50_500, 8))
    states, h = np.empty((2, 50_000, 8)), np.zeros((2, 8))
    for t in range(50_500):
        h = h @ a.T + noise[:, t]
        if t >= 500:
            states[:, t - 500] = h
    tau = timescales_of_states(states)["tau_net"]
    target = -1 / math.log(np.abs(np.linalg.eigvals(a)).max())
    assert np.all(np.abs(tau / target - 1) < 0.10)
    assert np.median(tau) == pytest.approx(target, rel=0.05)


def test_curricula_heads_and_errors():
    assert stage_heads("single", 5) == [5]
    assert stage_heads("multi", 5) == [2, 3, 4, 5]
    assert stage_heads("sliding", 5, window=2) == [4, 5]
    net = TimescaleRNN(1, 8, 4)
    with pytest.raises(UnknownNameError, match="known: single, multi, sliding"):
        train_curriculum(net, curriculum="double")
    with pytest.raises(InvalidArgumentError, match="needs 6 outputs"):
        train_curriculum(net, curriculum="multi", max_n=4)


def test_a_tiny_curriculum_solves_n1_then_moves_on(tmp_path):
    """N=1 parity is the last bit: solved within the first epochs, then N=2 is trained."""
    torch.manual_seed(0)
    net = TimescaleRNN(1, 16, 4)
    seen = []
    result = train_curriculum(
        net, "nparity", "multi", epochs=3, steps_per_epoch=150, batch_size=64,
        eval_batches=4, start_n=1, lr=0.2, progress=False,
        on_solved=lambda n, _: seen.append(n),
    )  # fmt: skip
    assert "1" in result.solved and seen[0] == 1 and result.max_n >= 1
    after = result.solved["1"]  # 1-based epoch: the next epoch (if any) trains N = 2
    assert result.epoch_n[after:].tolist() == [2] * (len(result.epoch_n) - after)
    assert result.tau_by_n["1"].shape == (16,) and float(result.tau_by_n["1"].min()) >= 1
    from interp.rnn.timescales_training import CurriculumResult

    loaded = CurriculumResult.load(result.save(tmp_path / "c"))
    assert loaded.solved == result.solved and torch.equal(loaded.epoch_n, result.epoch_n)
