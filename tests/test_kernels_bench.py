"""The CPU-testable parts of the attention_stats benchmarks (the GPU script's correctness check
runs here on the Triton interpreter at small shapes)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from interp.kernels import attention_stats, reference_attention_stats  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "analyses" / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gpu_bench():
    return _load("gpu_attention_stats")


def test_gpu_correctness_check_passes_on_interpreter(gpu_bench):
    rows = gpu_bench.check_correctness("cpu", small=True)
    assert len(rows) == len(gpu_bench.SMALL_CASES)
    assert all(r["ok"] for r in rows), gpu_bench.format_correctness(rows)
    table = gpu_bench.format_correctness(rows)
    assert "bf16 decode" in table and "NO" not in table


def test_gpu_compare_catches_wrong_answers(gpu_bench):
    case = gpu_bench.SMALL_CASES[0]
    q, k, kwargs = gpu_bench.make_case(case, "cpu", seed=0)
    ref = reference_attention_stats(q, k, **kwargs)
    out = attention_stats(q, k, backend="torch", **kwargs)
    lse_err, prob_err, arg_diff = gpu_bench.compare(out, ref, 1e-5)
    assert lse_err <= 1e-5 and prob_err <= 1e-5 and arg_diff == 0
    assert torch.isneginf(ref.lse).any()  # the case has fully masked rows
    bad = dataclasses.replace(out, range_mass=out.range_mass * 1.001, argmax=out.argmax.flip(-1))
    _, prob_err, arg_diff = gpu_bench.compare(bad, ref, 1e-5)
    assert prob_err > 1e-5 and arg_diff > 0.5


def test_gpu_script_refuses_without_cuda(gpu_bench, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert gpu_bench.main([]) == 2
    assert "needs a GPU" in capsys.readouterr().err


def _fake_bench(t):
    """Two timing rows per length; T=3 dies after its rows, as a run killed by the time limit."""
    yield dict(T=t, method="SDPA flash forward (q,k,v)", ms=2.0, ratio=1.0, mib=8.0)
    yield dict(T=t, method="call: lse, argmax, max_prob", ms=2.5, ratio=1.25, mib=0.5)
    if t == 3:
        raise RuntimeError("killed")


def test_speed_rows_are_printed_as_measured(gpu_bench):
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="killed"):
        gpu_bench.run_speed([1, 2, 3, 4], _fake_bench, deadline=math.inf, out=out)
    lines = out.getvalue().splitlines()
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "1", "2", "2", "3", "3"]  # all measured before the crash
    assert rows[1][-3:] == ["2.500", "1.25", "0.5"]  # median ms, x SDPA, extra MiB


def test_speed_stops_at_the_time_budget(gpu_bench):
    ticks = iter(range(100))  # a tick before each pull: 3 rows, the end of T=1, then over budget
    out = io.StringIO()
    rows = gpu_bench.run_speed([1, 2], _fake_bench, deadline=3, out=out, clock=lambda: next(ticks))
    assert [(r["T"], r["ms"]) for r in rows] == [(1, 2.0), (1, 2.5), (2, 2.0)]
    assert "time budget spent at T=2" in out.getvalue()
    complete = gpu_bench.run_speed([1, 2], _fake_bench, deadline=math.inf, out=io.StringIO())
    assert len(complete) == 4


def test_speed_table_formats(gpu_bench):
    failed = dict(T=4096, method="kernel: M64 N64 w4 s3", error="OutOfResources")
    assert gpu_bench.format_speed_row(failed).split()[-1] == "OutOfResources"
    cpu = _load("attention_stats")
    table = cpu.format_table(
        [
            dict(T=512, method="sdpa", time_s=0.03, ratio=1.0, peak="3.4"),
            dict(T=8192, method="materialized", time_s=None, ratio=None, peak=">= 2.2 GiB*"),
        ]
    ).splitlines()
    assert table[2].split() == ["512", "sdpa", "0.0300", "1.00", "3.4"]
    assert table[3].split() == ["8192", "materialized", "skipped", ">=", "2.2", "GiB*"]
    assert cpu.materialized_gib(8192) == pytest.approx(9 * 8192**2 * 4 / 2**30)


def test_gpu_model_wiring_check_passes_on_interpreter(gpu_bench):
    """The GPU script's end-to-end part (HookedLM statistics, decoding and NaN keys against the
    CPU torch backend), here with the Triton kernel interpreted on the CPU."""
    rows = gpu_bench.check_model_wiring("cpu", "triton", tokens=32)
    assert [r["case"] for r in rows] == [
        "HookedLM cpu stats",
        "greedy decode cpu",
        "NaN keys raise cpu",
    ]
    assert all(r["ok"] for r in rows), gpu_bench.format_correctness(rows)
