"""CPU benchmark: the chunked torch attention_stats vs a materialized softmax and SDPA.

Shapes follow the default model (SmolLM2-135M: 9 query heads, 3 key/value heads, head dim 64),
B=1, causal, float32, T in {512, 2048, 8192}. Methods:

- ``sdpa``: torch.nn.functional.scaled_dot_product_attention forward on the same q/k and a random v
  (the baseline every ratio is against: what the model's own attention costs);
- ``materialized``: the same statistics from a full float32 softmax
  (``reference_attention_stats(..., dtype=torch.float32)``);
- ``stats``: ``attention_stats(backend="torch")``, lse/argmax/max_prob only;
- ``stats+S4+R2``: the same plus 4 target keys per query and 2 key ranges.

Time: best of round-robin rounds after one warm-up each, all methods of one T timed in the same
process; rounds continue for at least ``--budget-s`` seconds per T (at least 3). The machine is
shared: interleaving and taking the best keep other users' load out of the ratios, and a time
budget gives short calls many more rounds than long ones; each method runs twice in a row per
round, so that one method's cache footprint is not charged to the next. Single-threaded by default.
Peak memory: each (method, T) runs once in a fresh subprocess; we reset the peak resident set size
(``/proc/self/clear_refs``, Linux) just before the call and report how far the peak (VmHWM) rose
above the RSS at that moment, i.e. the memory the call itself needed on top of its inputs
(measured, not analytic).
A materialized softmax larger than ``--max-materialized-gib`` is not run; the analytic size of
one [B, H, T, T] float32 tensor is printed instead (the path holds several such tensors).

Run: .venv/bin/python analyses/benchmarks/attention_stats.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

METHODS = ("sdpa", "materialized", "stats", "stats+S4+R2")
B, HQ, HKV, D = 1, 9, 3, 64
CALLS_PER_TURN = 2  # consecutive timed calls of one method within a round (see best_times)


def _inputs(t: int):
    import torch

    g = torch.Generator().manual_seed(t)
    q = torch.randn(B, HQ, t, D, generator=g)
    k = torch.randn(B, HKV, t, D, generator=g)
    v = torch.randn(B, HKV, t, D, generator=g)
    targets = torch.randint(0, t, (B, t, 4), generator=g)
    ranges = torch.tensor([[[t // 4, t // 4 + 32], [t // 2, t // 2 + 8]]])
    return q, k, v, targets, ranges


def _call(method: str, t: int):
    import torch
    import torch.nn.functional as F

    from interp.kernels import attention_stats, reference_attention_stats

    q, k, v, targets, ranges = _inputs(t)
    if method == "sdpa":
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    if method == "materialized":
        return lambda: reference_attention_stats(q, k, dtype=torch.float32)
    if method == "stats":
        return lambda: attention_stats(q, k, backend="torch")
    return lambda: attention_stats(q, k, targets=targets, key_ranges=ranges, backend="torch")


def _proc_status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _peak_worker(method: str, t: int) -> None:
    """Print the peak-RSS growth (MiB) of one call, measured in this fresh process (Linux)."""
    import torch

    torch.set_num_threads(1)
    _call(method, 64)()  # load lazily imported modules and libraries before measuring
    fn = _call(method, t)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _proc_status_mib("VmRSS")
    fn()
    print(_proc_status_mib("VmHWM") - before)


def peak_mib(method: str, t: int) -> float:
    cmd = [sys.executable, __file__, "--peak-worker", method, str(t)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def best_times(
    methods: list[str], t: int, *, budget_s: float, min_rounds: int = 3, max_rounds: int = 100
) -> dict[str, float]:
    """Best wall time of each method over round-robin rounds after one warm-up each.

    Rounds continue until ``budget_s`` seconds have passed (and at least ``min_rounds``), so short
    calls get many more chances to run undisturbed on a shared machine than long ones. In each
    round every method runs ``CALLS_PER_TURN`` times in a row: the first call after another
    method pays for that method's cache and page footprint (after the 38 MiB materialized softmax
    at T=512, a 6.6 ms stats call takes 9 ms), which is not the method's own cost.
    """
    calls = {m: _call(m, t) for m in methods}
    for fn in calls.values():
        fn()
    best = dict.fromkeys(methods, float("inf"))
    start_all = time.perf_counter()
    for rounds in range(1, max_rounds + 1):
        for m, fn in calls.items():
            for _ in range(CALLS_PER_TURN):
                start = time.perf_counter()
                fn()
                best[m] = min(best[m], time.perf_counter() - start)
        if rounds >= min_rounds and time.perf_counter() - start_all >= budget_s:
            break
    return best


def materialized_gib(t: int) -> float:
    """Bytes of one [B, H, T, T] float32 tensor, in GiB (the materialized path holds several)."""
    return B * HQ * t * t * 4 / 2**30


def format_table(rows: list[dict]) -> str:
    """Rows of {T, method, time_s, peak_mib, ratio} as an aligned plain-text table."""
    header = f"{'T':>6}  {'method':<13} {'time (s)':>9} {'x SDPA':>7} {'peak extra MiB':>15}"
    lines = [header, "-" * len(header)]
    for r in rows:
        time_s = "skipped" if r["time_s"] is None else f"{r['time_s']:.4f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(f"{r['T']:>6}  {r['method']:<13} {time_s:>9} {ratio:>7} {r['peak']:>15}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-materialized-gib", type=float, default=1.0)
    parser.add_argument(
        "--budget-s", type=float, default=5.0, help="timing rounds per T run at least this long"
    )
    parser.add_argument("--peak-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_worker:
        _peak_worker(args.peak_worker[0], int(args.peak_worker[1]))
        return

    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for t in args.lengths:
        run = [
            m
            for m in METHODS
            if m != "materialized" or materialized_gib(t) <= args.max_materialized_gib
        ]
        times = best_times(run, t, budget_s=args.budget_s)
        for method in METHODS:
            if method not in run:
                size = f">= {materialized_gib(t):.1f} GiB*"
                rows.append(dict(T=t, method=method, time_s=None, ratio=None, peak=size))
                continue
            ratio = times[method] / times["sdpa"]
            peak = f"{peak_mib(method, t):.1f}"
            rows.append(dict(T=t, method=method, time_s=times[method], ratio=ratio, peak=peak))
        print(f"  done T={t}", file=sys.stderr, flush=True)
    print(
        f"attention statistics on CPU, B={B}, Hq={HQ}, Hkv={HKV}, D={D}, causal, float32, "
        f"{args.threads} thread(s); time = best of interleaved rounds"
    )
    print(format_table(rows))
    print("peak extra MiB: growth of peak RSS during one call in a fresh process (measured).")
    print("* not run: analytic size of one [B, H, T, T] float32 tensor (the path holds several).")


if __name__ == "__main__":
    main()
