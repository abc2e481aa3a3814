"""attention_stats against a float64 materialized softmax, on both backends.

The Triton kernel runs on the CPU under TRITON_INTERPRET=1 (set here, before anything imports the
kernel module, because @triton.jit reads it at decoration time), so its shapes stay tiny.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import math  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from interp.kernels import attention_stats, reference_attention_stats  # noqa: E402
from interp.kernels.api import validate  # noqa: E402
from interp.kernels.torch_stats import torch_attention_stats  # noqa: E402

BACKENDS = ["torch", "triton"]
PROB_FIELDS = ("max_prob", "target_prob", "range_mass")


def make_inputs(seed, b=2, hq=4, hkv=2, tq=37, tk=37, d=24, s=3, r=2, pad_frac=0.2, dtype=None):
    """Fresh random q, k, padding mask (some rows fully masked), targets and key ranges."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, hq, tq, d, generator=g)
    k = torch.randn(b, hkv, tk, d, generator=g)
    if dtype is not None:
        q, k = q.to(dtype), k.to(dtype)
    pad = torch.rand(b, tk, generator=g) >= pad_frac
    targets = torch.randint(-1, tk, (b, tq, s), generator=g)
    targets[:, :, 0] = (
        tk - tq + torch.arange(tq)
    )  # the query's own position (visible unless padded)
    ranges = torch.sort(torch.randint(0, tk + 1, (b, r, 2), generator=g), dim=-1).values
    if r:
        ranges[0, 0] = torch.tensor([0, tk])  # the whole sequence: mass 1 on live rows
    return q, k, pad, targets, ranges


def assert_matches(out, ref, q, k, scale, rtol=1e-5):
    """lse and probabilities within rtol of the reference; argmax equal except at exact ties."""
    assert torch.equal(torch.isneginf(out.lse), torch.isneginf(ref.lse))
    torch.testing.assert_close(out.lse.double(), ref.lse, rtol=rtol, atol=1e-6)
    for name in PROB_FIELDS:
        got, want = getattr(out, name), getattr(ref, name)
        if want is None:
            assert got is None, name
            continue
        assert got.shape == want.shape, name
        torch.testing.assert_close(got.double(), want, rtol=rtol, atol=1e-30, msg=name)
    differ = out.argmax != ref.argmax
    if differ.any():  # allowed only where both keys carry exactly the same float64 logit
        group = q.shape[1] // k.shape[1]
        keys = k.double().repeat_interleave(group, dim=1)
        logits = scale * q.double() @ keys.transpose(-1, -2)
        at_out = logits.gather(-1, out.argmax.clamp(min=0)[..., None])[..., 0]
        at_ref = logits.gather(-1, ref.argmax.clamp(min=0)[..., None])[..., 0]
        assert torch.equal(at_out[differ], at_ref[differ]), "argmax differs beyond exact ties"
        assert (out.argmax[differ] >= 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [True, False])
def test_matches_reference_gqa_padding(backend, causal):
    q, k, pad, targets, ranges = make_inputs(seed=11 + causal)
    kwargs = dict(causal=causal, key_padding_mask=pad, targets=targets, key_ranges=ranges)
    out = attention_stats(q, k, backend=backend, **kwargs)
    ref = reference_attention_stats(q, k, **kwargs)
    assert_matches(out, ref, q, k, 1 / math.sqrt(q.shape[-1]))
    assert out.lse.dtype == torch.float32 and out.argmax.dtype == torch.long


@pytest.mark.parametrize("backend", BACKENDS)
def test_decode_suffix_queries(backend):
    """Tq < Tk: query i sits at position Tk - Tq + i (a KV-cache decode step), with padding."""
    q, k, pad, targets, ranges = make_inputs(seed=3, b=2, hq=6, hkv=3, tq=5, tk=41, d=32, r=3)
    pad[1] = torch.arange(41) >= 39  # batch 1: only keys 39, 40 are real: queries 0-2 see none
    kwargs = dict(causal=True, key_padding_mask=pad, targets=targets, key_ranges=ranges, scale=0.3)
    out = attention_stats(q, k, backend=backend, **kwargs)
    assert_matches(out, reference_attention_stats(q, k, **kwargs), q, k, 0.3)
    assert torch.isneginf(out.lse[1, :, :3]).all() and torch.isfinite(out.lse[1, :, 3:]).all()
    # the first query sees keys 0..36: a key after it gets no probability
    tail = torch.tensor([[[37, 41]]] * 2)
    out = attention_stats(q, k, backend=backend, causal=True, key_ranges=tail, scale=0.3)
    assert out.range_mass[:, :, 0, 0].abs().max() == 0
    assert (out.range_mass[:, :, -1, 0] > 0).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_causal_more_queries_than_keys(backend):
    """Without causal masking Tq > Tk is valid: every query sees every real key."""
    q, k, pad, _, ranges = make_inputs(seed=31, b=2, hq=4, hkv=2, tq=29, tk=11, d=16)
    targets = torch.randint(-1, 11, (2, 29, 3), generator=torch.Generator().manual_seed(32))
    kwargs = dict(causal=False, key_padding_mask=pad, targets=targets, key_ranges=ranges)
    out = attention_stats(q, k, backend=backend, **kwargs)
    assert out.lse.shape == (2, 4, 29)
    assert_matches(out, reference_attention_stats(q, k, **kwargs), q, k, 0.25)


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_key_ranges(backend):
    """R = 20 > 16: the kernel's range tile widens to 32 columns."""
    q, k, pad, targets, ranges = make_inputs(seed=37, b=2, hq=2, hkv=1, tq=40, tk=40, d=16, r=20)
    ranges[1, -1] = torch.tensor([39, 40])  # a one-key range in the last key block
    kwargs = dict(key_padding_mask=pad, targets=targets, key_ranges=ranges)
    out = attention_stats(q, k, backend=backend, **kwargs)
    assert out.range_mass.shape == (2, 2, 40, 20)
    assert_matches(out, reference_attention_stats(q, k, **kwargs), q, k, 0.25)


