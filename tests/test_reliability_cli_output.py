"""Issue #14, output a person reads: 80-column tables that never cut an id or a path, help texts
re-wrapped to the terminal, a message before the first digits-ViT training, and a Makefile that
sets Triton's interpreter only for the tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from interp.cli import COMMANDS, app
from interp.models.registry import REGISTRY
from tests.test_heads_retrieval import copy_paste_model
from tests.tiny import gguf_vocabulary, tiny_hf_model, word_tokenizer, write_llama_gguf

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner(env={"COLUMNS": "80"})  # what a pipe or a CI log gets


def test_models_prints_plain_columns_that_cut_nothing(tmp_path, monkeypatch):
    import interp

    cache = tmp_path / "a-rather-long-cache-folder-name" / "that-goes-on-and-on" / "interp"
    monkeypatch.setenv("INTERP_CACHE", str(cache))
    model = tiny_hf_model("llama", vocab_size=len(gguf_vocabulary()))
    interp.load_model(str(write_llama_gguf(model, tmp_path / "mine.gguf")), device="cpu")
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "..." not in result.output
    (converted,) = (cache / "gguf").iterdir()
    assert str(converted) in result.output  # the whole path, on one line
    for name, entry in REGISTRY.items():
        (row,) = [line for line in result.output.splitlines() if line.startswith(f"{name} ")]
        assert row.split() == [name, entry.hf_id]
    registry_part = result.output.split("Converted checkpoints")[0]
    assert max(len(line) for line in registry_part.splitlines()) <= 80


def test_heads_tables_keep_each_row_on_one_line(tmp_path):
    folder = tmp_path / "copy"
    copy_paste_model().save_pretrained(folder)
    word_tokenizer(96).save_pretrained(folder)
    args = ["heads", "--model", str(folder), "--find", "induction", "--top", "2"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    headers = [line for line in result.output.splitlines() if line.lstrip().startswith("head ")]
    assert headers and all(line.rstrip().endswith("class") for line in headers), result.output
    assert not [line for line in result.output.splitlines() if line.strip() == "class"]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_is_rewrapped_to_the_terminal(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in result.output
    # a paragraph is filled to the width: no short line followed by one that continues it
    text = [line for line in lines[: lines.index("Options:")] if line.strip()]
    ragged = [
        (a, b)
        for a, b in zip(text, text[1:], strict=False)
        if len(a) < 50 and b.startswith("  ") and b[2:3].islower() and not a.rstrip().endswith(":")
    ]
    assert not ragged, ragged


def test_the_first_phases_run_says_it_trains_the_digits_vit(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    calls = []

    class Study:
        def table(self) -> str:
            return "phases table"

    monkeypatch.setattr(
        "interp.depth.vit.digits_vit", lambda config, verbose: calls.append(verbose)
    )
    monkeypatch.setattr("interp.depth.study.study_digits", lambda config, **kwargs: Study())
    result = runner.invoke(app, ["phases", "--no-raptor"])
    assert result.exit_code == 0, result.output
    assert calls == [True]  # trained (or loaded) with one progress line per epoch
    assert result.output.splitlines()[0] == (
        f"digits ViT (12 blocks, 30 epochs): loaded from {tmp_path / 'depth'} when trained "
        "before, else trained now (about 40 s on 2 cores; one line per epoch)"
    )
    assert "phases table" in result.output


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_makefile_sets_the_triton_interpreter_only_for_tests():
    def dry_run(target: str) -> str:
        done = subprocess.run(
            ["make", "-n", target, "PY=python", "STAMP=Makefile"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "export TRITON_INTERPRET" not in (ROOT / "Makefile").read_text()
    for target in ("demo", "bench", "analyses"):
        assert "TRITON_INTERPRET" not in dry_run(target), target
    has_gpu = subprocess.run(["sh", "-c", "nvidia-smi -L"], capture_output=True).returncode == 0
    expected = "TRITON_INTERPRET=0" if has_gpu else "TRITON_INTERPRET=1"
    assert all(expected in line for line in dry_run("test").splitlines() if "pytest" in line)
