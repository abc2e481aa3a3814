"""attention_stats input checks and backend selection."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import gc  # noqa: E402
import warnings  # noqa: E402
import weakref  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from interp._checks import raise_first_failure  # noqa: E402
from interp.errors import InputTypeError, InvalidArgumentError, NonFiniteError  # noqa: E402
from interp.kernels import api, attention_stats, reference_attention_stats  # noqa: E402

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
    with pytest.raises(error, match=match) as raised:
        attention_stats(**args)
    typed = InputTypeError if error is TypeError else InvalidArgumentError
    assert isinstance(raised.value, typed)  # a user's mistake, printed as one line by the CLI


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("name", ["q", "k"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_raise(backend, name, bad):
    """Both backends refuse NaN/inf, even at a padded (masked) key position."""
    args = dict(q=Q.clone(), k=K.clone())
    args[name][0, 1, -1, 3] = bad
    pad = torch.ones(1, 6, dtype=torch.bool)
    pad[0, -1] = False  # the bad key entry sits on a padding key
    with pytest.raises(NonFiniteError, match=f"{name} holds non-finite values"):
        attention_stats(**args, key_padding_mask=pad, backend=backend)
    assert issubclass(NonFiniteError, FloatingPointError)  # what callers caught before


@pytest.mark.parametrize(
    ("device", "dtype", "installed", "want"),
    [
        ("cuda", torch.float32, True, "triton"),
        ("cuda", torch.float16, True, "triton"),
        ("cuda", torch.bfloat16, True, "triton"),
        ("cuda", torch.float64, True, "torch"),  # the kernel has no float64 path
        ("cuda", torch.float32, False, "torch"),  # triton not installed
        ("cpu", torch.float32, True, "torch"),
        ("cpu", torch.float64, True, "torch"),
    ],
)
def test_auto_picks_a_backend_that_runs(monkeypatch, device, dtype, installed, want):
    monkeypatch.setattr(api, "triton_available", lambda: installed)
    monkeypatch.setattr(api, "kernel_interpreted", lambda: False)  # as on a GPU machine
    assert api.resolve_backend("auto", torch.device(device), dtype) == want


def test_auto_on_cuda_sends_float64_to_torch(monkeypatch):
    """attention_stats hands the dtype to the selection: with the inputs taken for CUDA tensors,
    float64 goes to torch (the kernel would raise) and float32 to the kernel (interpreted here)."""
    chosen = []
    select = api.resolve_backend

    def as_if_on_cuda(backend, device, dtype):
        chosen.append(select(backend, torch.device("cuda"), dtype))
        return chosen[-1]

    monkeypatch.setattr(api, "resolve_backend", as_if_on_cuda)
    monkeypatch.setattr(api, "triton_available", lambda: True)
    monkeypatch.setattr(api, "kernel_interpreted", lambda: False)  # as if compiled
    for dtype, want in ((torch.float64, "torch"), (torch.float32, "triton")):
        q, k = Q.to(dtype), K.to(dtype)
        out = attention_stats(q, k)
        assert chosen[-1] == want and out.lse.dtype == dtype
        ref = reference_attention_stats(q, k)
        torch.testing.assert_close(out.lse.double(), ref.lse, rtol=1e-5, atol=1e-6)


def test_auto_never_runs_the_interpreter_on_cuda(monkeypatch):
    """Issue 14: with TRITON_INTERPRET=1 exported (as the Makefile once did for every target),
    backend='auto' on CUDA tensors warns once and uses torch instead of interpreting the kernel
    on the CPU; an explicit 'triton' still runs what was asked. CUDA is faked: no GPU here."""
    from interp.kernels import triton_stats

    assert triton_stats.interpreted()  # this process imported the kernel under the interpreter
    monkeypatch.setattr(api, "triton_available", lambda: True)
    monkeypatch.setattr(api, "_INTERPRETER_WARNED", [])
    cuda = torch.device("cuda")
    with pytest.warns(RuntimeWarning, match="TRITON_INTERPRET=1 is set.*uses the chunked torch"):
        assert api.resolve_backend("auto", cuda, torch.float32) == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process
        assert api.resolve_backend("auto", cuda, torch.bfloat16) == "torch"
    assert api.resolve_backend("triton", cuda, torch.float32) == "triton"

    chosen = []
    select = api.resolve_backend

    def as_if_on_cuda(backend, device, dtype):
        chosen.append(select(backend, cuda, dtype))
        return chosen[-1]

    monkeypatch.setattr(api, "resolve_backend", as_if_on_cuda)
    out = attention_stats(Q, K, window=3, softcap=5.0)
    assert chosen == ["torch"]
    ref = reference_attention_stats(Q, K, window=3, softcap=5.0)
    torch.testing.assert_close(out.lse.double(), ref.lse, rtol=1e-5, atol=1e-6)


def test_interpreter_is_read_from_the_kernel_once_imported(monkeypatch):
    """The interpreter is fixed when the kernel module is decorated: before that the environment
    says what it will be, after it the kernel itself (a later change of the variable is moot)."""
    import sys

    from interp.kernels import triton_stats

    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert api.kernel_interpreted() is triton_stats.interpreted() is True
    monkeypatch.delitem(sys.modules, "interp.kernels.triton_stats")
    assert api.kernel_interpreted() is False
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert api.kernel_interpreted() is True


def test_explicit_triton_that_cannot_run_is_named(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        api.resolve_backend("triton", cpu, torch.float32)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert api.resolve_backend("triton", cpu, torch.float32) == "triton"
    with pytest.raises(TypeError, match="float64"):
        api.resolve_backend("triton", torch.device("cuda"), torch.float64)
    monkeypatch.setattr(api, "triton_available", lambda: False)
    with pytest.raises(ImportError, match="pip install triton"):
        api.resolve_backend("triton", torch.device("cuda"), torch.float32)


def test_auto_falls_back_to_torch_once_when_the_kernel_fails(monkeypatch):
    """A kernel that cannot compile or launch on the device (here: a faked OutOfResources) costs
    one warning under backend='auto', then torch serves every call; 'triton' still raises."""
    from triton.runtime.errors import OutOfResources

    from interp.kernels import triton_stats

    launches = []

    def out_of_shared_memory(problem, **_):
        launches.append(problem)
        raise OutOfResources(required=262144, limit=232448, name="shared memory")

    monkeypatch.setattr(api, "resolve_backend", lambda backend, device, dtype: "triton")
    monkeypatch.setattr(triton_stats, "triton_attention_stats", out_of_shared_memory)
    monkeypatch.setattr(api, "_TRITON_FAILED", [])
    with pytest.warns(RuntimeWarning, match="OutOfResources.*uses the chunked torch backend"):
        first = attention_stats(Q, K)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = attention_stats(Q, K)
    assert len(launches) == 1  # the failed kernel is not tried again
    ref = reference_attention_stats(Q, K)
    for out in (first, second):
        torch.testing.assert_close(out.lse.double(), ref.lse, rtol=1e-5, atol=1e-6)
        assert torch.equal(out.argmax, ref.argmax)
    with pytest.raises(OutOfResources):
        attention_stats(Q, K, backend="triton")
    # an error that is not Triton's is a bug and is not swallowed
    monkeypatch.setattr(api, "_TRITON_FAILED", [])
    monkeypatch.setattr(triton_stats, "triton_attention_stats", lambda p: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        attention_stats(Q, K)


def test_deferred_value_checks_raise_when_read():
    """validate(defer_value_checks=True) queues what only the values tell; check_values reads
    every queued flag at once and raises the first failure, named as attention_stats names it."""
    bad_k = K.clone()
    bad_k[0, 0, 2, 1] = float("nan")
    targets = torch.full((1, 6, 1), 9)  # out of range as well: the k check comes first
    kwargs = dict(scale=None, causal=True, key_padding_mask=None, key_ranges=None)
    problem = api.validate(Q, bad_k, targets=targets, defer_value_checks=True, **kwargs)
    assert [flag.item() for flag, _ in problem.value_checks] == [True, False, False]
    with pytest.raises(FloatingPointError, match="k holds non-finite values.* at 1 entries"):
        api.check_values([problem])
    fine = api.validate(Q, K, targets=targets.clamp(max=5), defer_value_checks=True, **kwargs)
    api.check_values([fine])  # all flags true: nothing raised
    with pytest.raises(ValueError, match=r"targets must be key indices in \[0, 6\)"):
        api.check_values(
            [fine, api.validate(Q, K, targets=targets, defer_value_checks=True, **kwargs)]
        )


def test_queued_checks_do_not_keep_the_tensors_alive():
    """A model run keeps every layer's checks until it ends; they must not hold the layers' q/k
    (for a 7B model at 32k tokens that would be gigabytes). The error still names the tensor."""
    bad_k = K.clone()
    bad_k[0, 1, 0, 0] = float("inf")
    kwargs = dict(scale=None, causal=True, key_padding_mask=None, targets=None, key_ranges=None)
    checks = api.validate(Q, bad_k, defer_value_checks=True, **kwargs).value_checks
    alive = weakref.ref(bad_k)
    del bad_k
    gc.collect()
    assert alive() is None
    with pytest.raises(FloatingPointError, match=r"k holds non-finite values \(NaN/inf\); "):
        raise_first_failure(checks)
