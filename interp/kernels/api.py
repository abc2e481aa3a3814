"""Public entry point: per-query attention statistics without a [T, T] attention matrix.

Head analyses (prefix matching, copying, retrieval) need only a few numbers per query row of a
softmax attention pattern: its log-sum-exp, its top-1 key, the probability on a handful of chosen
keys and the mass on a few key ranges. :func:`attention_stats` returns exactly those, using the
online-softmax algebra of flash attention (Feng et al. 2024: softmax attention for one query is a
recurrence over keys on the running max and the running sum of exponentials), so memory stays
O(B·H·Tq·(S+R)) instead of O(B·H·Tq·Tk).

Conventions (the same for both backends):

- ``q``: [B, Hq, Tq, D], ``k``: [B, Hkv, Tk, D], post-rotary, as the model computes them. Grouped
  query attention: query head ``h`` reads key head ``h // (Hq // Hkv)`` (the order of
  ``transformers``' ``repeat_kv``); repeated keys are never materialized.
- Logits are ``scale * q·k`` (``scale`` defaults to ``1/sqrt(D)``).
- Causal: queries are the last ``Tq`` of the ``Tk`` positions (a decode step with a KV cache), so
  query ``i`` sits at absolute position ``Tk - Tq + i`` and sees keys ``j <= Tk - Tq + i``.
- ``key_padding_mask``: [B, Tk] bool, **True = the key is real** (the convention of Hugging Face's
  ``attention_mask``), False = padding that no query may attend to.
- ``targets``: [B, Tq, S] integer key indices per query, ``-1`` = no target. ``target_prob`` is the
  attention probability on that key, 0 where the target is -1 or masked (causal or padding).
- ``key_ranges``: [B, R, 2] integer half-open key ranges ``[start, end)``; ``range_mass`` is the
  total attention probability on each range (masked keys contribute nothing).
- A query row whose keys are all masked has ``lse = -inf``, ``argmax = -1``, ``max_prob = 0`` and
  zero ``target_prob`` / ``range_mass``.
- ``window`` (sliding-window attention, Mistral / Gemma 2-3 / GPT-OSS local layers; needs
  ``causal=True``): the query at absolute position ``i`` sees key ``j`` only if
  ``i - window < j <= i``, so it sees at most ``window`` keys, itself included. This is
  ``transformers.masking_utils.sliding_window_causal_mask_function`` (``kv_idx > q_idx - window``
  and causal), with the same absolute positions as above; it combines with the padding mask
  (padding keys inside the window are still excluded; positions count padding slots, as in HF).
  ``window >= Tk`` is the same as no window.
- ``softcap`` (Gemma 2 attention logit softcapping): the logits are
  ``softcap * tanh(scale * q·k / softcap)``, in the order of Gemma 2's ``eager_attention_forward``
  (scale, divide, tanh, multiply), before any mask. Every statistic, ``target_prob`` and
  ``range_mass`` included, is a statistic of the capped logits.
- ``sinks`` (GPT-OSS learned attention sinks): one logit ``sinks[h]`` per query head that joins
  the softmax denominator without a key, as GPT-OSS's ``eager_attention_forward`` concatenates it
  to the logits and drops its column after the softmax: ``p_j = exp(s_j) / (sum_j' exp(s_j') +
  exp(sinks[h]))``. ``lse`` includes the sink term; ``argmax`` / ``max_prob`` / ``target_prob`` /
  ``range_mass`` are over the real keys with those true probabilities (so a row's masses sum to
  less than 1). A row with no visible key then has ``lse = sinks[h]`` (all mass on the sink),
  ``argmax = -1`` and zero probabilities.
- ``argmax`` ties go to the smallest key index. Outputs are float32 (float64 for float64 inputs,
  which only the torch backend takes); ``argmax`` is int64. The statistics carry no gradient.
- NaN or inf anywhere in ``q``, ``k`` or ``sinks`` (masked positions included) raises
  :class:`~interp.errors.NonFiniteError` (a ``FloatingPointError``), the error ``HookedLM.run``
  raises for non-finite activations: the backends would otherwise disagree on what a NaN row
  means (a masked key in the kernel, a NaN in torch), and a statistic silently computed from
  non-finite activations is not a measurement. Other bad arguments raise
  :class:`~interp.errors.InvalidArgumentError` (a ``ValueError``) or
  :class:`~interp.errors.InputTypeError` (a ``TypeError``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import sys
import warnings

import torch

from interp.errors import InputTypeError, InvalidArgumentError, MissingDependencyError
from interp.kernels.problem import StatsProblem, check_values, validate

__all__ = [
    "BACKENDS",
    "TRITON_DTYPES",
    "AttentionStats",
    "StatsProblem",
    "attention_stats",
    "check_values",
    "compute",
    "defers_checks",
    "resolve_backend",
    "validate",
]

BACKENDS = ("auto", "triton", "torch")
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)  # what the kernel accepts


@dataclasses.dataclass
class AttentionStats:
    """Per-query-row statistics of softmax attention (see the module docstring for conventions).

    ``lse``, ``argmax``, ``max_prob``: [B, Hq, Tq]. ``target_prob``: [B, Hq, Tq, S] or None when
    no targets were given. ``range_mass``: [B, Hq, Tq, R] or None when no key ranges were given.
    """

    lse: torch.Tensor
    argmax: torch.Tensor
    max_prob: torch.Tensor
    target_prob: torch.Tensor | None = None
    range_mass: torch.Tensor | None = None


@functools.cache
def triton_available() -> bool:
    """True when the triton package is importable."""
    return importlib.util.find_spec("triton") is not None


def _interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def kernel_interpreted() -> bool:
    """Whether the Triton kernel runs in triton's CPU interpreter: decided when its module is
    first imported (``@triton.jit`` reads ``TRITON_INTERPRET`` then), so ask the kernel once it
    exists and the environment before."""
    module = sys.modules.get("interp.kernels.triton_stats")
    if module is not None:
        return module.interpreted()
    return _interpreter_on()


# Set once backend="auto" has warned that it will not run the interpreter on CUDA tensors.
_INTERPRETER_WARNED: list[bool] = []


def _refuse_interpreter_on_cuda() -> None:
    """Warn once that ``auto`` sends CUDA tensors to torch while the interpreter is on (issue 14:
    a Makefile exporting TRITON_INTERPRET=1 made every GPU run use the slow CPU interpreter)."""
    if _INTERPRETER_WARNED:
        return
    _INTERPRETER_WARNED.append(True)
    warnings.warn(
        "TRITON_INTERPRET=1 is set, so the Triton attention_stats kernel would run in triton's "
        "CPU interpreter; backend='auto' uses the chunked torch backend on CUDA tensors instead "
        "(same results). Unset TRITON_INTERPRET before triton is imported to use the compiled "
        "kernel.",
        RuntimeWarning,
        stacklevel=5,
    )


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    """Pick the implementation for inputs on ``device`` of ``dtype``.

    ``"auto"`` takes the Triton kernel only where it runs compiled: CUDA tensors of a dtype it
    accepts (float16, bfloat16, float32) with triton installed and the interpreter off;
    everything else (CPU, float64, no triton) goes to the chunked torch code. With the
    interpreter on, CUDA tensors go to torch with a one-time warning (the interpreter would copy
    them through the CPU, orders of magnitude slower). An explicit ``"triton"`` that cannot run
    raises instead (and an explicit ``"triton"`` under the interpreter does run interpreted).
    """
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    if backend == "auto":
        usable = device.type == "cuda" and dtype in TRITON_DTYPES and triton_available()
        if usable and kernel_interpreted():
            _refuse_interpreter_on_cuda()
            return "torch"
        return "triton" if usable else "torch"
    if dtype not in TRITON_DTYPES:
        raise InputTypeError(
            f"backend='triton' supports float16, bfloat16 and float32, got {dtype}; use "
            "backend='torch' or 'auto' for float64"
        )
    if not triton_available():
        raise MissingDependencyError(
            "backend='triton' needs the triton package: pip install triton"
        )
    if device.type != "cuda" and not _interpreter_on():
        raise InvalidArgumentError(
            f"backend='triton' needs CUDA tensors (got {device}); to run the kernel on the CPU "
            "set TRITON_INTERPRET=1 before triton is imported, or use backend='torch'"
        )
    return "triton"


def attention_stats(
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
    backend: str = "auto",
) -> AttentionStats:
    """Per-query softmax attention statistics without materializing the attention matrix.

    Args:
        q: queries [B, Hq, Tq, D] (float16, bfloat16, float32; float64 on the torch backend),
            finite (NaN/inf raise ``NonFiniteError``, a ``FloatingPointError``).
        k: keys [B, Hkv, Tk, D], same dtype and device; Hq must be a multiple of Hkv.
        scale: logit scale; None means 1/sqrt(D).
        causal: mask keys after each query's absolute position Tk - Tq + i (needs Tq <= Tk;
            without it any Tq is fine).
        key_padding_mask: [B, Tk] bool, True = real key, False = padding.
        targets: [B, Tq, S] integer key indices per query (-1 = none) for ``target_prob``.
        key_ranges: [B, R, 2] integer half-open ranges [start, end) for ``range_mass``.
        window: sliding window (int >= 1; needs ``causal=True``): the query at absolute position
            i sees keys i - window < j <= i (HF ``sliding_window_causal_mask_function``). None
            (or any window >= Tk) = no window.
        softcap: logit softcap (float > 0): logits = softcap * tanh(scale * q·k / softcap), as
            Gemma 2. None = no cap.
        sinks: [Hq] float tensor of per-head sink logits (GPT-OSS), finite, on q's device: each
            joins its head's softmax denominator without a key. ``lse`` includes it; the other
            statistics are the real keys' true probabilities (summing to less than 1), and a row
            with no visible key has ``lse = sinks[h]``, ``argmax = -1``. None = no sinks.
        backend: "auto" (Triton for float16/bfloat16/float32 CUDA tensors when triton is
            installed and TRITON_INTERPRET is off, torch otherwise; if the kernel fails to
            compile or launch on the device, a warning and torch from then on), "triton" or
            "torch".

    Returns:
        :class:`AttentionStats` with ``lse``, ``argmax``, ``max_prob`` [B, Hq, Tq] and, when asked,
        ``target_prob`` [B, Hq, Tq, S] and ``range_mass`` [B, Hq, Tq, R].
    """
    if not isinstance(backend, str):
        raise InputTypeError(f"backend must be one of {BACKENDS}, got {backend!r}")
    problem = validate(
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
        defer_value_checks=defers_checks(q),
    )
    stats = compute(problem, backend)
    check_values([problem])  # no-op unless deferred; on a GPU after the launch
    return stats


def defers_checks(q: object) -> bool:
    """Whether the value checks of inputs on ``q``'s device are read after the work is queued.

    On a GPU reading a flag waits for the device, so it is read after the launch. On the CPU
    reading costs nothing and comes first, so bad input never reaches the kernels (the Triton
    interpreter fails on NaN rows instead of returning them).
    """
    return isinstance(q, torch.Tensor) and q.is_cuda


def compute(problem: StatsProblem, backend: str = "auto") -> AttentionStats:
    """Run a validated problem on ``backend`` without reading its value checks (see
    :func:`check_values`; a caller that skips them gets statistics of whatever the inputs hold)."""
    with torch.no_grad():  # statistics, not a differentiable op; the torch path works in place
        chosen = resolve_backend(backend, problem.q.device, problem.q.dtype)
        if chosen == "triton" and not (backend == "auto" and _TRITON_FAILED):
            from interp.kernels.triton_stats import triton_attention_stats

            try:
                return triton_attention_stats(problem)
            except Exception as error:
                if backend == "triton" or not _is_triton_error(error):
                    raise
                _give_up_on_triton(error)
        from interp.kernels.torch_stats import torch_attention_stats

        return torch_attention_stats(problem)


# Set when the kernel failed to compile or launch under backend="auto" (say, too little shared
# memory on an untested GPU): the rest of the process then uses the torch backend.
_TRITON_FAILED: list[str] = []


def _is_triton_error(error: BaseException) -> bool:
    """True for Triton's own compile / launch errors (CompilationError, OutOfResources, ...)."""
    try:
        from triton.errors import TritonError  # their common base class in recent triton

        kinds: tuple[type, ...] = (TritonError,)
    except ImportError:
        from triton.compiler.errors import CompilationError
        from triton.runtime.errors import OutOfResources

        kinds = (CompilationError, OutOfResources)
    return isinstance(error, kinds)


def _give_up_on_triton(error: BaseException) -> None:
    """Warn once that ``auto`` falls back to the torch backend, and remember it."""
    _TRITON_FAILED.append(f"{type(error).__name__}: {error}")
    warnings.warn(
        f"the Triton attention_stats kernel failed on this device ({_TRITON_FAILED[0]}); "
        "backend='auto' uses the chunked torch backend from now on (same results, slower). "
        "backend='triton' raises the error itself.",
        RuntimeWarning,
        stacklevel=4,
    )
