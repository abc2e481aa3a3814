"""The head-count theorem (Ghodsi 2025), checked numerically.

A linear SSM computes ``y_i = sum_{j <= i} K_{i-j} x_j`` with lag operators ``K_l = C A^l B``. A
multi-head, position-only factorized attention map computes ``y_i = sum_h sum_{j <= i}
alpha^h_ij V_h x_j`` (weights that depend on positions only, one value/output map ``V_h`` per
head). It emulates the SSM on every input exactly when ``K_{i-j} = sum_h alpha^h_ij V_h`` for all
``i >= j``; stacking ``vec K_{i-j}`` over the pairs as the rows of ``M [pairs, d_out d_in]``, that
is ``M = alpha V`` with ``alpha [pairs, H]``: possible iff ``rank M <= H``, and ``rank M`` is the
dimension ``k`` of the span of the lag operators. So ``k`` heads are needed and suffice.

:func:`fit_heads` fits ``(alpha, V)`` by least squares: ``"svd"`` is the closed-form optimum
(Eckart-Young; squared error ``sum_{r > H} sigma_r^2``), ``"als"`` alternates
``torch.linalg.lstsq`` solves for ``alpha`` and ``V`` from a random start (an independent fit
that must reach the same floor). :func:`head_count_table` runs the grid of spans ``k`` and head
counts ``H``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import torch

from interp.errors import InvalidArgumentError
from interp.mixers.operators import LinearSSM
from interp.results import Result

METHODS = ("svd", "als")
ZERO_TOL = 1e-10  # relative error counted as numerical zero (float64)


def lag_matrix(ssm: LinearSSM, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``M [pairs, d_out * d_in]`` (row ``(i, j)`` = ``vec K_{i-j}``) and the pairs ``[pairs, 2]``."""
    kernel = ssm.lag_operators(length).flatten(1)
    i, j = torch.tril_indices(length, length)
    return kernel[i - j], torch.stack([i, j], 1)


