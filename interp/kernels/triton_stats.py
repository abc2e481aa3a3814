"""Triton kernel for :func:`interp.kernels.attention_stats` (flash-attention-style online softmax).

One program handles ``BLOCK_M`` queries of one (batch, query head) and streams over key blocks,
keeping per row the running max ``m`` (in log2 units), its first argmax, the running sum
``l = sum_j 2^(s_j - m)`` and, when key ranges are asked for, the running unnormalized mass on each
range (rescaled by ``2^(m_old - m_new)`` like ``l``; Feng et al. 2024's recurrence). Key blocks
wholly visible to every query of the block skip the causal/window/bounds mask; under a sliding
window the key blocks before the block's first query's window are never read. After the loop the
sink (if any) joins the sum as one more logit without a key, then ``lse = ln2 · (m + log2 l)``,
``max_prob = 2^(m_keys - m) / l`` (``1 / l`` without a sink), and each target probability comes
from a direct dot product of the query with the target key against the final ``m`` and ``l``.

Softcapped logits (Gemma 2) are ``cap · tanh(scale · q·k / cap)``; triton has no portable
``tanh`` (libdevice's does not run in the interpreter), so :func:`_tanh` builds it from ``exp2``
with a short odd series near zero, where ``1 - e^{-2|x|}`` would cancel.

Grouped-query attention: query head ``h`` reads key head ``h // group`` by pointer arithmetic; the
keys are never repeated. On the CPU the kernel runs under ``TRITON_INTERPRET=1``, which must be
set before this module is imported (``@triton.jit`` reads it at decoration time).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from interp.errors import InputTypeError, InvalidArgumentError
from interp.kernels.api import TRITON_DTYPES, AttentionStats, StatsProblem

_LOG2E = 1.4426950408889634


@triton.jit
def _tanh(x):
    """tanh in float32: an odd Taylor series for |x| < 1/4 (remainder < 1e-8 relative), else
    sign(x) (1 - e) / (1 + e) with e = exp(-2|x|) (no overflow, no cancellation there)."""
    ax = tl.abs(x)
    e = tl.exp2(ax * -2.885390081777927)  # exp(-2|x|)
    far = (1.0 - e) / (1.0 + e)
    x2 = x * x
    near = x * (1.0 + x2 * (-1 / 3 + x2 * (2 / 15 + x2 * (-17 / 315 + x2 * (62 / 2835)))))
    return tl.where(ax < 0.25, near, tl.where(x < 0, -far, far))


@triton.jit
def _logits(dot, qk_scale, cap_log2, SOFTCAP: tl.constexpr):
    """Logits in log2 units from raw q·k: ``dot · scale · log2e``, or with the softcap
    ``cap · log2e · tanh(dot · scale / cap)`` (``qk_scale`` is then ``scale / cap``)."""
    if SOFTCAP:
        return _tanh(dot * qk_scale) * cap_log2
    else:
        return dot * qk_scale


@triton.jit
def _key_block(
    q,
    k_base,
    pad_base,
    start_n,
    offs_n0,
    offs_d,
    pos,
    m_i,
    l_i,
    arg,
    acc_r,
    r_start,
    r_end,
    stride_kn,
    stride_kd,
    stride_pn,
    Tk,
    D,
    qk_scale,
    cap_log2,
    window,
    MASKED: tl.constexpr,
    CAUSAL: tl.constexpr,
    WINDOW: tl.constexpr,
    SOFTCAP: tl.constexpr,
    HAS_PAD: tl.constexpr,
    HAS_RNG: tl.constexpr,
    PRECISION: tl.constexpr,
    EVEN_D: tl.constexpr,
    DOT_FP32: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Fold one block of keys into the running (max, argmax, sum, range mass) of each row."""
    offs_n = start_n + offs_n0
    in_bounds = offs_n < Tk
    k_ptrs = k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd
    if MASKED:
        k = tl.load(k_ptrs, mask=(offs_d[:, None] < D) & in_bounds[None, :], other=0.0)
    elif EVEN_D:
        k = tl.load(k_ptrs)
    else:
        k = tl.load(k_ptrs, mask=offs_d[:, None] < D, other=0.0)
    if DOT_FP32:
        k = k.to(tl.float32)
    dot = tl.dot(q, k, input_precision=PRECISION)
    s = _logits(dot, qk_scale, cap_log2, SOFTCAP)  # [BLOCK_M, BLOCK_N], log2 units
    if MASKED:
        visible = in_bounds[None, :]
        if CAUSAL:
            visible = visible & (offs_n[None, :] <= pos[:, None])
        if WINDOW:
            visible = visible & (offs_n[None, :] > pos[:, None] - window)
        s = tl.where(visible, s, float("-inf"))
    if HAS_PAD:
        real = tl.load(pad_base + offs_n * stride_pn, mask=in_bounds, other=0) != 0
        s = tl.where(real[None, :], s, float("-inf"))

    blk_max, blk_arg = tl.max(s, axis=1, return_indices=True)
    arg = tl.where(blk_max > m_i, blk_arg + start_n, arg)  # strict: earlier keys win ties
    m_new = tl.maximum(m_i, blk_max)
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with no visible key yet
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    if HAS_RNG:
        acc_r = acc_r * alpha[:, None]
        block_end = start_n + BLOCK_N
        touches = tl.sum(((r_start < block_end) & (r_end > start_n)).to(tl.int32), axis=0)
        if touches > 0:
            inside = (offs_n[:, None] >= r_start[None, :]) & (offs_n[:, None] < r_end[None, :])
            acc_r += tl.dot(p, inside.to(tl.float32), input_precision="ieee")
    return m_new, l_i, arg, acc_r


