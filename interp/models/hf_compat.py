"""What differs between the transformers 5.x releases interp runs on.

- The KV cache argument of a model's ``forward`` and of ``masking_utils.create_causal_mask`` was
  ``past_key_values`` and became ``cache`` (5.17 has the old name, 5.24 the new one, with the old
  one deprecated); the output's field followed (``past_key_values`` -> ``cache``).
- Some modules returned a bare tensor where later releases return ``(output, weights)`` (Dinov2's
  attention in 5.17), so a branch output is read with :func:`first`.

Each helper reads the installed release's own signature rather than its version number.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch


@functools.cache
def _parameters(fn: Callable) -> frozenset[str]:
    return frozenset(inspect.signature(fn).parameters)  # follows decorators' __wrapped__


def cache_argument(target: torch.nn.Module | Callable) -> str:
    """The name under which a model's ``forward`` (pass the model) or a function such as
    ``create_causal_mask`` takes the KV cache: ``"cache"`` or ``"past_key_values"``."""
    fn = type(target).forward if isinstance(target, torch.nn.Module) else target
    return "cache" if "cache" in _parameters(fn) else "past_key_values"


def returned_cache(output: Any) -> Any:
    """The updated KV cache of a model output, under either field name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def first(output: object) -> torch.Tensor:
    """The tensor of a module output that is either a tensor or a tuple led by one."""
    return output[0] if isinstance(output, tuple) else output
