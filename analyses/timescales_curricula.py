"""Single- vs multi-head curricula on N-parity (Khajehabdollahi et al. 2023) at a small budget.

Trains the paper's leaky RNN (per-neuron trainable τ ≥ 1, no self-connections, LeakyReLU) with
each curriculum for the same number of epochs and reports: the largest N solved ("solved": mean
accuracy over the heads > 98% and the newest head > 98% on the test batches), and at each solved
N the single-neuron τ (median over neurons), τ_net (median over neurons of the autocorrelation
timescale under N-parity-statistics input, lags 0..30, single vs double exponential by AIC) and
the slowest Jacobian timescale at the zero-input fixed points.

    .venv/bin/python analyses/timescales_curricula.py [--hidden 64] [--epochs 30]

Paper scale: 500 neurons, 600 steps per epoch, batch 256, 50 test batches, τ_net from 10 trials
of 10⁵ steps. The defaults here fit one CPU core in minutes; the printed table is what
``analyses/results/timescales_curricula.txt`` holds.
"""

from __future__ import annotations

import argparse
import time

import torch

from interp.rnn.timescales_net import TimescaleRNN
from interp.rnn.timescales_result import analyze_timescales
from interp.rnn.timescales_training import train_curriculum


def run(curriculum: str, args) -> tuple[object, list[tuple[int, dict]]]:
    torch.manual_seed(args.seed)
    slots = 1 if curriculum == "single" else args.max_n - 1
    net = TimescaleRNN(1, args.hidden, 2 * slots)
    rows: list[tuple[int, dict]] = []

    def measure(n: int, trained) -> None:
        result = analyze_timescales(
            trained, "nparity", n, steps=args.tau_steps, trials=args.tau_trials, seed=args.seed,
            fixed_point_starts=64,
        )  # fmt: skip
        rows.append((n, result.summary()))
        trained.train()

    history = train_curriculum(
        net, "nparity", curriculum, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch, eval_batches=args.eval_batches, max_n=args.max_n,
        seed=args.seed, progress=False, on_solved=measure,
    )  # fmt: skip
    return history, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps-per-epoch", type=int, default=150)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--eval-batches", type=int, default=10)
    parser.add_argument("--max-n", type=int, default=12)
    parser.add_argument("--tau-steps", type=int, default=20000)
    parser.add_argument("--tau-trials", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"N-parity, {args.hidden} neurons, {args.epochs} epochs x {args.steps_per_epoch} SGD steps "
        f"(batch {args.batch}, lr 0.05, Nesterov 0.1, clip 2), {args.eval_batches} test batches "
        f"per epoch; τ_net from {args.tau_trials} trials x {args.tau_steps} steps; seed "
        f"{args.seed}; 1 thread"
    )
    for curriculum in ("single", "multi"):
        start = time.perf_counter()
        history, rows = run(curriculum, args)
        print(
            f"\n== {curriculum}-head: largest N solved {history.max_n} "
            f"({len(history.epoch_n)} epochs, {time.perf_counter() - start:.0f} s)"
        )
        print(
            f"{'N':>3} {'epoch':>6} {'median τ':>9} {'mean τ':>7} {'median τ_net':>13} "
            f"{'mean τ_net':>11} {'double fits':>12} {'slowest Jacobian τ':>19}"
        )
        for n, s in rows:
            print(
                f"{n:>3} {history.solved[str(n)]:>6} {s['median_tau']:>9.3f} {s['mean_tau']:>7.3f} "
                f"{s['median_tau_net']:>13.3f} {s['mean_tau_net']:>11.3f} "
                f"{s['double_fits']:>12} {s['slowest_jacobian_tau']:>19.3f}"
            )
        accuracy = history.epoch_accuracy.tolist()
        print(f"test accuracy per epoch: {[round(a, 3) for a in accuracy]}")
        print(f"N per epoch: {history.epoch_n.tolist()}")


if __name__ == "__main__":
    main()
