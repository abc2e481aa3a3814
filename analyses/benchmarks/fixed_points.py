"""Fixed-point search: one batched optimization over 1,024 starts vs a per-point Python loop.

The net is the flip-flop GRU of analyses/rnn_flipflop.py (3 bits, 16 units, seeded). Both arms run
the same optimizer (:func:`interp.rnn.fixed_points.lm_phase`, Levenberg–Marquardt, 100 iterations,
q_tol 1e-12, float64) from the same starts: states of real trajectories plus Gaussian noise. The
loop calls it once per start (batch of one), which is what a per-point implementation costs; the
batched arm is what :func:`interp.rnn.find_fixed_points` runs. We report both times, their ratio,
how many starts land on the same point in both arms, and the end-to-end ``find_fixed_points``
time.

    .venv/bin/python analyses/benchmarks/fixed_points.py [--starts 1024] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

from interp.rnn import find_fixed_points, unroll
from interp.rnn.fixed_points import lm_phase
from interp.rnn.tasks import split_generator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rnn_flipflop import train_flipflop  # noqa: E402

Q_TOL = 1e-12


def starts_from_trajectories(model, task, n_starts: int, noise: float = 0.5, seed: int = 0):
    """``n_starts`` visited states (test-split trajectories) plus N(0, noise²) perturbations."""
    batch = task.sample(64, split_generator(seed, "test"), split="test")
    with torch.no_grad():
        states = unroll(model, batch.x.double()).reshape(-1, model.state_size)
    generator = torch.Generator().manual_seed(seed)
    picked = states[torch.randperm(states.shape[0], generator=generator)[:n_starts]]
    return picked + noise * torch.randn(picked.shape, generator=generator, dtype=picked.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net, task, _ = train_flipflop("gru", 16, args.train_steps)
    model = copy.deepcopy(net).double().eval().requires_grad_(False)
    h0 = starts_from_trajectories(model, task, args.starts)
    u = torch.zeros(args.starts, task.input_size, dtype=torch.float64)

    with torch.no_grad():
        begin = time.perf_counter()
        h_batched, q_batched, _ = lm_phase(model, h0, u, iterations=100, q_tol=Q_TOL)
        batched = time.perf_counter() - begin

        begin = time.perf_counter()
        rows = [
            lm_phase(model, h0[i : i + 1], u[i : i + 1], iterations=100, q_tol=Q_TOL)
            for i in range(args.starts)
        ]
        sequential = time.perf_counter() - begin
    h_loop = torch.cat([r[0] for r in rows])
    q_loop = torch.cat([r[1] for r in rows])

    both = (q_batched < Q_TOL) & (q_loop < Q_TOL)
    same = int(((h_batched - h_loop).norm(dim=-1) < 1e-6)[both].sum())
    begin = time.perf_counter()
    fp = find_fixed_points(net, task=task, n_starts=args.starts)
    end_to_end = time.perf_counter() - begin

    print(f"GRU 16 units, 3-bit flip-flop, {args.starts} starts, {args.threads} thread(s)")
    print("| arm | time (s) | converged (q < 1e-12) |")
    print("|---|---|---|")
    print(f"| batched LM (one computation) | {batched:.2f} | {int((q_batched < Q_TOL).sum())} |")
    print(f"| per-point loop, same LM | {sequential:.2f} | {int((q_loop < Q_TOL).sum())} |")
    print(
        f"speed-up: {sequential / batched:.1f}x; {same} of {int(both.sum())} starts converged in both "
        "arms land on the same point (within 1e-6)"
    )
    print(
        f"find_fixed_points end to end (search, merge, Jacobians, eigenvalues): {end_to_end:.2f} s; "
        f"{int(fp.stable.sum())} stable, {sum(c == 'saddle' for c in fp.classes)} saddles"
    )


if __name__ == "__main__":
    main()
