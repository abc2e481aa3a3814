"""attention_stats with sliding windows, logit softcapping and attention sinks.

Three layers of evidence: the float64 reference against an independent materialized softmax
written here from Hugging Face's eager formulas (and against transformers' own mask functions and
eager attention functions); both backends (torch; Triton under the interpreter, tiny shapes)
against the reference; known answers for the edge cases (window 1, window >= T, rows that see no
key). Combinations: window + padding, window + decode offset, softcap + targets/ranges,
sinks + GQA, all three together.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import types  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from interp.errors import InputTypeError, InvalidArgumentError, NonFiniteError  # noqa: E402
from interp.kernels import attention_stats, reference_attention_stats  # noqa: E402
from interp.kernels.api import check_values, validate  # noqa: E402
from interp.kernels.torch_stats import torch_attention_stats  # noqa: E402

BACKENDS = ["torch", "triton"]
FIELDS = ("lse", "max_prob", "target_prob", "range_mass")

# name: (shape and feature settings). Logits have std ~2 so that a softcap of 2-4 bends them.
CASES = {
    "window": dict(window=5),
    "window+padding": dict(window=6, pad=True),
    "window+decode": dict(window=4, tq=7, tk=40, pad=True),
    "window>=T": dict(window=37, pad=True),
    "window=1": dict(window=1, pad=True),
    "softcap+targets+ranges": dict(softcap=3.0, pad=True),
    "softcap+decode": dict(softcap=2.0, tq=6, tk=33),
    "sinks+gqa": dict(sinks=True, hq=6, hkv=2, pad=True),
    "sinks+dead rows": dict(sinks=True, pad=True, dead=True),
    "all three": dict(window=9, softcap=4.0, sinks=True, pad=True, tq=30, tk=45),
    "all three, decode": dict(window=20, softcap=2.5, sinks=True, tq=5, tk=41, pad=True),
}


def make_case(name, dtype=torch.float32, seed=0):
    """q, k and the keyword arguments (padding, targets, ranges, window/softcap/sinks) of a case."""
    c = dict(b=2, hq=4, hkv=2, tq=37, tk=37, d=16) | CASES[name]
    g = torch.Generator().manual_seed(seed + sum(map(ord, name)))
    b, tq, tk = c["b"], c["tq"], c["tk"]
    q = (2 * torch.randn(b, c["hq"], tq, c["d"], generator=g)).to(dtype)
    k = torch.randn(b, c["hkv"], tk, c["d"], generator=g).to(dtype)
    targets = torch.randint(-1, tk, (b, tq, 3), generator=g)
    targets[:, :, 0] = tk - tq + torch.arange(tq)  # the query's own key
    targets[:, :, 1] = (tk - tq + torch.arange(tq) - c.get("window", 1)).clamp(min=-1)  # just out
    ranges = torch.sort(torch.randint(0, tk + 1, (b, 3, 2), generator=g), dim=-1).values
    ranges[0, 0] = torch.tensor([0, tk])
    kwargs = dict(targets=targets, key_ranges=ranges, window=c.get("window"))
    kwargs["softcap"] = c.get("softcap")
    if c.get("sinks"):
        kwargs["sinks"] = torch.randn(c["hq"], generator=g).to(dtype) + 1.0
    if c.get("pad"):
        pad = torch.rand(b, tk, generator=g) >= 0.25
        if c.get("dead"):
            pad[1] = False  # batch 1: no real key at all
        kwargs["key_padding_mask"] = pad
    return q, k, kwargs


def eager_stats(q, k, *, scale, targets, key_ranges, window, softcap, sinks=None, pad=None):
    """The statistics of Hugging Face's eager attention, materialized in float64.

    Logits as Gemma 2's ``eager_attention_forward`` (``q·k * scaling``, then ``/ softcap``,
    ``tanh``, ``* softcap``); the mask as ``masking_utils`` (causal ``kv_idx <= q_idx`` and
    ``sliding_window_overlay``'s ``kv_idx > q_idx - sliding_window``, queries at the last Tq
    positions) and the padding mask; sinks as GPT-OSS's (a column concatenated to the logits,
    max subtracted, softmax, the column dropped). Rows with no visible key get the documented
    convention (lse = -inf or the sink, argmax -1, zero probabilities).
    """
    b, hq, tq, _ = q.shape
    tk = k.shape[2]
    keys = k.double().repeat_interleave(hq // k.shape[1], dim=1)  # transformers' repeat_kv order
    logits = torch.matmul(q.double(), keys.transpose(2, 3)) * scale
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    q_idx = torch.arange(tk - tq, tk)[:, None]
    kv_idx = torch.arange(tk)[None, :]
    allowed = kv_idx <= q_idx
    if window is not None:
        allowed = allowed & (kv_idx > q_idx - window)
    allowed = allowed[None, None].expand(b, 1, tq, tk)
    if pad is not None:
        allowed = allowed & pad[:, None, None, :]
    logits = logits.masked_fill(~allowed, -torch.inf)
    if sinks is not None:
        sink = sinks.double().reshape(1, -1, 1, 1).expand(b, -1, tq, -1)
        combined = torch.cat([logits, sink], dim=-1)
        lse = torch.logsumexp(combined, dim=-1)
        combined = combined - combined.max(dim=-1, keepdim=True).values
        probs = torch.softmax(combined, dim=-1)[..., :-1]
    else:
        lse = torch.logsumexp(logits, dim=-1)
        probs = torch.softmax(logits, dim=-1)  # NaN where no key is visible
    dead = ~allowed.any(-1).expand(b, hq, tq)
    probs = torch.where(dead[..., None], 0.0, probs)
    argmax = torch.where(dead, -1, probs.argmax(-1))
    tgt = targets[:, None].expand(b, hq, tq, -1)
    target_prob = torch.where(tgt >= 0, probs.gather(-1, tgt.clamp(min=0)), 0.0)
    range_mass = torch.zeros(b, hq, tq, key_ranges.shape[1], dtype=torch.float64)
    for i in range(b):
        for r, (lo, hi) in enumerate(key_ranges[i].tolist()):
            range_mass[i, :, :, r] = probs[i, :, :, lo:hi].sum(-1)
    stats = types.SimpleNamespace(lse=lse, argmax=argmax, max_prob=probs.amax(-1))
    stats.target_prob, stats.range_mass, stats.logits = target_prob, range_mass, logits
    return stats


def eager_for(q, k, kwargs):
    """eager_stats with a case's keyword arguments."""
    return eager_stats(
        q,
        k,
        scale=q.shape[-1] ** -0.5,
        pad=kwargs.get("key_padding_mask"),
        **{n: kwargs.get(n) for n in ("targets", "key_ranges", "window", "softcap", "sinks")},
    )


