"""Gradient paths: ``||dy_i / dx_j||_F`` against the distance ``i - j``, by autograd.

Ghodsi 2025: attention connects every pair of positions through one softmax weight, so its
gradient paths do not decay with distance; a stable SSM's lag operators shrink like ``rho^(i-j)``
(``rho`` the spectral radius of ``A``), and so do its gradient paths. :func:`gradient_paths`
measures the full Jacobian of any map ``[T, d_in] -> [T, d_out]`` on a real input;
:func:`layer_gradient_paths` does it for one layer of a wrapped language model, from the layer's
input (``blocks.{l}.hook_resid_pre``) to what its mixer adds to the residual stream
(``hook_attn_out`` for attention, ``hook_mixer_out`` for an SSM).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go
import torch

from interp.errors import InvalidArgumentError
from interp.results import Result

MAX_JACOBIAN = 2**24  # entries of the [T, d_out, T, d_in] Jacobian computed exactly


def jacobian_norms(
    y: torch.Tensor, x: torch.Tensor, *, probes: int | None = None, chunk: int = 256, seed: int = 0
) -> torch.Tensor:
    """``N[i, j] = ||dy_i / dx_j||_F`` for ``y [T, d_out]`` computed from the leaf ``x [T, d_in]``
    (or ``[1, T, d_in]``).

    Exact (one backward pass per output coordinate, batched ``chunk`` at a time) while the
    Jacobian has at most :data:`MAX_JACOBIAN` entries or ``probes`` is None and it fits;
    otherwise (or with ``probes=k``) Hutchinson's estimate ``||J_ij||_F^2 = E ||v^T J_ij||^2``
    with ``k`` Gaussian vectors ``v`` per output position.
    """
    T, d_out = y.shape
    positions, d_in = x.shape[-2], x.shape[-1]
    exact = probes is None and T * d_out * positions * d_in <= MAX_JACOBIAN
    per_position = d_out if exact else (probes or 8)
    flat = y.reshape(-1)
    g = torch.Generator().manual_seed(seed)
    squares = torch.zeros(T * per_position, positions, dtype=torch.float64)
    for lo in range(0, T * per_position, chunk):
        rows = torch.arange(lo, min(lo + chunk, T * per_position))
        basis = torch.zeros(len(rows), T, d_out, dtype=torch.float64)
        where = rows // per_position
        if exact:
            basis[torch.arange(len(rows)), where, rows % d_out] = 1.0
        else:
            basis[torch.arange(len(rows)), where] = torch.randn(
                len(rows), d_out, generator=g, dtype=torch.float64
            )
        basis = basis.reshape(len(rows), -1).to(y.dtype).to(y.device)
        last = rows[-1] == T * per_position - 1
        try:
            (grads,) = torch.autograd.grad(
                flat, x, basis, retain_graph=not last, is_grads_batched=True
            )
        except RuntimeError:  # an op without a batching rule: one backward per direction
            grads = torch.stack(
                [torch.autograd.grad(flat, x, v, retain_graph=True)[0] for v in basis]
            )
        grads = grads.detach().double().reshape(len(rows), positions, d_in)
        squares[rows] = grads.pow(2).sum(-1).cpu()
    total = squares.reshape(T, per_position, positions).sum(1)
    return (total if exact else total / per_position).sqrt()


def by_distance(norms: torch.Tensor) -> torch.Tensor:
    """``profile[d]``: the mean over queries ``i`` of ``norms[i, i - d] / norms[i, i]``.

    Relative to each query's own position, so that a query-dependent scale (attention's
    ``1 / (i + 1)`` under a uniform pattern) does not read as decay: a stable LTI SSM gives
    ``rho^d`` exactly, distance-independent attention a flat 1. Queries whose ``norms[i, i]`` is 0
    are left out (NaN where none is left).
    """
    T = norms.shape[0]
    diagonal = norms.diagonal()
    profile = []
    for d in range(T):
        own = diagonal[d:]
        keep = own > 0
        ratio = norms.diagonal(-d)[keep] / own[keep]
        profile.append(
            ratio.mean() if keep.any() else torch.tensor(float("nan"), dtype=norms.dtype)
        )
    return torch.stack(profile)


def decay_rate(profile: torch.Tensor) -> float:
    """``rho`` of the least-squares fit ``log profile[d] = a + d log rho`` over ``d >= 1`` where
    the profile is positive (NaN with fewer than two such distances)."""
    d = torch.arange(len(profile), dtype=torch.float64)
    keep = (d >= 1) & (profile > 0)
    if int(keep.sum()) < 2:
        return float("nan")
    slope = np.polyfit(d[keep].numpy(), profile[keep].double().log().numpy(), 1)[0]
    return float(np.exp(slope))


@dataclass
class GradientPaths(Result):
    """``norms[i, j] = ||dy_i / dx_j||_F`` of a layer on one input; ``profile[d]`` the mean of
    ``norms[i, i - d] / norms[i, i]`` (:func:`by_distance`); ``rho`` the fitted per-step decay
    (1 = no decay with distance)."""

    norms: torch.Tensor
    profile: torch.Tensor
    rho: float
    kind: str
    layer: int | None = None
    settings: dict = field(default_factory=dict)

    def table(self) -> str:
        p = self.profile
        shown = ", ".join(f"{float(v):.3g}" for v in p[: min(8, len(p))])
        return (
            f"{self.kind} layer {self.layer}: mean ||dy_i/dx_(i-d)|| / ||dy_i/dx_i|| at d = 0..: "
            f"{shown}"
            f"{' ...' if len(p) > 8 else ''}\nfitted decay per step rho = {self.rho:.4g}"
        )

    def figure(self) -> go.Figure:
        return paths_figure({f"layer {self.layer} ({self.kind})": self.profile})


def paths_figure(profiles: dict[str, torch.Tensor]) -> go.Figure:
    fig = go.Figure()
    for name, profile in profiles.items():
        p = profile.double().cpu().numpy()
        fig.add_trace(go.Scatter(x=list(range(len(p))), y=np.maximum(p, 1e-300), name=name))
    fig.update_layout(
        title="Gradient paths: mean ||dy_i / dx_(i-d)|| / ||dy_i / dx_i|| against distance d",
        xaxis_title="distance d = i - j",
        yaxis_title="relative Jacobian norm",
        yaxis_type="log",
        template="plotly_white",
    )
    return fig


def _result(norms: torch.Tensor, kind: str, layer: int | None, settings: dict) -> GradientPaths:
    profile = by_distance(norms)
    return GradientPaths(norms, profile, decay_rate(profile), kind, layer, settings)


def gradient_paths(
    fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, kind: str = "function"
) -> GradientPaths:
    """Gradient paths of ``fn: [T, d_in] -> [T, d_out]`` at ``x`` (a float tensor)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise InvalidArgumentError("x must be a float tensor [T, d_in]")
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = fn(x)
        norms = jacobian_norms(y, x)
    return _result(norms, kind, None, {"length": x.shape[0]})


