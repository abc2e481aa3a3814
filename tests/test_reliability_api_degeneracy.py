"""Degeneracy of nets that did not learn the task is flagged and counted; wrong input types say
what is expected; the report figure is responsive with a colorbar per heatmap (issue 14)."""

from __future__ import annotations

import pytest
import torch

from interp.degeneracy import measure_degeneracy
from interp.degeneracy.ensemble import Ensemble, train_ensemble
from interp.degeneracy.sweep import degeneracy_sweep
from interp.errors import InputTypeError, InvalidArgumentError

SMALL = {"hidden_size": 6, "steps": 3, "batch_size": 4, "eval_batch": 32, "progress": False}


@pytest.fixture(scope="module")
def untrained() -> Ensemble:
    """Three flip-flop nets after 3 steps: far below 0.9 accuracy."""
    return train_ensemble("flipflop", "rnn_tanh", 3, task_options={"bits": 1, "steps": 8}, **SMALL)


def test_nets_below_the_accuracy_threshold_are_flagged_and_counted(untrained):
    accuracy = untrained.accuracy.tolist()
    assert max(accuracy) < 0.9  # the premise: none learned the task
    result = measure_degeneracy(untrained, n_trials=4, metrics=["cka", "weights"])
    assert result.below_threshold == [0, 1, 2] and result.settings["min_accuracy"] == 0.9
    lines = result.table().splitlines()
    assert (
        lines[1]
        == f"mean accuracy {sum(accuracy) / 3:.3f}; 3 of 3 below the accuracy threshold 0.9"
    )
    assert lines[2:4] == [
        "WARNING: 3 of 3 nets did not learn the task (held-out accuracy < 0.9);",
        "  models 0, 1, 2; train longer or change the hidden size or lr",
    ]
    assert all(line.endswith("  *") for line in lines[5:7]) and max(map(len, lines)) <= 80
    assert lines[-1] == "* includes pairs with a net below the accuracy threshold"
    assert "3 below accuracy 0.9" in result.figure().layout.title.text
    assert untrained.table().count("< below threshold") == 3
    # the threshold flags, it never changes the numbers
    lenient = measure_degeneracy(untrained, n_trials=4, metrics=["cka"], min_accuracy=0.0)
    assert lenient.below_threshold == [] and "WARNING" not in lenient.table()
    torch.testing.assert_close(lenient.distances["cka"], result.distances["cka"])


def test_sweep_counts_flagged_nets_per_ensemble():
    sweep = degeneracy_sweep(
        "flipflop",
        {"hidden_size": [4, 6]},
        base={"n_models": 2, "steps": 2, "hidden_size": 4, "batch_size": 4, "eval_batch": 16},
        task_options={"bits": 1, "steps": 8},
        measure={"n_trials": 4, "metrics": ["weights"]},
    )
    assert [row["below_threshold"] for row in sweep.rows] == [2, 2]
    assert sweep.table().splitlines()[-2:] == [
        "below = nets (of 2) under the accuracy threshold 0.9; 2 of 2 ensembles have some",
        "  (their degeneracy compares nets that did not learn the task)",
    ]


@pytest.mark.parametrize("bad", [[1, 2], "flipflop", None, {"params": {}}])
def test_measure_degeneracy_names_what_it_expects(bad):
    with pytest.raises(InputTypeError, match=r"measure_degeneracy needs an Ensemble .* got "):
        measure_degeneracy(bad)


def test_min_accuracy_out_of_range(untrained):
    with pytest.raises(InvalidArgumentError, match=r"min_accuracy must lie in \[0, 1\], got 2"):
        measure_degeneracy(untrained, min_accuracy=2)


def test_figure_is_responsive_with_a_colorbar_per_heatmap(untrained):
    metrics = ["cka", "procrustes", "weights", "weights_init", "behaviour"]
    fig = measure_degeneracy(untrained, n_trials=4, metrics=metrics).figure()
    assert fig.layout.width is None and fig.layout.autosize is True
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 5 and all(t.showscale is not False for t in heatmaps)
    # each colorbar sits just right of its own panel, as tall as it: no two overlap
    spots = {(round(t.colorbar.x, 3), round(t.colorbar.y, 3)) for t in heatmaps}
    assert len(spots) == 5
    for trace in heatmaps:
        axis = fig.layout[trace.xaxis.replace("x", "xaxis")]
        assert axis.domain[1] < trace.colorbar.x < axis.domain[1] + 0.05
    # flagged members are red in the MDS panels
    scatter = next(t for t in fig.data if t.type == "scatter")
    assert list(scatter.marker.color) == ["#d62728"] * 3
