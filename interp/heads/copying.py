"""Olsson et al.'s copying evaluator: does a head's OV circuit raise the logit of what it reads?

Definition used here (Olsson et al. 2022, "copying" column of their head table), for a sample of
``n`` distinct random tokens ``s_1..s_n`` run through the model as ``[BOS] s_1 .. s_n``:

1. For each head ``(l, h)`` and each sample position ``j``, take the head's output if it attended
   only to ``j``: ``o = v_{l,h,j} W_O^{l,h}`` (``z = v_j`` under full attention to ``j``), with
   ``v`` the head's real value vector at that position (GQA: the head's key/value group).
2. Direct path to the logits: through the final norm with its scale frozen, ``N(o) - N(0)`` (the
   model's own final norm module; subtracting ``N(0)`` removes a LayerNorm bias; the per-vector
   scale ``1/rms`` is a positive constant that cancels in step 4), then ``W_U``, keeping only the
   ``n`` sample tokens' logits ``g_1..g_n``.
3. Subtract the mean over the sample and apply ReLU: the raises ``u_t = max(0, g_t - mean(g))``.
4. Ratio of the raise on the attended token ``a = s_j`` to the raise on all tokens in the sample,
   with the attended token counted once more: ``u_a / (u_a + sum_t u_t)``, which lies in
   ``[0, 0.5]`` (0.5 when only the attended token is raised; 0 when it is not raised; 0 when
   nothing is raised). Averaged over positions and samples, then rescaled to ``[-1, 1]``:
   ``copying = 4 * mean_ratio - 1``.

A head that prefix-matches need not copy through its own OV circuit, so both scores are reported.
"""

from __future__ import annotations

import torch


def copy_ratios(sample_logits: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """Step 3-4 for logits ``[..., n]`` over the sample and the attended sample index ``[...]``.

    Returns ``u_a / (u_a + sum_t u_t)`` per leading index (0 where no token is raised).
    """
    raise_ = torch.relu(sample_logits - sample_logits.mean(-1, keepdim=True))
    on_attended = raise_.gather(-1, attended[..., None].expand(*raise_.shape[:-1], 1)).squeeze(-1)
    total = on_attended + raise_.sum(-1)
    return torch.where(total > 0, on_attended / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0)


def copying_scores(model, values: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """Copying score ``[L, H]`` from value vectors of the sample positions.

    ``values``: ``[L, B, n, H_kv, d_head]`` (``blocks.*.attn.hook_v`` at the sample positions);
    ``sample``: ``[B, n]`` the distinct sample tokens at those positions.
    """
    n_layers, batch, n, n_kv, d_head = values.shape
    if tuple(sample.shape) != (batch, n):
        raise ValueError(f"sample must be [batch, n] = [{batch}, {n}], got {tuple(sample.shape)}")
    if bool((sample.sort(-1).values[:, 1:] == sample.sort(-1).values[:, :-1]).any()):
        raise ValueError("copying needs distinct tokens within each sample")
    groups = model.n_heads // n_kv
    v = values.to(model.device, model.dtype).repeat_interleave(groups, dim=3)  # [L, B, n, H, dh]
    out = torch.einsum("lbjhe,lhed->lbjhd", v, model.W_O)  # head output under full attention to j
    direct = model.norm(None, "final", out) - model.norm(
        None, "final", torch.zeros_like(out[..., :1, :1, :1, :])
    )
    w_u = model.W_U[:, sample.to(model.device)]  # [d, B, n]
    logits = torch.einsum("lbjhd,dbs->lbjhs", direct, w_u).double()
    attended = torch.arange(n, device=logits.device).view(1, 1, n, 1).expand(*logits.shape[:-1])
    ratio = copy_ratios(logits, attended)  # [L, B, n, H]
    return (4.0 * ratio.mean(dim=(1, 2)) - 1.0).cpu()
