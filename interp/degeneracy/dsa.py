"""Dynamical Similarity Analysis (Ostrow et al. 2023), batched over every pair of an ensemble.

DSA compares two systems by the *linear dynamics* that best explain their state trajectories,
not by the geometry of the states themselves:

1. delay (Hankel) embedding of each trajectory: ``h_t = [x_t, x_{t+k}, ..., x_{t+(d-1)k}]``;
2. reduced-rank linear fit (DMD): project the embedding on its top ``r`` right singular vectors
   and fit ``z_{t+1} ≈ A z_t`` by ridge regression, giving an ``r x r`` operator ``A``;
3. compare two operators up to an orthogonal change of basis (the vector-field Procrustes
   problem) after scaling each to unit Frobenius norm::

       d(A, B) = min_{C orthogonal} arccos( tr(Aᵀ C B Cᵀ) / (‖A‖ ‖B‖) )     (angular score)

   ``C = C₀ Cayley(S)``, ``Cayley(S) = (I + K)⁻¹ (I − K)`` with ``K = S − Sᵀ`` skew-symmetric,
   optimized with Adam (cosine-decayed step, best iterate kept). The Cayley map only reaches
   rotations (det +1) near ``C₀``, so three starts ``C₀`` are run: the identity, a reflection
   (``diag(−1, 1, ..., 1)``), and a spectral start built from the eigenvectors of the operators'
   symmetric parts (exact when ``A = Q B Qᵀ``; plain Adam from the identity often stalls in a
   local minimum for random ``Q``). All pairs and all starts are one batched problem.

The fast variant skips the optimization: the 1-Wasserstein (optimal-transport) distance between
the two eigenvalue sets in the complex plane. Eigenvalues are invariant to any change of basis,
so this is a lower-resolution but optimization-free comparison. For two sets of equal size with
uniform weights the transport plan is a permutation, found exactly by
``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from interp.degeneracy.pairs import pair_indices, square_from_pairs


def delay_embed(x: torch.Tensor, n_delays: int, delay_interval: int = 1) -> torch.Tensor:
    """Hankel (delay) embedding along time: ``[..., T, n] -> [..., T - (d-1)k, d*n]``.

    Row ``t`` holds ``x_t, x_{t+k}, ..., x_{t+(d-1)k}`` concatenated (``d = n_delays``,
    ``k = delay_interval``).
    """
    if x.ndim < 2:
        raise ValueError(f"x must be [..., T, n] (at least 2-D), got shape {tuple(x.shape)}")
    if n_delays < 1 or delay_interval < 1:
        raise ValueError(
            f"n_delays and delay_interval must be >= 1, got {n_delays}, {delay_interval}"
        )
    window = (n_delays - 1) * delay_interval + 1
    if x.shape[-2] < window + 1:
        raise ValueError(
            f"trajectories of length {x.shape[-2]} are too short for {n_delays} delays of "
            f"interval {delay_interval} (need at least {window + 1} time steps)"
        )
    windows = x.unfold(-2, window, 1)[..., ::delay_interval]  # [..., T', n, d]
    return windows.transpose(-1, -2).reshape(*windows.shape[:-2], -1)


def fit_dmd(
    states: torch.Tensor,
    *,
    n_delays: int = 1,
    delay_interval: int = 1,
    rank: int | None = None,
    ridge: float = 0.0,
) -> torch.Tensor:
    """Reduced-rank linear dynamics ``A`` of trajectories ``states [..., trials, T, n]``.

    Leading dimensions (e.g. models of an ensemble) are batched. The delay embedding is projected
    onto its top ``rank`` right singular vectors (all of them when ``rank`` is None) and
    ``z_{t+1} = A z_t`` is fitted by ridge regression (``ridge`` ≥ 0). Returns ``[..., r, r]``.
    """
    if states.ndim < 3:
        raise ValueError(f"states must be [..., trials, T, n], got shape {tuple(states.shape)}")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    hankel = delay_embed(states, n_delays, delay_interval)  # [..., trials, T', D]
    dim = hankel.shape[-1]
    rank = dim if rank is None else rank
    if not 1 <= rank <= dim:
        raise ValueError(f"rank must be in [1, {dim}] (the delay-embedding dimension), got {rank}")
    flat = hankel.reshape(*hankel.shape[:-3], -1, dim)
    _, _, vh = torch.linalg.svd(flat, full_matrices=False)
    z = hankel @ vh[..., :rank, :].mT.unsqueeze(-3)  # [..., trials, T', r]
    before = z[..., :-1, :].reshape(*z.shape[:-3], -1, rank)
    after = z[..., 1:, :].reshape(*z.shape[:-3], -1, rank)
    gram = before.mT @ before + ridge * torch.eye(rank, dtype=z.dtype, device=z.device)
    return torch.linalg.solve(gram, before.mT @ after).mT


def _cayley(params: torch.Tensor) -> torch.Tensor:
    skew = params - params.mT
    eye = torch.eye(params.shape[-1], dtype=params.dtype, device=params.device).expand_as(skew)
    return torch.linalg.solve(eye + skew, eye - skew)


def _spectral_start(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """An orthogonal ``C0 = U D Vᵀ`` that is exact when ``A = Q B Qᵀ`` (generic spectra).

    ``U``, ``V`` diagonalize the symmetric parts of ``A`` and ``B`` (which are then related by the
    same ``Q``), so ``Q = U D Vᵀ`` up to the unit signs ``D``; the signs maximize
    ``tr(Ãᵀ D B̃ D)`` with ``Ã = Uᵀ A U``, ``B̃ = Vᵀ B V`` — a small ±1 quadratic problem solved by
    the sign of its leading eigenvector followed by greedy single flips.
    """
    _, u = torch.linalg.eigh(a + a.mT)
    _, v = torch.linalg.eigh(b + b.mT)
    coupling = (u.mT @ a @ u) * (v.mT @ b @ v)
    coupling = coupling + coupling.mT
    coupling = coupling - torch.diag_embed(torch.diagonal(coupling, dim1=-2, dim2=-1))
    signs = torch.linalg.eigh(coupling)[1][..., -1].sign()
    signs[signs == 0] = 1.0
    for _ in range(a.shape[-1]):
        gain = -4.0 * signs * (coupling @ signs[..., None])[..., 0]
        best = gain.argmax(dim=-1, keepdim=True)
        flip = gain.gather(-1, best) > 1e-12
        signs = signs.scatter(-1, best, torch.where(flip, -1.0, 1.0) * signs.gather(-1, best))
    return u @ (signs[..., :, None] * v.mT)


def _starts(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Starting rotations ``[3, P, r, r]``: identity, a reflection, and the spectral start."""
    rank = a.shape[-1]
    eye = torch.eye(rank, dtype=a.dtype).expand_as(a)
    reflect = eye.clone()
    reflect[..., 0, 0] = -1.0
    return torch.stack([eye, reflect, _spectral_start(a, b)])


