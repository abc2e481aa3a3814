"""μP leaky-tanh net, per-member early stopping and the weight-change diagnostic (issue #18)."""

from __future__ import annotations

import math

import pytest
import torch

from interp.degeneracy import measure_degeneracy, train_ensemble
from interp.degeneracy.mup import MuPLeakyNet
from interp.degeneracy.stopping import Plateau
from interp.rnn.nets import make_net

TINY = {"bits": 1, "steps": 8, "p_pulse": 0.3}


def test_mup_forward_equals_the_equations_on_a_hand_computed_step():
    # N = 2 units, 1 input, 1 output, γ = 2, τ = 0.1; h(0) = 0
    net = MuPLeakyNet(1, 2, 1, gamma=2.0, tau=0.1).double()
    with torch.no_grad():
        net.weight_hh.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))  # J
        net.weight_ih.copy_(torch.tensor([[1.0], [-1.0]]))  # U
        net.out.weight.copy_(torch.tensor([[2.0, 1.0]]))  # W_readout
    x = torch.tensor([[[0.5], [2.0]]], dtype=torch.float64)
    outputs, states = net(x)
    # step 1: h = 0 + 0.1 (−0 + (1/2) J tanh(0) + U·0.5) = (0.05, −0.05)
    h1 = (0.05, -0.05)
    # step 2: h += 0.1 (−h + (1/2) J tanh(h) + U·2)
    t1 = (math.tanh(h1[0]), math.tanh(h1[1]))
    rec = ((1.0 * t1[0] - 2.0 * t1[1]) / 2, (0.5 * t1[0] + 3.0 * t1[1]) / 2)
    h2 = (
        h1[0] + 0.1 * (-h1[0] + rec[0] + 2.0),
        h1[1] + 0.1 * (-h1[1] + rec[1] - 2.0),
    )
    # readout f = W tanh(h) / (γ N) = W tanh(h) / 4
    f1 = (2.0 * math.tanh(h1[0]) + math.tanh(h1[1])) / 4
    f2 = (2.0 * math.tanh(h2[0]) + math.tanh(h2[1])) / 4
    expected_states = torch.tensor([[h1, h2]], dtype=torch.float64)
    expected_outputs = torch.tensor([[[f1], [f2]]], dtype=torch.float64)
    torch.testing.assert_close(states, expected_states, rtol=0, atol=1e-15)
    torch.testing.assert_close(outputs, expected_outputs, rtol=0, atol=1e-15)
    assert dict(net.named_parameters()).keys() == {"weight_hh", "weight_ih", "out.weight"}
    torch.testing.assert_close(net.recurrent_matrix(), net.weight_hh / 2)


def test_mup_initialization_variances_and_learning_rate_scale():
    net = make_net("mup_leaky", 3, 400, 2, seed=0, gamma=0.5)
    assert net.weight_hh.var().item() == pytest.approx(400, rel=0.02)  # J_ij ~ N(0, N)
    assert net.weight_ih.var().item() == pytest.approx(1, rel=0.1)
    assert net.out.weight.var().item() == pytest.approx(1, rel=0.3)
    assert net.config == {
        "kind": "mup_leaky",
        "input_size": 3,
        "hidden_size": 400,
        "output_size": 2,
        "gamma": 0.5,
        "tau": 0.1,
    }
    ensemble = train_ensemble(
        "flipflop", "mup_leaky", 2, hidden_size=4, steps=1, lr=0.2, grad_clip=None,
        net_options={"gamma": 0.5}, task_options=TINY, progress=False,
    )  # fmt: skip
    assert ensemble.settings["effective_lr"] == pytest.approx(0.1)  # η = γ η0
    with pytest.raises(ValueError, match="tau"):
        MuPLeakyNet(1, 2, 1, tau=1.5)


def _train(
    steps: int,
    threshold: float | None,
    vectorized: bool = True,
    patience: int = 1,
    lr_plateau: dict | None = None,
):
    return train_ensemble(
        "flipflop", "mup_leaky", 4, hidden_size=8, steps=steps, batch_size=8, lr=0.3,
        grad_clip=None, task_options=TINY, loss_threshold=threshold, patience=patience,
        lr_plateau=lr_plateau, vectorized=vectorized, progress=False,
    )  # fmt: skip


def _threshold() -> float:
    """A threshold some members cross within 20 steps and others do not."""
    free = _train(20, None)
    best = free.losses.min(dim=0).values.sort().values
    return float((best[1] + best[2]) / 2)


def test_stopped_members_do_not_move_while_the_others_continue():
    threshold = _threshold()
    short, long = _train(20, threshold), _train(30, threshold)
    torch.testing.assert_close(
        short.stop_step[short.stop_step >= 0], long.stop_step[short.stop_step >= 0]
    )
    stopped = [i for i, s in enumerate(short.stop_step.tolist()) if s >= 0]
    running = [i for i, s in enumerate(long.stop_step.tolist()) if s < 0]
    assert stopped and running, (short.stop_step, long.stop_step)
    for name in short.params:
        for i in stopped:  # frozen: bit-identical parameters 10 steps later
            assert torch.equal(short.params[name][i], long.params[name][i]), (name, i)
        for i in running:  # still training
            assert not torch.equal(short.params[name][i], long.params[name][i]), (name, i)
    # a stopped member's parameters are those it had at its stopping step: s updates, then frozen
    for i in stopped:
        reference = _train(int(short.stop_step[i]), None)
        for name in short.params:
            torch.testing.assert_close(short.params[name][i], reference.params[name][i])
        assert short.final_loss[i] == short.losses[short.stop_step[i], i]
        assert short.final_loss[i] < threshold


