"""The paper's own degeneracy metrics (Huang et al., arXiv 2410.03972), beside interp's richer ones.

- Weights, **d_PIF** (permutation-invariant Frobenius distance) on the recurrent matrix only::

      d_PIF(W1, W2) = min_{P permutation} ‖W1 − Pᵀ W2 P‖_F

  (permutations only, no sign flips; input and readout weights ignored). Across widths the paper
  normalizes by the number of parameters of the matrix: ``d_PIF / N²``. The chance level is the
  same distance between two independent random initializations.

  Minimizing over ``P`` is a quadratic assignment problem (NP-hard), so :func:`pif_distance` is a
  **heuristic**: from several starts (Hungarian matching on relabelling-invariant per-unit
  features, the identity, ``random_starts`` random permutations) it alternates the linearized
  assignment step ``π ← argmax tr(Pᵀ (W2 P W1ᵀ + W2ᵀ P W1))`` (solved exactly by
  ``scipy.optimize.linear_sum_assignment``) with best-improvement pairwise swaps (2-opt, the exact
  change of the objective for every swap at once), until neither improves; the best start wins.
  It is tested against brute force over all permutations on n = 5; for larger n it is an upper
  bound on the true minimum. ``exact=True`` enumerates all n! permutations (n ≤ 8).
- Behaviour, **σ_OOD**: the standard deviation over nets of each net's MSE on out-of-distribution
  inputs (delay doubled for delayed discrimination, trial length doubled otherwise; see
  :func:`interp.degeneracy.paper_tasks.ood_task`).
- Dynamics: DSA with the Euclidean score ``min_C ‖A − C B Cᵀ‖_F`` (the paper's) as well as the
  angular one; both in :mod:`interp.degeneracy.dsa`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from interp.degeneracy.pairs import pair_indices, square_from_pairs


def _score(a: np.ndarray, b: np.ndarray, perm: np.ndarray) -> float:
    """``tr(W1ᵀ Pᵀ W2 P) = Σ_ij A_ij B_{π(i) π(j)}`` (maximized when the distance is minimized)."""
    return float((a * b[np.ix_(perm, perm)]).sum())


def _swap_gains(a: np.ndarray, bp: np.ndarray) -> np.ndarray:
    """``[n, n]``: exact change of ``Σ A ∘ B'`` when units ``a, b`` of the permuted ``bp`` swap."""
    m, n_ = a @ bp.T, a.T @ bp
    dm, dn = np.diag(m), np.diag(n_)
    rows = m + m.T - dm[:, None] - dm[None, :]
    cols = n_ + n_.T - dn[:, None] - dn[None, :]
    da, db = np.diag(a), np.diag(bp)
    # the terms with j (rows) or i (columns) in {a, b} were counted in the sums: take them out
    ra = (da[:, None] - a.T) * (
        bp.T - db[:, None]
    )  # row sum's j = a term: (A_aa − A_ba)(B_ba − B_aa)
    rb = (a - da[None, :]) * (db[None, :] - bp)  # j = b: (A_ab − A_bb)(B_bb − B_ab)
    ca = (da[:, None] - a) * (bp - db[:, None])  # column sum's i = a: (A_aa − A_ab)(B_ab − B_aa)
    cb = (a.T - da[None, :]) * (db[None, :] - bp.T)  # i = b: (A_ba − A_bb)(B_bb − B_ba)
    block = (da[:, None] - da[None, :]) * (db[None, :] - db[:, None]) + (a - a.T) * (bp.T - bp)
    gains = rows - ra - rb + cols - ca - cb + block
    np.fill_diagonal(gains, 0.0)
    return gains


def _local_search(a: np.ndarray, b: np.ndarray, perm: np.ndarray, max_rounds: int) -> np.ndarray:
    best = _score(a, b, perm)
    for _ in range(max_rounds):
        improved = False
        # linearized assignment: score = Σ A ∘ (P B Pᵀ) with P[i, π(i)] = 1, so its gradient in
        # P is A P Bᵀ + Aᵀ P B; maximize the linear term exactly
        pm = np.zeros_like(a)
        pm[np.arange(len(perm)), perm] = 1.0
        grad = a @ pm @ b.T + a.T @ pm @ b
        candidate = linear_sum_assignment(grad, maximize=True)[1]
        value = _score(a, b, candidate)
        if value > best + 1e-12 * max(abs(best), 1.0):
            perm, best, improved = candidate, value, True
        # pairwise swaps (2-opt): apply the improving swaps on disjoint units, largest gain
        # first, all at once (falling back to the single best swap if together they do worse)
        while True:
            gains = _swap_gains(a, b[np.ix_(perm, perm)])
            tol = 1e-12 * max(abs(best), 1.0)
            i_idx, j_idx = np.nonzero(np.triu(gains > tol, 1))
            if len(i_idx) == 0:
                break
            order = np.argsort(-gains[i_idx, j_idx])
            used = np.zeros(len(perm), dtype=bool)
            batch = perm.copy()
            for k in order:
                i, j = i_idx[k], j_idx[k]
                if not (used[i] or used[j]):
                    used[i] = used[j] = True
                    batch[[i, j]] = batch[[j, i]]
            value = _score(a, b, batch)
            if value <= best + tol:
                i, j = i_idx[order[0]], j_idx[order[0]]
                batch = perm.copy()
                batch[[i, j]] = batch[[j, i]]
                value = _score(a, b, batch)
            perm, best, improved = batch, value, True
        if not improved:
            break
    return perm