def procrustes_vector_fields(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    iters: int = 500,
    lr: float = 0.01,
    score: str = "angular",
) -> torch.Tensor:
    """Batched ``min_{C ∈ O(r)} d(A, C B Cᵀ)`` for operator pairs ``a, b [P, r, r]`` -> ``[P]``.

    Both operators are scaled to unit Frobenius norm first. ``score="angular"`` returns
    ``arccos(tr(Aᵀ C B Cᵀ))`` in radians (0 = same dynamics up to rotation, π/2 = orthogonal);
    ``score="euclidean"`` returns ``‖A − C B Cᵀ‖_F``. Every pair is optimized from three starts
    (identity, a reflection, the spectral start) in one batched Adam run; the best one wins.
    """
    if a.shape != b.shape or a.ndim != 3 or a.shape[-1] != a.shape[-2]:
        raise ValueError(
            f"a and b must both be [pairs, r, r] with equal shapes, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if score not in {"angular", "euclidean"}:
        raise ValueError(f"score must be 'angular' or 'euclidean', got {score!r}")
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    a = a.detach().double()
    b = b.detach().double()
    a = a / torch.linalg.matrix_norm(a).clamp_min(1e-12)[:, None, None]
    b = b / torch.linalg.matrix_norm(b).clamp_min(1e-12)[:, None, None]
    starts = _starts(a, b)  # [S, P, r, r]
    a_rep = a.expand(starts.shape[0], *a.shape)
    params = torch.zeros_like(starts, requires_grad=True)
    best_params = params.detach().clone()
    best_loss = torch.full(starts.shape[:2], torch.inf, dtype=a.dtype)
    optimizer = torch.optim.Adam([params], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(iters, 1))
    with torch.enable_grad():
        for _ in range(iters + 1):
            optimizer.zero_grad()
            c = starts @ _cayley(params)
            per_problem = (a_rep - c @ b @ c.mT).square().sum(dim=(-1, -2))
            with torch.no_grad():  # Adam hovers around a minimum: keep the best iterate seen
                better = per_problem < best_loss
                best_loss = torch.where(better, per_problem, best_loss)
                best_params[better] = params[better]
            per_problem.sum().backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        c = starts @ _cayley(best_params)
        aligned = c @ b @ c.mT
        if score == "angular":
            cosine = (a_rep * aligned).sum(dim=(-1, -2)).clamp(-1.0, 1.0)
            return torch.arccos(cosine).min(dim=0).values
        return torch.linalg.matrix_norm(a_rep - aligned).min(dim=0).values


def dsa_distances(
    operators: torch.Tensor, *, iters: int = 500, lr: float = 0.01, score: str = "angular"
) -> torch.Tensor:
    """Symmetric ``[N, N]`` DSA distances between ``N`` operators ``[N, r, r]`` (all pairs batched)."""
    _check_operators(operators)
    left, right = pair_indices(operators.shape[0])
    values = procrustes_vector_fields(
        operators[left], operators[right], iters=iters, lr=lr, score=score
    )
    return square_from_pairs(values, operators.shape[0])


def eigenvalue_wasserstein(operators: torch.Tensor) -> torch.Tensor:
    """Symmetric ``[N, N]`` 1-Wasserstein distances between the eigenvalue sets of ``[N, r, r]``.

    Each operator's ``r`` eigenvalues carry mass ``1/r``; the cost of moving ``λ`` to ``μ`` is
    ``|λ − μ|`` in the complex plane. With equal masses the optimal plan is a permutation (Birkhoff),
    so the distance is the mean matched cost of the optimal assignment.
    """
    _check_operators(operators)
    eig = torch.linalg.eigvals(operators.detach().double())  # [N, r]
    left, right = pair_indices(operators.shape[0])
    costs = (eig[left][:, :, None] - eig[right][:, None, :]).abs().numpy()  # [P, r, r]
    values = np.array([cost[linear_sum_assignment(cost)].mean() for cost in costs])
    return square_from_pairs(torch.from_numpy(values), operators.shape[0])


def _check_operators(operators: torch.Tensor) -> None:
    if operators.ndim != 3 or operators.shape[-1] != operators.shape[-2]:
        raise ValueError(f"operators must be [N, r, r], got shape {tuple(operators.shape)}")
    if operators.shape[0] < 2:
        raise ValueError(f"need at least 2 operators to compare, got {operators.shape[0]}")