def layer_gradient_paths(
    lm, inputs, layer: int, *, output: str | None = None, probes: int | None = None
) -> GradientPaths:
    """Gradient paths of one layer of a wrapped LM on the first sequence of ``inputs``.

    The layer's input ``blocks.{layer}.hook_resid_pre`` is replaced by a leaf holding its own
    value (an edit), and ``output`` (default: the mixer's contribution, ``hook_mixer_out`` where
    the model offers it, else ``hook_attn_out``) is differentiated against it. Uses only
    ``lm.run``.
    """
    from interp.mixers.model import check_layer, mixer_kind

    check_layer(lm, layer)
    kind = mixer_kind(lm, layer)
    prefix = f"blocks.{layer}."
    out = output or prefix + ("hook_mixer_out" if kind == "selective" else "hook_attn_out")
    _, cache = lm.run(inputs, capture=prefix + "hook_resid_pre")
    leaf = cache[prefix + "hook_resid_pre"][:1].detach().clone().requires_grad_(True)
    tokens = inputs[:1] if isinstance(inputs, torch.Tensor) else inputs
    _, cache = lm.run(tokens, capture=out, edits={prefix + "hook_resid_pre": leaf}, grad=True)
    norms = jacobian_norms(cache[out][0], leaf, probes=probes)
    exact = probes is None and norms.numel() * lm.d_model**2 <= MAX_JACOBIAN
    settings = {"model": lm.name, "output": out, "estimate": "exact" if exact else "hutchinson"}
    return _result(norms, kind, layer, settings)
