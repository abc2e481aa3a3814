"""Weight distance (signed-permutation matching), state-geometry distances and pair helpers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch

from interp.degeneracy.geometry import cka_distances, procrustes_distances
from interp.degeneracy.metrics import behaviour_distances
from interp.degeneracy.pairs import degeneracy, degeneracy_se, ratio_se
from interp.degeneracy.weights import match_hidden_units, weight_distances


def _net(hidden: int, inputs: int, outputs: int, g: torch.Generator, gates: int = 1):
    rec = torch.randn(gates, hidden, hidden, generator=g, dtype=torch.float64) / hidden**0.5
    inp = torch.randn(gates, hidden, inputs, generator=g, dtype=torch.float64)
    out = torch.randn(outputs, hidden, generator=g, dtype=torch.float64) / hidden**0.5
    return rec, inp, out


def _signed_permutation(hidden: int, g: torch.Generator, flip: bool = True) -> torch.Tensor:
    perm = torch.randperm(hidden, generator=g)
    signs = (
        torch.where(torch.rand(hidden, generator=g) < 0.5, -1.0, 1.0)
        if flip
        else torch.ones(hidden)
    )
    p = torch.zeros(hidden, hidden, dtype=torch.float64)
    p[torch.arange(hidden), perm] = signs.double()
    return p


def _apply(p, rec, inp, out):
    return p @ rec @ p.T, p @ inp, out @ p.T


def test_a_permuted_sign_flipped_copy_has_weight_distance_zero():
    g = torch.Generator().manual_seed(0)
    rec, inp, out = _net(24, 3, 2, g)
    p = _signed_permutation(24, g)
    rec2, inp2, out2 = _apply(p, rec, inp, out)
    other = _net(24, 3, 2, g)
    d = weight_distances(
        torch.stack([rec[0], rec2[0], other[0][0]]),
        torch.stack([inp[0], inp2[0], other[1][0]]),
        torch.stack([out, out2, other[2]]),
    )
    assert d[0, 1].item() == pytest.approx(0.0, abs=1e-10)
    assert d[0, 2] > 0.3 and d[1, 2] > 0.3
    # Without sign symmetry (ReLU nets) the flipped copy is a genuinely different network.
    no_signs = weight_distances(
        torch.stack([rec, rec2]), torch.stack([inp, inp2]), torch.stack([out, out2]), signs=False
    )
    assert no_signs[0, 1] > 0.1


def test_gated_blocks_share_one_permutation():
    g = torch.Generator().manual_seed(1)
    rec, inp, out = _net(10, 2, 2, g, gates=3)
    p = _signed_permutation(10, g, flip=False)
    rec2, inp2, out2 = _apply(p, rec, inp, out)
    d = weight_distances(
        torch.stack([rec, rec2]), torch.stack([inp, inp2]), torch.stack([out, out2]), signs=False
    )
    assert d[0, 1].item() == pytest.approx(0.0, abs=1e-10)


def _objective(p, rec1, inp1, out1, rec2, inp2, out2) -> float:
    r2, i2, o2 = _apply(p, rec2, inp2, out2)
    return float(
        (rec1 - r2).square().sum() + (inp1 - i2).square().sum() + (out1 - o2).square().sum()
    )


def _brute_force(args) -> float:
    hidden = args[0].shape[-1]
    return min(
        _objective(torch.diag(torch.tensor(s, dtype=torch.float64))[list(perm)], *args)
        for perm in itertools.permutations(range(hidden))
        for s in itertools.product([-1.0, 1.0], repeat=hidden)
    )


def test_matching_of_a_noisy_copy_reaches_the_brute_force_optimum():
    g = torch.Generator().manual_seed(7)
    hidden = 5
    rec, inp, out = _net(hidden, 2, 2, g)
    p_true = _signed_permutation(hidden, g)
    assert not torch.equal(p_true, p_true.T)  # so that P and Pᵀ cannot be confused
    rec2, inp2, out2 = (
        t + 0.05 * torch.randn(t.shape, generator=g, dtype=torch.float64)
        for t in _apply(p_true, rec, inp, out)
    )
    perm_found, squared = match_hidden_units(
        torch.stack([rec, rec2]), torch.stack([inp, inp2]), torch.stack([out, out2])
    )
    # The returned P maps net 2 onto net 1 and its objective is the returned value.
    args = (rec[0], inp[0], out, rec2[0], inp2[0], out2)
    p_found = perm_found[0]
    torch.testing.assert_close(p_found, p_true.T)  # net 2 = P_true net 1, so net 1 = P_trueᵀ net 2
    assert _objective(p_found, *args) == pytest.approx(float(squared[0]), rel=1e-10)
    brute = _brute_force(args)
    assert float(squared[0]) == pytest.approx(brute, rel=1e-9)
    # relative distance: D / sqrt(|θ1|² + |θ2|²)
    norms = sum(float(t.square().sum()) for t in (rec, inp, out, rec2, inp2, out2))
    d = weight_distances(
        torch.stack([rec, rec2]), torch.stack([inp, inp2]), torch.stack([out, out2])
    )
    assert d[0, 1].item() == pytest.approx((brute / norms) ** 0.5, rel=1e-9)


@pytest.mark.parametrize(("noise", "seed"), [(0.6, 4), (1.0, 0), (1.0, 3)])
def test_refinement_reaches_the_brute_force_optimum_where_the_hungarian_start_does_not(noise, seed):
    # Heavy noise (relative to each block's spread) scrambles the per-unit features the
    # Hungarian start matches on; the quadratic-assignment refinement has to repair it.
    g = torch.Generator().manual_seed(seed)
    hidden = 5
    rec, inp, out = _net(hidden, 2, 2, g)
    p_true = _signed_permutation(hidden, g)
    rec2, inp2, out2 = (
        t + noise * t.std() * torch.randn(t.shape, generator=g, dtype=torch.float64)
        for t in _apply(p_true, rec, inp, out)
    )
    weights = (torch.stack([rec, rec2]), torch.stack([inp, inp2]), torch.stack([out, out2]))
    brute = _brute_force((rec[0], inp[0], out, rec2[0], inp2[0], out2))
    _, start = match_hidden_units(*weights, refine_steps=0)
    assert float(start[0]) > 1.05 * brute  # the case needs the refinement
    p_found, squared = match_hidden_units(*weights)
    assert float(squared[0]) == pytest.approx(brute, rel=1e-9)
    assert _objective(p_found[0], rec[0], inp[0], out, rec2[0], inp2[0], out2) == pytest.approx(
        brute, rel=1e-9
    )


def test_weight_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="w_in"):
        weight_distances(torch.zeros(2, 4, 4), torch.zeros(2, 5, 3), torch.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="w_out"):
        weight_distances(torch.zeros(2, 4, 4), torch.zeros(2, 4, 3), torch.zeros(2, 2, 5))
    with pytest.raises(ValueError, match="at least 2"):
        weight_distances(torch.zeros(1, 4, 4), torch.zeros(1, 4, 3), torch.zeros(1, 2, 4))


def _reference_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s linear CKA via centered Gram matrices (HSIC form)."""
    n = x.shape[0]
    h = np.eye(n) - 1.0 / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float(np.sum(k * l_) / np.sqrt(np.sum(k * k) * np.sum(l_ * l_)))


