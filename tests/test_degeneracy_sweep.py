"""Degeneracy sweep: tidy table, executors (in-process and a local Ray instance), CLI."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interp.degeneracy.executors import LocalExecutor, make_executor
from interp.degeneracy.sweep import DegeneracySweep, degeneracy_sweep

TINY = {
    "base": {"n_models": 3, "steps": 5, "hidden_size": 6, "batch_size": 4, "eval_batch": 8},
    "task_options": {"bits": 1, "steps": 8},
    "measure": {
        "n_trials": 4,
        "n_delays": 2,
        "rank": 4,
        "dsa_iters": 5,
        "metrics": ["behaviour", "dsa", "weights"],
    },
}


def test_sweep_returns_a_tidy_table_and_trains_shared_settings_once(tmp_path):
    calls = []

    class CountingExecutor(LocalExecutor):
        def map(self, fn, jobs):
            calls.append(len(jobs))
            return super().map(fn, jobs)

    result = degeneracy_sweep(
        "flipflop", {"hidden_size": [6, 8], "bits": [1, 2]}, executor=CountingExecutor(), **TINY
    )
    # hidden_size=6 and bits=1 are the same base setting: 3 distinct ensembles, not 4
    assert calls == [3]
    frame = result.frame
    assert len(frame) == 4 * 3
    assert set(frame.columns) >= {
        "task",
        "factor",
        "level",
        "metric",
        "level_kind",
        "degeneracy",
        "se",
        "accuracy",
        "worker",
    }
    assert (frame.se > 0).all() and (frame.se < frame.degeneracy).all()
    base_rows = (
        frame[(frame.factor == "hidden_size") & (frame.level == 6)].set_index("metric").degeneracy
    )
    same_rows = frame[(frame.factor == "bits") & (frame.level == 1)].set_index("metric").degeneracy
    assert base_rows.equals(same_rows)
    assert set(frame.level_kind) == {"behaviour", "dynamics", "weights"}
    loaded = DegeneracySweep.load(result.save(tmp_path / "sweep"))
    assert loaded.rows == result.rows
    assert "hidden_size" in loaded.table()
    assert len(loaded.figure().data) == 2 * 3 + 1  # a line per factor x metric, plus the MDS panel


def test_bad_sweep_settings_are_rejected():
    with pytest.raises(ValueError, match="no levels"):
        degeneracy_sweep("flipflop", {"hidden_size": []}, **TINY)
    with pytest.raises(ValueError, match="unknown train_ensemble arguments"):
        degeneracy_sweep("flipflop", {"hidden_size": [4]}, base={"n_modles": 2})
    with pytest.raises(ValueError, match="Ray address"):
        make_executor("")


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'ray>=2.9')"
)
def test_ray_executor_gives_the_same_numbers_as_in_process():
    import ray

    assert not ray.is_initialized()
    sweep = {"factors": {"hidden_size": [6]}, **TINY}
    local = degeneracy_sweep("flipflop", **sweep)
    executor = make_executor("local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        remote = degeneracy_sweep("flipflop", executor=executor, **sweep)
    finally:
        executor.close()
    assert not ray.is_initialized()
    assert [r["degeneracy"] for r in remote.rows] == pytest.approx(
        [r["degeneracy"] for r in local.rows], rel=1e-6
    )
    assert remote.settings["executor"].startswith("RayExecutor")
    # the jobs ran in Ray worker processes, the in-process ones here
    assert {r["worker"].rsplit(":", 1)[1] for r in local.rows} == {str(os.getpid())}
    remote_pids = {r["worker"].rsplit(":", 1)[1] for r in remote.rows}
    assert remote_pids and str(os.getpid()) not in remote_pids


def _report_heatmaps(html: str) -> dict[str, np.ndarray]:
    """The heatmap matrices embedded in a report, by metric name (from each trace's hover text)."""
    decoder = json.JSONDecoder()
    found = {}
    for call in re.finditer(r'Plotly\.newPlot\(\s*"[^"]+",\s*', html):
        traces, _ = decoder.raw_decode(html, call.end())
        for trace in traces:
            if trace.get("type") != "heatmap":
                continue
            z = trace["z"]
            if isinstance(z, dict):  # plotly's binary encoding of numpy arrays
                shape = [int(v) for v in str(z["shape"]).split(",")]
                z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
            found[trace["hovertemplate"].split("<br>")[0]] = np.asarray(z, dtype=float)
    return found


def test_cli_writes_a_report_and_refuses_to_overwrite(tmp_path):
    from interp.cli import app
    from interp.degeneracy.ensemble import Ensemble
    from interp.degeneracy.metrics import METRICS, measure_degeneracy

    out = tmp_path / "report.html"
    args = ["degeneracy", "--task", "flipflop", "--n-models", "3", "--hidden", "6"]
    args += ["--steps", "5", "-o", "bits=1", "-o", "steps=12", "--out", str(out)]
    args += ["--eval-trials", "8", "--dsa-iters", "20", "--dsa-restarts", "2"]
    args += ["--save-ensemble", str(tmp_path / "ens")]
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ensemble = Ensemble.load(tmp_path / "ens")
    assert ensemble.n_models == 3
    # the report shows every metric's N x N matrix: the ones the saved ensemble gives
    expected = measure_degeneracy(ensemble, n_trials=8, dsa_iters=20, dsa_restarts=2)
    heatmaps = _report_heatmaps(out.read_text())
    assert set(heatmaps) == set(expected.distances) == set(METRICS)
    for name, d in expected.distances.items():
        np.testing.assert_allclose(heatmaps[name], d.numpy(), atol=1e-12, err_msg=name)
    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "already exists" in again.output
    assert torch.is_tensor(Ensemble.load(tmp_path / "ens").losses)
