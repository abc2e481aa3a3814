"""Chunked torch implementation of :func:`interp.kernels.attention_stats` (CPU, or no Triton).

Queries are processed in chunks sized so that one chunk's logits hold at most ``chunk_elements``
numbers; all heads of a chunk go through one batched matmul (grouped-query heads share their key
head through a reshape, never a copy of the keys). Under causal masking a chunk only multiplies
against the keys its last query can see, so the masked upper triangle costs nothing; under a
sliding window it also starts at the first key its first query can see, so a chunk's logits are
at most ``rows + window - 1`` keys wide whatever the sequence length. Per chunk, with ``s_j`` the
(softcapped) logits and ``c`` the head's sink logit (``-inf`` without sinks):

    m = max_j s_j (with its argmax),  M = max(m, c),  e_j = exp(s_j - M),
    Z = sum_j e_j + exp(c - M),  lse = M + log Z,  max_prob = exp(m - M) / Z,
    target_prob = e_t / Z,  range_mass = (sum_{j in r} e_j) / Z

Range sums are plain sums over the key slices (a cumulative sum would lose small masses to
cancellation; a matmul against a 0/1 indicator reads every key and is much slower on CPU).
"""

from __future__ import annotations

import math

import torch

from interp.kernels.api import AttentionStats, StatsProblem

# Logits per query chunk: 2**20 float32 = 4 MiB stays in cache on CPU; a GPU wants big launches.
CPU_CHUNK_ELEMENTS = 1 << 20
CUDA_CHUNK_ELEMENTS = 1 << 26
# Width of the key blocks whose maxima locate the argmax (see _row_max_argmax).
_ARGMAX_BLOCK = 64


