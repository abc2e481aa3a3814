"""interp.mixers on wrapped language models (tiny random Mamba, Mamba-2 and Llama) and the
`interp mixers` command. References: the layer's own output (hook_y, hook_attn_out), autograd
through the Hugging Face modules, and the rank each structure allows."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

import interp
from interp.cli import app
from interp.errors import InvalidArgumentError, UnsupportedModelError
from interp.mixers import interaction_operators, interaction_rank, layer_gradient_paths
from interp.mixers.model import MixerAnalysis, analyze_mixers
from interp.models.ssm_tiny import tiny_ssm
from interp.models.tiny import tiny_model, word_tokenizer

TOKENS = torch.randint(0, 96, (1, 10), generator=torch.Generator().manual_seed(0))


@functools.cache
def _ssm(variant: str):
    model = tiny_ssm(variant, dtype=torch.float64)
    return interp.load_model(model, tokenizer=word_tokenizer(96), device="cpu")


@functools.cache
def _llama():
    model = tiny_model("llama").double()
    return interp.load_model(model, tokenizer=word_tokenizer(96), device="cpu")


def _no_mixer():
    """A wrapped model with layers but neither attention nor SSM hooks (an RNN-like stand-in)."""
    return SimpleNamespace(
        name="gru", n_layers=1, n_heads=0, hook_names=["hook_embed"], run=lambda *a, **k: None
    )


@pytest.mark.parametrize("variant", ["mamba", "mamba2"])
def test_selective_operators_reproduce_the_scan(variant):
    lm = _ssm(variant)
    ops = interaction_operators(lm, TOKENS, 1)
    _, cache = lm.run(TOKENS, capture=["blocks.1.mixer.hook_x", "blocks.1.mixer.hook_y"])
    y = ops.apply(cache["blocks.1.mixer.hook_x"][0])
    torch.testing.assert_close(y, cache["blocks.1.mixer.hook_y"][0], rtol=1e-12, atol=1e-12)
    rank = interaction_rank(ops)
    if variant == "mamba2":  # one scalar decay per head: W_ij is constant over a head's channels
        assert rank.bound == lm.n_ssm_heads and rank.rank <= lm.n_ssm_heads
    else:
        assert rank.bound == lm.d_inner and rank.rank <= lm.d_inner
    assert rank.rank >= 2


@pytest.mark.parametrize("variant", ["mamba", "mamba2"])
def test_a_bare_mixer_module_gives_the_same_operators(variant):
    lm = _ssm(variant)
    _, cache = lm.run(TOKENS, capture="blocks.1.mixer.hook_in")
    mixer = lm.model.backbone.layers[1].mixer
    bare = interaction_operators(mixer, cache["blocks.1.mixer.hook_in"][0])
    wrapped = interaction_operators(lm, TOKENS, 1)
    assert bare.layer == 1 and bare.heads == wrapped.heads
    torch.testing.assert_close(bare.full_kernel(), wrapped.full_kernel(), rtol=0, atol=0)


def test_attention_operators_reproduce_the_attention_output():
    lm = _llama()
    ops = interaction_operators(lm, TOKENS, 1)
    _, cache = lm.run(TOKENS, capture=["blocks.1.hook_resid_pre", "blocks.1.hook_attn_out"])
    x = lm.norm(1, "attn", cache["blocks.1.hook_resid_pre"])[0]
    torch.testing.assert_close(ops.apply(x), cache["blocks.1.hook_attn_out"][0])
    assert interaction_rank(ops).rank == lm.n_heads


def test_layer_gradient_paths_equal_autograd_through_the_hf_block():
    lm = _ssm("mamba")
    paths = layer_gradient_paths(lm, TOKENS, 0)
    _, cache = lm.run(TOKENS, capture="blocks.0.hook_resid_pre")
    block = lm.model.backbone.layers[0]

    def mixer_out(x):
        return block.mixer(block.norm(x[None]))[0]

    x = cache["blocks.0.hook_resid_pre"][0].clone()
    jac = torch.autograd.functional.jacobian(mixer_out, x)
    expected = jac.pow(2).sum((1, 3)).sqrt()  # [T, d, T, d] -> [T, T]
    torch.testing.assert_close(paths.norms, expected, rtol=1e-10, atol=1e-12)
    assert 0 < paths.rho < 1  # a stable SSM's paths decay with distance


def test_hutchinson_probes_estimate_the_norms():
    lm = _ssm("mamba")
    exact = layer_gradient_paths(lm, TOKENS, 0)
    estimate = layer_gradient_paths(lm, TOKENS, 0, probes=64)
    near = exact.norms > 1e-3 * exact.norms.max()
    ratio = estimate.norms[near] / exact.norms[near]
    assert 0.8 < float(ratio.median()) < 1.2
    assert estimate.settings["estimate"] == "hutchinson"


def test_analyze_mixers_and_errors():
    result = analyze_mixers(_ssm("mamba2"), TOKENS, [0, 1])
    assert isinstance(result, MixerAnalysis) and result.ranks == [4, 4]
    with pytest.raises(InvalidArgumentError, match="out of range"):
        analyze_mixers(_ssm("mamba2"), TOKENS, [2])
    rnn_like = _no_mixer()
    with pytest.raises(UnsupportedModelError, match="no attention or SSM"):
        interaction_operators(rnn_like, TOKENS, 0)


def _one_line_error(result, text):
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), (
        result.output
    )
    assert text in lines[0]


def test_cli_report_and_one_line_errors(tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.setattr("interp.models.registry.load_model", lambda spec: _ssm("mamba2"))
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["mixers", "--model", "x", "--out", str(out), "--length", "8"])
    assert result.exit_code == 0, result.output
    assert "selective" in result.output and out.exists()
    assert "Gradient paths" in out.read_text()
    _one_line_error(runner.invoke(app, ["mixers", "--model", "x", "--layers", "7"]), "out of range")
    rnn_like = _no_mixer()
    monkeypatch.setattr("interp.models.registry.load_model", lambda spec: rnn_like)
    _one_line_error(runner.invoke(app, ["mixers", "--model", "x"]), "no attention or SSM")


def test_analyze_mixers_on_attention():
    lm = _llama()
    result = analyze_mixers(lm, TOKENS, [0])
    assert result.kinds == ["attention"] and result.ranks == [lm.n_heads] == result.bounds
    assert result.profiles["0"][0] == 1.0 and result.rhos[0] > 0


def test_delayed_copy_training_learns_the_task():
    from interp.mixers.train import delayed_copy_batch, train_delayed_copy

    tokens, targets = delayed_copy_batch(2, 6, 8, 2, torch.Generator().manual_seed(0))
    assert torch.equal(targets[:, 2:], tokens[:, :-2]) and (targets[:, :2] == -100).all()
    trained = train_delayed_copy("mamba2", steps=60, length=12, batch=16, seed=0)
    assert trained.accuracy > 0.5  # chance is 1/8
    with pytest.raises(InvalidArgumentError, match="lag"):
        train_delayed_copy("mamba2", lag=30, length=24)
