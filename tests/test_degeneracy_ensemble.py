"""Vectorized ensemble training, save/load, and the metrics on an ensemble with known answers."""

from __future__ import annotations

import pytest
import torch

from interp.degeneracy.ensemble import Ensemble, train_ensemble
from interp.degeneracy.geometry import cka_distances
from interp.degeneracy.metrics import Degeneracy, measure_degeneracy
from interp.degeneracy.training import activity, held_out, trial_steps

SMALL = {"hidden_size": 8, "steps": 12, "batch_size": 4, "eval_batch": 8, "progress": False}


@pytest.mark.parametrize(
    ("task", "net", "options"),
    [
        ("flipflop", "rnn_tanh", {"bits": 2, "steps": 10}),
        # variable-length trials (padding across members), a gated cell, both regularizers
        ("delayed_discrimination", "gru", {"delay_min": 1, "delay_max": 4}),
    ],
)
def test_vectorized_training_equals_a_sequential_loop(task, net, options):
    kwargs = {
        **SMALL,
        "task_options": options,
        "weight_decay": 1e-2,
        "activity_penalty": 1e-2,
        "grad_clip": 0.5,
    }
    fast = train_ensemble(task, net, 3, [5, 6, 7], **kwargs)
    slow = train_ensemble(task, net, 3, [5, 6, 7], vectorized=False, **kwargs)
    torch.testing.assert_close(fast.losses, slow.losses, atol=1e-5, rtol=1e-4)
    for name in fast.params:
        torch.testing.assert_close(fast.params[name], slow.params[name], atol=1e-5, rtol=1e-4)
    assert fast.losses.shape == (SMALL["steps"], 3)


def test_each_member_depends_only_on_its_own_seeds():
    options = {"task_options": {"bits": 2, "steps": 10}, **SMALL}
    trio = train_ensemble("flipflop", "rnn_tanh", 3, [0, 1, 2], **options)
    pair = train_ensemble("flipflop", "rnn_tanh", 2, [2, 0], **options)
    for name in trio.params:
        torch.testing.assert_close(trio.params[name][0], pair.params[name][1])
        torch.testing.assert_close(trio.params[name][2], pair.params[name][0])
        assert not torch.equal(trio.params[name][0], trio.params[name][1])


def test_padding_of_variable_length_trials_does_not_couple_members():
    # Members draw trials of different lengths; each step's batch is padded to the longest one.
    # With the activity penalty over trial steps only, a member trains the same with any company.
    options = {
        **SMALL,
        "task_options": {"delay_min": 1, "delay_max": 30},
        "activity_penalty": 0.5,
        "batch_size": 1,  # 16 trials per prefetched chunk: the members' longest trials differ
    }
    trio = train_ensemble("delayed_discrimination", "rnn_tanh", 3, [0, 1, 2], **options)
    for i in range(3):
        alone = train_ensemble("delayed_discrimination", "rnn_tanh", 1, [i], **options)
        for name in trio.params:
            torch.testing.assert_close(trio.params[name][i], alone.params[name][0])


def test_trial_steps_and_activity_by_hand():
    mask = torch.tensor(
        [[False, True, False, True, False, False], [True, False, False] + [False] * 3]
    )
    steps = trial_steps(mask)
    assert steps.tolist() == [[True] * 4 + [False] * 2, [True] + [False] * 5]
    states = torch.randn(2, 6, 3, dtype=torch.float64)
    states[0, 4:] = 1e6  # padding after the trials: must not count
    states[1, 1:] = -1e6
    by_hand = torch.cat([states[0, :4], states[1, :1]]).square().mean()
    torch.testing.assert_close(activity(states, mask), by_hand)


def test_state_metrics_leave_out_the_padding_of_variable_length_trials():
    ensemble = train_ensemble(
        "delayed_discrimination",
        "rnn_tanh",
        3,
        task_options={"delay_min": 1, "delay_max": 8},
        **SMALL,
    )
    result = measure_degeneracy(ensemble, n_trials=8, metrics=["cka"])
    test = held_out(ensemble.make_task(), 1, 8)
    per_member = []
    for i in range(3):
        states = ensemble.module(i)(test.x)[1].detach()
        # each trial ends at its last response step (the response period closes the trial)
        last = [int(torch.nonzero(test.mask[b]).max()) for b in range(8)]
        per_member.append(torch.cat([states[b, : last[b] + 1] for b in range(8)]))
    assert len(set(len(t) for t in per_member)) == 1 and len(per_member[0]) < test.mask.numel()
    expected = cka_distances(torch.stack(per_member)[:, None])
    torch.testing.assert_close(result.distances["cka"], expected, atol=1e-10, rtol=0)
    padded = cka_distances(ensemble.run(test.x)[1])
    assert (padded - expected).abs().max() > 1e-4  # the padding would have changed the answer


