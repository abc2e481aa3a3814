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
- ``argmax`` ties go to the smallest key index. Outputs are float32 (float64 for float64 inputs,
  which only the torch backend takes); ``argmax`` is int64. The statistics carry no gradient.
- NaN or inf anywhere in ``q`` or ``k`` (masked positions included) raises ``FloatingPointError``,
  the error ``HookedLM.run`` raises for non-finite activations: the backends would
  otherwise disagree on what a NaN row means (a masked key in the kernel, a NaN in torch), and a
  statistic silently computed from non-finite activations is not a measurement.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import numbers
import os
import warnings
import weakref
from collections.abc import Callable, Sequence

import torch

from interp._checks import Check, finite_flag, raise_first_failure

BACKENDS = ("auto", "triton", "torch")
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
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


@dataclasses.dataclass(frozen=True)
class StatsProblem:
    """Validated inputs shared by the backends (scale resolved, masks normalized)."""

    q: torch.Tensor
    k: torch.Tensor
    scale: float
    causal: bool
    key_padding_mask: torch.Tensor | None
    targets: torch.Tensor | None
    key_ranges: torch.Tensor | None
    # (flag, error) pairs for what only the tensors' values can tell (finite q/k, indices in
    # range) that are still to be read: 0-d bool tensors on q's device (see check_values); empty
    # when validate read them itself.
    value_checks: tuple[Check, ...] = dataclasses.field(default=(), repr=False, compare=False)

    @property
    def group(self) -> int:
        return self.q.shape[1] // self.k.shape[1]

    @property
    def offset(self) -> int:
        """Absolute position of query 0 (queries are the last Tq key positions)."""
        return self.k.shape[2] - self.q.shape[2]


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _check_index_tensor(name: str, t: object, shape: tuple[int, ...], device: torch.device) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer key indices (e.g. torch.long), got {t.dtype}")
    if tuple(t.shape) != shape:
        want = "[" + ", ".join(str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {_shape(t)}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but q is on {device}")


def validate(
    q: object,
    k: object,
    *,
    scale: float | None,
    causal: bool,
    key_padding_mask: object,
    targets: object,
    key_ranges: object,
    defer_value_checks: bool = False,
) -> StatsProblem:
    """Check shapes, dtypes, devices and index ranges; raise a clear error naming the problem.

    ``defer_value_checks=True`` leaves what only the values can tell (finite q/k, indices in
    range) queued on the device for a later :func:`check_values`, so that reading it does not
    stall a GPU before the work is launched.
    """
    for name, t in (("q", q), ("k", k)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{name} must be 4-D [batch, heads, tokens, head_dim], got shape {_shape(t)}"
            )
        if t.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    assert isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor)
    if q.dtype != k.dtype:
        raise TypeError(f"q and k must have the same dtype, got {q.dtype} and {k.dtype}")
    if q.device != k.device:
        raise ValueError(f"q and k must be on the same device, got {q.device} and {k.device}")
    (b, hq, tq, d), (bk, hkv, tk, dk) = q.shape, k.shape
    if b != bk or d != dk:
        raise ValueError(
            f"q [B, Hq, Tq, D] = {_shape(q)} and k [B, Hkv, Tk, D] = {_shape(k)} must agree on "
            "batch size B and head dimension D"
        )
    if min(b, hq, tq, d, hkv, tk) < 1:
        raise ValueError(f"q {_shape(q)} and k {_shape(k)} must have no empty dimension")
    if hq % hkv:
        raise ValueError(
            f"query heads ({hq}) must be a multiple of key heads ({hkv}) for grouped-query attention"
        )
    if causal and tq > tk:
        raise ValueError(
            f"causal attention needs Tq <= Tk (queries are the last Tq key positions), got "
            f"Tq={tq}, Tk={tk}; non-causal attention (causal=False) takes any Tq"
        )
    checks = [(finite_flag(t), _non_finite_error(name, t)) for name, t in (("q", q), ("k", k))]
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    elif isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
        raise TypeError(f"scale must be a finite float or None (= 1/sqrt(D)), got {scale!r}")

    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            raise TypeError(
                "key_padding_mask must be a bool tensor [B, Tk] with True = real key "
                "(convert a 0/1 attention_mask with .bool())"
            )
        if tuple(key_padding_mask.shape) != (b, tk):
            raise ValueError(
                f"key_padding_mask must have shape [B, Tk] = [{b}, {tk}], "
                f"got {_shape(key_padding_mask)}"
            )
        if key_padding_mask.device != q.device:
            raise ValueError(f"key_padding_mask is on {key_padding_mask.device}, q on {q.device}")

    if targets is not None:
        if not isinstance(targets, torch.Tensor) or targets.dim() != 3:
            got = _shape(targets) if isinstance(targets, torch.Tensor) else type(targets).__name__
            raise ValueError(f"targets must be an integer tensor [B, Tq, S], got {got}")
        _check_index_tensor("targets", targets, (b, tq, targets.shape[2]), q.device)
        if targets.numel():
            low, high = torch.aminmax(targets)
            message = f"targets must be key indices in [0, {tk}) or -1 for none"
            checks.append(((low >= -1) & (high < tk), lambda: ValueError(message)))
        targets = targets.long()

    if key_ranges is not None:
        if not isinstance(key_ranges, torch.Tensor) or key_ranges.dim() != 3:
            got = _shape(key_ranges) if isinstance(key_ranges, torch.Tensor) else type(key_ranges)
            raise ValueError(f"key_ranges must be an integer tensor [B, R, 2], got {got}")
        _check_index_tensor("key_ranges", key_ranges, (b, key_ranges.shape[1], 2), q.device)
        if key_ranges.numel():
            start, end = key_ranges[..., 0], key_ranges[..., 1]
            ok = ((start >= 0) & (end <= tk) & (start <= end)).all()
            message = f"key_ranges must be half-open [start, end) with 0 <= start <= end <= Tk={tk}"
            checks.append((ok, lambda: ValueError(message)))
        key_ranges = key_ranges.long()

    if not defer_value_checks:
        raise_first_failure(checks)
        checks = []  # read: nothing left for check_values
    return StatsProblem(
        q, k, float(scale), bool(causal), key_padding_mask, targets, key_ranges, tuple(checks)
    )


