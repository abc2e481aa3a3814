"""The validated attention-statistics problem: :func:`validate` checks every argument of
:func:`interp.kernels.attention_stats` (conventions in :mod:`interp.kernels.api`) and returns a
:class:`StatsProblem` that both backends and the reference read; :func:`check_values` reads the
value checks (finite q/k/sinks, indices in range) a GPU caller deferred until after its launch.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import weakref
from collections.abc import Callable, Sequence

import torch

from interp._checks import Check, finite_flag, raise_first_failure
from interp.errors import InputTypeError, InvalidArgumentError, NonFiniteError

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


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
    window: int | None = None  # sliding window (causal only); may be >= Tk, see active_window
    softcap: float | None = None  # attention logit softcap (Gemma 2)
    sinks: torch.Tensor | None = None  # [Hq] per-head sink logits (GPT-OSS), detached
    # (flag, error) pairs for what only the tensors' values can tell (finite q/k/sinks, indices in
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

    @property
    def active_window(self) -> int | None:
        """The window when it hides some key from some query, else None (``window >= Tk`` masks
        nothing beyond the causal mask, so the backends skip it)."""
        if self.window is None or self.window >= self.k.shape[2]:
            return None
        return self.window


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _check_index_tensor(name: str, t: object, shape: tuple[int, ...], device: torch.device) -> None:
    if not isinstance(t, torch.Tensor):
        raise InputTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise InputTypeError(
            f"{name} must hold integer key indices (e.g. torch.long), got {t.dtype}"
        )
    if tuple(t.shape) != shape:
        want = "[" + ", ".join(str(s) for s in shape) + "]"
        raise InvalidArgumentError(f"{name} must have shape {want}, got {_shape(t)}")
    if t.device != device:
        raise InvalidArgumentError(f"{name} is on {t.device} but q is on {device}")


def validate(
    q: object,
    k: object,
    *,
    scale: float | None,
    causal: bool,
    key_padding_mask: object,
    targets: object,
    key_ranges: object,
    window: object = None,
    softcap: object = None,
    sinks: object = None,
    defer_value_checks: bool = False,
) -> StatsProblem:
    """Check shapes, dtypes, devices and index ranges; raise a clear error naming the problem.

    ``window``, ``softcap`` and ``sinks`` default to None (plain softmax attention) so that
    callers written before they existed keep working. ``defer_value_checks=True`` leaves what
    only the values can tell (finite q/k/sinks, indices in range) queued on the device for a later :func:`check_values`, so that reading it does not
    stall a GPU before the work is launched.
    """
    for name, t in (("q", q), ("k", k)):
        if not isinstance(t, torch.Tensor):
            raise InputTypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise InvalidArgumentError(
                f"{name} must be 4-D [batch, heads, tokens, head_dim], got shape {_shape(t)}"
            )
        if t.dtype not in _FLOAT_DTYPES:
            raise InputTypeError(
                f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}"
            )
    assert isinstance(q, torch.Tensor) and isinstance(k, torch.Tensor)
    if q.dtype != k.dtype:
        raise InputTypeError(f"q and k must have the same dtype, got {q.dtype} and {k.dtype}")
    if q.device != k.device:
        raise InvalidArgumentError(
            f"q and k must be on the same device, got {q.device} and {k.device}"
        )
    (b, hq, tq, d), (bk, hkv, tk, dk) = q.shape, k.shape
    if b != bk or d != dk:
        raise InvalidArgumentError(
            f"q [B, Hq, Tq, D] = {_shape(q)} and k [B, Hkv, Tk, D] = {_shape(k)} must agree on "
            "batch size B and head dimension D"
        )
    if min(b, hq, tq, d, hkv, tk) < 1:
        raise InvalidArgumentError(f"q {_shape(q)} and k {_shape(k)} must have no empty dimension")
    if hq % hkv:
        raise InvalidArgumentError(
            f"query heads ({hq}) must be a multiple of key heads ({hkv}) for grouped-query attention"
        )
    if causal and tq > tk:
        raise InvalidArgumentError(
            f"causal attention needs Tq <= Tk (queries are the last Tq key positions), got "
            f"Tq={tq}, Tk={tk}; non-causal attention (causal=False) takes any Tq"
        )
    checks = [(finite_flag(t), _non_finite_error(name, t)) for name, t in (("q", q), ("k", k))]
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    elif isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
        raise InputTypeError(f"scale must be a finite float or None (= 1/sqrt(D)), got {scale!r}")

    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            raise InputTypeError(
                "key_padding_mask must be a bool tensor [B, Tk] with True = real key "
                "(convert a 0/1 attention_mask with .bool())"
            )
        if tuple(key_padding_mask.shape) != (b, tk):
            raise InvalidArgumentError(
                f"key_padding_mask must have shape [B, Tk] = [{b}, {tk}], "
                f"got {_shape(key_padding_mask)}"
            )
        if key_padding_mask.device != q.device:
            raise InvalidArgumentError(
                f"key_padding_mask is on {key_padding_mask.device}, q on {q.device}"
            )

    if targets is not None:
        if not isinstance(targets, torch.Tensor) or targets.dim() != 3:
            got = _shape(targets) if isinstance(targets, torch.Tensor) else type(targets).__name__
            raise InvalidArgumentError(f"targets must be an integer tensor [B, Tq, S], got {got}")
        _check_index_tensor("targets", targets, (b, tq, targets.shape[2]), q.device)
        if targets.numel():
            low, high = torch.aminmax(targets)
            message = f"targets must be key indices in [0, {tk}) or -1 for none"
            checks.append(((low >= -1) & (high < tk), lambda: InvalidArgumentError(message)))
        targets = targets.long()

    if key_ranges is not None:
        if not isinstance(key_ranges, torch.Tensor) or key_ranges.dim() != 3:
            got = _shape(key_ranges) if isinstance(key_ranges, torch.Tensor) else type(key_ranges)
            raise InvalidArgumentError(f"key_ranges must be an integer tensor [B, R, 2], got {got}")
        _check_index_tensor("key_ranges", key_ranges, (b, key_ranges.shape[1], 2), q.device)
        if key_ranges.numel():
            start, end = key_ranges[..., 0], key_ranges[..., 1]
            ok = ((start >= 0) & (end <= tk) & (start <= end)).all()
            message = f"key_ranges must be half-open [start, end) with 0 <= start <= end <= Tk={tk}"
            checks.append((ok, lambda: InvalidArgumentError(message)))
        key_ranges = key_ranges.long()

    window = _check_window(window, causal)
    softcap = _check_softcap(softcap)
    sinks = _check_sinks(sinks, hq, q.device)
    if sinks is not None:
        checks.append((finite_flag(sinks), _non_finite_error("sinks", sinks)))

    if not defer_value_checks:
        raise_first_failure(checks)
        checks = []  # read: nothing left for check_values
    return StatsProblem(
        q,
        k,
        float(scale),
        bool(causal),
        key_padding_mask,
        targets,
        key_ranges,
        window=window,
        softcap=softcap,
        sinks=sinks,
        value_checks=tuple(checks),
    )


def _check_window(window: object, causal: bool) -> int | None:
    """A sliding window is a positive integer number of keys, and only defined for causal
    attention (a query's window ends at its own position)."""
    if window is None:
        return None
    if isinstance(window, bool) or not isinstance(window, numbers.Integral):
        raise InputTypeError(
            f"window must be a positive int (keys each query sees, itself included) or None, "
            f"got {window!r}"
        )
    if window < 1:
        raise InvalidArgumentError(
            f"window must be >= 1 (a query at position i sees keys i - window < j <= i), "
            f"got {window}"
        )
    if not causal:
        raise InvalidArgumentError(
            "window (sliding-window attention) needs causal=True: the window ends at each "
            "query's own position"
        )
    return int(window)


def _check_softcap(softcap: object) -> float | None:
    """The logit softcap is a finite positive number (Gemma 2 uses 50.0)."""
    if softcap is None:
        return None
    if isinstance(softcap, bool) or not isinstance(softcap, numbers.Real):
        raise InputTypeError(f"softcap must be a float > 0 or None, got {softcap!r}")
    if not (math.isfinite(softcap) and softcap > 0):
        raise InvalidArgumentError(f"softcap must be a finite float > 0 or None, got {softcap!r}")
    return float(softcap)


def _check_sinks(sinks: object, heads: int, device: torch.device) -> torch.Tensor | None:
    """Sinks are one floating-point logit per query head, on q's device (finiteness is a value
    check, queued with q's and k's)."""
    if sinks is None:
        return None
    if not isinstance(sinks, torch.Tensor):
        raise InputTypeError(
            f"sinks must be a torch.Tensor [Hq] of per-head sink logits, got {type(sinks).__name__}"
        )
    if not sinks.dtype.is_floating_point:
        raise InputTypeError(f"sinks must be a floating-point tensor, got {sinks.dtype}")
    if tuple(sinks.shape) != (heads,):
        raise InvalidArgumentError(
            f"sinks must have shape [Hq] = [{heads}] (one logit per query head), "
            f"got {_shape(sinks)}"
        )
    if sinks.device != device:
        raise InvalidArgumentError(f"sinks is on {sinks.device} but q is on {device}")
    return sinks.detach()


def _non_finite_error(name: str, t: torch.Tensor) -> Callable[[], Exception]:
    """The error for a non-finite q or k. It holds the tensor only weakly: a model run keeps
    every layer's checks until it ends, and must not keep every layer's queries alive with them."""
    tensor = weakref.ref(t)

    def error() -> Exception:
        alive = tensor()
        where = "" if alive is None else f" at {int((~torch.isfinite(alive)).sum())} entries"
        return NonFiniteError(
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
