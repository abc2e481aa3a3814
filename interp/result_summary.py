"""A short text summary of a :class:`~interp.results.Result`: what ``print(result)`` shows.

A result holds tensors of thousands of numbers; the dataclass ``repr`` printed all of them
(20-50 kB for a fixed-point search). The summary names the type, each field as a shape or a short
value (settings cut to a line), then the first lines of ``table()``, so it stays under
:data:`MAX_CHARS` whatever the result holds.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

MAX_CHARS = 2000
VALUE_CHARS = 100
TABLE_LINES = 12


def _clip(text: str, limit: int = VALUE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(value: Any) -> str:
    """One short line for a field value: arrays as ``Tensor[3, 4] float32``, the rest clipped."""
    if isinstance(value, torch.Tensor):
        dtype = str(value.dtype).removeprefix("torch.")
        return f"Tensor[{', '.join(map(str, value.shape))}] {dtype}"
    if isinstance(value, np.ndarray):
        return f"ndarray[{', '.join(map(str, value.shape))}] {value.dtype}"
    if (
        isinstance(value, dict)
        and value
        and all(isinstance(v, torch.Tensor | np.ndarray) for v in value.values())
    ):
        items = [f"{k}: {describe(v)}" for k, v in list(value.items())[:3]]
        more = f", … {len(value) - 3} more" if len(value) > 3 else ""
        return _clip("{" + ", ".join(items) + more + "}", 3 * VALUE_CHARS)
    if isinstance(value, list | tuple) and len(value) > 6:
        return f"{type(value).__name__}[{len(value)}] " + _clip(repr(value[:3])[:-1] + ", …]")
    return _clip(repr(value))


def table_head(result: Any, lines: int = TABLE_LINES) -> list[str]:
    """The first ``lines`` lines of ``result.table()`` (or why it could not be made)."""
    try:
        text = result.table()
    except Exception as error:  # a summary must never raise: say what went wrong instead
        return [f"(table() failed: {type(error).__name__}: {_clip(str(error))})"]
    rows = str(text).splitlines()
    head = [row if len(row) <= 120 else row[:119] + "…" for row in rows[:lines]]
    if len(rows) > lines:
        head.append(f"… {len(rows) - lines} more lines: print(result.table())")
    return head


def summary(result: Any) -> str:
    """``Type(module)`` then one line per field, then the head of ``table()``; at most MAX_CHARS."""
    cls = type(result)
    lines = [f"{cls.__name__} ({cls.__module__})"]
    for field in dataclasses.fields(result):
        lines.append(f"  {field.name}: {describe(getattr(result, field.name, None))}")
    lines.append("table():")
    lines += ["  " + row for row in table_head(result)]
    text = "\n".join(lines)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 2] + "\n…"
