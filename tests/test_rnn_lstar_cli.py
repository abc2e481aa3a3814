"""`interp automaton --method lstar` end to end, and bad options refused before any training."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app
from interp.rnn.extraction_result import Extraction

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_training(monkeypatch):
    """Make any training attempt fail loudly: a refused option must stop before it."""
    import interp.rnn.grammar_training as grammar_training

    def refuse(*args, **kwargs):
        raise AssertionError("the command trained a net before refusing its options")

    monkeypatch.setattr(grammar_training, "train_grammar_net", refuse)


def _refused(args: list[str], *phrases: str) -> str:
    result = runner.invoke(app, ["automaton", *args])
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output and "trained" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for phrase in phrases:
        assert phrase in lines[0], result.output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["--clusters", "0"], ["--clusters", "got 0, should be greater than or equal to 1"]),
        (
            ["--max-clusters", "0"],
            ["--max-clusters", "got 0, should be greater than or equal to 2"],
        ),
        (["--max-clusters", "1"], ["--max-clusters"]),
        (["--method", "grid"], ["--method", "'grid' is not one of kmeans, centroids, lstar"]),
        (["--method", "lstar", "--max-states", "0"], ["--max-states"]),
        (["--method", "lstar", "--time-limit", "0"], ["--time-limit", "above 0"]),
        (["--method", "lstar", "--equivalence", "pac", "--epsilon", "1.5"], ["epsilon"]),
        (["--method", "lstar", "--equivalence", "oracle"], ["--equivalence"]),
        (["--method", "lstar", "--clusters", "3"], ["--clusters applies to --method kmeans"]),
        (["--hidden", "0"], ["--hidden"]),
    ],
)
def test_bad_options_fail_up_front_in_one_line(args, phrases, no_training, tmp_path):
    _refused(["--task", "tomita1", "--out", str(tmp_path / "r.html"), *args], *phrases)


def test_unknown_task_fails_up_front(no_training):
    _refused(["--task", "tomita9"], "'tomita9' is not one of tomita1")


def test_lstar_extracts_through_the_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["automaton", "--task", "tomita1", "--hidden", "6", "--method", "lstar"]
    result = runner.invoke(app, [*args, "--save", "ex", "--out", "r.html"])
    assert result.exit_code == 0, result.output
    assert "Extracted automaton (lstar, abstraction oracle): 2 states" in result.output
    assert "queries:" in result.output and "equivalent to the ground truth: yes" in result.output
    extraction = Extraction.load(tmp_path / "ex")
    assert extraction.settings["method"] == "lstar" and extraction.complete
    assert extraction.equivalent is True and extraction.n_states == 2
    assert extraction.membership_queries > 0 and extraction.equivalence_queries >= 1
    html = (tmp_path / "r.html").read_text()
    assert "counterexamples in the order" in html
