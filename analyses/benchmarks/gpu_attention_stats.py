"""GPU check of the Triton attention_stats kernel: correctness, then speed against SDPA (flash).

Run through gpu_attention_stats.sh on a CUDA machine (it sets PYTHONPATH and a time limit).

1. Correctness: the kernel against the float64 materialized reference on moderate shapes (float32,
   float16, bfloat16; causal and not; GQA; padding with fully masked rows; decode Tq < Tk;
   non-causal Tq > Tk; T not a multiple of the block size; head dims 80 and 96, which leave masked
   lanes in the head-dim tile; targets; up to 20 key ranges; sliding windows, logit softcapping
   and attention sinks, alone and together), and against the chunked torch
   backend at the benchmark shapes T = 4k and 16k (bf16, H=32, D=128). Then end to end: a tiny
   HookedLM on CUDA against the same model on the CPU (statistics of a padded batch through the
   model's own attention, a greedy decode with the KV cache, NaN keys raising after the run).
2. Speed: triton.testing.do_bench medians at T in {4k, 16k, 64k}, B=1, H=32, D=128, bf16, causal:
   SDPA forward with the flash backend (q, k, v) vs ``attention_stats`` calls ("call:" rows:
   validation, launch and the one read of the queued checks; lse/argmax/max_prob, then with 4
   targets and 2 key ranges) and the kernel alone on pre-validated inputs ("kernel:" rows: the
   default launch config, then a small sweep of block configurations). Target: <= 1.3x SDPA.
   Each row is printed (flushed) as soon as it is measured, and no measurement starts after the
   time budget (``--budget-s``, counted from the start), so a run cut short keeps what it measured.

The correctness part also runs on the CPU under TRITON_INTERPRET=1 with ``small=True``, and the
end-to-end part with ``device="cpu"`` (both tested in tests/test_kernels_bench.py). The script
needs torch, triton and transformers, not plotly (none of the device image's missing packages).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

import torch

from interp.kernels import attention_stats, reference_attention_stats
from interp.kernels.api import validate

# (name, B, Hq, Hkv, Tq, Tk, D, dtype, causal, padded, S, R[, features]); features: window,
# softcap, sinks=True (random per-head sink logits)
# fmt: off
FULL_CASES = [
    ("fp32 causal gqa pad", 2, 8, 2, 1000, 1000, 128, torch.float32, True, True, 4, 2),
    ("fp32 noncausal", 2, 4, 4, 777, 777, 64, torch.float32, False, True, 3, 1),
    ("bf16 causal gqa pad", 2, 8, 2, 1000, 1000, 128, torch.bfloat16, True, True, 4, 2),
    ("fp16 causal d64", 1, 9, 3, 2047, 2047, 64, torch.float16, True, False, 2, 2),
    ("bf16 decode", 2, 8, 2, 7, 1500, 128, torch.bfloat16, True, True, 4, 2),
    ("bf16 S=0 R=0", 1, 4, 4, 300, 300, 128, torch.bfloat16, True, False, 0, 0),
    ("bf16 d80 causal gqa pad", 2, 8, 2, 333, 333, 80, torch.bfloat16, True, True, 3, 2),
    ("fp32 d96 Tq>Tk R=20", 1, 4, 2, 300, 129, 96, torch.float32, False, True, 3, 20),
    ("bf16 win+cap gqa pad", 2, 8, 2, 1000, 1000, 128, torch.bfloat16, True, True, 4, 2,
     dict(window=200, softcap=5.0)),
    ("bf16 win+sink decode", 2, 8, 2, 7, 1500, 64, torch.bfloat16, True, True, 4, 2,
     dict(window=128, sinks=True)),
    ("fp32 win=1+cap+sink", 1, 4, 1, 300, 300, 128, torch.float32, True, True, 3, 2,
     dict(window=1, softcap=2.0, sinks=True)),
]
SMALL_CASES = [
    ("fp32 causal gqa pad", 2, 4, 2, 37, 37, 32, torch.float32, True, True, 3, 2),
    ("bf16 decode", 1, 2, 1, 5, 40, 16, torch.bfloat16, True, True, 2, 1),
    ("fp16 noncausal S=0 R=0", 1, 2, 2, 20, 20, 16, torch.float16, False, False, 0, 0),
    ("fp32 d80 Tq>Tk R=20", 1, 2, 1, 24, 13, 80, torch.float32, False, True, 2, 20),
    ("bf16 win+cap+sink decode", 1, 4, 2, 6, 40, 16, torch.bfloat16, True, True, 2, 2,
     dict(window=9, softcap=3.0, sinks=True)),
]
# fmt: on
RTOL = {torch.float32: 1e-5, torch.float16: 1e-4, torch.bfloat16: 1e-4}
CONFIGS = [  # BLOCK_M, BLOCK_N, num_warps, num_stages; the first is launch_config's choice for D=128
    (128, 64, 8, 3),
    (128, 128, 8, 3),
    (128, 64, 4, 3),
    (64, 64, 4, 3),
    (128, 128, 8, 2),
]


def make_case(case: tuple, device: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Random inputs for one case; padding masks the first keys of batch 0 entirely at the start."""
    _, b, hq, hkv, tq, tk, d, dtype, causal, padded, s, r, *extra = case
    features = dict(extra[0]) if extra else {}
    g = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(b, hq, tq, d, generator=g).to(device, dtype)
    k = torch.randn(b, hkv, tk, d, generator=g).to(device, dtype)
    kwargs: dict = {"causal": causal}
    if padded:
        pad = torch.rand(b, tk, generator=g) > 0.1
        pad[0, : tk - tq + 3] = False  # the first queries of batch 0 see only padding
        kwargs["key_padding_mask"] = pad.to(device)
    kwargs["targets"] = torch.randint(-1, tk, (b, tq, s), generator=g).to(device)
    starts = torch.randint(0, tk, (b, r, 1), generator=g)
    kwargs["key_ranges"] = torch.cat([starts, (starts + 50).clamp(max=tk)], -1).to(device)
    if features.pop("sinks", False):
        kwargs["sinks"] = (torch.randn(hq, generator=g) + 1).to(device, dtype)
    return q, k, kwargs | features