def assert_stats_close(out, want, logits, rtol=1e-5):
    """Every field within rtol of ``want``; argmax equal except between keys whose float64
    (capped, masked) logits are exactly equal."""
    assert torch.equal(torch.isneginf(out.lse), torch.isneginf(want.lse))
    for name in FIELDS:
        got, expected = getattr(out, name), getattr(want, name)
        if expected is None:
            assert got is None, name
            continue
        assert got.shape == expected.shape, name
        atol = 1e-6 if name == "lse" else 1e-30
        torch.testing.assert_close(got.double(), expected, rtol=rtol, atol=atol, msg=name)
    differ = out.argmax != want.argmax
    if differ.any():
        at_out = logits.gather(-1, out.argmax.clamp(min=0)[..., None])[..., 0]
        at_want = logits.gather(-1, want.argmax.clamp(min=0)[..., None])[..., 0]
        assert torch.equal(at_out[differ], at_want[differ]), "argmax differs beyond exact ties"


@pytest.mark.parametrize("name", list(CASES))
def test_reference_equals_independent_eager_softmax(name):
    q, k, kwargs = make_case(name)
    want = eager_for(q, k, kwargs)
    ref = reference_attention_stats(q, k, **kwargs)
    assert_stats_close(ref, want, want.logits, rtol=1e-12)
    assert torch.equal(ref.argmax, want.argmax)
    if name != "window>=T":  # the feature changes the answer: the comparison has teeth
        plain = {n: v for n, v in kwargs.items() if n not in ("window", "softcap", "sinks")}
        assert not torch.allclose(reference_attention_stats(q, k, **plain).lse, ref.lse)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CASES))
def test_backends_equal_reference(backend, name):
    q, k, kwargs = make_case(name)
    out = attention_stats(q, k, backend=backend, **kwargs)
    assert out.lse.dtype == torch.float32 and out.argmax.dtype == torch.long
    assert_stats_close(
        out, reference_attention_stats(q, k, **kwargs), eager_for(q, k, kwargs).logits
    )