def _feature_start(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hungarian matching on per-unit features invariant to relabelling the other units."""

    def features(w: np.ndarray) -> np.ndarray:
        off = ~np.eye(len(w), dtype=bool)
        incoming = np.sort(w[off].reshape(len(w), -1), axis=1)
        outgoing = np.sort(w.T[off].reshape(len(w), -1), axis=1)
        return np.concatenate([np.diag(w)[:, None], incoming, outgoing], axis=1)

    fa, fb = features(a), features(b)
    cost = ((fa[:, None, :] - fb[None, :, :]) ** 2).sum(-1)
    return linear_sum_assignment(cost)[1]


def pif_distance(
    w1: torch.Tensor,
    w2: torch.Tensor,
    *,
    random_starts: int = 4,
    max_rounds: int = 50,
    exact: bool = False,
    seed: int = 0,
) -> float:
    """``min_P ‖W1 − Pᵀ W2 P‖_F`` over permutation matrices ``P`` for square ``w1, w2 [n, n]``.

    Heuristic (see the module docstring) unless ``exact=True`` (brute force, n ≤ 8).
    """
    a, b = w1.detach().double().numpy(), w2.detach().double().numpy()
    if a.ndim != 2 or a.shape != b.shape or a.shape[0] != a.shape[1]:
        raise ValueError(f"w1, w2 must be square and equal in shape, got {a.shape}, {b.shape}")
    n = a.shape[0]
    constant = float((a * a).sum() + (b * b).sum())
    if exact:
        if n > 8:
            raise ValueError(f"exact d_PIF enumerates n! permutations; n = {n} > 8 is too many")
        best = max(_score(a, b, np.array(p)) for p in itertools.permutations(range(n)))
        return math.sqrt(max(constant - 2 * best, 0.0))
    rng = np.random.default_rng(seed)
    starts = [_feature_start(a, b), np.arange(n)] + [
        rng.permutation(n) for _ in range(random_starts)
    ]
    best = max(_score(a, b, _local_search(a, b, s, max_rounds)) for s in starts)
    return math.sqrt(max(constant - 2 * best, 0.0))


def pif_distances(w_rec: torch.Tensor, **options) -> torch.Tensor:
    """Symmetric ``[N, N]`` d_PIF between the recurrent matrices ``w_rec [N, n, n]``."""
    if w_rec.ndim != 3 or w_rec.shape[1] != w_rec.shape[2] or w_rec.shape[0] < 2:
        raise ValueError(f"w_rec must be [N >= 2, n, n], got {tuple(w_rec.shape)}")
    left, right = pair_indices(w_rec.shape[0])
    values = torch.tensor(
        [
            pif_distance(w_rec[i], w_rec[j], **options)
            for i, j in zip(left.tolist(), right.tolist(), strict=True)
        ]
    )
    return square_from_pairs(values, w_rec.shape[0])


def std_se(values: torch.Tensor) -> tuple[float, float]:
    """``(std, jackknife SE)`` of per-member values ``[N]`` (sample std, ``ddof = 1``)."""
    v = values.double()
    n = v.shape[0]
    std = float(v.std())
    if n < 3:
        return std, float("nan")
    loo = torch.stack([torch.cat([v[:k], v[k + 1 :]]).std() for k in range(n)])
    return std, float(((n - 1) / n * (loo - loo.mean()).square().sum()).sqrt())


PAPER_METRICS = {
    "sigma_ood": "behaviour",
    "dsa_euclid": "dynamics",
    "d_pif": "weights",
    "d_pif_norm": "weights",
    "d_pif_init": "weights",
}
"""The paper's metrics (Huang et al.): σ_OOD, DSA (Euclidean score), d_PIF on W_h (÷ N²; chance)."""


def recurrent_matrices(ensemble, *, initial: bool = False) -> torch.Tensor:
    """``[N, n, n]``: each member's recurrent matrix ``W_h`` as it enters the dynamics.

    ``weight_hh`` for Elman and leaky nets; ``J / N`` for the μP net (its ``W_h``). ``initial``:
    the members' weights before training (rebuilt from their init seeds).
    """
    from interp.rnn.nets import make_net

    kind, n = ensemble.net["kind"], ensemble.net["hidden_size"]
    if kind in {"gru", "lstm"} or "weight_hh" not in ensemble.params:
        raise ValueError(f"d_PIF needs a single recurrent matrix W_h; {kind!r} nets have gates")
    if initial:
        w = torch.stack(
            [make_net(**ensemble.net, seed=s).weight_hh.detach() for s in ensemble.seeds]
        )
    else:
        w = ensemble.params["weight_hh"]
    w = w.reshape(-1, n, n).double()
    return w / n if kind == "mup_leaky" else w


def ood_mse(ensemble, n_trials: int, eval_seed: int) -> torch.Tensor:
    """``[N]``: each member's task MSE on the paper's out-of-distribution trials.

    Delayed discrimination: delays doubled; other tasks: trials twice as long
    (:func:`interp.degeneracy.paper_tasks.ood_task`). σ_OOD is the std of these over members.
    """
    from interp.degeneracy.paper_tasks import ood_task
    from interp.degeneracy.training import held_out, masked_loss

    task = ensemble.make_task()
    if task.loss != "mse":
        raise ValueError(f"σ_OOD is an MSE; task {task.name!r} is trained with {task.loss!r}")
    ood, length = ood_task(task)
    batch = held_out(ood, eval_seed, n_trials, length=length)
    outputs, _ = ensemble.run(batch.x)
    return torch.stack(
        [masked_loss(o.double(), batch.y.double(), batch.mask, "mse") for o in outputs]
    )
