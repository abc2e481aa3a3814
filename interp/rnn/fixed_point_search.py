"""The optimisers of the fixed-point search: batched Adam and Levenberg-Marquardt on
q(h) = ½ ‖step(h, u) − h‖² (see :mod:`interp.rnn.fixed_points` for the method and its choices),
and how failed starts are counted."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jacrev, vmap

from interp.rnn.protocol import Recurrent


def per_state_step(model: Recurrent) -> Callable[[Tensor, Tensor], Tensor]:
    def step(h: Tensor, u: Tensor) -> Tensor:
        return model.step(h.unsqueeze(0), u.unsqueeze(0)).squeeze(0)

    return step


def _q(model: Recurrent, h: Tensor, u: Tensor) -> Tensor:
    return 0.5 * (model.step(h, u) - h).pow(2).sum(-1)


def adam_phase(
    model: Recurrent,
    h: Tensor,
    u: Tensor,
    *,
    iterations: int,
    lr: float,
    q_tol: float,
    lr_decay: float = 0.95,
    lr_patience: int = 2,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor, int]:
    """Adam on q for every row of ``h`` at once; rows freeze when ``q < q_tol``.

    Returns ``(h, q, iterations_run)``. Each row keeps its own moments, step count and learning
    rate (plateau decay), so the batch behaves like independent runs of the same optimiser.
    """
    h = h.clone()
    m, v = torch.zeros_like(h), torch.zeros_like(h)
    steps = torch.zeros(h.shape[0], 1, dtype=h.dtype, device=h.device)
    rates = torch.full_like(steps, lr)
    best = torch.full((h.shape[0],), float("inf"), dtype=h.dtype, device=h.device)
    stale = torch.zeros(h.shape[0], dtype=torch.long, device=h.device)
    q = torch.full_like(best, float("inf"))
    run = 0
    for run in range(1, iterations + 1):  # noqa: B007  (iterations actually run are returned)
        with torch.enable_grad():
            h_var = h.detach().requires_grad_(True)
            q = _q(model, h_var, u)
            (grad,) = torch.autograd.grad(q.sum(), h_var)
        q = q.detach()
        active = q >= q_tol
        if not active.any():
            break
        improved = q < best
        best = torch.where(improved, q, best)
        stale = torch.where(improved, 0, stale + 1)
        decay = (stale > lr_patience) & active
        rates = torch.where(decay.unsqueeze(1), rates * lr_decay, rates)
        stale = torch.where(decay, 0, stale)
        a = active.unsqueeze(1)
        m = torch.where(a, betas[0] * m + (1 - betas[0]) * grad, m)
        v = torch.where(a, betas[1] * v + (1 - betas[1]) * grad * grad, v)
        steps = steps + a
        m_hat = m / (1 - betas[0] ** steps.clamp(min=1))
        v_hat = v / (1 - betas[1] ** steps.clamp(min=1))
        h = torch.where(a, h - rates * m_hat / (v_hat.sqrt() + eps), h)
    return h, _q(model, h, u).detach(), run


MAX_DAMPING = 1e12


def lm_phase(
    model: Recurrent,
    h: Tensor,
    u: Tensor,
    *,
    iterations: int,
    q_tol: float,
    damping: float = 1e-2,
    diagnostics: dict[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor, int]:
    """Batched Levenberg–Marquardt on ``r(h) = step(h, u) − h``; rows freeze when ``q < q_tol``.

    Singular Jacobians (saturated units make ``∂step/∂h − I`` rank-deficient) never stop the
    batch: a row whose damped system cannot be solved (``torch.linalg.solve_ex`` reports it, or
    the step is non-finite) is treated as a rejected step, so its damping μ grows ×4 until the
    system is regular or μ passes ``MAX_DAMPING`` (the row has stalled). Pass a dict as
    ``diagnostics`` to receive per-row masks ``singular`` (a solve failed at least once) and
    ``stalled`` (μ passed ``MAX_DAMPING`` before ``q < q_tol``).
    """
    jac = vmap(jacrev(per_state_step(model), argnums=0))
    eye = torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
    mu = torch.full((h.shape[0], 1, 1), damping, dtype=h.dtype, device=h.device)
    singular = torch.zeros(h.shape[0], dtype=torch.bool, device=h.device)
    q = _q(model, h, u)
    run = 0
    for run in range(1, iterations + 1):  # noqa: B007
        active = (q >= q_tol) & (mu.view(-1) < MAX_DAMPING)
        if not active.any():
            break
        r = model.step(h, u) - h
        a_mat = jac(h, u) - eye
        a_t = a_mat.transpose(-1, -2)
        normal = a_t @ a_mat
        # scale damping by the diagonal (Marquardt) plus a floor so flat directions stay bounded
        diag = torch.diagonal(normal, dim1=-2, dim2=-1).clamp(min=1e-6)
        solution, info = torch.linalg.solve_ex(
            normal + mu * torch.diag_embed(diag), (a_t @ r.unsqueeze(-1))
        )
        delta = -solution.squeeze(-1)
        solved = (info == 0) & torch.isfinite(delta).all(-1)
        singular |= ~solved & active
        candidate = h + torch.where(solved.unsqueeze(1), delta, torch.zeros_like(delta))
        q_new = _q(model, candidate, u)
        accept = (q_new < q) & active & solved
        h = torch.where(accept.unsqueeze(1), candidate, h)
        q = torch.where(accept, q_new, q)
        mu = torch.where(
            accept.view(-1, 1, 1),
            mu / 3,
            torch.where(active.view(-1, 1, 1), (mu * 4).clamp(min=1e-8), mu),
        )
    if diagnostics is not None:
        diagnostics["singular"] = singular
        diagnostics["stalled"] = (q >= q_tol) & (mu.view(-1) >= MAX_DAMPING)
    return h, q, run


def failure_counts(failed: Tensor, diagnostics: dict[str, Tensor]) -> dict[str, int]:
    """Why the starts in ``failed`` did not converge (LM phase only; Adam runs out of budget)."""
    stalled = diagnostics.get("stalled", torch.zeros_like(failed)) & failed
    singular = diagnostics.get("singular", torch.zeros_like(failed))
    return {
        "stalled": int(stalled.sum()),
        "out_of_budget": int((failed & ~stalled).sum()),
        "singular": int(singular.sum()),
    }