def test_cka_and_procrustes_match_references_and_invariances():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 15, 4, generator=g, dtype=torch.float64)  # [B, T, n] -> 30 points in 4-D
    y = torch.tanh(x @ torch.randn(4, 4, generator=g, dtype=torch.float64)) + 0.3
    q = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))[0]
    states = torch.stack([x, 2.5 * x @ q + 1.0, y])  # second: rotated, scaled, shifted copy
    cka = cka_distances(states)
    assert cka[0, 1].item() == pytest.approx(0.0, abs=1e-12)
    ref = _reference_cka(x.reshape(-1, 4).numpy(), y.reshape(-1, 4).numpy())
    assert cka[0, 2].item() == pytest.approx(1 - ref, rel=1e-10)
    proc = procrustes_distances(states)
    assert proc[0, 1].item() == pytest.approx(0.0, abs=1e-6)
    xa, ya = (t.reshape(-1, 4).numpy() for t in (x, y))
    xa, ya = xa - xa.mean(0), ya - ya.mean(0)
    xa, ya = xa / np.linalg.norm(xa), ya / np.linalg.norm(ya)
    rot, _ = scipy.linalg.orthogonal_procrustes(ya, xa)  # argmin |ya R - xa|
    assert proc[0, 2].item() == pytest.approx(float(np.arccos(np.trace(xa.T @ ya @ rot))), rel=1e-9)


