"""`interp hmm` and `interp timescales`: one-line errors before any work, tiny end-to-end runs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.rnn.dynamics_result import NoiseDynamics
from interp.rnn.timescales_result import Timescales

runner = CliRunner()
TINY_HMM = ["--steps", "3", "--batch-size", "16", "--hidden", "8", "--noise-size", "2",
            "--length", "5", "--states", "30", "--continuations", "2", "--horizon", "4"]  # fmt: skip
TINY_TS = ["--hidden", "8", "--epochs", "1", "--steps-per-epoch", "3", "--batch-size", "8",
           "--eval-batches", "1", "--tau-steps", "200", "--tau-trials", "1", "--max-n", "3"]  # fmt: skip


def _one_line_error(result, code=1, text=""):
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert text in lines[0]


def test_hmm_refuses_a_non_stochastic_matrix_in_one_line(tmp_path):
    result = runner.invoke(
        app,
        ["hmm", "--hmm", "custom", "--transition", "[[0.5,0.4],[0,1]]",
         "--emission", "[[1,0],[0,1]]", "--out", str(tmp_path / "r.html"), *TINY_HMM],
    )  # fmt: skip
    _one_line_error(result, 1, "row-stochastic")
    assert not (tmp_path / "r.html").exists()


def test_hmm_bad_options(tmp_path):
    _one_line_error(runner.invoke(app, ["hmm", "--hmm", "cyclic5"]), 2, "cyclic5")
    _one_line_error(runner.invoke(app, ["hmm", "--hmm", "custom"]), 2, "--transition")
    taken = tmp_path / "taken.html"
    taken.write_text("mine")
    _one_line_error(runner.invoke(app, ["hmm", "--out", str(taken)]), 1, "already exists")


def test_hmm_end_to_end(tmp_path):
    pytest.importorskip("geomloss")  # the training objective's package
    out, save, run = tmp_path / "r.html", tmp_path / "dyn", tmp_path / "run"
    args = ["hmm", "--out", str(out), "--save", str(save), "--save-model", str(run), *TINY_HMM]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "kick neurons" in result.output and out.stat().st_size > 10_000
    loaded = NoiseDynamics.load(save)
    assert loaded.states.shape == (30, 8)
    again = runner.invoke(app, ["hmm", "--model", str(run), *TINY_HMM])
    assert again.exit_code == 0, again.output


def test_timescales_bad_options():
    _one_line_error(runner.invoke(app, ["timescales", "--curriculum", "spiral"]), 2, "spiral")
    _one_line_error(runner.invoke(app, ["timescales", "--start-n", "0"]), 2, "--start-n")
    _one_line_error(runner.invoke(app, ["timescales", "--task", "parity3"]), 2, "parity3")


def test_timescales_end_to_end(tmp_path):
    out, save = tmp_path / "t.html", tmp_path / "ts"
    result = runner.invoke(
        app,
        ["timescales", "--curriculum", "single", "--out", str(out), "--save", str(save), *TINY_TS],
    )
    assert result.exit_code == 0, result.output
    loaded = Timescales.load(save)
    assert loaded.tau.shape == (8,) and loaded.autocorrelation.shape == (31, 8)
    assert loaded.curriculum["curriculum"] == "single" and out.exists()


def test_timescales_with_a_gru(tmp_path):
    save = tmp_path / "gru"
    result = runner.invoke(app, ["timescales", "--net", "gru", "--save", str(save), *TINY_TS])
    assert result.exit_code == 0, result.output
    loaded = Timescales.load(save)
    assert loaded.tau.isnan().all() and loaded.tau_net.shape == (8,)
    assert loaded.settings["net"]["kind"] == "gru"
