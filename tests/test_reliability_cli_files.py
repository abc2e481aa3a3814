"""Issue #14, files: damaged model and run files named in one line, the GGUF conversion's
temporary folder cleaned on SIGTERM and swept after a dead process, modes that follow the umask,
and the provenance stored with captured activations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

from interp.cli import app
from interp.models import registry
from interp.outputs import write_atomically
from tests.tiny import gguf_vocabulary, tiny_hf_model, write_llama_gguf

runner = CliRunner()
TEXT = "w5 w9 w14 w5 w9"
DAMAGED = "is damaged or incomplete"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def gguf(tmp_path, cache):
    model = tiny_hf_model("llama", vocab_size=len(gguf_vocabulary()))
    return write_llama_gguf(model, tmp_path / "tiny.gguf")


@pytest.fixture
def folder(tmp_path, tokenizer):
    path = tmp_path / "tiny"
    tiny_hf_model("llama", vocab_size=len(tokenizer), seed=5).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def capture(model: Path, out: Path, *extra: str):
    args = ["capture", "--model", str(model), "--text", TEXT, "--out", str(out)]
    return runner.invoke(app, [*args, "--hook", "blocks.0.hook_resid_post", *extra])


def error_line(result) -> str:
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result.output.strip().splitlines()[-1]


def _cut(path: Path, size: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:size])


@pytest.mark.parametrize("damage", ["empty", "100-bytes", "mid-tensor"])
def test_a_damaged_gguf_is_named_in_one_line(gguf, tmp_path, damage):
    full = gguf.stat().st_size
    size = {"empty": 0, "100-bytes": 100, "mid-tensor": full - 3000}[damage]
    _cut(gguf, size)
    expected = {
        "empty": f"error: {gguf} {DAMAGED}: the file is empty",
        "100-bytes": f"error: {gguf} {DAMAGED}: truncated or corrupt (100 bytes)",
        "mid-tensor": f"error: {gguf} {DAMAGED}: truncated or corrupt ({size} bytes)",
    }[damage]
    assert error_line(capture(gguf, tmp_path / "a.safetensors")) == expected
    assert not (tmp_path / "a.safetensors").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "config"])
def test_a_damaged_model_folder_is_named_in_one_line(folder, tmp_path, damage):
    weights, config = folder / "model.safetensors", folder / "config.json"
    full = weights.stat().st_size
    if damage == "truncated":
        _cut(weights, full // 2)
        reason = f"truncated ({full // 2} of {full} bytes; the tensors do not fit)"
    elif damage == "garbage":
        weights.write_bytes(b"\x8f" * 64 + b"garbage" * 100)
        claimed = int.from_bytes(b"\x8f" * 8, "little")
        reason = f"its header claims {claimed} bytes but the file has 764"
    else:
        config.write_text('{"model_type": "llama",')
        reason = "not valid JSON (Expecting property name enclosed in double quotes at line 1, column 24)"
    path = config if damage == "config" else weights
    line = error_line(capture(folder, tmp_path / "a.safetensors"))
    assert line == f"error: {path} {DAMAGED}: {reason}"


def test_truncated_run_weights_are_named_in_one_line(tmp_path):
    run = tmp_path / "run"
    args = ["train", "--task", "flipflop", "-o", "bits=1", "-o", "steps=5", "--hidden", "4"]
    trained = runner.invoke(app, [*args, "--steps", "2", "--out", str(run)])
    assert trained.exit_code == 0, trained.output
    weights = run / "weights.safetensors"
    full = weights.stat().st_size
    _cut(weights, full - 10)
    line = error_line(runner.invoke(app, ["fixed-points", "--run", str(run)]))
    assert line == (
        f"error: {weights} {DAMAGED}: truncated ({full - 10} of {full} bytes; the tensors do not fit)"
    )


SLOW_CONVERSION = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from interp.models import registry

    cache, gguf = Path(sys.argv[1]), Path(sys.argv[2])

    class Slow:  # stands in for the model and tokenizer: writes a file, then takes its time
        def save_pretrained(self, folder):
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "model.safetensors").write_bytes(b"x" * 1000)
            (cache / "ready").write_text("writing")
            time.sleep(120)

    registry.check_gguf = lambda path: None
    registry._dequantize = lambda path: (Slow(), Slow())
    registry.converted_gguf(gguf)
    """
)


