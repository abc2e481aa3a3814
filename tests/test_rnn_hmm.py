"""HMM task, exact HMM statistics, the noise-driven ReLU RNN and its Sinkhorn objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.errors import InvalidArgumentError, UnknownNameError
from interp.rnn.hmm import CYCLIC4, HMM, make_hmm, named_hmms, output_statistics
from interp.rnn.tasks import make_task


def _counts(seq: torch.Tensor, n: int) -> np.ndarray:
    pairs = seq[:, :-1] * n + seq[:, 1:]
    return torch.bincount(pairs.reshape(-1), minlength=n * n).view(n, n).double().numpy()


def test_cyclic4_matrices_are_the_papers():
    hmm = make_hmm("cyclic4")
    assert np.array_equal(hmm.transition, np.array(CYCLIC4["transition"]))
    assert hmm.emission[3].tolist() == [0.0, 0.9, 0.1]
    # doubly stochastic T: uniform stationary distribution
    assert np.allclose(hmm.stationary(), 0.25)


def test_exact_statistics_of_a_two_state_hmm_by_hand():
    hmm = HMM([[0.9, 0.1], [0.2, 0.8]], [[1.0, 0.0], [0.0, 1.0]])
    assert np.allclose(hmm.stationary(), [2 / 3, 1 / 3])
    stats = hmm.exact_statistics()
    assert np.allclose(stats["frequencies"], [2 / 3, 1 / 3])
    assert np.allclose(stats["transitions"], [[0.9, 0.1], [0.2, 0.8]])
    assert stats["volatility"] == pytest.approx(2 / 3 * 0.1 + 1 / 3 * 0.2)


@pytest.mark.parametrize("name", ["cyclic4", "linear3", "full4"])
def test_sampler_matches_the_exact_stationary_statistics(name):
    hmm = make_hmm(name)
    states, outputs = hmm.sample(1000, 200, torch.Generator().manual_seed(0))
    s, o = hmm.n_states, hmm.n_outputs
    occupancy = torch.bincount(states.reshape(-1), minlength=s).double().numpy() / states.numel()
    assert np.abs(occupancy - hmm.stationary()).max() < 0.02
    counts = _counts(states, s)
    empirical_t = counts / counts.sum(1, keepdims=True)
    # 2e5 transitions: standard errors ~1e-3 per entry
    assert np.abs(empirical_t - hmm.transition).max() < 0.01
    exact, measured = hmm.exact_statistics(), output_statistics(outputs, o)
    assert np.abs(measured["frequencies"] - exact["frequencies"]).max() < 0.02
    assert np.abs(measured["transitions"] - exact["transitions"]).max() < 0.02
    assert measured["volatility"] == pytest.approx(exact["volatility"], abs=0.005)


def test_emissions_follow_E_given_the_state():
    hmm = make_hmm("cyclic4")
    states, outputs = hmm.sample(500, 100, torch.Generator().manual_seed(1))
    for state in range(4):
        seen = outputs[states == state]
        freq = torch.bincount(seen, minlength=3).double().numpy() / seen.numel()
        assert np.abs(freq - hmm.emission[state]).max() < 0.01


def test_linear_chains_stay_095_and_move_005():
    for states in range(2, 6):
        t = make_hmm(f"linear{states}").transition
        assert np.allclose(np.diag(t), 0.95)
        assert np.allclose(t.sum(1), 1)
        assert np.count_nonzero(t) == states + 2 * (states - 1)
    assert len(named_hmms()) == 8


def test_output_statistics_of_a_hand_sequence():
    stats = output_statistics(torch.tensor([[0, 0, 1, 1, 2]]), 3)
    assert np.allclose(stats["frequencies"], [0.4, 0.4, 0.2])
    assert np.allclose(stats["transitions"], [[0.5, 0.5, 0], [0, 0.5, 0.5], [0, 0, 0]])
    assert stats["volatility"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"transition": [[0.5, 0.4], [0, 1]], "emission": [[1, 0], [0, 1]]}, "row 0 sums to 0.9"),
        ({"transition": [[1, 0], [0, 1]], "emission": [[0.5, 0.6], [0, 1]]}, "E must be row"),
        ({"transition": [[1, 0, 0], [0, 1, 0]], "emission": [[1, 0]]}, "square"),
        ({"transition": [[1, 0], [0, 1]], "emission": [[1, 0, 0]]}, r"E must be \[S=2"),
        ({"transition": [[1.5, -0.5], [0, 1]], "emission": [[1, 0], [0, 1]]}, "non-negative"),
        ({"transition": [[1, 0], [0, 1]], "emission": [[1, 0], [0, 1]], "initial": [1, 1]}, "π"),
    ],
)
def test_bad_matrices_raise_one_line_typed_errors(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match) as info:
        make_task("hmm", **kwargs)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_hmm_and_bad_sizes():
    with pytest.raises(UnknownNameError, match="known: linear2"):
        make_task("hmm", hmm="linear9")
    with pytest.raises(InvalidArgumentError, match="noise_size"):
        make_task("hmm", noise_size=0)


def test_task_batches_and_config_round_trip():
    task = make_task(
        "hmm",
        hmm="custom",
        transition=[[0.9, 0.1], [0.1, 0.9]],
        emission=[[1, 0], [0, 1]],
        steps=30,
        noise_size=4,
    )
    batch = task.sample(8, torch.Generator().manual_seed(3))
    assert batch.x.shape == (8, 30, 4) and batch.y.shape == (8, 30, 2) and batch.mask.all()
    assert torch.equal(batch.y.sum(-1), torch.ones(8, 30))
    again = make_task(**task.config).sample(8, torch.Generator().manual_seed(3))
    assert torch.equal(again.x, batch.x) and torch.equal(again.y, batch.y)
    # a net emitting exactly the batch's symbols scores 1
    assert task.accuracy(batch.y * 5, batch) == pytest.approx(1.0)


def test_noise_rnn_is_torch_rnn_relu_without_bias():
    from interp.rnn.hmm_net import NoiseRNN

    torch.manual_seed(0)
    net = NoiseRNN(5, 7, 3)
    assert net.out.bias is None
    reference = torch.nn.RNN(5, 7, nonlinearity="relu", bias=False, batch_first=True)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(net.weight_ih)
        reference.weight_hh_l0.copy_(net.weight_hh)
    u = torch.randn(4, 11, 5)
    logits, states = net(u)
    expected, _ = reference(u)
    assert torch.allclose(states, expected, atol=1e-6)
    assert torch.allclose(logits, expected @ net.out.weight.T, atol=1e-6)
    assert make_task("hmm").input_size == 100  # the reverse-engineered net's noise size


def test_gumbel_hard_samples_the_softmax_and_passes_gradients():
    from interp.rnn.hmm_net import gumbel_hard

    logits = torch.tensor([[1.0, 0.0, -1.0]]).expand(40000, 3).clone().requires_grad_(True)
    sample = gumbel_hard(logits, torch.Generator().manual_seed(0))
    assert torch.equal(sample.detach().sum(-1), torch.ones(40000))
    freq = sample.detach().mean(0)
    assert torch.allclose(freq, torch.softmax(logits[0].detach(), -1), atol=0.01)
    (sample[:, 0].sum()).backward()
    assert logits.grad.abs().sum() > 0


def test_sinkhorn_is_zero_between_identical_clouds_and_training_reduces_it(tmp_path):
    pytest.importorskip("geomloss")  # a dependency to declare in pyproject.toml
    from interp.rnn.hmm_net import HMMTrainResult, NoiseRNN, sinkhorn_loss, train_hmm

    loss = sinkhorn_loss()
    cloud = torch.randn(64, 6, dtype=torch.float64)
    assert float(loss(cloud, cloud)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss(cloud, cloud + 1)) > 0.1
    torch.manual_seed(0)
    task = make_task("hmm", hmm="linear2", steps=20, noise_size=4)
    net = NoiseRNN(4, 16, 3)
    result = train_hmm(
        net, task, steps=40, batch_size=128, n_sequences=512, lr=2e-2, progress=False
    )
    assert float(result.loss[-5:].mean()) < float(result.loss[:5].mean())
    assert set(result.fit["distances"]) == {
        "frequencies_tv",
        "volatility_abs",
        "transitions_max_abs",
    }
    path = result.save(tmp_path / "train")
    loaded = HMMTrainResult.load(path)
    assert torch.equal(loaded.loss, result.loss) and loaded.fit == result.fit
    with pytest.raises(InvalidArgumentError, match="backend"):
        sinkhorn_loss(backend="gpu")


def test_shipped_hmm_table_is_what_the_script_writes():
    import json
    from pathlib import Path

    from analyses.hmm_definitions import table

    shipped = json.loads((Path(__file__).parents[1] / "data" / "hmm_definitions.json").read_text())
    assert shipped["hmms"] == table()["hmms"]
