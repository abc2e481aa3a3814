"""DSA: delay embedding, DMD fit, batched vector-field Procrustes, eigenvalue transport."""

from __future__ import annotations

import itertools

import pytest
import torch

from interp.degeneracy.dsa import (
    delay_embed,
    dsa_distances,
    eigenvalue_wasserstein,
    fit_dmd,
    procrustes_vector_fields,
)


def _random_orthogonal(
    n: int, generator: torch.Generator, batch: int | None = None
) -> torch.Tensor:
    shape = (n, n) if batch is None else (batch, n, n)
    return torch.linalg.qr(torch.randn(*shape, generator=generator, dtype=torch.float64))[0]


def _simulate(
    a: torch.Tensor, trials: int, steps: int, generator: torch.Generator, noise: float = 0.0
):
    """Trajectories of x_{t+1} = A x_t (+ noise) from random starts, float64 ``[trials, T, n]``."""
    x = torch.randn(trials, a.shape[0], generator=generator, dtype=torch.float64)
    out = []
    for _ in range(steps):
        out.append(x)
        x = x @ a.T + noise * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    return torch.stack(out, dim=1)


def test_delay_embed_matches_explicit_windows():
    x = torch.arange(2 * 7 * 3, dtype=torch.float64).reshape(2, 7, 3)
    h = delay_embed(x, n_delays=3, delay_interval=2)
    assert h.shape == (2, 3, 9)
    for b, t in itertools.product(range(2), range(3)):
        expected = torch.cat([x[b, t], x[b, t + 2], x[b, t + 4]])
        assert torch.equal(h[b, t], expected)


def test_fit_dmd_recovers_the_spectrum_of_a_linear_system():
    g = torch.Generator().manual_seed(0)
    eigenvalues = torch.tensor([0.95, 0.8, -0.5, 0.3], dtype=torch.float64)
    q = _random_orthogonal(4, g)
    a = q @ torch.diag(eigenvalues) @ q.T
    states = _simulate(a, trials=5, steps=30, generator=g)
    fitted = fit_dmd(states, n_delays=1, rank=4)
    got = torch.linalg.eigvals(fitted).real.sort().values
    torch.testing.assert_close(got, eigenvalues.sort().values, atol=1e-8, rtol=0)


def test_dsa_is_zero_for_an_orthogonally_transformed_copy_and_large_for_other_eigenvalues():
    g = torch.Generator().manual_seed(1)
    n = 6
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    blocks = [
        0.97 * torch.linalg.matrix_exp(0.3 * rotation),
        0.9 * torch.linalg.matrix_exp(0.7 * rotation),
    ]
    core = torch.block_diag(*blocks, torch.diag(torch.tensor([0.8, -0.4], dtype=torch.float64)))
    q = _random_orthogonal(n, g)
    a = q @ core @ q.T
    other = torch.diag(torch.tensor([0.2, 0.1, -0.1, 0.5, 0.3, 0.0], dtype=torch.float64))
    base = _simulate(a, trials=8, steps=40, generator=g, noise=0.05)
    transform = _random_orthogonal(n, g)
    copy = base @ transform.T  # the same system observed in a rotated/reflected basis
    different = _simulate(other, trials=8, steps=40, generator=g, noise=0.05)
    ops = fit_dmd(torch.stack([base, copy, different]), n_delays=2, rank=6)
    d = dsa_distances(ops, iters=200)
    assert d[0, 1] < 1e-3
    assert d[0, 2] > 0.3 and d[1, 2] > 0.3
    assert torch.equal(d, d.T) and torch.all(d.diagonal() == 0)


def test_procrustes_finds_hidden_rotations_and_reflections_for_a_batch_of_pairs():
    g = torch.Generator().manual_seed(2)
    pairs, r = 12, 7
    a = torch.randn(pairs, r, r, generator=g, dtype=torch.float64)
    q = _random_orthogonal(r, g, batch=pairs)
    q[::2, :, 0] *= -1  # make half of them improper (det -1): only the reflected start reaches them
    assert (torch.linalg.det(q) < 0).any() and (torch.linalg.det(q) > 0).any()
    b = q.mT @ a @ q
    assert procrustes_vector_fields(a, b, iters=50).max() < 1e-4
    # Unrelated operators stay far apart; the euclidean score agrees with 2 - 2 cos(angle).
    c = torch.randn(pairs, r, r, generator=g, dtype=torch.float64)
    angle = procrustes_vector_fields(a, c, iters=100)
    euclid = procrustes_vector_fields(a, c, iters=100, score="euclidean")
    assert angle.min() > 0.2
    torch.testing.assert_close(euclid.square(), 2 - 2 * torch.cos(angle), atol=1e-6, rtol=0)


def test_eigenvalue_wasserstein_matches_a_hand_computed_transport():
    g = torch.Generator().manual_seed(3)
    first = torch.diag(torch.tensor([0.5, 0.9], dtype=torch.float64))
    second = torch.diag(torch.tensor([0.6, 0.7], dtype=torch.float64))
    q = _random_orthogonal(2, g)
    ops = torch.stack([first, second, q @ second @ q.T])
    d = eigenvalue_wasserstein(ops)
    # best plan: 0.5 -> 0.6 (0.1) and 0.9 -> 0.7 (0.2); each eigenvalue has mass 1/2
    assert d[0, 1].item() == pytest.approx(0.15, abs=1e-12)
    assert d[1, 2].item() == pytest.approx(0.0, abs=1e-12)
    # complex pairs: e^{±iθ} vs e^{±iφ} -> |e^{iθ} - e^{iφ}| per eigenvalue
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    spiral = torch.stack([torch.linalg.matrix_exp(0.2 * rot), torch.linalg.matrix_exp(0.5 * rot)])
    expected = abs(
        complex(torch.cos(torch.tensor(0.2)), torch.sin(torch.tensor(0.2)))
        - complex(torch.cos(torch.tensor(0.5)), torch.sin(torch.tensor(0.5)))
    )
    assert eigenvalue_wasserstein(spiral)[0, 1].item() == pytest.approx(expected, rel=1e-6)


def test_bad_inputs_are_rejected_with_clear_messages():
    with pytest.raises(ValueError, match="too short"):
        delay_embed(torch.zeros(3, 4, 2), n_delays=5)
    with pytest.raises(ValueError, match="rank"):
        fit_dmd(torch.zeros(2, 10, 3), rank=7)
    with pytest.raises(ValueError, match=r"\[N, r, r\]"):
        dsa_distances(torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="at least 2"):
        eigenvalue_wasserstein(torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="score"):
        procrustes_vector_fields(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2), score="cosine")