def test_ensemble_save_load_and_member_modules(tmp_path):
    ensemble = train_ensemble(
        "flipflop", "rnn_tanh", 2, task_options={"bits": 2, "steps": 10}, **SMALL
    )
    path = ensemble.save(tmp_path / "ens")
    with pytest.raises(FileExistsError):
        ensemble.save(tmp_path / "ens")
    loaded = Ensemble.load(path)
    assert loaded.seeds == ensemble.seeds and loaded.settings == ensemble.settings
    x = loaded.make_task().sample(3, torch.Generator().manual_seed(0)).x
    outputs, states = loaded.run(x)
    module_out, module_states = loaded.module(1)(x)
    torch.testing.assert_close(outputs[1], module_out.detach())
    torch.testing.assert_close(states[1], module_states.detach())
    assert "accuracy" in loaded.table() and len(loaded.figure().data) == 2


def test_bad_ensemble_settings_are_rejected():
    with pytest.raises(ValueError, match="distinct"):
        train_ensemble("flipflop", "rnn_tanh", 2, [3, 3], **SMALL)
    with pytest.raises(ValueError, match="one seed"):
        train_ensemble("flipflop", "rnn_tanh", 3, [1, 2], **SMALL)
    with pytest.raises(ValueError, match="data_seeds must be distinct"):
        train_ensemble("flipflop", "rnn_tanh", 3, [1, 2, 3], data_seeds=[7, 8, 7], **SMALL)
    with pytest.raises(ValueError, match="unknown task"):
        train_ensemble("juggling", "rnn_tanh", 2, **SMALL)


def _relabelled_copy(ensemble: Ensemble, generator: torch.Generator) -> Ensemble:
    """Member 1 := member 0 with hidden units permuted and sign-flipped (same function for tanh)."""
    params = {name: value.clone() for name, value in ensemble.params.items()}
    hidden = params["weight_hh"].shape[-1]
    perm = torch.randperm(hidden, generator=generator)
    signs = torch.where(torch.rand(hidden, generator=generator) < 0.5, -1.0, 1.0)
    p = torch.zeros(hidden, hidden)
    p[torch.arange(hidden), perm] = signs
    params["weight_hh"][1] = p @ params["weight_hh"][0] @ p.T
    params["weight_ih"][1] = p @ params["weight_ih"][0]
    params["bias"][1] = p @ params["bias"][0]
    params["out.weight"][1] = params["out.weight"][0] @ p.T
    params["out.bias"][1] = params["out.bias"][0]
    return Ensemble(**{**ensemble.__dict__, "params": params})


def test_metrics_see_a_relabelled_copy_as_the_same_solution(tmp_path):
    trained = train_ensemble(
        "flipflop", "rnn_tanh", 3, task_options={"bits": 2, "steps": 12}, **{**SMALL, "steps": 40}
    )
    ensemble = _relabelled_copy(trained, torch.Generator().manual_seed(0))
    every = ["behaviour", "behaviour_ood", "dsa", "eigen_w1", "cka", "procrustes", "weights"]
    result = measure_degeneracy(
        ensemble, n_trials=8, n_delays=2, rank=6, dsa_iters=100, metrics=every
    )
    assert set(result.distances) == {
        "behaviour",
        "behaviour_ood",
        "dsa",
        "eigen_w1",
        "cka",
        "procrustes",
        "weights",
    }
    for name, d in result.distances.items():
        assert torch.allclose(d, d.T) and torch.all(d.diagonal() == 0), name
        assert d[0, 1] < 1e-3, f"{name}: relabelled copy should be at distance 0, got {d[0, 1]}"
        assert d[0, 2] > 10 * d[0, 1] + 1e-4, f"{name}: an independent member should be farther"
    loaded = Degeneracy.load(result.save(tmp_path / "deg"))
    assert loaded.summary == result.summary
    assert "weights" in loaded.table() and len(loaded.figure().data) > 0
    with pytest.raises(ValueError, match="unknown metrics"):
        measure_degeneracy(ensemble, metrics=["vibes"])


def test_weights_init_is_the_distance_between_the_untrained_members():
    # one step with a negligible learning rate leaves the weights at their initial values
    frozen = train_ensemble(
        "flipflop",
        "rnn_tanh",
        3,
        task_options={"bits": 1, "steps": 6},
        **{**SMALL, "steps": 1, "lr": 1e-12},
    )
    result = measure_degeneracy(frozen, metrics=["weights", "weights_init"])
    torch.testing.assert_close(
        result.distances["weights"], result.distances["weights_init"], atol=1e-9, rtol=0
    )
    assert result.summary["weights_init"] > 0.3