@triton.jit
def _attention_stats_kernel(
    Q,
    K,
    PAD,
    TGT,
    RNG,
    SINK,
    LSE,
    ARG,
    MAXP,
    TP,
    RM,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_pb,
    stride_pn,
    stride_tb,
    stride_tm,
    stride_ts,
    stride_rb,
    stride_rr,
    stride_rc,
    Hq,
    group,
    Tq,
    Tk,
    D,
    S,
    R,
    offset,
    qk_scale,
    cap_log2,
    window,
    CAUSAL: tl.constexpr,
    WINDOW: tl.constexpr,
    SOFTCAP: tl.constexpr,
    HAS_SINK: tl.constexpr,
    HAS_PAD: tl.constexpr,
    HAS_TGT: tl.constexpr,
    HAS_RNG: tl.constexpr,
    PRECISION: tl.constexpr,
    DOT_FP32: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    # Query blocks in reverse launch order: under causal masking the last blocks read the most keys,
    # so starting them first keeps the tail of the launch short (the flash-attention trick).
    pid_m = tl.num_programs(0) - 1 - tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // Hq).to(tl.int64)
    h = (pid_bh % Hq).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < Tq
    pos = offset + offs_m  # absolute position of each query

    q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm
    q_mask = row_ok[:, None] & (offs_d[None, :] < D)
    q = tl.load(q_ptrs + offs_d[None, :] * stride_qd, mask=q_mask, other=0.0)
    if DOT_FP32:
        q = q.to(tl.float32)
    k_base = K + b * stride_kb + (h // group) * stride_kh
    pad_base = PAD + b * stride_pb

    r_start = tl.zeros([BLOCK_R], dtype=tl.int64)
    r_end = tl.zeros([BLOCK_R], dtype=tl.int64)
    if HAS_RNG:
        offs_r = tl.arange(0, BLOCK_R)
        r_ptrs = RNG + b * stride_rb + offs_r * stride_rr
        r_start = tl.load(r_ptrs, mask=offs_r < R, other=0)
        r_end = tl.load(r_ptrs + stride_rc, mask=offs_r < R, other=0)  # padding ranges are empty

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    arg = tl.full([BLOCK_M], -1, dtype=tl.int32)
    acc_r = tl.zeros([BLOCK_M, BLOCK_R], dtype=tl.float32)

    # Keys [full_lo, full_end) are visible to every query of this block and lie inside [0, Tk);
    # keys [lo, full_lo) and [full_end, hi) are read with the mask; none other is visible.
    if CAUSAL:
        hi = tl.minimum(Tk, offset + (pid_m + 1) * BLOCK_M)
        full_end = tl.minimum((offset + pid_m * BLOCK_M + 1) // BLOCK_N, Tk // BLOCK_N) * BLOCK_N
    else:
        hi = Tk
        full_end = (Tk // BLOCK_N) * BLOCK_N
    lo = 0
    full_lo = 0
    if WINDOW:  # (only with CAUSAL) lo: the block of the first key the first query sees;
        # full_lo: the first block boundary at or after the first key the last query sees
        lo = (tl.maximum(offset + pid_m * BLOCK_M - window + 1, 0) // BLOCK_N) * BLOCK_N
        last_first = tl.maximum(offset + (pid_m + 1) * BLOCK_M - window, 0)
        full_lo = tl.minimum(tl.cdiv(last_first, BLOCK_N) * BLOCK_N, full_end)
    for start_n in range(lo, full_lo, BLOCK_N):
        m_i, l_i, arg, acc_r = _key_block(
            q, k_base, pad_base, start_n, offs_n0, offs_d, pos, m_i, l_i, arg, acc_r,
            r_start, r_end, stride_kn, stride_kd, stride_pn, Tk, D, qk_scale, cap_log2, window,
            True, CAUSAL, WINDOW, SOFTCAP, HAS_PAD, HAS_RNG, PRECISION, BLOCK_D == D, DOT_FP32,
            BLOCK_N,
        )  # fmt: skip
    for start_n in range(full_lo, full_end, BLOCK_N):
        m_i, l_i, arg, acc_r = _key_block(
            q, k_base, pad_base, start_n, offs_n0, offs_d, pos, m_i, l_i, arg, acc_r,
            r_start, r_end, stride_kn, stride_kd, stride_pn, Tk, D, qk_scale, cap_log2, window,
            False, CAUSAL, WINDOW, SOFTCAP, HAS_PAD, HAS_RNG, PRECISION, BLOCK_D == D, DOT_FP32,
            BLOCK_N,
        )  # fmt: skip
    for start_n in range(full_end, hi, BLOCK_N):
        m_i, l_i, arg, acc_r = _key_block(
            q, k_base, pad_base, start_n, offs_n0, offs_d, pos, m_i, l_i, arg, acc_r,
            r_start, r_end, stride_kn, stride_kd, stride_pn, Tk, D, qk_scale, cap_log2, window,
            True, CAUSAL, WINDOW, SOFTCAP, HAS_PAD, HAS_RNG, PRECISION, BLOCK_D == D, DOT_FP32,
            BLOCK_N,
        )  # fmt: skip

    alive = l_i > 0  # some real key is visible
    m_keys = m_i
    if HAS_SINK:  # one more logit without a key (log2 units): fold it into the running sum
        sink = tl.load(SINK + h)
        m_all = tl.maximum(m_i, sink)
        alpha = tl.exp2(m_i - m_all)  # 0 on rows without a visible key
        l_i = l_i * alpha + tl.exp2(sink - m_all)
        acc_r = acc_r * alpha[:, None]
        m_i = m_all
    has_mass = l_i > 0
    inv_l = tl.where(has_mass, 1.0 / tl.where(has_mass, l_i, 1.0), 0.0)
    out_off = pid_bh.to(tl.int64) * Tq + offs_m  # outputs are contiguous [B, Hq, Tq, ...]
    lse = tl.where(
        has_mass, (m_i + tl.log2(tl.where(has_mass, l_i, 1.0))) * 0.6931471805599453, float("-inf")
    )
    max_prob = inv_l
    if HAS_SINK:
        max_prob = tl.where(alive, tl.exp2(m_keys - m_i) * inv_l, 0.0)
    tl.store(LSE + out_off, lse, mask=row_ok)
    tl.store(ARG + out_off, arg.to(tl.int64), mask=row_ok)
    tl.store(MAXP + out_off, max_prob, mask=row_ok)
    if HAS_RNG:
        offs_r = tl.arange(0, BLOCK_R)
        rm_ptrs = RM + out_off[:, None] * R + offs_r[None, :]
        tl.store(rm_ptrs, acc_r * inv_l[:, None], mask=row_ok[:, None] & (offs_r[None, :] < R))
    if HAS_TGT:
        qf = q.to(tl.float32)
        m_safe = tl.where(has_mass, m_i, 0.0)
        for si in range(0, S):
            t = tl.load(
                TGT + b * stride_tb + offs_m * stride_tm + si * stride_ts, mask=row_ok, other=-1
            )
            ok = row_ok & (t >= 0) & (t < Tk) & alive
            if CAUSAL:
                ok = ok & (t <= pos)
            if WINDOW:
                ok = ok & (t > pos - window)
            if HAS_PAD:
                ok = ok & (tl.load(pad_base + t * stride_pn, mask=ok, other=0) != 0)
            kt_ptrs = k_base + t[:, None] * stride_kn + offs_d[None, :] * stride_kd
            kt = tl.load(kt_ptrs, mask=ok[:, None] & (offs_d[None, :] < D), other=0.0)
            st = _logits(tl.sum(qf * kt.to(tl.float32), axis=1), qk_scale, cap_log2, SOFTCAP)
            prob = tl.where(ok, tl.exp2(st - m_safe) * inv_l, 0.0)
            tl.store(TP + out_off * S + si, prob, mask=row_ok)


def interpreted() -> bool:
    """Whether the kernel was decorated under TRITON_INTERPRET=1 (runs in the CPU interpreter)."""
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_attention_stats_kernel, InterpretedFunction)


def launch_config(d: int, tq: int, interpreted: bool) -> dict[str, int]:
    """Block sizes and launch settings: tiny blocks under the interpreter, flash-like on CUDA."""
    if interpreted:
        return {"BLOCK_M": 16, "BLOCK_N": 16, "num_warps": 1, "num_stages": 1}
    block_m = min(128, max(16, triton.next_power_of_2(tq)))
    if d <= 64:
        return {"BLOCK_M": block_m, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3}
    if d <= 128:
        return {"BLOCK_M": block_m, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3}
    return {"BLOCK_M": min(block_m, 64), "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}


def triton_attention_stats(
    problem: StatsProblem, *, config: dict[str, int] | None = None
) -> AttentionStats:
    """Launch the kernel on a validated problem. ``config`` overrides :func:`launch_config`."""
    q, k = problem.q, problem.k
    if q.dtype not in TRITON_DTYPES:
        raise InputTypeError(
            f"the Triton kernel takes float16, bfloat16 or float32, got {q.dtype}; use the torch "
            "backend for float64"
        )
    on_interpreter = interpreted()
    if q.device.type != "cuda" and not on_interpreter:
        raise InvalidArgumentError(
            "the Triton kernel was compiled without the interpreter, so it needs CUDA tensors; "
            "set TRITON_INTERPRET=1 before triton is first imported to run it on the CPU"
        )
    b, hq, tq, d = q.shape
    tk = k.shape[2]
    cfg = dict(launch_config(d, tq, on_interpreter) if config is None else config)
    device = q.device

    lse = torch.empty(b, hq, tq, dtype=torch.float32, device=device)
    argmax = torch.empty(b, hq, tq, dtype=torch.long, device=device)
    max_prob = torch.empty(b, hq, tq, dtype=torch.float32, device=device)
    targets, ranges = problem.targets, problem.key_ranges
    s = 0 if targets is None else targets.shape[2]
    r = 0 if ranges is None else ranges.shape[1]
    target_prob = None if targets is None else lse.new_zeros(b, hq, tq, s)
    range_mass = None if ranges is None else lse.new_zeros(b, hq, tq, r)

    pad = problem.key_padding_mask  # no `pad.all()` shortcut: reading it would wait for the GPU
    pad_u8 = pad.to(torch.uint8) if pad is not None else lse  # placeholder pointer when unused
    tgt = targets if s else lse
    rng = ranges if r else lse
    # The interpreter's tl.dot mishandles bfloat16 (numpy has no such type): widen the tiles first.
    dot_fp32 = on_interpreter and q.dtype == torch.bfloat16
    window, softcap = problem.active_window, problem.softcap
    if softcap is None:
        qk_scale, cap_log2 = problem.scale * _LOG2E, 0.0
    else:  # the kernel computes tanh(dot * scale / cap) * cap * log2e
        qk_scale, cap_log2 = problem.scale / softcap, softcap * _LOG2E
    sinks = problem.sinks
    sink_log2 = lse if sinks is None else (sinks.to(torch.float32) * _LOG2E).contiguous()
    grid = (triton.cdiv(tq, cfg["BLOCK_M"]), b * hq)
    _attention_stats_kernel[grid](
        q, k, pad_u8, tgt, rng, sink_log2, lse, argmax, max_prob,
        target_prob if s else lse, range_mass if r else lse,
        *q.stride(), *k.stride(),
        *(pad_u8.stride() if pad is not None else (0, 0)),
        *(tgt.stride() if s else (0, 0, 0)),
        *(rng.stride() if r else (0, 0, 0)),
        hq, problem.group, tq, tk, d, s, r, problem.offset, qk_scale, cap_log2,
        0 if window is None else window,
        CAUSAL=problem.causal, WINDOW=window is not None, SOFTCAP=softcap is not None,
        HAS_SINK=sinks is not None, HAS_PAD=pad is not None, HAS_TGT=s > 0, HAS_RNG=r > 0,
        PRECISION="ieee" if q.dtype == torch.float32 or dot_fp32 else "tf32",
        DOT_FP32=dot_fp32,
        BLOCK_D=max(16, triton.next_power_of_2(d)), BLOCK_R=max(16, triton.next_power_of_2(max(r, 1))),
        **cfg,
    )  # fmt: skip
    return AttentionStats(lse, argmax, max_prob, target_prob, range_mass)
