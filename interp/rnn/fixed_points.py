"""Find the fixed and slow points of a recurrent model (Sussillo & Barak 2013; FixedPointFinder).

For a constant input ``u`` a fixed point satisfies ``h* = step(h*, u)``. Following
FixedPointFinder (Golub & Sussillo 2018), :func:`find_fixed_points` minimises

    q(h) = ½ ‖step(h, u) − h‖²

from many starting states at once (states visited on real trajectories plus Gaussian noise),
keeps every point whose q falls below ``q_tol`` (fixed points) or below ``slow_tol`` (slow
points, flagged), merges duplicates, drops outliers and linearises the dynamics at each point.

Optimiser (``method``):

- ``"adam"``: the reference method — Adam on q, all starts in one batch. Unlike the reference the
  learning rate decays *per point* (×``lr_decay`` after ``lr_patience`` steps without improvement)
  and every point freezes (stops moving) once ``q < q_tol``.
- ``"lm"``: batched Levenberg–Marquardt on the residual ``r(h) = step(h, u) − h``:
  ``δ = −(AᵀA + μI)⁻¹ Aᵀ r`` with ``A = ∂step/∂h − I`` (from ``vmap(jacrev)``), μ adapted per
  point (÷3 on success, ×4 on failure). Gauss–Newton converges quadratically near a fixed point
  where first-order Adam crawls; the damping keeps it a descent method far away.
  It is the default: on the 3-bit flip-flop nets (16 units, 1,024 starts) it converged more
  starts in less time than Adam (tanh RNN: all 1,024 starts in 10 LM steps, 0.4 s; GRU: 955
  starts in 100 LM steps, 4.6 s, against 717 after 5,000 Adam steps, 36 s; 1 CPU thread).
  See analyses/benchmarks/fixed_points.py.
- ``"adam+lm"``: Adam until ``q < lm_start``, then LM to polish. LM costs an ``H x H`` Jacobian and
  solve per point and step, so for very wide nets a cheap first-order phase pays off.

Everything is one batched computation over the starts: no Python loop over points.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from torch import Tensor, nn
from torch.func import jacrev, vmap

from interp.errors import InvalidArgumentError, NonFiniteError
from interp.rnn.fixed_point_search import adam_phase, failure_counts, lm_phase, per_state_step
from interp.rnn.fixed_points_result import FixedPoints, classify_points
from interp.rnn.protocol import Recurrent, check_recurrent, unroll
from interp.rnn.tasks import Task, split_generator

METHODS = ("adam", "lm", "adam+lm")
__all__ = ["METHODS", "FixedPoints", "adam_phase", "find_fixed_points", "lm_phase"]


def _merge_duplicates(
    points: Tensor, inputs: Tensor, q: Tensor, tol: float, chunk: int = 1024
) -> Tensor:
    """Indices to keep: points within ``tol`` (L2 over ``[h; u]``) form groups; keep each group's lowest q.

    Groups are connected components of the ``distance ≤ tol`` graph (so chains of near-identical
    points count as one point), computed chunk by chunk to bound memory.
    """
    n = points.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    xu = torch.cat([points, inputs], dim=-1).cpu()
    rows, cols = [], []
    for start in range(0, n, chunk):
        near = torch.cdist(xu[start : start + chunk], xu) <= tol
        r, c = near.nonzero(as_tuple=True)
        rows.append(r + start)
        cols.append(c)
    row, col = torch.cat(rows).numpy(), torch.cat(cols).numpy()
    graph = coo_matrix((np.ones(len(row), dtype=np.int8), (row, col)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    labels_t = torch.as_tensor(labels, dtype=torch.long)
    order = torch.argsort(q.cpu(), stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n)
    best = torch.full((int(labels.max()) + 1,), n, dtype=torch.long).scatter_reduce(
        0, labels_t, rank, "amin"
    )
    return torch.sort(order[best]).values


def _starts(states: Tensor, n_starts: int, noise: float, generator: torch.Generator) -> Tensor:
    flat = states.reshape(-1, states.shape[-1])
    if flat.shape[0] >= n_starts:
        index = torch.randperm(flat.shape[0], generator=generator)[:n_starts]
    else:
        index = torch.randint(0, flat.shape[0], (n_starts,), generator=generator)
    picked = flat[index]
    return picked + noise * torch.randn(picked.shape, generator=generator, dtype=picked.dtype)


def _prepare_model(model: object, dtype: torch.dtype | None) -> tuple[Recurrent, torch.dtype]:
    """The model to optimise and the dtype to work in.

    An ``nn.Module`` is copied, cast to ``dtype`` (default float64) and frozen. Any other protocol
    object cannot be cast, so it runs in its own dtype (that of its ``initial_state``); asking for
    a different one is an error rather than a dtype clash deep inside ``step``.
    """
    check_recurrent(model)
    if isinstance(model, nn.Module):
        dtype = torch.float64 if dtype is None else dtype
        model = copy.deepcopy(model).to(dtype).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model, dtype
    own = model.initial_state(1).dtype
    if dtype is not None and dtype != own:
        raise TypeError(
            f"{type(model).__name__} is not an nn.Module, so find_fixed_points cannot cast it to "
            f"{dtype}; its states are {own}. Pass dtype={own} (or dtype=None to use the model's "
            f"own), or build the model in {dtype}."
        )
    return model, own


def _device(model: Recurrent) -> torch.device:
    return model.initial_state(1).device


def _input_size(model: Recurrent) -> int | None:
    return getattr(model, "input_size", None)


def find_fixed_points(
    model: Recurrent,
    *,
    inputs: Tensor | None = None,
    initial_states: Tensor | None = None,
    task: Task | None = None,
    n_starts: int = 1024,
    noise: float = 0.5,
    seed: int = 0,
    method: str = "lm",
    adam_iterations: int = 500,
    lm_iterations: int = 100,
    lr: float = 0.1,
    lr_decay: float = 0.95,
    lr_patience: int = 2,
    q_tol: float = 1e-12,
    lm_start: float = 1e-6,
    slow_tol: float = 1e-6,
    unique_tol: float = 1e-3,
    outlier_factor: float = 10.0,
    marginal_tol: float = 1e-3,
    n_trajectories: int = 32,
    dtype: torch.dtype | None = None,
) -> FixedPoints:
    """Find fixed and slow points of ``model`` at constant input(s) ``inputs``.

    Starts that fail are counted in ``counts`` with the reason (``stalled``: no damped step
    lowers q any more; ``out_of_budget``: still improving when the iterations ran out;
    ``singular``: starts whose damped system was singular at least once, which were re-damped
    and went on). NaN or inf in the starts, the inputs, the weights or the model's step at the
    starts raise :class:`~interp.errors.NonFiniteError`: a search on them would report "no
    point converged" for a reason that has nothing to do with the dynamics.

    Args:
        model: anything implementing :class:`~interp.rnn.protocol.Recurrent` (interp nets, or
            ``as_recurrent(nn.GRU(...))``, LSTMs included: their state is ``[h; c]``), or any
            object with ``initial_state``/``step``/``readout``.
        inputs: the constant input: ``[I]`` for all starts, or ``[n_starts, I]`` one per start.
            Default zeros (the autonomous dynamics between pulses).
        initial_states: states visited by the model, any shape ``[..., H]`` (e.g. ``unroll``'s
            ``[B, T, H]``); starts are drawn from them and perturbed by ``noise``. If omitted,
            ``task`` is sampled (test split) and the model unrolled on it.
        n_starts, noise, seed: number of starts, std of the Gaussian perturbation, RNG seed.
        method: "lm" (Levenberg–Marquardt, default), "adam" (the reference) or "adam+lm".
        adam_iterations, lr, lr_decay, lr_patience: Adam phase budget and per-point plateau schedule.
        lm_iterations: Levenberg–Marquardt budget.
        q_tol: a point has converged (is a fixed point) when ``q < q_tol``.
        lm_start: with "adam+lm", a point leaves the Adam phase once ``q < lm_start`` (or when the
            Adam budget is spent) and LM polishes it to ``q_tol``.
        slow_tol: unconverged points with ``q < slow_tol`` are kept as slow points; the rest are dropped.
        unique_tol: points closer than this (L2 over ``[h; u]``) are one point (lowest q kept).
        outlier_factor: drop points farther from the starts' centroid than this many times the
            mean start-to-centroid distance.
        marginal_tol: modes with ``||λ| − 1| <= marginal_tol`` are marginal (line attractors,
            saturated units), only ``|λ| > 1 + marginal_tol`` counts as unstable; see
            :func:`~interp.rnn.fixed_points_result.classify_points` for the classes.
        n_trajectories: how many real trajectories to keep for the figure.
        dtype: the precision of the search. ``nn.Module`` models are copied and cast to it
            (default float64, so ``q_tol = 1e-12`` is meaningful); other protocol objects cannot
            be cast and run in their own dtype (default), so in float32 expect q to bottom out
            near ``1e-14 * H`` (rounding) and loosen ``q_tol`` for wide nets.
    """
    if method not in METHODS:
        raise InvalidArgumentError(f"method must be one of {METHODS}, got {method!r}")
    if n_starts < 1 or noise < 0 or not 0 < q_tol <= slow_tol:
        raise InvalidArgumentError("need n_starts >= 1, noise >= 0 and 0 < q_tol <= slow_tol")
    start_time = time.perf_counter()
    model, dtype = _prepare_model(model, dtype)
    visited, trajectories = _visited_states(
        model, initial_states, task, seed, n_trajectories, dtype
    )
    device = _device(model)
    _check_finite_weights(model)
    _check_finite("initial_states", visited)
    generator = torch.Generator().manual_seed(seed)
    starts = _starts(visited.cpu(), n_starts, noise, generator).to(device)
    u = _inputs(model, inputs, n_starts, dtype).to(device)
    _check_finite("inputs", u)
    with torch.no_grad():
        _check_finite("the model's step at the starts", model.step(starts, u))
        diagnostics: dict[str, Tensor] = {}
        h, q, iterations = _search(
            model,
            starts,
            u,
            method,
            diagnostics,
            adam_iterations=adam_iterations,
            lm_iterations=lm_iterations,
            lr=lr,
            lr_decay=lr_decay,
            lr_patience=lr_patience,
            q_tol=q_tol,
            lm_start=lm_start,
        )
        h, u_kept, q_kept, counts = _select(
            starts, h, u, q, diagnostics, q_tol, slow_tol, outlier_factor, unique_tol
        )
        result = _linearise(model, h, u_kept, q_kept, q_tol=q_tol, marginal_tol=marginal_tol)

    settings = {
        "n_starts": n_starts,
        "noise": noise,
        "seed": seed,
        "method": method,
        "adam_iterations": adam_iterations,
        "lm_iterations": lm_iterations,
        "lm_start": lm_start,
        "lr": lr,
        "lr_decay": lr_decay,
        "lr_patience": lr_patience,
        "q_tol": q_tol,
        "slow_tol": slow_tol,
        "unique_tol": unique_tol,
        "outlier_factor": outlier_factor,
        "marginal_tol": marginal_tol,
        "dtype": str(dtype),
        "iterations_run": iterations,
        "seconds": time.perf_counter() - start_time,
        "model": getattr(model, "config", type(model).__name__),
    }
    return FixedPoints(**result, counts=counts, settings=settings, trajectories=trajectories)


def _visited_states(
    model: Recurrent,
    initial_states: Tensor | None,
    task: Task | None,
    seed: int,
    n_trajectories: int,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor | None]:
    """States the model visits ``[..., H]`` (given, or from unrolling it on the task's test
    split) and the real trajectories kept for the figure (None unless ``[B, T, H]``)."""
    size = model.initial_state(1).shape[-1]
    if initial_states is None:
        if task is None:
            raise InvalidArgumentError(
                "pass initial_states (states the model visits, [..., H]) or a task to sample them from"
            )
        batch = task.sample(max(n_trajectories, 64), split_generator(seed, "test"), split="test")
        with torch.no_grad():
            initial_states = unroll(model, batch.x.to(_device(model), dtype))
    states = torch.as_tensor(initial_states).detach().to(dtype)
    if states.shape[-1] != size:
        raise InvalidArgumentError(
            f"initial_states must end in the state size {size}, got shape {tuple(states.shape)}"
        )
    return states, states[:n_trajectories].clone() if states.ndim == 3 else None


def _search(
    model: Recurrent,
    starts: Tensor,
    u: Tensor,
    method: str,
    diagnostics: dict[str, Tensor],
    *,
    adam_iterations: int,
    lm_iterations: int,
    lr: float,
    lr_decay: float,
    lr_patience: int,
    q_tol: float,
    lm_start: float,
) -> tuple[Tensor, Tensor, dict[str, int]]:
    """Run the chosen phases (Adam, Levenberg-Marquardt, or Adam then LM) from ``starts``:
    the points, their ``q`` (NaN read as inf) and the iterations each phase ran."""
    h, iterations = starts, {"adam": 0, "lm": 0}
    if method in ("adam", "adam+lm"):
        handoff = q_tol if method == "adam" else max(q_tol, lm_start)
        h, q, iterations["adam"] = adam_phase(
            model,
            h,
            u,
            iterations=adam_iterations,
            lr=lr,
            q_tol=handoff,
            lr_decay=lr_decay,
            lr_patience=lr_patience,
        )
    if method in ("lm", "adam+lm"):
        h, q, iterations["lm"] = lm_phase(
            model, h, u, iterations=lm_iterations, q_tol=q_tol, diagnostics=diagnostics
        )
    return h, torch.nan_to_num(q, nan=float("inf")), iterations


def _select(
    starts: Tensor,
    h: Tensor,
    u: Tensor,
    q: Tensor,
    diagnostics: dict[str, Tensor],
    q_tol: float,
    slow_tol: float,
    outlier_factor: float,
    unique_tol: float,
) -> tuple[Tensor, Tensor, Tensor, dict]:
    """Keep converged and slow points that are not outliers, merge duplicates; the counts say
    how many starts went where (and why the failed ones failed)."""
    converged, slow = q < q_tol, (q >= q_tol) & (q < slow_tol)
    keep = converged | slow
    centroid = starts.mean(0)
    radius = (starts - centroid).norm(dim=-1).mean()
    inlier = (h - centroid).norm(dim=-1) <= outlier_factor * radius
    counts = {
        "starts": len(starts),
        "converged": int(converged.sum()),
        "slow": int(slow.sum()),
        "not_converged": int((~keep).sum()),
        "outliers": int((keep & ~inlier).sum()),
        **failure_counts(~keep, diagnostics),
    }
    keep = keep & inlier
    h, u, q = h[keep], u[keep], q[keep]
    unique = _merge_duplicates(h, u, q, unique_tol)
    counts["duplicates"] = int(keep.sum()) - len(unique)
    counts["unique"] = len(unique)
    return h[unique], u[unique], q[unique], counts


def _check_finite(what: str, values: Tensor) -> None:
    bad = ~torch.isfinite(values)
    if bad.any():
        raise NonFiniteError(
            f"{what} hold {int(bad.sum())} NaN/inf value(s) of {values.numel()}; the fixed-point "
            "search needs finite numbers (check the net's weights and the states you pass)"
        )


def _check_finite_weights(model: Recurrent) -> None:
    if not isinstance(model, nn.Module):
        return  # other protocol objects are checked through their step at the starts
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise NonFiniteError(
            f"the model's weights hold NaN/inf in {', '.join(bad)}; a net whose training "
            "diverged has no meaningful fixed points (retrain it with a lower learning rate)"
        )


def _inputs(model: Recurrent, inputs: Tensor | None, n_starts: int, dtype: torch.dtype) -> Tensor:
    size = _input_size(model)
    if inputs is None:
        if size is None:
            raise ValueError(
                f"{type(model).__name__} has no input_size attribute; pass inputs= explicitly"
            )
        return torch.zeros(n_starts, size, dtype=dtype)
    inputs = torch.as_tensor(inputs, dtype=dtype)
    if size is not None and inputs.shape[-1] != size:
        raise ValueError(
            f"inputs must end in the model's input size {size}, got shape {tuple(inputs.shape)}"
        )
    if inputs.ndim == 1:
        return inputs.expand(n_starts, -1).clone()
    if inputs.ndim == 2 and inputs.shape[0] == n_starts:
        return inputs.clone()
    raise ValueError(
        f"inputs must be [input_size] or [n_starts={n_starts}, input_size], got {tuple(inputs.shape)}"
    )


def _linearise(
    model: Recurrent, h: Tensor, u: Tensor, q: Tensor, *, q_tol: float, marginal_tol: float
) -> dict:
    """Jacobians (state and input), sorted eigenvalues, stability classes, readouts, time constants."""
    size = h.shape[-1]
    if h.shape[0]:
        jac_h, jac_u = vmap(jacrev(per_state_step(model), argnums=(0, 1)))(h, u)
        eig = torch.linalg.eigvals(jac_h)
        order = torch.argsort(eig.abs(), dim=-1, descending=True, stable=True)
        eig = torch.gather(eig, -1, order)
        readouts = model.readout(h)
    else:
        jac_h = h.new_zeros(0, size, size)
        jac_u = h.new_zeros(0, size, u.shape[-1])
        eig = torch.zeros(0, size, dtype=torch.complex128)
        readouts = model.readout(model.initial_state(1))[:0]
    moduli = eig.abs()
    n_unstable, n_marginal, classes = classify_points(moduli, marginal_tol)
    return {
        "points": h,
        "inputs": u,
        "q": q,
        "jacobians": jac_h,
        "input_jacobians": jac_u,
        "eigenvalues_real": eig.real.to(h.dtype),
        "eigenvalues_imag": eig.imag.to(h.dtype),
        "time_constants": -1 / torch.log(moduli.to(h.dtype)),
        "n_unstable": n_unstable,
        "n_marginal": n_marginal,
        "readouts": readouts.detach(),
        "slow": q >= q_tol,
        "classes": classes,
    }