def test_vectorized_early_stopping_matches_the_sequential_reference():
    threshold = _threshold()
    vec, seq = _train(25, threshold, True, 2), _train(25, threshold, False, 2)
    assert torch.equal(vec.stop_step, seq.stop_step)
    for name in vec.params:
        torch.testing.assert_close(vec.params[name], seq.params[name], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("window", [1, 3])
def test_plateau_lowers_each_members_rate_as_torchs_reduce_lr_on_plateau(window):
    g = torch.Generator().manual_seed(0)
    trend = torch.linspace(1.0, 0.5, 60).view(-1, 1)
    losses = trend * torch.tensor([1.0, 0.0, 0.5]) + torch.rand(60, 3, generator=g)  # [steps, N]
    plateau = Plateau(3, factor=0.5, patience=2, window=window, threshold=0.01, min_factor=0.1)
    references, distinct = [], 0
    for _ in range(3):
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.5, patience=2, threshold=0.01, min_lr=0.1
        )
        references.append((optimizer, scheduler))
    for step, row in enumerate(losses):
        factors = plateau.update(step, row)
        if (step + 1) % window == 0:
            window_mean = losses[step + 1 - window : step + 1].double().mean(0)
            for i, (_, scheduler) in enumerate(references):
                scheduler.step(float(window_mean[i]))
        expected = [optimizer.param_groups[0]["lr"] for optimizer, _ in references]
        torch.testing.assert_close(factors, torch.tensor(expected, dtype=torch.float64))
        distinct += len(set(factors.tolist())) > 1
    assert distinct > 0 and factors.min() == 0.1  # lowered at different times, down to the floor
    with pytest.raises(ValueError, match="0 < factor < 1"):
        Plateau(2, factor=1.5)


def test_vectorized_plateau_schedule_matches_per_member_optimizers():
    schedule = {"factor": 0.5, "patience": 1, "window": 2, "threshold": 0.5}
    vec, seq = (
        _train(16, None, True, lr_plateau=schedule),
        _train(16, None, False, lr_plateau=schedule),
    )
    plain = _train(16, None)
    assert vec.settings["lr_plateau"] == schedule
    for name in vec.params:  # the sequential path sets each optimizer's own learning rate
        torch.testing.assert_close(vec.params[name], seq.params[name], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(vec.params["weight_hh"], plain.params["weight_hh"])


def test_members_that_never_reach_the_threshold_are_reported_and_excluded():
    threshold = _threshold()
    ensemble = _train(20, threshold)
    missed = [ensemble.seeds[i] for i, s in enumerate(ensemble.stop_step.tolist()) if s < 0]
    assert missed and len(missed) <= 2
    assert f"{len(missed)} never reached loss" in ensemble.table()
    result = measure_degeneracy(ensemble, n_trials=4, metrics=["cka", "d_pif"])
    assert result.settings["excluded"] == missed
    assert result.distances["cka"].shape == (4 - len(missed),) * 2
    assert f"{len(missed)} nets never reached the loss threshold" in result.table()


def test_relative_weight_change_per_member():
    ensemble = _train(5, None)
    for name, change in ensemble.weight_change.items():
        initial = torch.stack(
            [
                dict(make_net(**ensemble.net, seed=s).named_parameters())[name]
                for s in ensemble.seeds
            ]
        ).double()
        final = ensemble.params[name].double()
        expected = (final - initial).flatten(1).norm(dim=1) / initial.flatten(1).norm(dim=1)
        torch.testing.assert_close(change, expected)
        assert (change > 0).all()
    subset = ensemble.subset([2, 0])
    assert subset.seeds == [ensemble.seeds[2], ensemble.seeds[0]]
    torch.testing.assert_close(
        subset.weight_change["weight_hh"], ensemble.weight_change["weight_hh"][[2, 0]]
    )


def test_cli_trains_mup_nets_with_early_stopping_and_reports_both_families(tmp_path):
    from typer.testing import CliRunner

    from interp.cli import app

    runner = CliRunner()
    out = tmp_path / "r.html"
    args = ["degeneracy", "--out", str(out), "--net", "mup_leaky", "--gamma", "0.5", "--hidden", "6",
            "--n-models", "3", "--steps", "30", "--lr", "0.3", "--loss-threshold", "0.9",
            "--lr-plateau", "0.5,2,5", "--metrics-family", "both", "--eval-trials", "4", "--dsa-iters", "5", "--dsa-restarts", "0",
            "-o", "bits=1", "-o", "steps=8"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (
        "stop step" in result.output and "d_pif" in result.output and "sigma_ood" in result.output
    )
    assert out.exists()
    bad = runner.invoke(app, ["degeneracy", "--out", str(tmp_path / "x.html"), "--gamma", "2"])
    assert bad.exit_code != 0 and "mup_leaky" in bad.output
    bad = runner.invoke(
        app, ["degeneracy", "--out", str(tmp_path / "x.html"), "--metrics-family", "x"]
    )
    assert bad.exit_code != 0 and "ours, paper or both" in bad.output
    bad = runner.invoke(
        app, ["degeneracy", "--out", str(tmp_path / "x.html"), "--lr-plateau", "0.5,40"]
    )
    assert bad.exit_code != 0 and "FACTOR,PATIENCE,WINDOW" in bad.output