def test_behaviour_distance_and_summary_by_hand():
    outputs = torch.zeros(3, 1, 2, 1, dtype=torch.float64)
    outputs[1, 0, :, 0] = torch.tensor([3.0, 100.0])  # second step is masked out
    outputs[2, 0, :, 0] = torch.tensor([-1.0, 0.0])
    mask = torch.tensor([[True, False]])
    d = behaviour_distances(outputs, mask, "mse")
    torch.testing.assert_close(
        d, torch.tensor([[0, 3, 1], [3, 0, 4], [1, 4, 0]], dtype=torch.float64)
    )
    assert degeneracy(d) == pytest.approx((3 + 1 + 4) / 3)
    with pytest.raises(ValueError, match="square"):
        degeneracy(torch.zeros(2, 3))


def test_degeneracy_standard_error_is_the_leave_one_member_out_jackknife():
    g = torch.Generator().manual_seed(2)
    n = 6
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    d = torch.cdist(x, x)
    # explicit jackknife: drop one member, average the remaining pairs
    values = []
    for k in range(n):
        keep = [i for i in range(n) if i != k]
        values.append(np.mean([float(d[i, j]) for a, i in enumerate(keep) for j in keep[a + 1 :]]))
    values = np.array(values)
    expected = np.sqrt((n - 1) / n * ((values - values.mean()) ** 2).sum())
    assert degeneracy_se(d) == pytest.approx(expected, rel=1e-12)
    assert values.mean() == pytest.approx(degeneracy(d), rel=1e-12)
    assert np.isnan(degeneracy_se(d[:2, :2]))


def test_ratio_standard_error_jackknifes_both_matrices_together():
    g = torch.Generator().manual_seed(5)
    n = 6
    a = torch.cdist(*(2 * [torch.randn(n, 3, generator=g, dtype=torch.float64)]))
    b = a + torch.cdist(*(2 * [torch.randn(n, 2, generator=g, dtype=torch.float64)]))
    values = []
    for k in range(n):
        keep = [i for i in range(n) if i != k]
        pairs = [(i, j) for x, i in enumerate(keep) for j in keep[x + 1 :]]
        values.append(np.mean([float(a[p]) for p in pairs]) / np.mean([float(b[p]) for p in pairs]))
    values = np.array(values)
    expected = np.sqrt((n - 1) / n * ((values - values.mean()) ** 2).sum())
    assert ratio_se(a, b) == pytest.approx(expected, rel=1e-12)
    # correlated numerator and denominator: not the independent-errors formula
    r = degeneracy(a) / degeneracy(b)
    independent = r * np.hypot(degeneracy_se(a) / degeneracy(a), degeneracy_se(b) / degeneracy(b))
    assert abs(ratio_se(a, b) - independent) > 0.1 * expected
    with pytest.raises(ValueError, match="same members"):
        ratio_se(a, b[:5, :5])