def _row_max_argmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and first argmax over the last dim, as ``logits.max(-1)`` but several times faster.

    An index-tracking reduction over the whole row is slow on CPU; a plain ``amax`` is
    vectorized. So take the max of each block of ``_ARGMAX_BLOCK`` keys, pick the first block
    holding the row max, and look for the first maximal key only inside that block.
    """
    width = logits.shape[-1]
    full = width // _ARGMAX_BLOCK * _ARGMAX_BLOCK
    parts = []
    if full:
        parts.append(logits[..., :full].unflatten(-1, (-1, _ARGMAX_BLOCK)).amax(dim=-1))
    if full < width:
        parts.append(logits[..., full:].amax(dim=-1, keepdim=True))
    row_max, block = torch.cat(parts, dim=-1).max(dim=-1)
    offsets = torch.arange(_ARGMAX_BLOCK, device=logits.device)
    cols = (block[..., None] * _ARGMAX_BLOCK + offsets).clamp_(max=width - 1)
    within = logits.gather(-1, cols).max(dim=-1, keepdim=True).indices  # faster than argmax
    return row_max, cols.gather(-1, within)[..., 0]


def _chunk_rows(per_row: int, tk: int, window: int | None) -> int:
    """Query rows per chunk so that rows x (keys a chunk reads) stays within ``per_row`` logits
    per (batch, head): a chunk of n rows reads at most ``min(Tk, n + window - 1)`` keys."""
    rows = per_row // tk
    if window is not None:  # largest n with n * (n + window - 1) <= per_row
        w = window - 1
        rows = max(rows, (math.isqrt(w * w + 4 * per_row) - w) // 2)
    return max(1, rows)


def _visibility_bias(
    pos: torch.Tensor, k0: int, k1: int, window: int | None, dtype: torch.dtype
) -> torch.Tensor:
    """[n, k1 - k0]: 0 where key k0 + c is visible from absolute position ``pos`` (causal, and
    inside the window), -inf elsewhere; adding it beats a masked_fill."""
    cols = torch.arange(k0, k1, device=pos.device)
    hidden = cols[None, :] > pos[:, None]
    if window is not None:
        hidden |= cols[None, :] <= pos[:, None] - window
    bias = torch.zeros(hidden.shape, dtype=dtype, device=pos.device)
    return bias.masked_fill_(hidden, -torch.inf)


def torch_attention_stats(
    problem: StatsProblem, *, chunk_elements: int | None = None
) -> AttentionStats:
    """Compute the statistics of a validated problem, one query chunk at a time.

    Peak extra memory is about ``chunk_elements`` logits (at least one query row over all heads;
    default ``CPU_CHUNK_ELEMENTS``, or ``CUDA_CHUNK_ELEMENTS`` on a GPU) plus the O(B·H·Tq·(S+R))
    outputs.
    """
    q, k = problem.q, problem.k
    if chunk_elements is None:
        chunk_elements = CUDA_CHUNK_ELEMENTS if q.is_cuda else CPU_CHUNK_ELEMENTS
    b, hq, tq, d = q.shape
    hkv, tk = k.shape[1], k.shape[2]
    group, offset, window = problem.group, problem.offset, problem.active_window
    cdtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    device = q.device

    # [B*Hkv, D, Tk], a view for contiguous float32 keys
    keys_t = k.to(cdtype).reshape(b * hkv, tk, d).transpose(1, 2)
    pad = problem.key_padding_mask
    pad_bias = None  # 0 on real keys, -inf on padding: an add is faster than masked_fill
    if pad is not None and not bool(pad.all()):  # nothing padded: skip the masking pass
        pad_bias = torch.zeros(b, 1, 1, tk, dtype=cdtype, device=device)
        pad_bias.masked_fill_(~pad[:, None, None, :], -torch.inf)
    sinks = None if problem.sinks is None else problem.sinks.to(cdtype)[None, :, None]  # [1,H,1]
    targets, ranges = problem.targets, problem.key_ranges
    spans, span_index = [], None
    if ranges is not None and ranges.shape[1]:
        # Sum each distinct [start, end) once over all batches and heads (slice sums read only the
        # keys inside the range), then pick each batch's own ranges by index.
        distinct, inverse = torch.unique(ranges.reshape(-1, 2), dim=0, return_inverse=True)
        spans = distinct.tolist()
        span_index = inverse.view(b, 1, 1, -1)

    lse = torch.empty(b, hq, tq, dtype=cdtype, device=device)
    argmax = torch.empty(b, hq, tq, dtype=torch.long, device=device)
    max_prob = torch.empty(b, hq, tq, dtype=cdtype, device=device)
    target_prob = (
        None if targets is None else q.new_zeros(b, hq, tq, targets.shape[2], dtype=cdtype)
    )
    range_mass = None if ranges is None else q.new_zeros(b, hq, tq, ranges.shape[1], dtype=cdtype)

    rows = _chunk_rows(max(1, chunk_elements // (b * hq)), tk, window)
    width = tk if window is None else min(tk, min(rows, tq) + window - 1)
    # One buffer for every chunk's logits: fresh allocations would page-fault on each chunk.
    buffer = torch.empty(b * hq * min(rows, tq) * width, dtype=cdtype, device=device)
    for c0 in range(0, tq, rows):
        c1 = min(tq, c0 + rows)
        n = c1 - c0
        kend = min(tk, offset + c1) if problem.causal else tk  # >= 1 since Tq <= Tk
        kstart = 0 if window is None else max(0, offset + c0 - window + 1)  # first key in view
        span = kend - kstart
        q_chunk = (q[:, :, c0:c1].to(cdtype) * problem.scale).reshape(b * hkv, group * n, d)
        logits = buffer[: b * hq * n * span].view(b * hkv, group * n, span)
        torch.bmm(q_chunk, keys_t[..., kstart:kend], out=logits)
        logits = logits.view(b, hq, n, span)
        if problem.softcap is not None:  # Gemma 2: cap * tanh(logit / cap), before any mask
            logits.div_(problem.softcap).tanh_().mul_(problem.softcap)

        pos = torch.arange(offset + c0, offset + c1, device=device)
        if window is not None:  # keys before the window and after the query: one bias
            logits.add_(_visibility_bias(pos, kstart, kend, window, cdtype))
        elif problem.causal and offset + c0 + 1 < kend:  # only the triangle after query c0
            first_masked = offset + c0 + 1
            logits[..., first_masked:].add_(_visibility_bias(pos, first_masked, kend, None, cdtype))
        if pad_bias is not None:
            logits.add_(pad_bias[..., kstart:kend])

        row_max, row_arg = _row_max_argmax(logits)
        dead = row_max == -torch.inf  # every key masked
        if sinks is None:
            shift = torch.where(dead, torch.zeros_like(row_max), row_max)
        else:  # shift by the max over keys and sink, so that exp(sink - shift) cannot overflow
            shift = torch.maximum(row_max, sinks)
        exps = logits.sub_(shift[..., None]).exp_()  # in place: e_j = exp(s_j - M)
        total = exps.sum(dim=-1)
        if sinks is not None:
            total += (sinks - shift).exp()
        inv_total = torch.where(dead, torch.zeros_like(total), total.reciprocal())

        lse[:, :, c0:c1] = shift + total.log()  # -inf on dead rows without a sink
        argmax[:, :, c0:c1] = torch.where(dead, -1, row_arg + kstart)
        max_prob[:, :, c0:c1] = inv_total if sinks is None else (row_max - shift).exp() * inv_total

        if target_prob is not None and targets.shape[2]:
            tgt = targets[:, None, c0:c1] - kstart  # [B, 1, n, S], relative to the view
            valid = (targets[:, None, c0:c1] >= 0) & (tgt >= 0) & (tgt < span)
            idx = torch.where(valid, tgt, 0).expand(b, hq, n, tgt.shape[-1])
            picked = exps.gather(-1, idx) * inv_total[..., None]
            target_prob[:, :, c0:c1] = torch.where(valid, picked, 0.0)
        if spans:
            sums = [exps[..., max(lo, kstart) - kstart : max(0, min(hi, kend) - kstart)].sum(-1)
                    for lo, hi in spans]  # fmt: skip
            mass = torch.stack(sums, -1).gather(-1, span_index.expand(b, hq, n, -1))
            range_mass[:, :, c0:c1] = mass * inv_total[..., None]

    return AttentionStats(lse, argmax, max_prob, target_prob, range_mass)
