"""interp.mixers on pure math: lag operators, interaction rank, the head-count theorem, gradient
paths. References: the SSM recurrence run step by step in float64, constructions whose rank is
known, and Eckart-Young's floor for the fits."""

from __future__ import annotations

import math

import pytest
import torch

from interp.errors import InvalidArgumentError
from interp.mixers import (
    LinearSSM,
    fit_heads,
    gradient_paths,
    head_count_table,
    interaction_rank,
)
from interp.mixers.model import interaction_operators
from interp.mixers.operators import AttentionOperators, SelectiveOperators
from interp.mixers.theorem import apply_heads, lag_matrix


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_random_ssm_has_the_lag_span_it_was_built_with(k):
    ssm = LinearSSM.random(k, 4, 4, seed=k)
    result = interaction_rank(interaction_operators(ssm, 40), rtol=1e-10)
    assert result.rank == k and result.bound == k
    x = torch.randn(40, 4, dtype=torch.float64)
    ops = interaction_operators(ssm, x)
    torch.testing.assert_close(ops.apply(x), ssm(x), rtol=1e-12, atol=1e-12)


def test_head_count_theorem_small():
    """Error reaches numerical zero at H = k and not before, for both fitting methods."""
    for method in ("svd", "als"):
        fit = head_count_table((1, 2, 4), range(1, 7), length=12, method=method)
        assert fit.minimal_heads == [1, 2, 4] == fit.measured_spans
        for a, k in enumerate(fit.spans):
            before, at = fit.errors[a, : k - 1], fit.errors[a, k - 1 :]
            assert (before > 1e-4).all() and (at < 1e-10).all(), (method, k, fit.errors[a])


def test_fit_reaches_the_eckart_young_floor_and_emulates_the_ssm():
    ssm = LinearSSM.random(4, 3, 2, seed=3)
    M, _ = lag_matrix(ssm, 10)
    s = torch.linalg.svdvals(M)
    for h in (1, 2, 3):
        floor = float(s[h:].square().sum().sqrt() / s.square().sum().sqrt())
        assert fit_heads(ssm, h, 10, method="svd")[0] == pytest.approx(floor, rel=1e-9)
        assert fit_heads(ssm, h, 10, method="als")[0] == pytest.approx(floor, rel=1e-6)
    error, maps, V = fit_heads(ssm, 4, 10, method="als")
    x = torch.randn(10, 3, dtype=torch.float64)
    assert error < 1e-10
    torch.testing.assert_close(apply_heads(maps, V, x), ssm(x), rtol=1e-9, atol=1e-9)
    assert torch.equal(maps.triu(1), torch.zeros_like(maps))  # causal


def test_attention_operators_match_a_direct_computation():
    torch.manual_seed(0)
    H, T, d, dh = 3, 6, 5, 2
    pattern = torch.softmax(
        torch.randn(H, T, T).masked_fill(~torch.ones(T, T).tril().bool(), -1e9), -1
    )
    W_V, W_O = torch.randn(H, d, dh), torch.randn(H, dh, d)
    ops = AttentionOperators(pattern.double(), W_V.double(), W_O.double())
    x = torch.randn(T, d, dtype=torch.float64)
    direct = sum(pattern[h].double() @ x @ W_V[h].double() @ W_O[h].double() for h in range(H))
    torch.testing.assert_close(ops.apply(x), direct)
    torch.testing.assert_close(
        ops.matrix(4, 2) @ x[2], ops.apply(torch.eye(T, dtype=torch.float64)[:, 2:3] * x[2])[4]
    )
    dense = torch.stack([ops.ov(h).flatten() for h in range(H)])
    torch.testing.assert_close(ops.gram(), dense @ dense.T)
    assert interaction_rank(ops).rank == H
    # two heads with the same OV map: the span has one dimension fewer
    same = AttentionOperators(pattern.double(), W_V.double()[[0, 0, 1]], W_O.double()[[0, 0, 1]])
    assert interaction_rank(same, rtol=1e-8).rank == 2