def test_sigterm_during_the_first_conversion_removes_its_temporary(tmp_path, cache):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF")
    env = {**os.environ, "INTERP_CACHE": str(cache)}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_CONVERSION, str(cache), str(fake)], env=env
    )
    deadline = time.monotonic() + 120
    while not (cache / "ready").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the conversion never began"
        time.sleep(0.1)
    (temporary,) = (cache / "gguf").iterdir()  # the conversion's hidden temporary, with its pid
    assert temporary.name.startswith(".fake-") and f".interp-tmp-{process.pid}-" in temporary.name
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == -signal.SIGTERM
    assert list((cache / "gguf").iterdir()) == []


def test_the_next_conversion_sweeps_temporaries_of_dead_processes(gguf, cache):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        root = cache / "gguf"
        stale = root / f".tiny-0123.interp-tmp-{dead.pid}-0a1b2c3d"
        busy = root / f".tiny-4567.interp-tmp-{alive.pid}-0a1b2c3d"
        # what interp wrote before it recorded pids: mkdtemp's name, swept once an hour old
        unnamed_old, unnamed_new = root / ".tiny-89ab.k3j4h5g6", root / ".tiny-cdef.a1b2c3d4"
        for folder in (stale, busy, unnamed_old, unnamed_new):
            folder.mkdir(parents=True)
            (folder / "model.safetensors").write_bytes(b"half")
        two_hours_ago = time.time() - 7200
        os.utime(unnamed_old, (two_hours_ago, two_hours_ago))
        target = registry.converted_gguf(gguf)
        assert (target / "config.json").exists()
        assert not stale.exists() and busy.exists()  # another conversion may still be running
        assert not unnamed_old.exists() and unnamed_new.exists()
    finally:
        alive.kill()
        alive.wait()


def test_written_files_follow_the_umask(gguf, folder, cache, tmp_path):
    previous = os.umask(0o002)
    try:
        out = tmp_path / "acts.safetensors"
        assert capture(folder, out).exit_code == 0
        target = registry.converted_gguf(gguf)
        from safetensors.torch import save_file

        single = write_atomically(
            tmp_path / "one.safetensors", lambda tmp: save_file({"x": torch.ones(2)}, str(tmp))
        )
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o664
    assert single.stat().st_mode & 0o777 == 0o664
    assert target.stat().st_mode & 0o777 == 0o775
    modes = {p.name: p.stat().st_mode & 0o777 for p in target.iterdir()}
    assert modes and set(modes.values()) == {0o664}, modes


def test_captured_activations_carry_their_provenance(folder, tmp_path):
    out = tmp_path / "acts.safetensors"
    result = capture(folder, out, "--hook", "blocks.*.attn.hook_z")
    assert result.exit_code == 0, result.output
    with safe_open(str(out), "pt") as handle:
        metadata = handle.metadata()
        tokens = handle.get_tensor("tokens")
    assert metadata["model"] == "tiny" and metadata["model_source"] == str(folder.resolve())
    assert metadata["text"] == TEXT and json.loads(metadata["tokens"]) == tokens[0].tolist()
    assert json.loads(metadata["hooks_requested"]) == [
        "blocks.0.hook_resid_post",
        "blocks.*.attn.hook_z",
    ]
    assert json.loads(metadata["hooks"]) == [
        "blocks.0.attn.hook_z",
        "blocks.0.hook_resid_post",
        "blocks.1.attn.hook_z",
    ]
    assert metadata["interp_version"] == __import__("interp").__version__
    again = capture(folder, out, "--overwrite")  # interp's own file: replaced
    assert again.exit_code == 0, again.output
