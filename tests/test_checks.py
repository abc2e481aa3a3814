"""interp._checks.all_finite against torch.isfinite on every dtype and kind of bad entry."""

from __future__ import annotations

import pytest
import torch

from interp._checks import all_finite


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), float("-inf")])
def test_all_finite_agrees_with_isfinite(dtype, bad):
    values = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(0)).to(dtype)
    if bad is not None:
        values[1, 2, 3] = bad
    assert all_finite(values) == bool(torch.isfinite(values).all())


def test_integer_and_empty_tensors_are_finite():
    assert all_finite(torch.arange(5))
    assert all_finite(torch.empty(0, 3))