def fit_heads(
    ssm: LinearSSM,
    n_heads: int,
    length: int,
    *,
    method: str = "svd",
    seed: int = 0,
    max_iter: int = 500,
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """Best ``n_heads``-head position-only emulation of ``ssm`` on ``length`` tokens.

    Returns the relative error ``||M - alpha V||_F / ||M||_F``, the attention maps ``alpha [H, T,
    T]`` (zero above the diagonal) and the head maps ``V [H, d_out, d_in]``.
    """
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads < 1:
        raise InvalidArgumentError(f"n_heads must be a positive int, got {n_heads!r}")
    M, pairs = lag_matrix(ssm, length)
    if method == "svd":
        u, s, vh = torch.linalg.svd(M, full_matrices=False)
        alpha, V = u[:, :n_heads] * s[:n_heads], vh[:n_heads]
    else:
        alpha, V = _als(M, n_heads, seed, max_iter)
    error = float(torch.linalg.norm(M - alpha @ V) / torch.linalg.norm(M))
    maps = torch.zeros(alpha.shape[1], length, length, dtype=torch.float64)
    maps[:, pairs[:, 0], pairs[:, 1]] = alpha.T
    d_out, d_in = ssm.C.shape[0], ssm.B.shape[1]
    return error, maps, V.reshape(-1, d_out, d_in)


def _als(M: torch.Tensor, n_heads: int, seed: int, max_iter: int):
    """Alternating least squares with ``torch.linalg.lstsq``: ``alpha = argmin ||M - alpha V||``
    for fixed ``V``, then ``V`` for fixed ``alpha``, until the error stops falling."""
    g = torch.Generator().manual_seed(seed)
    V = torch.randn(n_heads, M.shape[1], generator=g, dtype=torch.float64)
    previous = torch.inf
    for _ in range(max_iter):
        alpha = torch.linalg.lstsq(V.T, M.T, driver="gelsd").solution.T
        V = torch.linalg.lstsq(alpha, M, driver="gelsd").solution
        error = float(torch.linalg.norm(M - alpha @ V))
        if previous - error <= 1e-15 * float(torch.linalg.norm(M)):
            break
        previous = error
    return alpha, V


def apply_heads(maps: torch.Tensor, V: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The emulator's output ``y_i = sum_h sum_j maps[h, i, j] V_h x_j`` for ``x [T, d_in]``."""
    return torch.einsum("hij,hod,jd->io", maps, V, x.to(torch.float64))


@dataclass
class HeadCountFit(Result):
    """Relative fitting error of ``H``-head emulations of SSMs with lag span ``k``.

    ``errors[a, b]`` is the error for ``spans[a]`` and ``heads[b]``; ``minimal_heads[a]`` is the
    first ``H`` with error below ``zero_tol`` (-1 if none): the theorem says it equals ``k``.
    ``measured_spans`` are the ranks of the lag matrices at ``zero_tol``, as a check of the
    construction.
    """

    spans: list[int]
    heads: list[int]
    errors: np.ndarray
    minimal_heads: list[int]
    measured_spans: list[int]
    zero_tol: float = ZERO_TOL
    settings: dict = field(default_factory=dict)

    def table(self) -> str:
        head = "k \\ H " + " ".join(f"{h:>8d}" for h in self.heads) + "   H*  rank"
        lines = [head]
        for a, k in enumerate(self.spans):
            cells = " ".join(f"{e:8.1e}" for e in self.errors[a])
            lines.append(
                f"{k:<6d}{cells}  {self.minimal_heads[a]:>3d}  {self.measured_spans[a]:>4d}"
            )
        lines.append(
            f"relative error ||K - alpha V|| / ||K|| ({self.settings.get('method', '?')}); "
            f"H* = fewest heads with error < {self.zero_tol:g}"
        )
        return "\n".join(lines)

    def figure(self) -> go.Figure:
        fig = go.Figure()
        for a, k in enumerate(self.spans):
            y = np.maximum(self.errors[a], 1e-17)
            fig.add_trace(go.Scatter(x=self.heads, y=y, mode="lines+markers", name=f"k = {k}"))
        fig.add_hline(y=self.zero_tol, line_dash="dash", annotation_text="numerical zero")
        fig.update_layout(
            title="Emulating a linear SSM with H position-only heads",
            xaxis_title="heads H",
            yaxis_title="relative error",
            yaxis_type="log",
            template="plotly_white",
        )
        return fig


def head_count_table(
    spans: Sequence[int] = (1, 2, 4, 8),
    heads: Sequence[int] = tuple(range(1, 13)),
    *,
    length: int = 32,
    d_in: int = 4,
    d_out: int = 4,
    method: str = "svd",
    seed: int = 0,
    zero_tol: float = ZERO_TOL,
) -> HeadCountFit:
    """Fit every ``H`` in ``heads`` to a random SSM of each lag span ``k`` in ``spans``."""
    errors = np.zeros((len(spans), len(heads)))
    measured = []
    for a, k in enumerate(spans):
        ssm = LinearSSM.random(k, d_in, d_out, seed=seed + a)
        s = torch.linalg.svdvals(lag_matrix(ssm, length)[0])
        measured.append(int((s > zero_tol * s[0]).sum()))
        for b, h in enumerate(heads):
            errors[a, b] = fit_heads(ssm, h, length, method=method, seed=seed)[0]
    minimal = [
        next((h for h, e in zip(heads, row, strict=True) if e < zero_tol), -1) for row in errors
    ]
    return HeadCountFit(
        spans=list(spans),
        heads=list(heads),
        errors=errors,
        minimal_heads=minimal,
        measured_spans=measured,
        zero_tol=zero_tol,
        settings={"length": length, "d_in": d_in, "d_out": d_out, "method": method, "seed": seed},
    )
