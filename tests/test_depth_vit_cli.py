"""The digits ViT (data, blocks, drop-path, cache) and the `interp phases` command."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app
from interp.depth import DigitsViT, ViTConfig, digits_vit, load_digits
from interp.depth.vit import Block, single_thread


@pytest.fixture(autouse=True)
def _one_thread():
    with single_thread():  # tiny models: one thread is fastest on a shared machine
        yield


TINY = ViTConfig(depth=2, dim=16, heads=2, epochs=1, batch_size=256)


def test_digits_split_is_stratified_and_scaled():
    data = load_digits()
    assert data["train_images"].shape == (1437, 8, 8) and data["test_images"].shape == (360, 8, 8)
    assert float(data["train_images"].min()) >= 0.0 and float(data["train_images"].max()) <= 1.0
    assert torch.bincount(data["test_labels"]).min() >= 35  # ~36 per class in a stratified 20%


def test_patch_embedding_orders_patches_row_major():
    model = DigitsViT(ViTConfig(depth=1, dim=4, heads=1, patch=2))
    with torch.no_grad():
        model.embed.proj.weight.copy_(torch.eye(4))
        model.embed.proj.bias.zero_()
        model.embed.pos.zero_()
    image = torch.arange(64.0).view(1, 8, 8)
    tokens = model.embed(image)
    assert tokens.shape == (1, 17, 4)
    assert tokens[0, 1].tolist() == [0.0, 1.0, 8.0, 9.0]  # top-left 2x2 patch
    assert tokens[0, 2].tolist() == [2.0, 3.0, 10.0, 11.0]  # next patch to the right


def test_drop_path_only_in_training_and_scaled_to_keep_the_mean():
    torch.manual_seed(0)
    block = Block(8, 2, 2.0, 1.0, drop_path=0.5)
    x = torch.randn(4000, 3, 8)
    block.eval()
    assert torch.equal(block(x), block(x))
    block.train()
    dropped = ((block(x) - x).abs().sum((1, 2)) == 0).float().mean()
    assert 0.2 < float(dropped) < 0.3  # both branches dropped with probability 0.5 * 0.5
    with torch.no_grad():
        block.ls2.zero_()  # attention branch only: the update is 0 or branch / keep-probability
        ratio = ((block(x) - x) / block.attn_branch(x))[:, 0, 0]
    assert torch.all((ratio.abs() < 1e-3) | ((ratio - 2.0).abs() < 1e-3))
    assert 0.4 < float((ratio.abs() < 1e-3).float().mean()) < 0.6


def test_trained_model_is_cached_and_reloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    model = digits_vit(TINY)
    files = list((tmp_path / "depth").glob("digits-vit-*.pt"))
    assert len(files) == 1
    again = digits_vit(TINY)
    assert again.training_log == model.training_log
    images = load_digits()["test_images"][:5]
    with torch.no_grad():
        assert torch.equal(model(images), again(images))


def test_phases_command_prints_phases_and_writes_a_report(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report.html"
    runner = CliRunner()
    args = ["phases", "--epochs", "1", "--k", "2", "--no-raptor", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 phases by dp" in result.output and "cos→fin tok0" in result.output
    assert out.exists() and "plotly" in out.read_text()[:200000]
    refused = runner.invoke(app, args)
    assert refused.exit_code != 0 and "--overwrite" in refused.output


@pytest.fixture()
def tiny_lm_folder(tmp_path):
    from tests.tiny import tiny_hf_model, word_tokenizer

    tokenizer = word_tokenizer(96)
    folder = tmp_path / "tiny-llama"
    tiny_hf_model("llama", vocab_size=len(tokenizer), layers=4).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_phases_command_on_a_language_model_folder(tiny_lm_folder, tmp_path):
    runner = CliRunner()
    plain = runner.invoke(app, ["phases", "--model", str(tiny_lm_folder), "--samples", "4"])
    assert plain.exit_code == 0, plain.output
    assert "lag null" in plain.output and "Raptor" not in plain.output  # off by default for LMs
    out = tmp_path / "lm.html"
    args = ["phases", "--model", str(tiny_lm_folder), "--samples", "4", "--k", "2"]
    fitted = runner.invoke(app, [*args, "--raptor", "--steps", "2", "--out", str(out)])
    assert fitted.exit_code == 0, fitted.output
    assert "Raptor surrogate of tiny-llama: 2 blocks" in fitted.output
    assert "next token on 16 held-out windows" in fitted.output
    assert "Raptor surrogate" in out.read_text()
