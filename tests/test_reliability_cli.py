"""Issue #14, the command line: one line for a user's mistake, a traceback for a bug, options and
output locations refused before any work, and ``--overwrite`` that replaces only interp's own
outputs. Every case runs through typer's CliRunner (or a subprocess) with tiny settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app
from interp.rnn.training import load_run

runner = CliRunner()
TINY_TRAIN = ["--task", "flipflop", "-o", "bits=1", "-o", "steps=5", "--hidden", "4"]
TINY_TRAIN += ["--steps", "3", "--batch-size", "4"]


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def one_line(result, code: int) -> str:
    """The command ended with ``code`` through an orderly exit; its last line is the only error
    line (a progress bar of the work before a late failure may come first)."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert "Traceback" not in result.output and lines[-1].startswith("error: "), result.output
    assert [line for line in lines if "error:" in line] == lines[-1:], result.output
    return lines[-1]


def _range(option: str, got: str, low: int, command: str) -> str:
    return (
        f"error: Invalid value for '{option}': got {got}, should be greater than or equal to "
        f"{low} (see `interp {command} --help`)"
    )


def _bad(option: str, text: str, command: str) -> str:
    return f"error: Invalid value for '{option}': {text} (see `interp {command} --help`)"


BAD_OPTIONS = [
    (["phases", "--k", "0"], _range("--k", "0", 1, "phases")),
    (["phases", "--metric", "foo"], _bad("--metric", "'foo' is not one of cosine, cka", "phases")),
    (["phases", "--method", "foo"], _bad("--method", "'foo' is not one of dp, maxcut", "phases")),
    (["phases", "--epsilon", "-1"], _bad("--epsilon", "-1.0 is not in [0, 1]", "phases")),
    (["phases", "--samples", "0"], _range("--samples", "0", 1, "phases")),
    (["phases", "--steps", "0"], _range("--steps", "0", 1, "phases")),
    (["train", "--task", "flipflop", "--out", "x", "--steps", "0"], _range("--steps", "0", 1, "train")),
    (["train", "--task", "flipflop", "--out", "x", "--steps", "-5"], _range("--steps", "-5", 1, "train")),
    (["train", "--task", "flipflop", "--out", "x", "--batch-size", "0"], _range("--batch-size", "0", 1, "train")),
    (["train", "--task", "flipflop", "--out", "x", "--lr", "nan"], _bad("--lr", "nan is not a finite number above 0", "train")),
    (["train", "--task", "flipflop", "--out", "x", "--lr", "-1"], _bad("--lr", "-1.0 is not a finite number above 0", "train")),
    (["train", "--task", "flipflop", "--out", "x", "--target-accuracy", "5"], _bad("--target-accuracy", "5.0 is not in (0, 1]", "train")),
    (["train", "--task", "flipflop", "--out", "x", "--threads", "0"], _range("--threads", "0", 1, "train")),
    (["train", "--task", "flipflop", "--out", "x", "--threads", "-1"], _range("--threads", "-1", 1, "train")),
    (["train", "--task", "flipflop", "--out", "x", "--target-accuracy", "0"], _bad("--target-accuracy", "0.0 is not in (0, 1]", "train")),
    (["heads", "--top", "0"], _range("--top", "0", 1, "heads")),
    (["heads", "--depths", "0,1.5"], _bad("--depths", "depths are fractions in [0, 1], got 0,1.5", "heads")),
    (["heads", "--lengths", "1,100"], _bad("--lengths", "lengths are token counts >= 2, got 1,100", "heads")),
    (["heads", "--top", "-3"], _range("--top", "-3", 1, "heads")),
    (["degeneracy", "--out", "r.html", "--n-models", "1"], _range("--n-models", "1", 2, "degeneracy")),
    (["degeneracy", "--out", "r.html", "--eval-trials", "0"], _range("--eval-trials", "0", 1, "degeneracy")),
    (["degeneracy", "--out", "r.html", "--dsa-iters", "0"], _range("--dsa-iters", "0", 1, "degeneracy")),
    (["fixed-points", "--run", "r", "--method", "newton"], _bad("--method", "'newton' is not one of lm, adam, adam+lm", "fixed-points")),
    (
        ["capture", "--text", "a", "--hook", "x", "--out", "acts.txt"],
        _bad("--out", "acts.txt does not end in .safetensors; activations are saved in the "
             "safetensors format (e.g. --out acts.safetensors)", "capture"),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("args", "line"), BAD_OPTIONS, ids=lambda a: " ".join(a)[:40])
def test_a_bad_option_is_one_line_before_any_work(tmp_path, monkeypatch, args, line):
    monkeypatch.chdir(tmp_path)
    assert one_line(runner.invoke(app, args), 2) == line
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing trained


def test_a_task_option_of_the_wrong_type_is_refused_before_training(tmp_path):
    result = runner.invoke(
        app, ["train", "--task", "flipflop", "--out", str(tmp_path / "r")] + ["-o", "bits=abc"]
    )
    assert one_line(result, 2) == _bad(
        "-o' / '--option", "bits='abc': task 'flipflop' takes an int for bits (default 3)", "train"
    )  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_a_bad_option_imports_no_torch():
    """The check runs before the heavy imports: a mistake costs a fraction of a second."""
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom interp.cli import app\n"
        "r = CliRunner().invoke(app, ['phases', '--k', '0'])\n"
        "assert r.exit_code == 2, r.output\nprint('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_an_interp_error_is_one_line_and_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{")
    line = one_line(runner.invoke(app, ["fixed-points", "--run", str(run)]), 1)
    assert line == (
        f"error: {run / 'config.json'} is damaged or incomplete: not valid JSON (Expecting "
        "property name enclosed in double quotes at line 1, column 2)"
    )

    def bug(path):
        raise RuntimeError("a bug in interp")

    monkeypatch.setattr("interp.filecheck.read_json", bug)
    result = runner.invoke(app, ["fixed-points", "--run", str(run)])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)
    assert "error:" not in result.output


