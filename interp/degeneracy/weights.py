"""Weight-space distance between RNNs, invariant to relabelling (and sign-flipping) hidden units.

Two networks that differ only by a permutation ``π`` of their hidden units (and, for odd
nonlinearities such as tanh, by flipping the sign of some units) compute the same function. The
distance is therefore taken over signed permutation matrices ``P`` (Huang et al. 2024)::

    D(θ₁, θ₂)² = min_P ‖W₁ʳᵉᶜ − P W₂ʳᵉᶜ Pᵀ‖² + ‖W₁ⁱⁿ − P W₂ⁱⁿ‖² + ‖W₁ᵒᵘᵗ − W₂ᵒᵘᵗ Pᵀ‖²

and reported relative to the weights' size, ``d = D / sqrt(‖θ₁‖² + ‖θ₂‖²)``: 0 for the same
network up to relabelling, about 1 for unrelated weights of the same norms. Gated cells (GRU,
LSTM) have one recurrent and one input block per gate; the same ``P`` acts on every block.

Minimizing over ``P`` is a quadratic assignment problem, so it is solved approximately:

1. Hungarian matching (``scipy.optimize.linear_sum_assignment``) on per-unit features: the unit's
   input row and readout column (compared up to sign), its self-connection and the sorted
   magnitudes of its incoming and outgoing recurrent weights (both invariant to relabelling the
   other units). For an exact relabelled copy this already finds the true ``P`` (distance 0).
2. Refinement: repeatedly linearize the objective at the current ``P`` and re-solve the linear
   assignment, ``P ← argmax_P tr(Pᵀ G)`` with ``G = Σ (W₁ʳᵉᶜ P W₂ʳᵉᶜᵀ + W₁ʳᵉᶜᵀ P W₂ʳᵉᶜ)
   + W₁ⁱⁿ W₂ⁱⁿᵀ + W₁ᵒᵘᵗᵀ W₂ᵒᵘᵗ``, keeping a step only when the objective drops.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from interp.degeneracy.pairs import pair_indices, square_from_pairs


def _as_gated(w_rec: torch.Tensor, w_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if w_rec.ndim == 3:
        w_rec, w_in = w_rec[:, None], w_in[:, None]
    if w_rec.ndim != 4 or w_in.ndim != 4:
        raise ValueError(
            "w_rec must be [N, H, H] or [N, gates, H, H] and w_in [N, H, I] or [N, gates, H, I]; "
            f"got {tuple(w_rec.shape)} and {tuple(w_in.shape)}"
        )
    return w_rec, w_in


def _check(w_rec: torch.Tensor, w_in: torch.Tensor, w_out: torch.Tensor) -> None:
    n, gates, hidden, hidden2 = w_rec.shape
    if hidden != hidden2:
        raise ValueError(f"recurrent blocks must be square [H, H], got {tuple(w_rec.shape[-2:])}")
    if w_in.shape[:3] != (n, gates, hidden):
        raise ValueError(
            f"w_in must be [N={n}, gates={gates}, H={hidden}, I], got {tuple(w_in.shape)}"
        )
    if w_out.ndim != 3 or w_out.shape[0] != n or w_out.shape[2] != hidden:
        raise ValueError(f"w_out must be [N={n}, O, H={hidden}], got {tuple(w_out.shape)}")
    if n < 2:
        raise ValueError(f"need at least 2 networks to compare, got {n}")


def _unit_features(w_rec: torch.Tensor, signs: bool) -> torch.Tensor:
    """Relabelling-invariant per-unit features ``[N, H, F]`` from the recurrent blocks."""
    hidden = w_rec.shape[-1]
    off = ~torch.eye(hidden, dtype=torch.bool)
    diag = torch.diagonal(w_rec, dim1=-2, dim2=-1)  # [N, G, H]
    incoming = w_rec[..., off].reshape(*w_rec.shape[:-2], hidden, hidden - 1)
    outgoing = w_rec.mT[..., off].reshape(*w_rec.shape[:-2], hidden, hidden - 1)
    if signs:
        incoming, outgoing = incoming.abs(), outgoing.abs()
    parts = [diag[..., None], incoming.sort(dim=-1).values, outgoing.sort(dim=-1).values]
    features = torch.cat(parts, dim=-1)  # [N, G, H, F]
    return features.transpose(1, 2).reshape(w_rec.shape[0], hidden, -1)


def _assign(scores: np.ndarray, signs: bool) -> tuple[np.ndarray, np.ndarray]:
    """Signed permutations maximizing ``Σ_i s_i scores[i, π(i)]`` for each pair ``[P, H, H]``."""
    gain = np.abs(scores) if signs else scores
    perms = np.stack([linear_sum_assignment(g, maximize=True)[1] for g in gain])
    chosen = np.take_along_axis(scores, perms[..., None], axis=-1)[..., 0]
    unit_signs = np.where(chosen < 0, -1.0, 1.0) if signs else np.ones_like(chosen)
    return perms, unit_signs


def _signed_perm(perms: np.ndarray, unit_signs: np.ndarray) -> torch.Tensor:
    """``P[p, i, π(i)] = s_i``: maps network 2's units onto network 1's."""
    pairs, hidden = perms.shape
    out = torch.zeros(pairs, hidden, hidden, dtype=torch.float64)
    out.scatter_(-1, torch.from_numpy(perms)[..., None], torch.from_numpy(unit_signs)[..., None])
    return out


def _objective(p, r1, r2, i1, i2, o1, o2) -> torch.Tensor:
    pt = p.mT[:, None]
    rec = (r1 - p[:, None] @ r2 @ pt).square().sum(dim=(-1, -2, -3))
    inp = (i1 - p[:, None] @ i2).square().sum(dim=(-1, -2, -3))
    out = (o1 - o2 @ p.mT).square().sum(dim=(-1, -2))
    return rec + inp + out


def match_hidden_units(
    w_rec: torch.Tensor,
    w_in: torch.Tensor,
    w_out: torch.Tensor,
    *,
    signs: bool = True,
    refine_steps: int = 20,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Align every pair ``i < j`` of ``N`` networks; returns ``(P [pairs, H, H], D² [pairs])``.

    ``P`` is the signed permutation that maps network ``j``'s units onto network ``i``'s and
    ``D²`` the squared weight distance it achieves (see the module docstring).
    """
    w_rec, w_in = _as_gated(w_rec.detach().double(), w_in.detach().double())
    w_out = w_out.detach().double()
    _check(w_rec, w_in, w_out)
    if refine_steps < 0:
        raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
    left, right = pair_indices(w_rec.shape[0])
    r1, r2, i1, i2 = w_rec[left], w_rec[right], w_in[left], w_in[right]
    o1, o2 = w_out[left], w_out[right]
    # 1. Hungarian on per-unit features: invariant part as a distance, sign-flippable part as a dot.
    feats = _unit_features(w_rec, signs)
    invariant = torch.cdist(feats[left], feats[right]).square()
    io1 = torch.cat([i1.transpose(1, 2).flatten(2), o1.mT], dim=-1)  # [P, H, G*I + O]
    io2 = torch.cat([i2.transpose(1, 2).flatten(2), o2.mT], dim=-1)
    dots = io1 @ io2.mT
    # -cost up to per-unit constants: maximize 2|g1·g2| - ‖f1 - f2‖² (or 2 g1·g2 without signs).
    linear = (2 * dots.abs() if signs else 2 * dots) - invariant
    perms, unit_signs = _assign(linear.numpy(), signs=False)
    chosen = np.take_along_axis(dots.numpy(), perms[..., None], axis=-1)[..., 0]
    unit_signs = np.where(chosen < 0, -1.0, 1.0) if signs else unit_signs
    p = _signed_perm(perms, unit_signs)
    best = _objective(p, r1, r2, i1, i2, o1, o2)
    # 2. Refinement by linearized quadratic assignment; accept only improving steps.
    for _ in range(refine_steps):
        pg = p[:, None]
        grad = (r1 @ pg @ r2.mT + r1.mT @ pg @ r2).sum(1) + (i1 @ i2.mT).sum(1) + o1.mT @ o2
        candidate = _signed_perm(*_assign(grad.numpy(), signs))
        value = _objective(candidate, r1, r2, i1, i2, o1, o2)
        improved = value < best - 1e-12 * best.clamp_min(1.0)
        if not improved.any():
            break
        p = torch.where(improved[:, None, None], candidate, p)
        best = torch.minimum(value, best)
    return p, best.clamp_min(0.0)


def weight_distances(
    w_rec: torch.Tensor,
    w_in: torch.Tensor,
    w_out: torch.Tensor,
    *,
    signs: bool = True,
    refine_steps: int = 20,
) -> torch.Tensor:
    """Symmetric ``[N, N]`` relative weight distances ``d = D / sqrt(‖θᵢ‖² + ‖θⱼ‖²)``.

    ``w_rec [N, H, H]`` (or ``[N, gates, H, H]``), ``w_in [N, H, I]`` (or ``[N, gates, H, I]``),
    ``w_out [N, O, H]``. ``signs=True`` also allows flipping a unit's sign, a symmetry only for
    odd nonlinearities (tanh RNNs); use ``signs=False`` for ReLU, GRU or LSTM networks.
    """
    _, squared = match_hidden_units(w_rec, w_in, w_out, signs=signs, refine_steps=refine_steps)
    norms = sum(w.detach().double().flatten(1).square().sum(1) for w in (w_rec, w_in, w_out))
    left, right = pair_indices(w_rec.shape[0])
    relative = (squared / (norms[left] + norms[right]).clamp_min(1e-30)).sqrt()
    return square_from_pairs(relative, w_rec.shape[0])