@pytest.fixture
def undefined_masked_lanes(monkeypatch):
    """Make the interpreter fill the masked-off lanes of a ``tl.load`` without ``other`` with NaN
    (integers: their maximum), as a GPU leaves them undefined; unpatched it would give zeros."""
    from triton.runtime import interpreter

    load = interpreter.InterpreterBuilder.create_masked_load

    def poisoned(self, ptrs, mask, other, *args, **kwargs):
        if other is None:
            tt = ptrs.get_element_ty()
            np_dtype = interpreter._get_np_dtype(tt)
            if tt == tl.bfloat16:
                fill = 0x7FC0  # bfloat16 NaN, stored as uint16
            elif np.issubdtype(np_dtype, np.floating):
                fill = np.nan
            else:
                fill = True if np_dtype == np.bool_ else np.iinfo(np_dtype).max
            other = interpreter.TensorHandle(np.full(ptrs.data.shape, fill, dtype=np_dtype), tt)
        return load(self, ptrs, mask, other, *args, **kwargs)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_masked_load", poisoned)
    out = torch.zeros(8)
    _masked_copy[(1,)](torch.ones(4), out, 4, BLOCK=8)
    assert out[:4].eq(1).all() and out[4:].isnan().all(), "the poisoning did not take effect"


@triton.jit
def _masked_copy(src, dst, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(dst + offs, tl.load(src + offs, mask=offs < n))


@pytest.mark.parametrize("d", [80, 96])
def test_head_dim_not_a_power_of_two(d, undefined_masked_lanes):
    """D = 80 or 96 pads the kernel's head-dim tile to 128 lanes; those lanes must read as zeros."""
    q, k, pad, targets, ranges = make_inputs(seed=41 + d, b=1, hq=2, hkv=1, tq=21, tk=21, d=d)
    kwargs = dict(key_padding_mask=pad, targets=targets, key_ranges=ranges)
    out = attention_stats(q, k, backend="triton", **kwargs)
    assert_matches(out, reference_attention_stats(q, k, **kwargs), q, k, 1 / math.sqrt(d))


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_target_and_range_sets(backend):
    q, k, pad, _, _ = make_inputs(seed=5, b=1, tq=20, tk=20, d=16)
    targets = torch.empty(1, 20, 0, dtype=torch.long)
    ranges = torch.empty(1, 0, 2, dtype=torch.long)
    out = attention_stats(
        q, k, targets=targets, key_ranges=ranges, key_padding_mask=pad, backend=backend
    )
    ref = reference_attention_stats(q, k, targets=targets, key_ranges=ranges, key_padding_mask=pad)
    assert out.target_prob.shape == (1, 4, 20, 0) and out.range_mass.shape == (1, 4, 20, 0)
    assert_matches(out, ref, q, k, 0.25)
    bare = attention_stats(q, k, backend=backend)
    assert bare.target_prob is None and bare.range_mass is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_uniform_attention_known_answer(backend):
    """Zero queries tie every visible key: lse = log(#visible), argmax = first visible key."""
    tk = 70  # more than one key block on both backends
    q = torch.zeros(2, 2, tk, 16)
    k = torch.randn(2, 1, tk, 16, generator=torch.Generator().manual_seed(0))
    pad = torch.ones(2, tk, dtype=torch.bool)
    pad[1, :4] = False  # batch 1: the first four keys are padding
    ranges = torch.tensor([[[0, 10]], [[0, 10]]])
    out = attention_stats(q, k, key_padding_mask=pad, key_ranges=ranges, backend=backend)

    pos = torch.arange(tk)
    visible = torch.stack([pos + 1, (pos - 3).clamp(min=0)])  # [B, Tq] keys each query sees
    in_range = torch.stack([(pos + 1).clamp(max=10), (pos - 3).clamp(0, 6)])
    live = visible > 0
    want_lse = torch.where(live, visible.double().log(), -torch.inf)
    torch.testing.assert_close(
        out.lse.double(), want_lse[:, None].expand(2, 2, tk), rtol=1e-6, atol=1e-6
    )
    want_arg = torch.where(live, torch.tensor([[0], [4]]), -1)
    assert torch.equal(out.argmax, want_arg[:, None].expand(2, 2, tk))
    want_max = torch.where(live, 1 / visible.double().clamp(min=1), 0.0)
    torch.testing.assert_close(out.max_prob.double(), want_max[:, None].expand(2, 2, tk))
    want_mass = torch.where(live, in_range / visible.double().clamp(min=1), 0.0)
    torch.testing.assert_close(out.range_mass[..., 0].double(), want_mass[:, None].expand(2, 2, tk))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_masked_rows(backend):
    """A batch whose keys are all padding: lse=-inf, argmax=-1, every probability 0."""
    q, k, pad, targets, ranges = make_inputs(seed=8, b=2, tq=18, tk=18, d=16)
    pad[1] = False
    kwargs = dict(key_padding_mask=pad, targets=targets, key_ranges=ranges, causal=False)
    out = attention_stats(q, k, backend=backend, **kwargs)
    assert torch.isneginf(out.lse[1]).all() and (out.argmax[1] == -1).all()
    for name in PROB_FIELDS:
        assert (getattr(out, name)[1] == 0).all(), name
    assert_matches(out, reference_attention_stats(q, k, **kwargs), q, k, 0.25)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(backend, dtype):
    """Half inputs are multiplied exactly and accumulated in float32 against the same inputs."""
    q, k, pad, targets, ranges = make_inputs(seed=21, b=1, tq=24, tk=24, d=32, dtype=dtype)
    kwargs = dict(key_padding_mask=pad, targets=targets, key_ranges=ranges)
    out = attention_stats(q, k, backend=backend, **kwargs)
    assert out.lse.dtype == torch.float32
    assert_matches(
        out, reference_attention_stats(q, k, **kwargs), q, k, 1 / math.sqrt(32), rtol=1e-4
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_logits_stay_finite(backend):
    """Logits in the hundreds: the running max keeps exp() from overflowing.

    A probability's relative error is its logit's absolute error, which for float32 logits of
    size ~100 is ~1e-5, hence rtol 1e-4 here.
    """
    q, k, _, targets, ranges = make_inputs(seed=13, b=1, tq=20, tk=33, d=16)
    kwargs = dict(scale=8.0, targets=targets, key_ranges=ranges)
    out = attention_stats(q, k, backend=backend, **kwargs)
    assert torch.isfinite(out.lse).all() and out.lse.abs().max() > 50
    assert_matches(out, reference_attention_stats(q, k, **kwargs), q, k, 8.0, rtol=1e-4)


@pytest.mark.parametrize("chunk_elements", [1, 700, 1 << 20])
def test_torch_chunking_is_exact(chunk_elements):
    """Any query-chunk size (one row per chunk up to everything at once) gives the reference."""
    q, k, pad, targets, ranges = make_inputs(seed=17, b=2, hq=6, hkv=2, tq=30, tk=45, d=16, r=3)
    kwargs = dict(causal=True, key_padding_mask=pad, targets=targets, key_ranges=ranges)
    problem = validate(q, k, scale=None, **kwargs)
    out = torch_attention_stats(problem, chunk_elements=chunk_elements)
    assert_matches(out, reference_attention_stats(q, k, **kwargs), q, k, 0.25)


def test_torch_float64_inputs():
    q, k, pad, targets, ranges = make_inputs(seed=19, dtype=torch.float64)
    kwargs = dict(key_padding_mask=pad, targets=targets, key_ranges=ranges)
    out = attention_stats(q, k, backend="torch", **kwargs)
    assert out.lse.dtype == torch.float64
    assert_matches(
        out, reference_attention_stats(q, k, **kwargs), q, k, 1 / math.sqrt(24), rtol=1e-12
    )


def test_backends_agree_on_longer_sequence():
    """Several key blocks per query block (Triton) and several query chunks (torch)."""
    q, k, pad, targets, ranges = make_inputs(seed=23, b=1, hq=2, hkv=1, tq=70, tk=70, d=16)
    kwargs = dict(key_padding_mask=pad, targets=targets, key_ranges=ranges)
    ref = reference_attention_stats(q, k, **kwargs)
    assert_matches(attention_stats(q, k, backend="triton", **kwargs), ref, q, k, 0.25)
    out = torch_attention_stats(
        validate(q, k, scale=None, causal=True, **kwargs), chunk_elements=400
    )
    assert_matches(out, ref, q, k, 0.25)


@pytest.mark.parametrize("backend", BACKENDS)
def test_strided_inputs_that_need_grad(backend):
    """q/k as a model hands them over: [B, T, H, D] transposed views, inside autograd."""
    g = torch.Generator().manual_seed(29)
    q = torch.randn(1, 19, 4, 16, generator=g).transpose(1, 2).requires_grad_()
    k = torch.randn(1, 19, 2, 16, generator=g).transpose(1, 2)
    targets = torch.randint(-1, 19, (1, 19, 2), generator=g)
    out = attention_stats(q, k, targets=targets, backend=backend)
    ref = reference_attention_stats(q.detach(), k, targets=targets)
    assert_matches(out, ref, q.detach(), k, 0.25)
