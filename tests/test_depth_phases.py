"""Phase segmentation: exact DP and recursive max-cut against brute force and planted structure."""

from __future__ import annotations

import itertools

import pytest
import torch

from interp.depth import LayerSimilarity, Phases, layer_similarity, segment_phases
from interp.depth.phases import contiguous_segmentation, lag_null, max_cut


def planted(
    sizes: list[int], step: float = 0.3, within: float = 0.05, noise: float = 0.02, seed: int = 0
):
    """Dissimilarity growing with the distance between planted phases, plus symmetric noise."""
    label = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    matrix = step * (label[:, None] - label[None, :]).abs().double() + within
    noise_matrix = (
        noise
        * torch.rand(len(label), len(label), generator=torch.Generator().manual_seed(seed)).double()
    )
    matrix = matrix + (noise_matrix + noise_matrix.T) / 2
    return matrix.fill_diagonal_(0.0), label


def random_symmetric(n: int, seed: int) -> torch.Tensor:
    m = torch.rand(n, n, generator=torch.Generator().manual_seed(seed)).double()
    return ((m + m.T) / 2).fill_diagonal_(0.0)


@pytest.mark.parametrize("method", ["dp", "maxcut"])
@pytest.mark.parametrize("sizes", [[4, 5, 3], [2, 7, 3, 4], [6, 6]])
def test_planted_phases_recovered_exactly(method, sizes):
    matrix, label = planted(sizes, within=0.01, noise=0.01)
    expected = [torch.nonzero(label == p).flatten().add(1).tolist() for p in range(len(sizes))]
    # planted cuts weigh >= 8.7% of the total here, splits inside a phase <= 1.2%
    found = segment_phases(
        matrix, method=method, epsilon=0.04, layers=list(range(1, len(label) + 1))
    )
    assert found.phases == expected
    assert found.contiguous
    assert "rule_phases" not in found.settings  # planted blocks pass the null gate
    given_k = segment_phases(
        matrix, k=len(sizes), method=method, layers=list(range(1, len(label) + 1))
    )
    assert given_k.phases == expected


def test_dp_is_optimal_against_enumeration_of_all_contiguous_partitions():
    n = 8
    matrix = random_symmetric(n, seed=3)
    optima, partitions = contiguous_segmentation(matrix, n)
    for k in range(1, n + 1):
        best = float("inf")
        for cuts in itertools.combinations(range(1, n), k - 1):
            edges = [0, *cuts, n]
            cost = sum(
                float(matrix[i, j])
                for a, b in itertools.pairwise(edges)
                for i in range(a, b)
                for j in range(i + 1, b)
            )
            best = min(best, cost)
        assert float(optima[k - 1]) == pytest.approx(best, abs=1e-12)
        runs = partitions[k - 1]
        assert len(runs) == k and sum(runs, []) == list(range(n))
        achieved = sum(float(matrix[i, j]) for run in runs for i in run for j in run if i < j)
        assert achieved == pytest.approx(best, abs=1e-12)


def test_max_cut_matches_explicit_enumeration():
    n = 9
    matrix = random_symmetric(n, seed=5)
    best = max(
        sum(float(matrix[i, j]) for i in range(n) for j in range(n) if side[i] and not side[j])
        for side in itertools.product([False, True], repeat=n)
    )
    value, side = max_cut(matrix)
    assert value == pytest.approx(best, abs=1e-10)
    explicit = sum(
        float(matrix[i, j]) for i in range(n) for j in range(n) if side[i] and not side[j]
    )
    assert explicit == pytest.approx(best, abs=1e-10)


def _three_blocks() -> torch.Tensor:
    # Blocks A (6 layers), B (3), C (3): A-B = A-C = 1, B-C = 0.25, 0 inside. Total weight
    # W = 18 + 18 + 2.25 = 38.25; the first cut (A | BC) weighs 36, the second (B | C) 2.25 =
    # 5.9% of W.
    label = torch.tensor([0] * 6 + [1] * 3 + [2] * 3)
    table = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.25], [1.0, 0.25, 0.0]], dtype=torch.float64)
    return table[label][:, label]


@pytest.mark.parametrize("method", ["dp", "maxcut"])
def test_stopping_threshold_is_a_fraction_of_total_weight(method):
    matrix = _three_blocks()
    assert segment_phases(matrix, method=method, epsilon=0.05).k == 3
    coarse = segment_phases(matrix, method=method, epsilon=0.10)
    assert coarse.phases == [list(range(6)), list(range(6, 12))]
    assert coarse.total_weight == pytest.approx(38.25)
    assert coarse.cut_fraction == pytest.approx(36 / 38.25)
    assert coarse.within.tolist() == pytest.approx([0.0, 2.25])


def test_max_cut_may_return_non_contiguous_phases():
    # Layers 0-2 and 6-8 alike, 3-5 different: the max cut groups the two outer runs together.
    label = torch.tensor([0, 0, 0, 1, 1, 1, 0, 0, 0])
    matrix = (label[:, None] != label[None, :]).double()
    result = segment_phases(matrix, k=2, method="maxcut")
    assert result.phases == [[0, 1, 2, 6, 7, 8], [3, 4, 5]]
    assert not result.contiguous
    with pytest.raises(ValueError, match="not contiguous"):
        _ = result.spans
    with pytest.raises(ValueError, match="not contiguous"):
        _ = result.boundaries
    assert segment_phases(matrix, k=3, method="dp").phases == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_layer_similarity_input_drops_embedding_and_round_trips(tmp_path):
    matrix, _ = planted([3, 4])
    similarity = LayerSimilarity(
        matrix=torch.nn.functional.pad(matrix, (1, 0, 1, 0), value=0.9).float().fill_diagonal_(0.0),
        layers=list(range(8)),
        metric="cosine",
        tokens="cls+mean",
        n_samples=10,
        source="planted",
    )
    result = segment_phases(similarity, k=2)
    assert result.phases == [[1, 2, 3], [4, 5, 6, 7]]
    assert result.boundaries == [4] and result.spans == [(1, 3), (4, 7)]
    assert "1-3" in result.table()
    figure = result.figure()
    assert len(figure.layout.shapes) == 2
    loaded = Phases.load(result.save(tmp_path / "phases"))
    assert loaded.phases == result.phases
    assert torch.equal(loaded.within_by_k, result.within_by_k)


