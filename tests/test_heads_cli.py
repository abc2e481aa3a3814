"""`interp heads` end to end through typer's CliRunner, on tiny local models saved as folders."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from typer.testing import CliRunner

from interp.cli import app
from interp.heads import HeadScores
from tests.test_heads_retrieval import copy_paste_model
from tests.tiny import tiny_hf_model, word_tokenizer

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@pytest.fixture
def runner():
    return CliRunner(env={"COLUMNS": "250"})


def test_heads_on_a_word_tokenizer_skips_successor_and_finds_the_copy_head(runner, tmp_path):
    folder = tmp_path / "copy"
    copy_paste_model().save_pretrained(folder)
    word_tokenizer(96).save_pretrained(folder)
    out, saved = tmp_path / "report.html", tmp_path / "saved"
    args = ["heads", "--model", str(folder), "--out", str(out), "--save", str(saved)]
    args += ["--lengths", "60", "--depths", "0,1", "--needles", "1", "--synthetic"]
    result = runner.invoke(app, [*args, "--max-new-tokens", "10", "--top", "3"])
    assert result.exit_code == 0, result.output
    text = result.output
    # the word tokenizer makes no ordinal item one token: successor is skipped, the rest runs
    assert "successor: skipped" in text and "no ordinal task survives" in text
    assert "top 3 by prefix_matching" in text and "top 3 by retrieval" in text
    assert "classified as retrieval heads: L0H0" in text
    assert "2 of 2 retrieved" in text and f"report written to {out}" in text
    html = out.read_text()
    for section in ("Induction heads", "Successor heads", "Retrieval heads", "Every test"):
        assert section in html
    assert sorted(p.name for p in saved.iterdir()) == ["induction", "retrieval"]
    retrieval = HeadScores.load(saved / "retrieval")
    assert retrieval.top(1)[0] == (0, 0, 1.0) and retrieval.settings["lengths"] == [60]
    # a second run refuses to overwrite the report, or (with a new report path) the saved results,
    # before it scans anything
    again = runner.invoke(app, [*args, "--max-new-tokens", "10"])
    assert again.exit_code != 0 and "--overwrite" in again.output
    other = tmp_path / "other.html"
    again = runner.invoke(app, [*[str(other) if a == str(out) else a for a in args]])
    assert again.exit_code != 0 and f"{saved / 'induction'} already exists" in again.output
    assert "needle tests" not in again.output and not other.exists()


def test_heads_prints_the_successor_tasks_the_tokenizer_keeps(runner, tmp_path):
    vocab = {"<unk>": 0, "<bos>": 1, "<pad>": 2, **{d: i + 3 for i, d in enumerate(DAYS)}}
    vocab.update({f"w{i}": i + 10 for i in range(86)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<bos>", pad_token="<pad>"
    )
    folder = tmp_path / "days"
    tiny_hf_model("llama", vocab_size=96).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "report.html"
    args = ["heads", "--model", str(folder), "--find", "successor", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    kept = [line.split() for line in result.output.splitlines() if "pairs" in line]
    assert kept == [["days", "7", "tokens", "7", "pairs"]]  # cyclic: Sunday -> Monday counts
    assert "days_space" in result.output and "numbers" in result.output  # listed as dropped
    assert "top 10 by succession" in result.output and "Successor heads" in out.read_text()


def test_heads_rejects_bad_lists(runner, tmp_path):
    result = runner.invoke(app, ["heads", "--lengths", "60,abc", "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "--lengths must be comma-separated ints" in result.output
    result = runner.invoke(app, ["heads", "--find", "induction,copying"])
    assert result.exit_code != 0 and "unknown kind(s) ['copying']" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["heads", "--model", "./no/such/model"], "no such model file or folder: ./no/such/model"),
        (["phases", "--model", "./no/such/model"], "no such model file or folder: ./no/such/model"),
        (["heads", "--model", "COPY", "--find", "retrieval", "--lengths", "60,500"], "in [2, 79]"),
    ],
    ids=["heads-missing-model", "phases-missing-model", "grid-beyond-context"],
)
def test_bad_models_and_grids_are_one_line_errors(runner, tmp_path, args, message):
    folder = tmp_path / "copy"  # context 128: 79 prompt tokens leave room for 50 decoding steps
    copy_paste_model().save_pretrained(folder)
    word_tokenizer(96).save_pretrained(folder)
    out = tmp_path / "report.html"
    args = [str(folder) if a == "COPY" else a for a in args]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: "), result.output
    assert message in result.output.strip().splitlines()[-1], result.output
    assert not out.exists()
