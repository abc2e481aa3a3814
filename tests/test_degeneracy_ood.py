"""The tasks' ``amplitude`` option and the out-of-distribution behaviour metrics built on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.degeneracy.ensemble import train_ensemble
from interp.degeneracy.metrics import measure_degeneracy
from interp.degeneracy.training import held_out
from interp.rnn.tasks import make_task, split_generator

SMALL = {"hidden_size": 6, "steps": 15, "batch_size": 4, "eval_batch": 8, "progress": False}


def _draw(task, seed: int = 3, split: str = "train", length: int | None = None):
    return task.sample(12, split_generator(seed, split), split=split, length=length)


def _flipflop_reference(x: torch.Tensor) -> torch.Tensor:
    """Targets by a plain loop: each output holds the sign of its channel's most recent pulse."""
    y = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for k in range(x.shape[2]):
            held = 0.0
            for t in range(x.shape[1]):
                if x[b, t, k] != 0:
                    held = float(torch.sign(x[b, t, k]))
                y[b, t, k] = held
    return y


def test_default_amplitude_keeps_the_flipflop_task_and_its_config():
    task = make_task("flipflop", bits=2, steps=15)
    batch = _draw(task)
    # unit pulses (one at step 0 on every bit), targets = sign of the last pulse
    assert set(batch.x.unique().tolist()) <= {-1.0, 0.0, 1.0} and (batch.x[:, 0] != 0).all()
    assert torch.equal(batch.y, _flipflop_reference(batch.x))
    explicit = make_task("flipflop", bits=2, steps=15, amplitude=1.0)
    assert (
        task.config
        == explicit.config
        == {"name": "flipflop", "bits": 2, "steps": 15, "p_pulse": 0.5}
    )
    same = _draw(explicit)
    assert all(torch.equal(getattr(batch, f), getattr(same, f)) for f in ("x", "y", "mask"))


@pytest.mark.parametrize(
    ("name", "options", "scales"),
    [
        ("flipflop", {"bits": 2, "steps": 15}, "inputs"),
        ("delayed_discrimination", {"delay_min": 2, "delay_max": 7}, "stimulus"),
        ("sine", {"steps": 20}, "targets"),
    ],
)
@pytest.mark.parametrize("split", ["train", "test"])
def test_amplitude_scales_only_what_it_says(name, options, scales, split):
    unit = _draw(make_task(name, **options), split=split, length=None)
    task = make_task(name, **options, amplitude=2.5)
    assert task.config["amplitude"] == 2.5 and make_task(**task.config).config == task.config
    scaled = _draw(task, split=split)
    assert torch.equal(scaled.mask, unit.mask)  # same random draws: same trials and lengths
    if scales == "inputs":
        assert torch.equal(scaled.x, 2.5 * unit.x) and torch.equal(scaled.y, unit.y)
    elif scales == "stimulus":  # channel 0: f/34 during the stimuli; channel 1: the go cue
        assert torch.equal(scaled.x[..., 0], 2.5 * unit.x[..., 0])
        assert torch.equal(scaled.x[..., 1], unit.x[..., 1]) and torch.equal(scaled.y, unit.y)
    else:
        assert torch.equal(scaled.x, unit.x) and torch.equal(scaled.y, 2.5 * unit.y)
    # the flip-flop targets still follow the pulse signs at any amplitude
    if name == "flipflop":
        assert torch.equal(scaled.y, _flipflop_reference(scaled.x))


def test_bad_amplitudes_are_rejected():
    for bad in (0.0, -1.0, float("inf"), "loud", True):
        with pytest.raises(ValueError, match="amplitude"):
            make_task("flipflop", amplitude=bad)
    with pytest.raises(TypeError, match="bad options"):
        make_task("parity", amplitude=2.0)


def _rms_reference(ensemble, batches, readout=lambda o: o) -> np.ndarray:
    """Pairwise RMS output differences over the masked steps of ``batches``, member by member."""
    n = ensemble.n_models
    outs = [
        [readout(ensemble.module(i)(b.x)[0].detach().double()).numpy() for b in batches]
        for i in range(n)
    ]
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            squared = count = 0.0
            for k, b in enumerate(batches):
                m = b.mask.numpy()
                diff = (outs[i][k] - outs[j][k])[m]
                squared += float((diff**2).sum())
                count += diff.size
            d[i, j] = np.sqrt(squared / count)
    return d


def test_behaviour_amp_is_the_rms_output_distance_on_amplitude_scaled_inputs():
    ensemble = train_ensemble(
        "delayed_discrimination",
        "rnn_tanh",
        3,
        task_options={"delay_min": 1, "delay_max": 5},
        **SMALL,
    )
    result = measure_degeneracy(
        ensemble, n_trials=6, ood_amplitudes=(0.5, 3.0), metrics=["behaviour", "behaviour_amp"]
    )
    task = ensemble.make_task()
    scaled = [held_out(make_task(**task.config, amplitude=a), 1, 6) for a in (0.5, 3.0)]
    expected = _rms_reference(ensemble, scaled)
    np.testing.assert_allclose(
        result.distances["behaviour_amp"].numpy(), expected, atol=1e-6, rtol=1e-5
    )
    # a different amplitude is a different input distribution: distances change
    assert not np.allclose(expected, result.distances["behaviour"].numpy(), atol=1e-3)
    assert result.settings["ood_amplitudes"] == [0.5, 3.0] and result.settings["skipped"] == {}


def test_ood_sets_are_reported_separately_and_skipped_where_amplitude_does_not_apply():
    flipflop = train_ensemble(
        "flipflop", "rnn_tanh", 3, task_options={"bits": 1, "steps": 10}, **SMALL
    )
    every = measure_degeneracy(flipflop, n_trials=4, dsa_iters=2, dsa_restarts=0)
    assert {"behaviour", "behaviour_ood", "behaviour_amp"} <= set(every.distances)
    assert "behaviour_amp" in every.table()
    # the OOD-length set: twice as long, flip-flop scores every step
    long = held_out(flipflop.make_task(), 1, 4, length=20)
    np.testing.assert_allclose(
        every.distances["behaviour_ood"].numpy(),
        _rms_reference(flipflop, [long]),
        atol=1e-6,
        rtol=1e-5,
    )
    # sine's amplitude scales only its targets, parity has none: nothing to measure there
    for task, options, reason in (
        ("sine", {"steps": 12}, "does not change its inputs"),
        ("parity", {"n": 2}, "no amplitude option"),
    ):
        ensemble = train_ensemble(task, "rnn_tanh", 2, task_options=options, **SMALL)
        result = measure_degeneracy(ensemble, n_trials=4, metrics=None, dsa_iters=2, dsa_restarts=0)
        assert "behaviour_amp" not in result.distances
        assert reason in result.settings["skipped"]["behaviour_amp"]
        with pytest.raises(ValueError, match=reason):
            measure_degeneracy(ensemble, n_trials=4, metrics=["behaviour_amp"])
    with pytest.raises(ValueError, match="positive factors"):
        measure_degeneracy(flipflop, metrics=["behaviour_amp"], ood_amplitudes=(0.0,))
