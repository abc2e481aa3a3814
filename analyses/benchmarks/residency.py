"""Residency times (Torre et al. 2025) as one batched computation vs a per-state loop.

Residency time of a state: over ``R`` noisy continuations of up to ``horizon`` steps, the steps
until ``argmax(readout)`` changes. Paper settings: 1,000 states (after 20 warm-up steps), 20
continuations, 50 steps. Both methods get the same noise tensor, so their answers must be equal
(checked); the table gives the best of ``--repeats`` wall times and the ratio.

    .venv/bin/python analyses/benchmarks/residency.py [--hidden 50 150] [--threads 1]

The nets are random noise RNNs (``W_hh`` scaled to spectral radius 0.9, 10 noise inputs, 3
outputs) and, with ``--run``, a trained one (whose slow clusters make continuations long).
The per-state loop is :func:`~interp.rnn.dynamics.residency_times_loop`: one state at a time,
its continuations batched (the stronger baseline; a loop over continuations too is slower still).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from interp.rnn.dynamics import noisy_trajectory, residency_times, residency_times_loop
from interp.rnn.hmm_net import NoiseRNN, load_hmm_run


def _net(hidden: int, inputs: int, seed: int) -> NoiseRNN:
    torch.manual_seed(seed)
    net = NoiseRNN(inputs, hidden, 3)
    with torch.no_grad():
        radius = torch.linalg.eigvals(net.weight_hh).abs().max()
        net.weight_hh.mul_(0.9 / radius)
    return net.eval()


def _best(fn, repeats: int, *args, **kwargs) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[50, 150])
    parser.add_argument("--states", type=int, default=1000)
    parser.add_argument("--continuations", type=int, default=20)
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--inputs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        help="also time a trained noise-RNN run (data/hmm_cyclic4)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"{args.states} states x {args.continuations} continuations x up to {args.horizon} steps, "
        f"{args.inputs} noise inputs, {args.threads} CPU thread(s), best of {args.repeats}"
    )
    print(
        f"{'net (hidden)':>18} {'mean residency':>15} {'per-state loop s':>17} {'batched s':>10} {'ratio':>7}"
    )
    nets = [(str(hidden), _net(hidden, args.inputs, seed=0)) for hidden in args.hidden]
    if args.run is not None:
        net, _, _ = load_hmm_run(args.run)
        nets.append((f"{args.run.name} ({net.hidden_size})", net))
    for label, net in nets:
        generator = torch.Generator().manual_seed(0)
        states, _ = noisy_trajectory(net, args.states, generator=generator, warmup=20)
        states = states[0]
        noise = torch.randn(
            args.states, args.continuations, args.horizon, net.input_size, generator=generator
        )
        loop_s, loop = _best(residency_times_loop, args.repeats, net, states, noise)
        batch_s, batched = _best(residency_times, args.repeats, net, states, noise=noise)
        if not torch.equal(loop, batched):
            raise SystemExit("the batched and looped residency times differ")
        mean = float(batched.double().mean())
        print(
            f"{label:>18} {mean:>15.2f} {loop_s:>17.3f} {batch_s:>10.3f} {loop_s / batch_s:>6.1f}x"
        )


if __name__ == "__main__":
    main()