def _non_finite_error(name: str, t: torch.Tensor) -> Callable[[], Exception]:
    """The error for a non-finite q or k. It holds the tensor only weakly: a model run keeps
    every layer's checks until it ends, and must not keep every layer's queries alive with them."""
    tensor = weakref.ref(t)

    def error() -> Exception:
        alive = tensor()
        where = "" if alive is None else f" at {int((~torch.isfinite(alive)).sum())} entries"
        return FloatingPointError(
            f"{name} holds non-finite values (NaN/inf){where}; attention statistics need finite "
            "queries and keys (masked positions included)"
        )

    return error


def check_values(problems: Sequence[StatsProblem]) -> None:
    """Raise the first failed deferred value check of ``problems`` (one device transfer).

    On a GPU reading a flag waits for the device, so callers queue the work first and check after
    (:func:`defers_checks`): :func:`attention_stats` once its kernel is launched (the kernel masks
    every index it loads, so bad indices cannot fault), a model run once all layers ran.
    """
    raise_first_failure([check for problem in problems for check in problem.value_checks])


@functools.cache
def triton_available() -> bool:
    """True when the triton package is importable."""
    return importlib.util.find_spec("triton") is not None


def _interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    """Pick the implementation for inputs on ``device`` of ``dtype``.

    ``"auto"`` takes the Triton kernel only where it runs: CUDA tensors of a dtype it accepts
    (float16, bfloat16, float32) with triton installed; everything else (CPU, float64, no triton)
    goes to the chunked torch code. An explicit ``"triton"`` that cannot run raises instead.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    if backend == "auto":
        usable = device.type == "cuda" and dtype in TRITON_DTYPES and triton_available()
        return "triton" if usable else "torch"
    if dtype not in TRITON_DTYPES:
        raise TypeError(
            f"backend='triton' supports float16, bfloat16 and float32, got {dtype}; use "
            "backend='torch' or 'auto' for float64"
        )
    if not triton_available():
        raise ImportError("backend='triton' needs the triton package: pip install triton")
    if device.type != "cuda" and not _interpreter_on():
        raise ValueError(
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
    backend: str = "auto",
) -> AttentionStats:
    """Per-query softmax attention statistics without materializing the attention matrix.

    Args:
        q: queries [B, Hq, Tq, D] (float16, bfloat16, float32; float64 on the torch backend),
            finite (NaN/inf raise ``FloatingPointError``).
        k: keys [B, Hkv, Tk, D], same dtype and device; Hq must be a multiple of Hkv.
        scale: logit scale; None means 1/sqrt(D).
        causal: mask keys after each query's absolute position Tk - Tq + i (needs Tq <= Tk;
            without it any Tq is fine).
        key_padding_mask: [B, Tk] bool, True = real key, False = padding.
        targets: [B, Tq, S] integer key indices per query (-1 = none) for ``target_prob``.
        key_ranges: [B, R, 2] integer half-open ranges [start, end) for ``range_mass``.
        backend: "auto" (Triton for float16/bfloat16/float32 CUDA tensors when triton is
            installed, torch otherwise; if the kernel fails to compile or launch on the device,
            a warning and torch from then on), "triton" or "torch".

    Returns:
        :class:`AttentionStats` with ``lse``, ``argmax``, ``max_prob`` [B, Hq, Tq] and, when asked,
        ``target_prob`` [B, Hq, Tq, S] and ``range_mass`` [B, Hq, Tq, R].
    """
    if not isinstance(backend, str):
        raise TypeError(f"backend must be one of {BACKENDS}, got {backend!r}")
    problem = validate(
        q,
        k,
        scale=scale,
        causal=causal,
        key_padding_mask=key_padding_mask,
        targets=targets,
        key_ranges=key_ranges,
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