def test_overwrite_never_deletes_a_folder_interp_did_not_write(tmp_path):
    project = tmp_path / "myproject"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('mine')\n")
    expected = (
        f"error: {project} exists and was not written by interp; --overwrite replaces only "
        "interp's own results, runs and reports: move it away or choose another path"
    )
    train = runner.invoke(app, ["train", *TINY_TRAIN, "--out", str(project), "--overwrite"])
    assert one_line(train, 1) == expected
    fixed = ["fixed-points", "--run", str(project), "--overwrite"]
    assert one_line(runner.invoke(app, [*fixed, "--save", str(project)]), 1) == expected
    capture = ["capture", "--text", "a", "--hook", "x", "--overwrite"]
    acts = tmp_path / "mine.safetensors"
    acts.write_bytes(b"not interp's")
    assert one_line(runner.invoke(app, [*capture, "--out", str(acts)]), 1) == expected.replace(
        str(project), str(acts)
    )
    assert (project / "src" / "main.py").read_text() == "print('mine')\n"
    assert acts.read_bytes() == b"not interp's"


def test_overwrite_replaces_interps_own_run_and_report(tmp_path):
    run, report = tmp_path / "run", tmp_path / "fp.html"
    assert runner.invoke(app, ["train", *TINY_TRAIN, "--out", str(run)]).exit_code == 0
    again = runner.invoke(app, ["train", *TINY_TRAIN, "--out", str(run)])
    assert one_line(again, 1) == (
        f"error: {run} already exists; pass --overwrite (overwrite=True in Python) or choose "
        "another path"
    )
    replaced = runner.invoke(
        app, ["train", *TINY_TRAIN, "--seed", "1", "--out", str(run), "--overwrite"]
    )
    assert replaced.exit_code == 0, replaced.output
    assert load_run(run).result.settings["seed"] == 1
    fixed = ["fixed-points", "--run", str(run), "--n-starts", "8", "--out", str(report)]
    assert runner.invoke(app, fixed).exit_code == 0
    assert runner.invoke(app, [*fixed, "--overwrite"]).exit_code == 0
    report.write_text("<html>my own notes</html>")  # now a file interp did not write
    assert "was not written by interp" in one_line(runner.invoke(app, [*fixed, "--overwrite"]), 1)
    assert report.read_text() == "<html>my own notes</html>"


@pytest.mark.parametrize(
    ("out", "line"),
    [
        (
            "/nonexistent/dir/x",
            "error: cannot write /nonexistent/dir/x: the folder /nonexistent/dir does not exist "
            "(interp does not create it; make it first)",
        ),
        (
            "/proc/x",
            "error: cannot write /proc/x: the folder /proc is not writable (No such file or "
            "directory)",
        ),
        ("FILE/x", "error: cannot write FILE/x: FILE is not a folder"),
        ("FILE/a/b", "error: cannot write FILE/a/b: FILE is a file, not a folder"),
    ],
    ids=["missing-parents", "proc", "parent-is-a-file", "ancestor-is-a-file"],
)
def test_an_unwritable_location_is_refused_before_training(tmp_path, out, line):
    file = tmp_path / "file"
    file.write_text("x")
    out, line = out.replace("FILE", str(file)), line.replace("FILE", str(file))
    for args in (["train", *TINY_TRAIN, "--out", out], ["degeneracy", "--out", out]):
        assert one_line(runner.invoke(app, args), 1) == line
    assert not Path("/nonexistent").exists()