def compare(out, ref, rtol: float) -> tuple[float, float, float]:
    """(max relative error of lse, of the probabilities, fraction of argmax that differ).

    The relative error is |a - b| / (|b| + atol / rtol): it is <= rtol exactly when
    |a - b| <= rtol·|b| + atol, with atol 1e-6 for lse and 1e-12 for probabilities.
    """

    def rel(a: torch.Tensor, b: torch.Tensor, atol: float) -> float:
        a, b = a.double(), b.double()
        same_inf = torch.isinf(a) & (a == b)
        err = ((a - b).abs() / (b.abs() + atol / rtol)).masked_fill(same_inf, 0.0)
        return float(err.nan_to_num(nan=math.inf).max()) if err.numel() else 0.0

    probs = [
        rel(getattr(out, f), getattr(ref, f), 1e-12)
        for f in ("max_prob", "target_prob", "range_mass")
        if getattr(ref, f) is not None
    ]
    arg_diff = float((out.argmax != ref.argmax).double().mean())
    return rel(out.lse, ref.lse, 1e-6), max(probs, default=0.0), arg_diff


def check_correctness(device: str, small: bool = False) -> list[dict]:
    """Kernel vs float64 reference on each case; a row per case with errors and a verdict."""
    rows = []
    for i, case in enumerate(SMALL_CASES if small else FULL_CASES):
        q, k, kwargs = make_case(case, device, seed=100 + i)
        out = attention_stats(q, k, backend="triton", **kwargs)
        ref = reference_attention_stats(q, k, **kwargs)
        lse_err, prob_err, arg_diff = compare(out, ref, RTOL[q.dtype])
        ok = lse_err <= RTOL[q.dtype] and prob_err <= RTOL[q.dtype] and arg_diff <= 1e-3
        ok = ok and torch.equal(torch.isneginf(out.lse), torch.isneginf(ref.lse))
        rows.append(dict(case=case[0], lse=lse_err, prob=prob_err, argmax=arg_diff, ok=ok))
    return rows


def check_against_torch(lengths: list[int], heads: int = 32, d: int = 128) -> list[dict]:
    """Kernel vs the (float64-validated) chunked torch backend at benchmark sizes, bf16."""
    from interp.kernels.torch_stats import torch_attention_stats

    rows = []
    for t in lengths:
        case = (f"bf16 T={t} vs torch", 1, heads, heads, t, t, d, torch.bfloat16, True, False, 4, 2)
        q, k, kwargs = make_case(case, "cuda", seed=t)
        out = attention_stats(q, k, backend="triton", **kwargs)
        ref = torch_attention_stats(validate(q, k, scale=None, **kwargs))
        lse_err, prob_err, arg_diff = compare(out, ref, 1e-4)
        ok = lse_err <= 1e-4 and prob_err <= 1e-4 and arg_diff <= 1e-3
        rows.append(dict(case=case[0], lse=lse_err, prob=prob_err, argmax=arg_diff, ok=ok))
    return rows


