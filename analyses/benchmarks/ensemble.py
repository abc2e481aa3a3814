"""Benchmark: training 32 small RNNs as one vectorized ensemble vs a sequential loop over models.

Both paths train the same members (same init seeds, same batches, same AdamW steps); the script
checks that they end at the same weights within tolerance, then prints wall-clock times and the
speed-up; it exits with status 1 when the two paths disagree (max |Δparam| >= 1e-3 or max
|Δloss| >= 1e-4). Run: ``.venv/bin/python analyses/benchmarks/ensemble.py [--threads 2] [--steps 100]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from interp.degeneracy.ensemble import train_ensemble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--net", default="rnn_tanh")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = {
        "task_options": {"bits": 3, "steps": args.seq_len},
        "hidden_size": args.hidden,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "progress": False,
    }
    seeds = list(range(args.models))
    # warm-up (first-call overheads of vmap / autograd) on a short run of each path
    for vectorized in (True, False):
        train_ensemble(
            "flipflop", args.net, 2, [0, 1], vectorized=vectorized, **{**settings, "steps": 2}
        )
    timings, results = {}, {}
    for label, vectorized in (("sequential loop", False), ("vectorized (vmap)", True)):
        start = time.perf_counter()
        results[label] = train_ensemble(
            "flipflop", args.net, args.models, seeds, vectorized=vectorized, **settings
        )
        timings[label] = time.perf_counter() - start
    slow, fast = results["sequential loop"], results["vectorized (vmap)"]
    max_param = max(float((slow.params[k] - fast.params[k]).abs().max()) for k in slow.params)
    max_loss = float((slow.losses - fast.losses).abs().max())
    same = max_param < 1e-3 and max_loss < 1e-4
    print(
        f"{args.models} x {args.net} (hidden {args.hidden}) on 3-bit flip-flop, {args.steps} steps, "
        f"batch {args.batch_size} x {args.seq_len} steps, {torch.get_num_threads()} threads"
    )
    print(f"{'path':<20} {'seconds':>9} {'ms/step':>9} {'speed-up':>9}")
    base = timings["sequential loop"]
    for label, seconds in timings.items():
        print(
            f"{label:<20} {seconds:>9.2f} {1000 * seconds / args.steps:>9.1f} {base / seconds:>8.2f}x"
        )
    print(f"same results: {same} (max |Δparam| {max_param:.2e}, max |Δloss| {max_loss:.2e})")
    print(
        f"final mean loss {float(fast.losses[-1].mean()):.4f}, mean accuracy {float(fast.accuracy.mean()):.3f}"
    )
    if not same:
        sys.exit("FAILED: the vectorized ensemble does not reproduce the sequential loop")


if __name__ == "__main__":
    main()