def test_reference_equals_transformers_eager_attention():
    """The reference's probabilities are those of transformers' own eager attention: Gemma 2's
    (softcap) and GPT-OSS's (sinks), with the mask from masking_utils' sliding-window, causal and
    padding mask functions (an additive float mask, as the eager path receives it)."""
    from transformers.masking_utils import (
        and_masks,
        padding_mask_function,
        sliding_window_causal_mask_function,
    )
    from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward as gemma2
    from transformers.models.gpt_oss.modeling_gpt_oss import eager_attention_forward as gpt_oss

    q, k, kwargs = make_case("all three", dtype=torch.float64)
    b, hq, tq, d = q.shape
    tk, group = k.shape[2], hq // k.shape[1]
    pad, window = kwargs["key_padding_mask"], kwargs["window"]
    mask_fn = and_masks(sliding_window_causal_mask_function(window), padding_mask_function(pad))
    allowed = mask_fn(
        torch.arange(b)[:, None, None, None],
        0,
        torch.arange(tk - tq, tk)[None, None, :, None],
        torch.arange(tk)[None, None, None, :],
    )  # [B, 1, Tq, Tk]
    additive = torch.zeros(allowed.shape, dtype=q.dtype).masked_fill(~allowed, -1e300)
    live = allowed.any(-1).expand(b, hq, tq)  # rows that see a key (eager spreads dead rows)
    value = torch.zeros(b, k.shape[1], tk, d, dtype=q.dtype)
    module = types.SimpleNamespace(
        num_key_value_groups=group, head_dim=d, training=False, sinks=kwargs["sinks"]
    )
    scale = d**-0.5

    def compare(hf_probs, **features):
        ref = reference_attention_stats(q, k, window=window, key_padding_mask=pad, **features)
        tol = dict(rtol=1e-6, atol=1e-9)  # gemma2's eager softmax runs in float32
        torch.testing.assert_close(ref.max_prob[live], hf_probs.amax(-1)[live], **tol)
        picked = hf_probs.gather(-1, ref.argmax.clamp(min=0)[..., None])[..., 0]
        torch.testing.assert_close(picked[live], hf_probs.amax(-1)[live], **tol)
        assert (ref.argmax[~live] == -1).all()

    _, probs = gemma2(module, q, k, value, additive, scaling=scale, softcap=kwargs["softcap"])
    compare(probs, softcap=kwargs["softcap"])
    _, probs = gpt_oss(module, q, k, value, additive, scaling=scale)
    compare(probs, sinks=kwargs["sinks"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("window", [37, 10**9])
def test_window_at_least_the_sequence_is_no_window(backend, window):
    q, k, kwargs = make_case("softcap+targets+ranges")
    plain = attention_stats(q, k, backend=backend, **kwargs)
    windowed = attention_stats(q, k, backend=backend, **kwargs | dict(window=window))
    for name in FIELDS + ("argmax",):
        assert torch.equal(getattr(windowed, name), getattr(plain, name)), name
    ref = reference_attention_stats(q, k, **kwargs | dict(window=window))
    assert torch.equal(ref.lse, reference_attention_stats(q, k, **kwargs).lse)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("with_sinks", [False, True])
def test_window_one_sees_only_itself(backend, with_sinks):
    """window=1: each query's only key is its own position. Known answer: lse is its own logit
    (log-added to the sink), argmax its position, max_prob 1 (with a sink: sigmoid(s - sink))."""
    q, k, kwargs = make_case("window=1")
    sinks = torch.tensor([0.5, -1.0, 2.0, 0.0]) if with_sinks else None
    out = attention_stats(q, k, backend=backend, **kwargs | dict(sinks=sinks))
    own = (q.double() * k.double().repeat_interleave(2, dim=1)).sum(-1) / 4  # scale 1/sqrt(16)
    real = kwargs["key_padding_mask"][:, None, :].expand_as(own)  # the query's own key is real
    pos = torch.arange(37).expand_as(own)
    assert torch.equal(out.argmax, torch.where(real, pos, -1))
    if sinks is None:
        want_lse = torch.where(real, own, -torch.inf)
        want_max = real.double()
    else:
        sink = sinks.double()[None, :, None].expand_as(own)
        want_lse = torch.where(real, torch.logaddexp(own, sink), sink)
        want_max = torch.where(real, torch.sigmoid(own - sink), 0.0)
    torch.testing.assert_close(out.lse.double(), want_lse, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.max_prob.double(), want_max, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.target_prob[..., 0].double(), want_max, rtol=1e-5, atol=1e-7)
    assert (out.target_prob[..., 1] == 0).all()  # the key just before the window


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_without_a_visible_key(backend):
    """Padding, a window and a decode offset together leave some rows with no key: without sinks
    lse = -inf; with sinks all mass is on the sink (lse = sink, argmax -1, probabilities 0)."""
    q, k, kwargs = make_case("all three, decode")
    pad = torch.ones(2, 41, dtype=torch.bool)
    pad[0, 17:39] = False  # batch 0: queries 36..38 (windows 17..36 to 19..38) see no key
    pad[1] = False  # batch 1: nothing at all
    kwargs["key_padding_mask"] = pad
    sinks = kwargs["sinks"]
    for with_sinks in (False, True):
        kw = kwargs | dict(sinks=sinks if with_sinks else None)
        out = attention_stats(q, k, backend=backend, **kw)
        dead = torch.zeros(2, 4, 5, dtype=torch.bool)
        dead[1], dead[0, :, :3] = True, True
        if with_sinks:  # (the kernel works in log2 units: equal up to float32 rounding)
            want = sinks[:, None].expand(2, 4, 5)[dead]
            torch.testing.assert_close(out.lse[dead], want, rtol=1e-6, atol=1e-7)
        else:
            assert torch.isneginf(out.lse[dead]).all()
        assert (out.argmax[dead] == -1).all() and torch.isfinite(out.lse[~dead]).all()
        for name in ("max_prob", "target_prob", "range_mass"):
            assert (getattr(out, name)[dead] == 0).all(), name
        assert_stats_close(out, reference_attention_stats(q, k, **kw), eager_for(q, k, kw).logits)


@pytest.mark.parametrize("chunk_elements", [1, 300, 1 << 20])
def test_torch_chunking_is_exact_with_all_features(chunk_elements):
    q, k, kwargs = make_case("all three")
    problem = validate(q, k, scale=None, causal=True, **kwargs)
    out = torch_attention_stats(problem, chunk_elements=chunk_elements)
    assert_stats_close(
        out, reference_attention_stats(q, k, **kwargs), eager_for(q, k, kwargs).logits
    )


def test_torch_window_memory_stays_within_a_chunk(monkeypatch):
    """A long sequence with a small window: every logits block the torch backend multiplies is
    at most rows x (rows + window - 1), within ``chunk_elements``; never [T, T]."""
    g = torch.Generator().manual_seed(5)
    t, window, chunk = 600, 8, 4096
    q, k = torch.randn(1, 2, t, 8, generator=g), torch.randn(1, 1, t, 8, generator=g)
    shapes = []
    bmm = torch.bmm

    def spy(a, b, *, out=None):
        shapes.append(out.shape)
        return bmm(a, b, out=out)

    monkeypatch.setattr(torch, "bmm", spy)
    problem = validate(q, k, scale=None, causal=True, key_padding_mask=None, targets=None,
                       key_ranges=None, window=window)  # fmt: skip
    out = torch_attention_stats(problem, chunk_elements=chunk)
    monkeypatch.undo()
    assert max(s.numel() for s in shapes) <= chunk
    assert max(s[-1] for s in shapes) <= max(s[-2] for s in shapes) // 2 + window - 1
    ref = reference_attention_stats(q, k, window=window)
    none = torch.zeros(1, t, 0, dtype=torch.long)
    want = eager_stats(q, k, scale=8**-0.5, targets=none, key_ranges=none.view(1, 0, 2),
                       window=window, softcap=None)  # fmt: skip
    assert_stats_close(out, ref, want.logits)
    torch.testing.assert_close(ref.lse, want.lse, rtol=1e-12, atol=0)


def test_triton_skips_key_blocks_outside_the_window(monkeypatch):
    """Under the interpreter the kernel's key-block helper is a Python call: record which key
    blocks each query block reads. A window of 4 over 64 keys (blocks of 16) reads at most the
    two blocks a query block's windows touch, not every block before it."""
    from interp.kernels import triton_stats

    reads = []
    block = triton_stats._key_block

    def spy(*args, **kwargs):
        first_query = int(args[6].handle.data.min())  # pos: the block's query positions
        reads.append((first_query, int(args[3])))  # (first query position, start_n)
        return block(*args, **kwargs)

    monkeypatch.setattr(triton_stats, "_key_block", spy)
    g = torch.Generator().manual_seed(6)
    q, k = torch.randn(1, 1, 64, 16, generator=g), torch.randn(1, 1, 64, 16, generator=g)
    out = attention_stats(q, k, window=4, backend="triton")
    monkeypatch.undo()
    by_block = {}
    for first, start in reads:
        by_block.setdefault(first, []).append(start)
    assert by_block == {0: [0], 16: [0, 16], 32: [16, 32], 48: [32, 48]}
    ref = reference_attention_stats(q, k, window=4)
    torch.testing.assert_close(out.lse.double(), ref.lse, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_with_all_features(backend, dtype):
    """Half q/k/sinks (GPT-OSS keeps its sinks in the model dtype), float32 accumulation."""
    q, k, kwargs = make_case("all three", dtype=dtype)
    out = attention_stats(q, k, backend=backend, **kwargs)
    want = reference_attention_stats(q, k, **kwargs)
    assert_stats_close(out, want, eager_for(q, k, kwargs).logits, rtol=1e-4)


def test_torch_float64_with_all_features():
    q, k, kwargs = make_case("all three, decode", dtype=torch.float64)
    out = attention_stats(q, k, backend="torch", **kwargs)
    assert out.lse.dtype == torch.float64
    want = eager_for(q, k, kwargs)
    assert_stats_close(out, want, want.logits, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sinks_parameter_that_needs_grad(backend):
    """``module.sinks`` as the model holds it: an nn.Parameter; the statistics carry no grad."""
    q, k, kwargs = make_case("sinks+gqa")
    kwargs["sinks"] = torch.nn.Parameter(kwargs["sinks"].clone())
    out = attention_stats(q, k, backend=backend, **kwargs)
    assert not out.lse.requires_grad
    assert_stats_close(
        out, reference_attention_stats(q, k, **kwargs), eager_for(q, k, kwargs).logits
    )


Q = torch.randn(1, 4, 6, 8)
K = torch.randn(1, 2, 6, 8)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(window=0), InvalidArgumentError, "window must be >= 1"),
        (dict(window=-3), InvalidArgumentError, "window must be >= 1"),
        (dict(window=2.5), InputTypeError, "window must be a positive int"),
        (dict(window=True), InputTypeError, "window must be a positive int"),
        (dict(window="4"), InputTypeError, "window must be a positive int"),
        (dict(window=3, causal=False), InvalidArgumentError, "needs causal=True"),
        (dict(softcap=0.0), InvalidArgumentError, "finite float > 0"),
        (dict(softcap=-50.0), InvalidArgumentError, "finite float > 0"),
        (dict(softcap=float("nan")), InvalidArgumentError, "finite float > 0"),
        (dict(softcap=float("inf")), InvalidArgumentError, "finite float > 0"),
        (dict(softcap="50"), InputTypeError, "softcap must be a float"),
        (dict(softcap=True), InputTypeError, "softcap must be a float"),
        (dict(sinks=[0.0] * 4), InputTypeError, "sinks must be a torch.Tensor"),
        (dict(sinks=torch.zeros(4, dtype=torch.long)), InputTypeError, "floating-point"),
        (dict(sinks=torch.zeros(2)), InvalidArgumentError, r"\[Hq\] = \[4\]"),
        (dict(sinks=torch.zeros(1, 4)), InvalidArgumentError, r"\[Hq\] = \[4\]"),
        (dict(sinks=torch.zeros(4, device="meta")), InvalidArgumentError, "sinks is on meta"),
    ],
)
def test_bad_window_softcap_sinks_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        attention_stats(Q, K, **kwargs)


def test_integer_like_window_and_softcap_are_accepted():
    ref = reference_attention_stats(Q, K, window=3, softcap=2.0)
    out = attention_stats(Q, K, window=np.int64(3), softcap=np.float32(2.0), backend="torch")
    torch.testing.assert_close(out.lse.double(), ref.lse, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_sinks_raise(backend, bad):
    sinks = torch.zeros(4)
    sinks[2] = bad
    with pytest.raises(NonFiniteError, match="sinks holds non-finite values"):
        attention_stats(Q, K, sinks=sinks, backend=backend)
    kwargs = dict(scale=None, causal=True, key_padding_mask=None, targets=None, key_ranges=None)
    problem = validate(Q, K, sinks=sinks, defer_value_checks=True, **kwargs)  # queued, not read
    with pytest.raises(FloatingPointError, match=r"sinks holds non-finite values.* at 1 entries"):
        check_values([problem])