def test_a_write_that_fails_after_the_compute_keeps_the_result(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("interp.rnn.cli.check_output", lambda path, overwrite=False: path)
    monkeypatch.setattr("interp.outputs.check_output", lambda path, overwrite=False: path)
    result = runner.invoke(app, ["train", *TINY_TRAIN, "--out", "/proc/run"])
    line = one_line(result, 1)
    (kept,) = (tmp_path / "cache" / "unsaved").iterdir()
    assert line == (
        "error: could not write /proc/run: No such file or directory; the result was kept at "
        f"{kept}"
    )
    assert kept.name.endswith("-run") and load_run(kept).net.config["hidden_size"] == 4


def test_phases_k_beyond_the_depth_is_refused_before_training(monkeypatch):
    def train(*args, **kwargs):
        raise AssertionError("trained before checking --k")

    monkeypatch.setattr("interp.depth.vit.digits_vit", train)
    result = runner.invoke(app, ["phases", "--k", "100"])
    assert one_line(result, 1) == "error: --k 100: the digits ViT has 12 layers; pass --k 1..12"
    from interp.depth.cli import DIGITS_VIT_DEPTH
    from interp.depth.vit import ViTConfig

    assert ViTConfig().depth == DIGITS_VIT_DEPTH  # the CLI's copy, kept to avoid importing torch


@pytest.mark.parametrize(
    "args",
    [
        ["heads", "--out", "/proc/r.html"],
        ["heads", "--out", "OK/r.html", "--save", "/proc/saved"],
        ["phases", "--out", "/proc/r.html"],
        ["capture", "--text", "a", "--hook", "x", "--out", "/proc/a.safetensors"],
        ["fixed-points", "--run", "nowhere", "--out", "/proc/r.html"],
        ["fixed-points", "--run", "nowhere", "--save", "/proc/saved"],
        ["degeneracy", "--out", "OK/r.html", "--save-ensemble", "/proc/saved"],
    ],
    ids=lambda a: " ".join(a[:1] + a[-2:-1]),
)
def test_every_output_location_is_checked_before_the_work(tmp_path, monkeypatch, args):
    def load(*args, **kwargs):
        raise AssertionError("loaded a model before checking the outputs")

    monkeypatch.setattr("interp.models.registry.load_model", load)
    args = [a.replace("OK", str(tmp_path)) for a in args]
    path = args[-1]
    assert one_line(runner.invoke(app, args), 1) == (
        f"error: cannot write {path}: the folder /proc is not writable (No such file or directory)"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_os_error_on_a_path_is_one_line(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")

    def unreadable(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("interp.filecheck.read_json", unreadable)
    result = runner.invoke(app, ["fixed-points", "--run", str(run)])
    assert one_line(result, 1) == f"error: {run / 'config.json'}: Permission denied"


def test_a_cache_root_on_a_shared_folder_makes_nothing_of_the_users_replaceable(
    tmp_path, monkeypatch
):
    from interp.errors import OutputExistsError
    from interp.outputs import write_atomically

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))  # e.g. INTERP_CACHE=~
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(OutputExistsError, match="was not written by interp"):
        write_atomically(notes, lambda tmp: tmp.write_text("interp's"), overwrite=True)
    assert notes.read_text() == "mine"
    converted = tmp_path / "gguf" / "model-0123"  # interp's own cache area: created and replaced
    for text in ("first", "second"):
        write_atomically(converted, lambda tmp, t=text: tmp.write_text(t), overwrite=True)
    assert converted.read_text() == "second"


def test_interps_outputs_are_recognized_even_without_its_marker(tmp_path):
    """Results, runs, reports and activations written by earlier versions (no ``.interp`` file)."""
    import json

    from safetensors.torch import save_file

    from interp.outputs import written_by_interp

    result = tmp_path / "result"
    result.mkdir()
    (result / "result.json").write_text(json.dumps({"type": "HeadScores", "interp_version": "0"}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"net": {}, "task": {}}))
    (run / "weights.safetensors").write_bytes(b"")
    report = tmp_path / "r.html"
    report.write_text('<html><head><meta name="generator" content="interp 0.1.0">')
    acts = tmp_path / "a.safetensors"
    save_file({"x": torch.ones(1)}, str(acts), {"interp_version": "0.1.0"})
    for path in (result, run, report, acts):
        assert written_by_interp(path), path
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "result.json").write_text("{}")
    other = tmp_path / "b.safetensors"
    save_file({"x": torch.ones(1)}, str(other))
    for path in (plain, other, tmp_path / "notes.txt"):
        assert not written_by_interp(path), path


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["train", "--task", "flipflop", "--net", "foo"],
            "error: unknown net kind 'foo'; known kinds: gru, leaky, lstm, ",
        ),
        (
            ["degeneracy", "--net", "foo"],
            "error: unknown net kind 'foo'; known kinds: gru, leaky, lstm, ",
        ),
        (["degeneracy", "--task", "flipflip"], "error: unknown task 'flipflip'; known tasks: "),
    ],
    ids=["train-net", "degeneracy-net", "degeneracy-task"],
)
def test_a_bad_net_or_task_is_refused_before_training(tmp_path, monkeypatch, args, line):
    def train(*args, **kwargs):
        raise AssertionError("trained before checking the net and task")

    monkeypatch.setattr("interp.rnn.training.train", train)
    monkeypatch.setattr("interp.degeneracy.ensemble.train_ensemble", train)
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out.html")])
    assert one_line(result, 1).startswith(line)
    assert list(tmp_path.iterdir()) == []
