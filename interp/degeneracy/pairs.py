"""Pair bookkeeping shared by every distance: upper-triangle indices, square matrices, summaries."""

from __future__ import annotations

import torch


def pair_indices(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices ``(i, j)`` of the ``n (n - 1) / 2`` unordered pairs ``i < j`` (row-major)."""
    if n < 2:
        raise ValueError(f"need at least 2 items to form pairs, got {n}")
    left, right = torch.triu_indices(n, n, offset=1)
    return left, right


def square_from_pairs(values: torch.Tensor, n: int) -> torch.Tensor:
    """Symmetric ``[n, n]`` float64 matrix with zero diagonal from per-pair values (``i < j``)."""
    left, right = pair_indices(n)
    if values.shape != left.shape:
        raise ValueError(
            f"expected {left.numel()} pair values for n={n}, got shape {tuple(values.shape)}"
        )
    out = torch.zeros(n, n, dtype=torch.float64)
    out[left, right] = values.double()
    out[right, left] = values.double()
    return out


def degeneracy(distances: torch.Tensor) -> float:
    """Summary degeneracy of an ensemble: the mean off-diagonal entry of its distance matrix.

    This is the average distance between two distinct members, i.e. the expected dissimilarity of
    two independently trained solutions; 0 means every member found the same solution.
    """
    if distances.ndim != 2 or distances.shape[0] != distances.shape[1] or distances.shape[0] < 2:
        raise ValueError(
            f"distances must be a square [N, N] matrix with N >= 2, got {tuple(distances.shape)}"
        )
    left, right = pair_indices(distances.shape[0])
    return float(distances[left, right].double().mean())


def _leave_one_out(distances: torch.Tensor) -> torch.Tensor:
    """``θ₋ₖ`` for every member ``k``: the mean distance over the pairs without member ``k``."""
    n = distances.shape[0]
    d = distances.double()
    d = d - torch.diag_embed(torch.diagonal(d))
    total = d.sum() / 2
    return (total - d.sum(dim=1)) / ((n - 1) * (n - 2) / 2)  # [N]


def _jackknife(values: torch.Tensor) -> float:
    n = values.shape[0]
    return float(((n - 1) / n * (values - values.mean()).square().sum()).sqrt())


def degeneracy_se(distances: torch.Tensor) -> float:
    """Jackknife standard error of :func:`degeneracy` over ensemble members (NaN below 3 members).

    Pairs sharing a member are not independent, so the error comes from leaving out one member
    at a time: ``θ₋ₖ`` = mean distance over the pairs without member ``k``, and
    ``SE² = (N − 1)/N · Σₖ (θ₋ₖ − mean θ₋)²``. Two degeneracies differ beyond noise when they are
    more than about ``2 sqrt(SE₁² + SE₂²)`` apart.
    """
    degeneracy(distances)  # validates the matrix
    if distances.shape[0] < 3:
        return float("nan")
    return _jackknife(_leave_one_out(distances))


def ratio_se(numerator: torch.Tensor, denominator: torch.Tensor) -> float:
    """Jackknife standard error of ``degeneracy(numerator) / degeneracy(denominator)``.

    Both matrices are over the same members (e.g. trained weight distances over the distances of
    the same nets' initial weights), so their errors are correlated: the ratio is recomputed with
    each member left out of both, rather than combining two separate errors as if independent.
    """
    degeneracy(numerator), degeneracy(denominator)  # validate both
    if numerator.shape != denominator.shape:
        raise ValueError(
            f"numerator and denominator must be over the same members, got shapes "
            f"{tuple(numerator.shape)} and {tuple(denominator.shape)}"
        )
    if numerator.shape[0] < 3:
        return float("nan")
    return _jackknife(_leave_one_out(numerator) / _leave_one_out(denominator))
