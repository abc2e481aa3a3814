"""attention_stats input checks and backend selection."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from interp.kernels import AttentionStats, attention_stats  # noqa: E402
from interp.kernels.api import resolve_backend  # noqa: E402

Q = torch.randn(1, 4, 6, 8)
K = torch.randn(1, 2, 6, 8)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(q=torch.randn(4, 6, 8)), ValueError, "must be 4-D"),
        (dict(q=Q.numpy()), TypeError, "q must be a torch.Tensor"),
        (dict(q=Q.long()), TypeError, "float16, bfloat16, float32 or float64"),
        (dict(k=K.double()), TypeError, "same dtype"),
        (dict(k=torch.randn(1, 3, 6, 8)), ValueError, "multiple of key heads"),
        (dict(k=torch.randn(1, 2, 6, 4)), ValueError, "head dimension"),
        (dict(k=torch.randn(1, 2, 5, 8)), ValueError, "Tq <= Tk"),
        (dict(scale=float("nan")), TypeError, "finite float"),
        (dict(key_padding_mask=torch.ones(1, 6)), TypeError, "True = real key"),
        (dict(key_padding_mask=torch.ones(1, 5, dtype=torch.bool)), ValueError, r"\[1, 6\]"),
        (dict(targets=torch.zeros(1, 6)), ValueError, r"\[B, Tq, S\]"),
        (dict(targets=torch.zeros(1, 6, 2)), TypeError, "integer key indices"),
        (dict(targets=torch.zeros(1, 5, 2, dtype=torch.long)), ValueError, "shape"),
        (dict(targets=torch.full((1, 6, 1), 6)), ValueError, r"\[0, 6\) or -1"),
        (dict(targets=torch.full((1, 6, 1), -2)), ValueError, r"\[0, 6\) or -1"),
        (dict(key_ranges=torch.tensor([[[3, 2]]])), ValueError, "start <= end"),
        (dict(key_ranges=torch.tensor([[[0, 7]]])), ValueError, "end <= Tk=6"),
        (dict(key_ranges=torch.tensor([[0, 2]])), ValueError, r"\[B, R, 2\]"),
        (dict(backend="cuda"), ValueError, "backend must be one of"),
        (dict(backend="triton", q=Q.double(), k=K.double()), TypeError, "backend='torch'"),
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    args = dict(q=Q, k=K) | kwargs
    with pytest.raises(error, match=match):
        attention_stats(**args)


def test_non_causal_allows_more_queries_than_keys():
    out = attention_stats(torch.randn(1, 2, 9, 8), torch.randn(1, 1, 3, 8), causal=False)
    assert isinstance(out, AttentionStats) and out.lse.shape == (1, 2, 9)
    assert (out.argmax >= 0).all() and (out.argmax < 3).all()


def test_auto_picks_torch_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        resolve_backend("triton", torch.device("cpu"))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("triton", torch.device("cpu")) == "triton"
