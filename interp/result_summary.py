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


def table_rows(result: Any) -> list[str]:
    """The lines of ``result.table()``, each cut to 120 characters (or why it failed)."""
    try:
        text = result.table()
    except Exception as error:  # a summary must never raise: say what went wrong instead
        return [f"(table() failed: {type(error).__name__}: {_clip(str(error))})"]
    return [row if len(row) <= 120 else row[:119] + "…" for row in str(text).splitlines()]


def summary(result: Any) -> str:
    """``Type (module)``, one line per field, then the head of ``table()``: under MAX_CHARS.

    Table lines are added while they fit (the rest are counted), so the cut never falls inside a
    line; a result with very many fields is cut at the last whole line that fits.
    """
    cls = type(result)
    lines = [f"{cls.__name__} ({cls.__module__})"]
    for field in dataclasses.fields(result):
        lines.append(f"  {field.name}: {describe(getattr(result, field.name, None))}")
    lines.append("table():")
    budget = MAX_CHARS - 60  # room for the "… more lines" note
    size = sum(len(line) + 1 for line in lines)
    rows = table_rows(result)
    for index, row in enumerate(rows):
        if index == TABLE_LINES or size + len(row) + 3 > budget:
            lines.append(f"  … {len(rows) - index} more lines: print(result.table())")
            break
        lines.append("  " + row)
        size += len(row) + 3
    text = "\n".join(lines)
    if len(text) < MAX_CHARS:
        return text
    return text[: text.rfind("\n", 0, MAX_CHARS - 2)] + "\n…"
