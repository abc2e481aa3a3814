"""`interp models` and `interp capture` through typer's CliRunner, on tiny local models."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from interp.cli import app
from tests.tiny import gguf_vocabulary, tiny_hf_model, write_llama_gguf

TEXT = "w5 w9 w14 w5 w9"


@pytest.fixture
def runner():
    return CliRunner(env={"COLUMNS": "250"})  # wide enough that rich never wraps a path


@pytest.fixture
def folder(tmp_path, tokenizer):
    """A tiny Llama saved as a Hugging Face folder, and the model itself (the reference)."""
    model = tiny_hf_model("llama", vocab_size=len(tokenizer), seed=5)
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny", model


def test_models_lists_registry_and_converted_checkpoints(runner, tmp_path, monkeypatch):
    import interp

    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    model = tiny_hf_model("llama", vocab_size=len(gguf_vocabulary()))
    interp.load_model(str(write_llama_gguf(model, tmp_path / "mine.gguf")), device="cpu")
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    for name in ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "pythia-160m"):
        assert name in result.output
    (converted,) = (tmp_path / "cache" / "gguf").iterdir()
    assert converted.name.startswith("mine-") and converted.name in result.output


def test_capture_saves_the_hooks_as_safetensors(runner, folder, tokenizer, tmp_path):
    path, model = folder
    out = tmp_path / "acts.safetensors"
    args = ["capture", "--model", str(path), "--text", TEXT, "--out", str(out)]
    args += ["--hook", "blocks.*.hook_resid_post", "--hook", "blocks.1.attn.hook_z"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    saved = load_file(str(out))
    assert sorted(saved) == [
        "blocks.0.hook_resid_post",
        "blocks.1.attn.hook_z",
        "blocks.1.hook_resid_post",
        "tokens",
    ]
    tokens = torch.tensor([[tokenizer.bos_token_id, *tokenizer.encode(TEXT)]])
    assert torch.equal(saved["tokens"], tokens)
    with torch.no_grad():
        hidden = model(tokens, output_hidden_states=True).hidden_states
    torch.testing.assert_close(saved["blocks.0.hook_resid_post"], hidden[1], atol=1e-5, rtol=0)
    assert saved["blocks.1.attn.hook_z"].shape == (1, 6, 4, 8)
    again = runner.invoke(app, args)  # a re-run never clobbers silently
    assert again.exit_code == 1 and "already exists; pass --overwrite" in again.output
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--hook", "blocks.0.hook_resid_pst"], "unknown hook name 'blocks.0.hook_resid_pst'"),
        (
            ["--hook", "blocks.0.hook_resid_post", "--text", " ".join(["w7"] * 200)],
            "context of 128",
        ),
        (["--hook", "blocks.0.hook_resid_post", "--model", "./no/such/model"], "no such model"),
    ],
    ids=["unknown-hook", "too-long", "missing-model"],
)
def test_capture_errors_are_one_line(runner, folder, tmp_path, extra, message):
    path, _ = folder
    args = [
        "capture",
        "--model",
        str(path),
        "--text",
        TEXT,
        "--out",
        str(tmp_path / "x.safetensors"),
    ]
    result = runner.invoke(app, args + extra)  # a repeated option: the last --model/--text wins
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback: an orderly exit
    # Only transformers' own loading progress bars may come before the one error line.
    lines = result.output.strip().splitlines()
    assert (
        "Traceback" not in result.output
        and [line for line in lines if "error" in line] == lines[-1:]
    )
    assert lines[-1].startswith("error: ") and message in lines[-1], lines
    assert not (tmp_path / "x.safetensors").exists()