def test_bad_inputs_are_named():
    matrix, _ = planted([3, 3])
    with pytest.raises(ValueError, match="square"):
        segment_phases(matrix[:, :5])
    with pytest.raises(ValueError, match="negative"):
        segment_phases(-matrix)
    asymmetric = matrix.clone()
    asymmetric[0, 1] += 1.0
    with pytest.raises(ValueError, match="symmetric"):
        segment_phases(asymmetric)
    with pytest.raises(ValueError, match="k must be"):
        segment_phases(matrix, k=7)
    with pytest.raises(ValueError, match="method"):
        segment_phases(matrix, method="kmeans")
    with pytest.raises(TypeError, match="LayerSimilarity"):
        segment_phases([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="limited to 22"):
        segment_phases(random_symmetric(23, 0), method="maxcut")


def _reference_lag_null(matrix: torch.Tensor) -> torch.Tensor:
    n = matrix.shape[0]
    null = torch.zeros_like(matrix)
    for lag in range(n):
        values = [float(matrix[i, i + lag]) for i in range(n - lag)]
        for i in range(n - lag):
            null[i, i + lag] = null[i + lag, i] = sum(values) / len(values)
    return null


def _brute_force_cut_fraction(matrix: torch.Tensor, k: int) -> float:
    """Best contiguous k-phase cut fraction by enumerating every set of k - 1 cut points."""
    n = matrix.shape[0]
    total = sum(float(matrix[i, j]) for i in range(n) for j in range(i + 1, n))
    best = min(
        sum(
            float(matrix[i, j])
            for a, b in itertools.pairwise([0, *cuts, n])
            for i in range(a, b)
            for j in range(i + 1, b)
        )
        for cuts in itertools.combinations(range(1, n), k - 1)
    )
    return 1.0 - best / total


def test_lag_null_averages_each_diagonal():
    matrix = random_symmetric(7, seed=11)
    null = lag_null(matrix)
    assert torch.allclose(null, _reference_lag_null(matrix), atol=1e-12)
    assert float(torch.triu(null, 1).sum()) == pytest.approx(float(torch.triu(matrix, 1).sum()))


@pytest.mark.parametrize("method", ["dp", "maxcut"])
def test_ramp_and_uniform_matrices_have_no_block_structure(method):
    i = torch.arange(12.0, dtype=torch.float64)
    ramp = (i[:, None] - i[None, :]).abs()
    saturating = 1.0 - torch.exp(-ramp / 3.0)
    uniform = torch.ones(12, 12, dtype=torch.float64).fill_diagonal_(0.0)
    for matrix in (ramp, saturating, uniform):
        found = segment_phases(matrix, method=method)
        assert found.phases == [list(range(12))]
        assert found.block_score == 0.0
        assert found.settings["rule_score"] == pytest.approx(0.0, abs=1e-9)  # gated, and why
        assert "no block structure" in found.table()
    # With k given the phases are returned as asked, and the null is the ramp itself: score 0.
    three = segment_phases(ramp, k=3)
    assert three.cut_fraction == pytest.approx(_brute_force_cut_fraction(ramp, 3), abs=1e-12)
    assert three.cut_fraction == pytest.approx(0.895, abs=5e-4)  # the audit's ramp number
    assert three.null_cut_fraction == pytest.approx(three.cut_fraction, abs=1e-12)
    assert three.block_score == pytest.approx(0.0, abs=1e-9)


def test_block_score_against_brute_force_on_planted_blocks():
    matrix, _ = planted([4, 5, 3], within=0.01, noise=0.01)
    found = segment_phases(matrix, k=3)
    null_cut = _brute_force_cut_fraction(_reference_lag_null(matrix), 3)
    assert found.null_cut_fraction == pytest.approx(null_cut, abs=1e-12)
    expected = (found.cut_fraction - null_cut) / (1 - null_cut)
    assert found.block_score == pytest.approx(expected, abs=1e-12)
    assert found.block_score > 0.8
    perfect = (torch.tensor([0] * 5 + [1] * 7)[:, None] != torch.tensor([0] * 5 + [1] * 7)).double()
    assert segment_phases(perfect).phases == [list(range(5)), list(range(5, 12))]
    assert segment_phases(perfect).block_score == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["dp", "maxcut"])
def test_identical_representations_give_one_phase(method):
    zeros = torch.zeros(9, 9, dtype=torch.float64)
    found = segment_phases(zeros, method=method)
    assert found.phases == [list(range(9))] and found.cut_fraction == 0.0
    assert segment_phases(zeros, method=method, min_score=-1.0).k == 1  # the rule, not the gate
    # the same layer repeated up to tiny perturbations: 1 - cos < 1e-6 is noise, not structure
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(1, 20, 5, 16, generator=generator)
    states = base * (1 + 3e-4 * torch.randn(8, 20, 5, 16, generator=generator))
    similarity = layer_similarity(states)
    assert 0.0 < float(similarity.matrix.max()) < 1e-6
    assert segment_phases(similarity, method=method).k == 1
    assert segment_phases(similarity, method=method, min_score=-1.0).k == 1
    assert segment_phases(zeros, k=3, method=method).k == 3  # an explicit k is still honoured
