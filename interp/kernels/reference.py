"""Materialized-softmax reference for :func:`interp.kernels.attention_stats`.

Builds the full [B, Hq, Tq, Tk] probability matrix (float64 by default) straight from the
definitions, with the keys repeated per query head. It is the yardstick for the tests and the
"materialized" baseline of the benchmarks; never use it on long sequences (memory O(Tq·Tk)).
"""

from __future__ import annotations

import torch

from interp.kernels.api import AttentionStats, validate


def reference_attention_stats(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    scale: float | None = None,
    causal: bool = True,
    key_padding_mask: torch.Tensor | None = None,
    targets: torch.Tensor | None = None,
    key_ranges: torch.Tensor | None = None,
    window: int | None = None,
    softcap: float | None = None,
    sinks: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> AttentionStats:
    """Same contract as :func:`interp.kernels.attention_stats`, computed from a full softmax.

    The logits follow Hugging Face's eager attention: ``scale * q·k``, then the softcap
    (Gemma 2), then the masks (causal, sliding window ``i - window < j <= i``, padding); the sinks
    (GPT-OSS) are one more column of the softmax that is dropped after it.
    """
    p = validate(
        q,
        k,
        scale=scale,
        causal=causal,
        key_padding_mask=key_padding_mask,
        targets=targets,
        key_ranges=key_ranges,
        window=window,
        softcap=softcap,
        sinks=sinks,
    )
    tq, tk = q.shape[2], k.shape[2]
    keys = p.k.to(dtype).repeat_interleave(p.group, dim=1)
    logits = p.scale * (p.q.to(dtype) @ keys.transpose(-1, -2))  # [B, Hq, Tq, Tk]
    if p.softcap is not None:
        logits = p.softcap * torch.tanh(logits / p.softcap)

    allowed = torch.ones(q.shape[0], 1, tq, tk, dtype=torch.bool, device=q.device)
    pos = torch.arange(tq, device=q.device) + p.offset  # absolute query positions
    j = torch.arange(tk, device=q.device)
    if p.causal:
        allowed = allowed & (j[None, :] <= pos[:, None])
    if p.window is not None:
        allowed = allowed & (j[None, :] > pos[:, None] - p.window)
    if p.key_padding_mask is not None:
        allowed = allowed & p.key_padding_mask[:, None, None, :]
    logits = logits.masked_fill(~allowed, -torch.inf)

    if p.sinks is None:
        lse = torch.logsumexp(logits, dim=-1)
    else:  # the sink is one more softmax column, without a key
        sink = p.sinks.to(dtype)[None, :, None, None].expand(*logits.shape[:-1], 1)
        lse = torch.logsumexp(torch.cat([logits, sink], dim=-1), dim=-1)
    dead = ~allowed.any(dim=-1).expand_as(lse)
    probs = torch.where(dead[..., None], 0.0, torch.exp(logits - lse[..., None]))
    argmax = torch.where(dead, -1, logits.argmax(dim=-1))
    max_prob = probs.amax(dim=-1)

    target_prob = None
    if p.targets is not None:
        tgt = p.targets[:, None].expand(-1, q.shape[1], -1, -1)
        picked = probs.gather(-1, tgt.clamp(min=0))
        target_prob = torch.where(tgt >= 0, picked, 0.0)
    range_mass = None
    if p.key_ranges is not None:
        inside = (j[None, None, :] >= p.key_ranges[..., :1]) & (
            j[None, None, :] < p.key_ranges[..., 1:]
        )
        range_mass = torch.einsum("bhqk,brk->bhqr", probs, inside.to(dtype))
    return AttentionStats(lse, argmax, max_prob, target_prob, range_mass)
