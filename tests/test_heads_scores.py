"""HeadScores: ranking, classification rules, views and save/load on hand-built score maps."""

import math

import pytest
import torch

from interp.heads import HeadScores


def make(**kwargs) -> HeadScores:
    # 3 layers x 2 heads; prefix: best L2H1 (0.9), then L0H0 and L1H1 tied at 0.5; one NaN
    prefix = torch.tensor([[0.5, 0.1], [0.2, 0.5], [float("nan"), 0.9]])
    copying = torch.tensor([[0.6, 0.9], [0.0, 0.4], [0.7, 0.5]])
    defaults = dict(
        scores={"prefix_matching": prefix, "copying": copying},
        primary="prefix_matching",
        thresholds={"prefix_matching": 0.5, "copying": 0.5},
        model="toy",
        title="induction heads",
    )
    defaults.update(kwargs)
    return HeadScores(**defaults)


def test_top_orders_by_score_ties_by_position_and_skips_nan():
    s = make()
    assert [(layer, head) for layer, head, _ in s.top(6)] == [
        (2, 1),
        (0, 0),
        (1, 1),
        (1, 0),
        (0, 1),
    ]  # L2H0 is NaN: never ranked, so only 5 of the 6 asked for
    assert s.top(1)[0][2] == pytest.approx(0.9)
    assert not any(math.isnan(v) for _, _, v in s.top(6))
    assert [(layer, head) for layer, head, _ in s.top(2, "copying")] == [(0, 1), (2, 0)]


def test_heads_default_ands_all_thresholds_and_ge_includes_equality():
    s = make()
    # prefix >= 0.5: L0H0 (0.5), L1H1 (0.5), L2H1; copying >= 0.5: L0H0, L0H1, L2H0, L2H1
    assert s.heads() == [(2, 1), (0, 0)]
    assert s.heads(metric="prefix_matching") == [(2, 1), (0, 0), (1, 1)]
    assert s.heads(0.6) == [(2, 1)]
    assert s.heads(0.55, metric="copying") == [(0, 1), (2, 0), (0, 0)]
    assert s.heads(rule={"copying": 0.4, "prefix_matching": 0.45}) == [(0, 0), (2, 1), (1, 1)]
    expected = torch.tensor([[True, False], [False, False], [False, True]])
    assert torch.equal(s.classify(), expected)


def test_strict_metric_excludes_equality():
    s = make(strict={"prefix_matching": True})
    assert s.heads(metric="prefix_matching") == [(2, 1)]
    assert s.heads(metric="copying") == [(0, 1), (2, 0), (0, 0), (2, 1)]


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="same 2-D shape"):
        HeadScores({"a": torch.zeros(2, 3), "b": torch.zeros(3, 2)}, primary="a")
    with pytest.raises(ValueError, match="primary"):
        HeadScores({"a": torch.zeros(2, 3)}, primary="b")
    with pytest.raises(ValueError, match="thresholds"):
        HeadScores({"a": torch.zeros(2, 3)}, primary="a", thresholds={"c": 0.1})
    with pytest.raises(ValueError, match="non-empty"):
        HeadScores({}, primary="a")
    with pytest.raises(TypeError, match="tensor"):
        HeadScores({"a": [[0.0]]}, primary="a")
    s = make()
    with pytest.raises(ValueError, match="unknown metric"):
        s.top(3, "retrieval")
    with pytest.raises(ValueError, match="positive"):
        s.top(0)
    with pytest.raises(ValueError, match="either rule"):
        s.heads(0.3, rule={"copying": 0.1})
    with pytest.raises(ValueError, match="no default threshold"):
        make(thresholds={"copying": 0.5}).heads(metric="prefix_matching")


def test_save_load_roundtrip_keeps_order_extras_and_settings(tmp_path):
    stacked = torch.rand(2, 3, 2)  # rows share storage: must still save
    s = HeadScores(
        scores={"z_metric": stacked[0], "a_metric": stacked[1]},
        primary="a_metric",
        thresholds={"a_metric": 0.1},
        strict={"a_metric": True},
        extras={"a_metric/task one": torch.rand(3, 2), "per_test": torch.rand(5, 3, 2)},
        settings={"seed": 3, "tasks": ["x", "y"]},
        model="toy",
    )
    path = s.save(tmp_path / "scores")
    loaded = HeadScores.load(path)
    assert loaded.metrics == ["z_metric", "a_metric"]
    assert list(loaded.scores) == ["z_metric", "a_metric"]
    for name in s.scores:
        assert torch.equal(loaded.scores[name], s.scores[name])
    assert set(loaded.extras) == {"a_metric/task one", "per_test"}
    assert torch.equal(loaded.extras["per_test"], s.extras["per_test"])
    assert loaded.settings["tasks"] == ["x", "y"] and "interp_version" in loaded.settings
    assert loaded.heads() == s.heads() and loaded.strict == {"a_metric": True}
    with pytest.raises(FileExistsError):
        s.save(tmp_path / "scores")


def test_table_lists_top_heads_with_every_metric():
    text = make().table(k=2)
    assert "top 2 by prefix_matching" in text and "top 2 by copying" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("L2H1"))
    assert "0.9000" in row and "0.5000" in row and row.rstrip().endswith("*")
    assert "classified heads (prefix_matching >= 0.5 AND copying >= 0.5): 2 of 6" in text


def test_frame_is_tidy_and_matches_scores():
    s = make(extras={"copying/half": torch.full((3, 2), 0.25)})
    frame = s.to_frame()
    assert list(frame.columns) == ["layer", "head", "metric", "value"]
    assert len(frame) == 2 * 6
    row = frame[(frame["layer"] == 1) & (frame["head"] == 0) & (frame["metric"] == "copying")]
    assert row.value.item() == 0.0
    assert set(s.to_frame(extras=True).metric) == {"prefix_matching", "copying", "copying/half"}


def test_figure_shows_metric_with_dropdown_and_all_values_on_hover():
    s = make(extras={"copying/half": torch.full((3, 2), 0.25)})
    fig = s.figure("copying")
    z = fig.data[0].z
    assert z[1][0] == 0.0 and z[0][1] == pytest.approx(0.9)
    assert fig.data[0].customdata.shape == (3, 2, 2)
    labels = [b.label for b in fig.layout.updatemenus[0].buttons]
    assert labels == ["prefix_matching", "copying", "copying/half"]
    assert fig.layout.updatemenus[0].active == 1
    assert s.figure("copying/half").data[0].z[2][1] == 0.25
    with pytest.raises(ValueError, match="unknown map"):
        s.figure("nope")
