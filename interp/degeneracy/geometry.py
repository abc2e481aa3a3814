"""State-space geometry distances between ensemble members (simpler alternatives to DSA).

Both compare the *sets of states* the networks visit on the same inputs, ignoring time order:

- linear CKA (Kornblith et al. 2019): with centered state matrices ``X [M, n]``, ``Y [M, m]``,
  ``CKA = ‖Yᵀ X‖²_F / (‖Xᵀ X‖_F ‖Yᵀ Y‖_F)``; reported as the distance ``1 − CKA``. Invariant to
  orthogonal transforms and isotropic scaling.
- angular Procrustes shape distance (Williams et al. 2021): with centered, unit-Frobenius-norm
  ``X``, ``Y``, ``d = arccos( max_{Q orthogonal} tr(Xᵀ Y Q) ) = arccos(‖Xᵀ Y‖_*)`` (nuclear norm).
  A proper metric on shapes, in radians.

Every pair is computed at once from one batched cross-covariance ``Xᵢᵀ Xⱼ``.
"""

from __future__ import annotations

import torch

from interp.degeneracy.pairs import pair_indices, square_from_pairs


def _prepare(states: torch.Tensor) -> torch.Tensor:
    """``[N, ..., n]`` states -> centered float64 ``[N, M, n]`` with unit Frobenius norm."""
    if states.ndim < 3:
        raise ValueError(
            f"states must be [N, ..., n] (at least 3-D, e.g. [N, B, T, H]), got {tuple(states.shape)}"
        )
    if states.shape[0] < 2:
        raise ValueError(f"need at least 2 networks to compare, got {states.shape[0]}")
    flat = states.detach().double().reshape(states.shape[0], -1, states.shape[-1])
    if not torch.isfinite(flat).all():
        raise ValueError("states contain NaN or inf; check the trained networks")
    flat = flat - flat.mean(dim=1, keepdim=True)
    return flat / torch.linalg.matrix_norm(flat).clamp_min(1e-30)[:, None, None]


def _cross(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    left, right = pair_indices(flat.shape[0])
    return flat[left].mT @ flat[right], left, right


def cka_distances(states: torch.Tensor) -> torch.Tensor:
    """Symmetric ``[N, N]`` linear-CKA distances ``1 − CKA`` between ``states [N, ..., n]``."""
    flat = _prepare(states)
    cross, left, right = _cross(flat)
    gram_norm = torch.linalg.matrix_norm(flat.mT @ flat)  # ‖XᵀX‖_F per network
    cka = torch.linalg.matrix_norm(cross).square() / (gram_norm[left] * gram_norm[right]).clamp_min(
        1e-30
    )
    return square_from_pairs((1.0 - cka).clamp_min(0.0), flat.shape[0])


def procrustes_distances(states: torch.Tensor) -> torch.Tensor:
    """Symmetric ``[N, N]`` angular Procrustes distances (radians) between ``states [N, ..., n]``."""
    flat = _prepare(states)
    cross, _, _ = _cross(flat)
    nuclear = torch.linalg.svdvals(cross).sum(dim=-1)
    return square_from_pairs(torch.arccos(nuclear.clamp(-1.0, 1.0)), flat.shape[0])