def test_selective_kernel_matches_the_recurrence():
    g = torch.Generator().manual_seed(1)
    T, c, N = 7, 3, 2
    delta = torch.rand(T, c, generator=g, dtype=torch.float64) + 0.1
    A = -torch.rand(c, N, generator=g, dtype=torch.float64) - 0.2
    B = torch.randn(T, c, N, generator=g, dtype=torch.float64)
    C = torch.randn(T, c, N, generator=g, dtype=torch.float64)
    D = torch.randn(c, generator=g, dtype=torch.float64)
    u = torch.randn(T, c, generator=g, dtype=torch.float64)
    h, ys = torch.zeros(c, N, dtype=torch.float64), []
    for t in range(T):
        h = torch.exp(delta[t, :, None] * A) * h + delta[t, :, None] * B[t] * u[t, :, None]
        ys.append((C[t] * h).sum(-1) + D * u[t])
    ops = SelectiveOperators(delta, A, B, C, D)
    torch.testing.assert_close(ops.apply(u), torch.stack(ys), rtol=1e-12, atol=1e-12)
    assert interaction_rank(ops).rank <= c


def test_gradient_paths_decay_like_the_spectral_radius():
    """A scalar-decay SSM has ||dy_i/dx_j|| = |c b| rho^(i-j) exactly: the fit recovers rho."""
    rho = 0.7
    f64 = {"dtype": torch.float64}
    ssm = LinearSSM(
        torch.tensor([[rho]], **f64),
        torch.tensor([[1.0, 2.0]], **f64),
        torch.tensor([[0.5], [1.0]], **f64),
    )
    result = gradient_paths(ssm, torch.randn(12, 2, dtype=torch.float64), kind="lti")
    assert result.rho == pytest.approx(rho, rel=1e-9)
    expected = math.sqrt(5) * math.sqrt(1.25)
    assert float(result.norms[5, 5]) == pytest.approx(expected)
    assert float(result.norms[2, 5]) == 0.0  # causal

    # attention with a uniform causal pattern: the weight 1/(i+1) does not depend on i - j
    W = torch.randn(2, 2, dtype=torch.float64)

    def uniform(x):
        T = x.shape[0]
        weights = torch.ones(T, T, dtype=x.dtype).tril()
        return (weights / weights.sum(-1, keepdim=True)) @ x @ W

    paths = gradient_paths(uniform, torch.randn(8, 2, dtype=torch.float64))
    row = paths.norms[7, :8]
    torch.testing.assert_close(row, row[0].expand(8))
    torch.testing.assert_close(paths.profile, torch.ones(8, dtype=torch.float64))
    assert paths.rho == pytest.approx(1.0)
    torch.testing.assert_close(result.profile, rho ** torch.arange(12, dtype=torch.float64))


def test_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="rtol"):
        interaction_rank(interaction_operators(LinearSSM.random(2), 5), rtol=2.0)
    with pytest.raises(InvalidArgumentError, match="span"):
        LinearSSM.random(20, 2, 2)
    with pytest.raises(InvalidArgumentError, match="method"):
        fit_heads(LinearSSM.random(2), 1, 5, method="newton")


def test_selective_kernel_is_size_guarded(monkeypatch):
    ops = SelectiveOperators(
        torch.ones(6, 2), -torch.ones(2, 3), torch.ones(6, 2, 3), torch.ones(6, 2, 3)
    )
    monkeypatch.setattr("interp.mixers.operators.KERNEL_BLOCK", 1)  # one channel at a time
    blocked = ops.full_kernel()
    monkeypatch.setattr("interp.mixers.operators.KERNEL_BLOCK", 2**24)
    torch.testing.assert_close(blocked, ops.full_kernel())
    monkeypatch.setattr("interp.mixers.operators.MAX_KERNEL", 10)
    with pytest.raises(InvalidArgumentError, match="shorter input"):
        interaction_rank(ops)
