"""Retrieval heads when no test succeeds, finite-only ranking, and head finders given a non-model
(issue 14)."""

from __future__ import annotations

import inspect

import pytest
import torch
from typer.testing import CliRunner

from interp.errors import InputTypeError
from interp.heads import HeadScores
from interp.heads.retrieval import RetrievalGrid, retrieval_grid, retrieval_scores


def _grid(success: list[list[bool]], needles: int = 1) -> RetrievalGrid:
    """A hand-built grid: one needle, lengths x depths as given by ``success``."""
    ok = torch.tensor([success] * needles)
    shape = tuple(ok.shape)
    return RetrievalGrid(
        recall=ok.float(),
        success=ok,
        head_scores=torch.rand(*shape, 2, 3, generator=torch.Generator().manual_seed(0)),
        lengths=[1000, 8000][: shape[1]],
        depths=[0.5, 1.0][: shape[2]],
        questions=["q"] * needles,
        answers=["a"] * needles,
        responses=[[["x"] * shape[2]] * shape[1]] * needles,
        model="toy",
    )


def test_no_retrieved_test_says_so_in_one_line_with_what_to_change():
    grid = _grid([[False]])
    message = grid.no_success_message()
    assert message == (
        "no needle test was retrieved (0 of 1 at lengths [1000], depths [0.5]; ROUGE-1 recall > "
        "0.5 needed), so every retrieval score is undefined (NaN); try shorter lengths (e.g. "
        "250,256,512) or other depths (e.g. 0,0.25,0.75), or synthetic needles for a small model"
    )
    assert grid.table().splitlines()[-1] == message
    scores = grid.scores()
    assert scores.settings["successful_tests"] == 0 and scores.top(5) == []
    assert "no finite retrieval score: nothing to rank" in scores.table()


def test_retrieved_counts_per_length_and_depth():
    grid = _grid([[True, False], [False, False]], needles=3)
    grid.success[1, 0, 0] = False
    assert grid.retrieved().tolist() == [[2, 0], [0, 0]]
    lines = grid.table().splitlines()
    assert lines[0] == "needle tests — toy: 2 of 12 retrieved (ROUGE-1 recall > 0.5)"
    assert lines[1] == "needles retrieved (of 3) by length (rows) x depth (columns)"
    assert lines[3] == "    1000     2/3     0/3" and lines[4] == "    8000     0/3     0/3"
    assert grid.no_success_message() is None


def test_top_ranks_only_finite_scores():
    values = torch.tensor([[float("nan"), 0.2], [float("inf"), 0.7]])
    scores = HeadScores({"retrieval": values}, primary="retrieval")
    assert scores.top(4) == [(1, 1, pytest.approx(0.7)), (0, 1, pytest.approx(0.2))]


def test_retrieval_scores_shows_its_real_parameters():
    params = inspect.signature(retrieval_scores).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    grid_params = set(inspect.signature(retrieval_grid).parameters)
    assert grid_params | {"threshold"} == set(params)


def test_cli_with_no_retrieved_test_prints_the_reason_not_nan_tables(tmp_path):
    from interp.cli import app
    from tests.test_heads_retrieval import copy_paste_model
    from tests.tiny import word_tokenizer

    folder = tmp_path / "copy"
    copy_paste_model().save_pretrained(folder)
    word_tokenizer(96).save_pretrained(folder)
    args = ["heads", "--model", str(folder), "--find", "retrieval", "--out", str(tmp_path / "r")]
    args += ["--lengths", "60", "--depths", "0.5", "--needles", "1", "--max-new-tokens", "5"]
    result = CliRunner(env={"COLUMNS": "80"}).invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(
        line.startswith("no needle test was retrieved (0 of 1 at lengths [60]") for line in lines
    )
    assert "retrieval heads: not scored (no needle test was retrieved)" in result.output
    assert "nan" not in result.output and "classified as retrieval heads" not in result.output
    html = (tmp_path / "r").read_text()
    assert "No needle test was retrieved" in html and "No head was scored: 0 of 1 tests" in html


@pytest.mark.parametrize("finder", ["induction_scores", "successor_scores", "retrieval_grid"])
@pytest.mark.parametrize("model", ["str", 123, None])
def test_head_finders_given_a_non_model_raise_input_type_error(finder, model):
    import interp.heads as heads

    with pytest.raises(
        InputTypeError, match=rf"{finder} needs a language model .* got {type(model).__name__}"
    ):
        getattr(heads, finder)(model)