def _on_cpu(stats):
    """AttentionStats with every tensor copied to the CPU (for comparing across devices)."""
    fields = {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}
    return type(stats)(**{n: v.cpu() if v is not None else None for n, v in fields.items()})


def check_model_wiring(device: str, backend: str, tokens: int = 300) -> list[dict]:
    """A HookedLM on ``device`` whose statistics use ``backend`` against the same model on the
    CPU with the torch backend: the statistics of a padded batch through the model's own
    attention, a greedy decode with the KV cache, and NaN keys raising after the run."""
    import copy

    from interp.heads.decoding import greedy_decode
    from interp.models import StatsRequest, load_model
    from tests.tiny import tiny_hf_model, word_tokenizer

    model = tiny_hf_model("llama", vocab_size=96, max_position_embeddings=tokens + 16)
    here = load_model(copy.deepcopy(model), tokenizer=word_tokenizer(96), device=device)
    cpu = load_model(model, tokenizer=word_tokenizer(96), device="cpu")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 96, (2, tokens), generator=g)
    mask = torch.ones(2, tokens, dtype=torch.long)
    mask[1, : tokens // 3] = 0  # left padding in the second row
    targets = torch.randint(-1, tokens, (2, tokens, 3), generator=g)
    third = tokens // 3
    ranges = torch.tensor([[[5, third], [third, third + 1]], [[tokens // 2, tokens], [0, 0]]])

    def stats(lm, backend_name):  # CPU inputs: the run moves tokens, mask and request itself
        request = StatsRequest(targets=targets, key_ranges=ranges, backend=backend_name)
        _, cache = lm.run(ids, attention_mask=mask, attention_stats=request)
        return [_on_cpu(cache.attention_stats[layer]) for layer in range(lm.n_layers)]

    errors = [
        compare(out, ref, 1e-4)
        for out, ref in zip(stats(here, backend), stats(cpu, "torch"), strict=True)
    ]
    lse_err, prob_err, arg_diff = (max(e[i] for e in errors) for i in range(3))
    rows = [
        dict(
            case=f"HookedLM {device} stats",
            lse=lse_err,
            prob=prob_err,
            argmax=arg_diff,
            ok=lse_err <= 1e-4 and prob_err <= 1e-4 and arg_diff <= 1e-3,
        )
    ]
    prompts = ids[:, : tokens // 2]
    traces = [greedy_decode(lm, prompts, max_new_tokens=6, stop_ids=[]) for lm in (here, cpu)]
    same_tokens = torch.equal(traces[0].generated, traces[1].generated)
    arg_diff = float((traces[0].argmax != traces[1].argmax).double().mean())
    rows.append(
        dict(
            case=f"greedy decode {device}",
            lse=0.0,
            prob=0.0,
            argmax=arg_diff,
            ok=same_tokens and arg_diff <= 1e-3,
        )
    )
    with torch.no_grad():
        here.model.model.layers[1].self_attn.k_proj.weight[0, 0] = float("nan")
    try:
        stats(here, backend)
        raised = False
    except FloatingPointError as error:
        raised = "k holds non-finite values" in str(error)
    rows.append(dict(case=f"NaN keys raise {device}", lse=0.0, prob=0.0, argmax=0.0, ok=raised))
    return rows


def format_correctness(rows: list[dict]) -> str:
    header = f"{'case':<24} {'lse rel err':>12} {'prob rel err':>13} {'argmax differ':>14}  ok"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['case']:<24} {r['lse']:>12.2e} {r['prob']:>13.2e} {r['argmax']:>14.2e}  "
            f"{'yes' if r['ok'] else 'NO'}"
        )
    return "\n".join(lines)


SPEED_TITLE = "speed: B=1, H=32, D=128, bf16, causal; do_bench median; target <= 1.3x SDPA"
SPEED_HEADER = f"{'T':>6}  {'method':<30} {'median ms':>10} {'x SDPA':>7} {'extra MiB':>10}"


def format_speed_row(r: dict) -> str:
    """One row of the speed table; a row with ``error`` shows the error instead of a time."""
    ms = r.get("error") or f"{r['ms']:.3f}"
    ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}"
    mib = "" if r.get("mib") is None else f"{r['mib']:.1f}"
    return f"{r['T']:>6}  {r['method']:<30} {ms:>10} {ratio:>7} {mib:>10}"


def run_speed(
    lengths: list[int],
    bench: Callable[[int], Iterator[dict]],
    deadline: float,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[dict]:
    """Time every length with ``bench(t)`` (an iterator of rows, one per measurement).

    Each row is printed and flushed as soon as it is measured, so output cut off by the wall-clock
    limit still holds every finished measurement; once ``clock()`` passes ``deadline`` no further
    measurement is started and the table says so.
    """
    out = sys.stdout if out is None else out
    print(f"\n{SPEED_TITLE}\n{SPEED_HEADER}\n{'-' * len(SPEED_HEADER)}", file=out, flush=True)
    rows: list[dict] = []
    for t in lengths:
        measured = iter(bench(t))
        while True:
            if clock() > deadline:
                print(
                    f"time budget spent at T={t}: later measurements skipped", file=out, flush=True
                )
                return rows
            row = next(measured, None)
            if row is None:
                break
            rows.append(row)
            print(format_speed_row(row), file=out, flush=True)
    return rows


def _timed(fn, rep_ms: int) -> tuple[float, float]:
    """(median ms by do_bench, extra peak MiB of one call beyond what was allocated before)."""
    import triton.testing

    fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    ms = triton.testing.do_bench(fn, warmup=10, rep=rep_ms, return_mode="median")
    return ms, mib


def bench_length(t: int, heads: int = 32, d: int = 128, sweep: bool = True) -> Iterator[dict]:
    """Timing rows for one sequence length, each yielded once measured (SDPA first: the ratios are
    against it). The inputs are freed when the iterator is exhausted or dropped."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from interp.kernels.triton_stats import triton_attention_stats

    g = torch.Generator(device="cuda").manual_seed(t)
    q, k, v = (
        torch.randn(1, heads, t, d, device="cuda", generator=g, dtype=torch.bfloat16)
        for _ in range(3)
    )
    targets = torch.randint(0, t, (1, t, 4), device="cuda", generator=g)
    ranges = torch.tensor([[[t // 4, t // 4 + 64], [t // 2, t // 2 + 16]]], device="cuda")
    rep = 200 if t <= 16384 else 400

    def sdpa():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    base, mib = _timed(sdpa, rep)
    yield dict(T=t, method="SDPA flash forward (q,k,v)", ms=base, ratio=1.0, mib=mib)
    # "call": the public function (validation, launch, one read of the queued checks);
    # "kernel": the launch alone on pre-validated inputs (default config, then the sweep).
    problem = validate(
        q, k, scale=None, causal=True, key_padding_mask=None, targets=None, key_ranges=None
    )
    methods = [
        ("call: lse, argmax, max_prob", lambda: attention_stats(q, k, backend="triton")),
        (
            "call: + 4 targets + 2 ranges",
            lambda: attention_stats(q, k, targets=targets, key_ranges=ranges, backend="triton"),
        ),
        ("kernel: default config", lambda: triton_attention_stats(problem)),
    ]
    if sweep:
        for bm, bn, warps, stages in CONFIGS:
            cfg = dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=warps, num_stages=stages)
            name = f"kernel: M{bm} N{bn} w{warps} s{stages}"
            methods.append((name, lambda cfg=cfg: triton_attention_stats(problem, config=cfg)))
    for name, fn in methods:
        try:
            ms, mib = _timed(fn, rep)
            row = dict(T=t, method=name, ms=ms, ratio=ms / base, mib=mib)
        except Exception as exc:  # a config may not fit in shared memory: report, go on
            row = dict(T=t, method=name, error=type(exc).__name__)
        yield row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 65536])
    parser.add_argument("--no-sweep", action="store_true", help="time only the default config")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=240.0,
        help="start no speed measurement later than this many seconds after the start",
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 2
    import triton

    torch.backends.cuda.matmul.allow_tf32 = False  # the torch backend must multiply in full fp32
    start = time.monotonic()
    print(
        f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, triton {triton.__version__}"
    )
    rows = check_correctness("cuda")
    rows += check_against_torch([t for t in args.lengths if t <= 16384])
    rows += check_model_wiring("cuda", "auto")
    print("\ncorrectness (relative errors; argmax: fraction of rows that differ)")
    print(format_correctness(rows))
    print(f"[{time.monotonic() - start:.0f} s]", flush=True)
    speed = run_speed(
        args.lengths, lambda t: bench_length(t, sweep=not args.no_sweep), start + args.budget_s
    )
    for kind in ("call", "kernel"):
        best: dict[int, float] = {}
        for r in speed:
            if r["method"].startswith(kind) and r.get("ratio") is not None:
                best[r["T"]] = min(best.get(r["T"], math.inf), r["ratio"])
        ratios = ", ".join(f"{t}: {x:.2f}" for t, x in best.items())
        print(f"best {kind}/SDPA ratio per T: {ratios}")
    all_ok = all(r["ok"] for r in rows)
    print(
        f"correctness: {'ALL OK' if all_ok else 'FAILURES'}  [{time.monotonic() - start:.0f} s total]"
    )
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
