"""`interp train`, `interp fixed-points` and `interp automaton` end to end, with tiny settings."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app
from interp.rnn.extraction_result import Extraction
from interp.rnn.fixed_points_result import FixedPoints
from interp.rnn.tasks import split_generator
from interp.rnn.training import evaluate, load_run

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _clean_error(result, *phrases: str) -> None:
    """A refused command: non-zero exit through typer (no Python traceback), naming the problem."""
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())
    for phrase in phrases:
        assert phrase in text, result.output


def test_train_then_fixed_points(tmp_path):
    run = tmp_path / "run"
    train_args = ["train", "--task", "flipflop", "-o", "bits=1", "-o", "steps=20"]
    train_args += ["--hidden", "6", "--steps", "150", "--lr", "0.02", "--out", str(run)]
    trained = runner.invoke(app, train_args)
    assert trained.exit_code == 0, trained.output
    assert "final test accuracy" in trained.output and f"saved run to {run}" in trained.output
    net, task, history = load_run(run)
    assert net.config["hidden_size"] == 6 and task.config == {
        "name": "flipflop", "bits": 1, "steps": 20, "p_pulse": 0.5,
    }  # fmt: skip
    test_batch = task.sample(512, split_generator(0, "test"), split="test")
    assert evaluate(net, task, test_batch)[1] == pytest.approx(history.final_accuracy)
    assert history.final_accuracy > 0.95
    _clean_error(runner.invoke(app, train_args), "already exists", "--overwrite")
    _clean_error(
        runner.invoke(app, ["train", "--task", "flipflip", "--out", str(tmp_path / "x")]),
        "unknown task 'flipflip'",
    )

    report, saved = tmp_path / "fp.html", tmp_path / "fp"
    found = runner.invoke(
        app,
        ["fixed-points", "--run", str(run), "--n-starts", "64", "--out", str(report)]
        + ["--save", str(saved)],
    )
    assert found.exit_code == 0, found.output
    assert report.exists() and "<html" in report.read_text()[:500].lower()
    points = FixedPoints.load(saved)
    # a 1-bit flip-flop memory: two stable points reading out -1 and +1
    stable = points.stable
    assert int(stable.sum()) == 2, points.table()
    assert sorted(torch.sign(points.readouts[stable]).flatten().tolist()) == [-1.0, 1.0]
    _clean_error(
        runner.invoke(app, ["fixed-points", "--run", str(run), "--out", str(report)]),
        "already exists",
    )
    _clean_error(
        runner.invoke(app, ["fixed-points", "--run", str(tmp_path / "nothing")]),
        "is not a saved run",
    )


def test_automaton_writes_a_default_report_and_reloads_a_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["automaton", "--task", "tomita1", "--hidden", "6"]
    first = runner.invoke(app, [*args, "--save-model", "run", "--save", "first"])
    assert first.exit_code == 0, first.output
    assert (tmp_path / "automaton_tomita1.html").exists()
    assert "wrote the report to automaton_tomita1.html" in first.output
    extraction = Extraction.load(tmp_path / "first")
    assert extraction.equivalent is True and extraction.n_states == 2

    # a second run keeps the first report and says where the new one went
    again = runner.invoke(app, ["automaton", "--model", "run", "--save", "second"])
    assert again.exit_code == 0, again.output
    assert "automaton_tomita1.html exists; writing automaton_tomita1_2.html" in again.output
    assert (tmp_path / "automaton_tomita1_2.html").exists()
    reloaded = Extraction.load(tmp_path / "second")  # the saved net extracts the same automaton
    assert reloaded.dfa.equivalent(extraction.dfa) == (True, None)
    assert reloaded.fidelity == extraction.fidelity

    _clean_error(
        runner.invoke(app, ["automaton", "--model", "missing"]), "missing is not a saved run"
    )
    _clean_error(
        runner.invoke(app, [*args, "--out", "automaton_tomita1.html"]),
        "already exists",
    )
    skipped = runner.invoke(app, ["automaton", "--model", "run", "--no-report"])
    assert skipped.exit_code == 0 and "wrote the report" not in skipped.output
    assert not (tmp_path / "automaton_tomita1_3.html").exists()
