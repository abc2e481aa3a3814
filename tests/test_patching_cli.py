"""`interp patch` and `interp lens` through typer's CliRunner on a tiny model folder.

References: the library functions on the same model (the report holds their numbers), and the
one-line errors for bad input.
"""

from __future__ import annotations

import html

import pytest
from typer.testing import CliRunner

import interp
from interp.cli import app
from tests.tiny import tiny_hf_model

CLEAN = "w5 w9 w14 w5 w9"
CORRUPT = "w6 w9 w14 w6 w9"


@pytest.fixture
def runner():
    return CliRunner(env={"COLUMNS": "250"})


@pytest.fixture
def folder(tmp_path, tokenizer):
    model = tiny_hf_model("llama", vocab_size=len(tokenizer), seed=5)
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


def patch_args(folder, out, **changes):
    options = {"--clean": CLEAN, "--corrupted": CORRUPT, "--answer": "w14", "--wrong": "w3"}
    options |= changes
    args = ["patch", "--model", str(folder), "--out", str(out)]
    for key, value in options.items():
        args += [key, value]
    return args


def test_patch_writes_a_report_with_the_patching_numbers(runner, folder, tmp_path):
    patching = pytest.importorskip("interp.patching.activation")
    out = tmp_path / "patch.html"
    result = runner.invoke(app, patch_args(folder, out, **{"--sites": "resid_pre"}))
    assert result.exit_code == 0, result.output
    lm = interp.load_model(str(folder))
    metric = interp.patching.logit_diff(lm, "w14", "w3")
    expected = patching.activation_patching(lm, CLEAN, CORRUPT, metric, sites="resid_pre")
    html = out.read_text()
    assert f"clean {float(expected.clean_metric.mean()):+.4f}" in html
    assert f"corrupted {float(expected.corrupted_metric.mean()):+.4f}" in html
    assert expected.table().splitlines()[-1].split()[-1] in html


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"--answer": "w14 w3"}, "--answer 'w14 w3' is 2 tokens"),
        ({"--wrong": "zebra"}, "--wrong 'zebra' is not in"),
        ({"--corrupted": "w6 w9 w14"}, "--clean is 6 tokens and --corrupted 4"),
        ({"--clean": "w5 zebra w14 w5 w9"}, "--clean has tokens not in"),
        ({"--sites": "nope"}, "unknown site(s) ['nope']"),
    ],
)
def test_patch_bad_input_is_one_line(runner, folder, tmp_path, changes, message):
    out = tmp_path / "patch.html"
    result = runner.invoke(app, patch_args(folder, out, **changes))
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_lens_writes_a_report(runner, folder, tmp_path):
    out = tmp_path / "lens.html"
    args = ["lens", "--model", str(folder), "--text", CLEAN, "--target", "w14", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lm = interp.load_model(str(folder))
    lens = interp.patching.logit_lens(lm, CLEAN, targets=["w14"])
    assert html.escape(lens.table().splitlines()[-1]) in out.read_text()
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already exists" in again.output
    bad = runner.invoke(app, [*args[:-1], str(tmp_path / "x.html"), "--target", "w1 w2"])
    assert bad.exit_code == 1 and "is 2 tokens" in bad.output
