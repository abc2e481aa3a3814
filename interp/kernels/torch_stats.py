"""Chunked torch implementation of :func:`interp.kernels.attention_stats` (CPU, or no Triton).

Queries are processed in chunks sized so that one chunk's logits hold at most ``chunk_elements``
numbers; all heads of a chunk go through one batched matmul (grouped-query heads share their key
head through a reshape, never a copy of the keys). Under causal masking a chunk only multiplies
against the keys its last query can see, so the masked upper triangle costs nothing. Per chunk:

    m = max_j s_j (with its argmax),  e_j = exp(s_j - m),  Z = sum_j e_j,
    lse = m + log Z,  max_prob = 1 / Z,  target_prob = e_t / Z,  range_mass = (sum_{j in r} e_j) / Z

Range sums are plain sums over the key slices (a cumulative sum would lose small masses to
cancellation; a matmul against a 0/1 indicator reads every key and is much slower on CPU).
"""

from __future__ import annotations

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
    group, offset = problem.group, problem.offset
    cdtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    device = q.device

    # [B*Hkv, D, Tk], a view for contiguous float32 keys
    keys_t = k.to(cdtype).reshape(b * hkv, tk, d).transpose(1, 2)
    pad = problem.key_padding_mask
    pad_bias = None  # 0 on real keys, -inf on padding: an add is faster than masked_fill
    if pad is not None and not bool(pad.all()):  # nothing padded: skip the masking pass
        pad_bias = torch.zeros(b, 1, 1, tk, dtype=cdtype, device=device)
        pad_bias.masked_fill_(~pad[:, None, None, :], -torch.inf)
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

    rows = max(1, chunk_elements // (b * hq * tk))
    # One buffer for every chunk's logits: fresh allocations would page-fault on each chunk.
    buffer = torch.empty(b * hq * min(rows, tq) * tk, dtype=cdtype, device=device)
    for c0 in range(0, tq, rows):
        c1 = min(tq, c0 + rows)
        n = c1 - c0
        kend = min(tk, offset + c1) if problem.causal else tk  # >= 1 since Tq <= Tk
        q_chunk = (q[:, :, c0:c1].to(cdtype) * problem.scale).reshape(b * hkv, group * n, d)
        logits = buffer[: b * hq * n * kend].view(b * hkv, group * n, kend)
        torch.bmm(q_chunk, keys_t[..., :kend], out=logits)
        logits = logits.view(b, hq, n, kend)

        first_masked = offset + c0 + 1  # first key that query c0 may not see
        if problem.causal and first_masked < kend:
            cols = torch.arange(first_masked, kend, device=device)
            pos = torch.arange(offset + c0, offset + c1, device=device)
            future = torch.zeros(n, kend - first_masked, dtype=cdtype, device=device)
            future.masked_fill_(cols[None, :] > pos[:, None], -torch.inf)
            logits[..., first_masked:].add_(future)  # adding 0 / -inf beats a masked_fill
        if pad_bias is not None:
            logits.add_(pad_bias[..., :kend])

        row_max, row_arg = _row_max_argmax(logits)
        dead = row_max == -torch.inf  # every key masked
        shift = torch.where(dead, torch.zeros_like(row_max), row_max)
        exps = logits.sub_(shift[..., None]).exp_()  # in place: e_j = exp(s_j - m)
        total = exps.sum(dim=-1)
        inv_total = torch.where(dead, torch.zeros_like(total), total.reciprocal())

        lse[:, :, c0:c1] = row_max + total.log()
        argmax[:, :, c0:c1] = torch.where(dead, -1, row_arg)
        max_prob[:, :, c0:c1] = inv_total

        if target_prob is not None and targets.shape[2]:
            tgt = targets[:, None, c0:c1]  # [B, 1, n, S]
            valid = (tgt >= 0) & (tgt < kend)
            idx = torch.where(valid, tgt, 0).expand(b, hq, n, tgt.shape[-1])
            picked = exps.gather(-1, idx) * inv_total[..., None]
            target_prob[:, :, c0:c1] = torch.where(valid, picked, 0.0)
        if spans:
            sums = torch.stack([exps[..., lo : min(hi, kend)].sum(-1) for lo, hi in spans], -1)
            mass = sums.gather(-1, span_index.expand(b, hq, n, -1))
            range_mass[:, :, c0:c1] = mass * inv_total[..., None]

    return AttentionStats(lse, argmax, max_prob, target_prob, range_mass)
