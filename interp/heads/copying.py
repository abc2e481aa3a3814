"""Olsson et al.'s copying evaluator: does a head's OV circuit raise the logit of what it reads?

Olsson et al. 2022 ("In-context Learning and Induction Heads", transformer-circuits.pub; the
"copying" score of their head analyses): on a sample of random tokens, take the head's
direct-path contribution to the logits (through ``W_O``, the final norm and ``W_U``), subtract
the mean logit, apply ReLU, and take the ratio of the raise on the attended token to the raise on
all tokens in the sample; that ratio "ranges 0..0.5" and is rescaled to ``[-1, 1]``. Here, for
``n`` distinct random tokens ``s_1..s_n`` run through the model as ``[BOS] s_1 .. s_n``:

1. For each head ``(l, h)`` and each sample position ``j``, the head's output if it attended
   only to ``j``: ``o = v_{l,h,j} W_O^{l,h}``, with ``v`` the head's real value vector at that
   position (GQA: the head's key/value group).
2. Direct path: the model's own final norm with its scale frozen, ``N(o) - N(0)`` (subtracting
   ``N(0)`` removes a LayerNorm bias; the per-vector ``1/rms`` is a positive constant that
   cancels in step 4), then ``W_U``, keeping the ``n`` sample tokens' logits ``g_1..g_n``.
3. Centre on the sample mean, ``d_t = g_t - mean(g)``; the raises are ``u_t = max(0, d_t)``.
4. The ratio ``r = u_a / sum_t |d_t|`` for the attended token ``a = s_j``. Because the centred
   logits sum to zero, ``sum_t |d_t| = 2 sum_t u_t`` (raise and drop balance), so ``r`` lies in
   ``[0, 0.5]``: 0.5 when the attended token is the only one raised, 0 when it is not raised
   (or nothing moves). Averaged over positions and samples, rescaled: ``copying = 4 r - 1``.

Why this reading. The source gives the steps and the 0..0.5 range but no formula. ``u_a /
sum_t |d_t|`` is the only literal reading of "raise on the attended token / raise on all tokens"
for which that range holds without an extra term; it equals half of ``u_a / sum_t u_t``, the
ratio a public re-implementation of the evaluator computes (mean over the sample, ReLU, target
over total), so both readings give the same score ``copying = 2 u_a / sum_t u_t - 1``. (An
earlier version here used ``u_a / (u_a + sum_t u_t)``, an ad hoc construction that merely fits
the range; it scores a random head -0.85 rather than -0.92.) TransformerLens and ARENA do not
ship this evaluator (ARENA checks OV copying by the diagonal of the full ``W_E W_OV W_U``).

Chance level: a head whose raises ignore the attended token gives it, on average, ``1/n`` of the
raise, so ``copying ≈ 2/n - 1`` (-0.92 for ``n = 25``); a perfect copier scores +1.

A head that prefix-matches need not copy through its own OV circuit, so both scores are reported.

Families with a norm after attention (Gemma-2/3, OLMo-2): the head's output is taken before that
norm (``v W_O``, as TransformerLens does); the norm rescales the sum of all heads by an
input-dependent factor that no per-head linear map carries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from interp.models.protocol import LanguageModel


def copy_ratios(sample_logits: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """Steps 3-4 for logits ``[..., n]`` over the sample and the attended sample index ``[...]``.

    Returns ``u_a / sum_t |d_t|`` in ``[0, 0.5]`` per leading index (0 when no logit moves).
    """
    centred = sample_logits - sample_logits.mean(-1, keepdim=True)
    index = attended[..., None].expand(*centred.shape[:-1], 1)
    raised = torch.relu(centred.gather(-1, index).squeeze(-1))
    total = centred.abs().sum(-1)
    return torch.where(total > 0, raised / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0)


def copying_scores(
    model: LanguageModel, values: torch.Tensor, sample: torch.Tensor
) -> torch.Tensor:
    """Copying score ``[L, H]`` in ``[-1, 1]`` from value vectors of the sample positions.

    ``values``: ``[L, B, n, H_kv, d_head]`` (``blocks.*.attn.hook_v`` at the sample positions);
    ``sample``: ``[B, n]`` the distinct sample tokens at those positions.
    """
    return score_from_ratios(
        copying_ratio_sums(model, values, sample), values.shape[1] * values.shape[2]
    )


def score_from_ratios(ratio_sum: torch.Tensor, count: int) -> torch.Tensor:
    """The copying score ``4 * mean(r) - 1``: maps the ratio's range ``[0, 0.5]`` onto ``[-1, 1]``."""
    return 4.0 * ratio_sum / count - 1.0


def copying_ratio_sums(
    model: LanguageModel, values: torch.Tensor, sample: torch.Tensor
) -> torch.Tensor:
    """Sum over samples and positions of the ratios ``r`` (steps 1-4), ``[L, H]`` float64.

    Sums (not means) so that batches processed in chunks add up exactly.
    """
    n_layers, batch, n, n_kv, d_head = values.shape
    if tuple(sample.shape) != (batch, n):
        raise ValueError(f"sample must be [batch, n] = [{batch}, {n}], got {tuple(sample.shape)}")
    ordered = sample.sort(-1).values
    if bool((ordered[:, 1:] == ordered[:, :-1]).any()):
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
    return copy_ratios(logits, attended).sum(dim=(1, 2)).cpu()  # [L, H]
