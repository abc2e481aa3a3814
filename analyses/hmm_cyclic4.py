"""The cyclic 4-state HMM emulated by a noise-driven ReLU RNN (Torre et al. 2025), small budget.

Trains a :class:`~interp.rnn.hmm_net.NoiseRNN` (paper: 150 hidden units, 100 noise inputs,
sequences of 100, batch 4,096, lr 1e-3, clip 0.9, Sinkhorn blur 0.2) on the cyclic-4 HMM with a
budget that fits one CPU core, reports the fit of its output statistics to the HMM's exact
ones, then the paper's qualitative picture: the zero-input fixed point(s), the noise-sustained
orbit and whether its phase tracks the emitted symbol, residency zones, local instability per
zone and kick neurons (ablation vs random-neuron control).

    .venv/bin/python analyses/hmm_cyclic4.py [--hidden 50] [--steps 2500] [--save data/hmm_cyclic4]

The trained run is saved (``--save``) for the CLI and notebooks; the printed report is what
``analyses/results/hmm_cyclic4.txt`` holds.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from interp.rnn.dynamics import kick_neurons
from interp.rnn.dynamics_analysis import analyze_noise_rnn
from interp.rnn.hmm_net import NoiseRNN, load_hmm_run, save_hmm_run, train_hmm
from interp.rnn.tasks import make_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=50)
    parser.add_argument("--noise", type=int, default=10)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, default=None, help="save the trained run here")
    parser.add_argument("--model", type=Path, default=None, help="analyse this saved run instead")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.model is not None:
        net, task, result = load_hmm_run(args.model)
        print(f"== loaded {args.model}: {result.settings}")
        print(result.table())
    else:
        task = make_task("hmm", hmm="cyclic4", steps=args.length, noise_size=args.noise)
        torch.manual_seed(args.seed)
        net = NoiseRNN(args.noise, args.hidden, task.output_size)
        result = train_hmm(
            net,
            task,
            steps=args.steps,
            batch_size=args.batch,
            n_sequences=max(4 * args.batch, 4096),
            lr=args.lr,
            seed=args.seed,
            progress=False,
        )
        print(
            f"== training ({args.hidden} hidden, {args.noise} noise inputs, length {args.length}, "
            f"batch {args.batch}, {args.steps} steps, lr {args.lr}, seed {args.seed}; 1 thread)"
        )
        print(result.table())
        if args.save is not None:
            save_hmm_run(args.save, net, task, result, overwrite=args.overwrite)
            print(f"saved run to {args.save}")
    losses = result.loss
    print(
        f"loss: first 50 mean {float(losses[:50].mean()):.4f}, last 50 mean "
        f"{float(losses[-50:].mean()):.4f}"
    )
    dynamics = analyze_noise_rnn(net, seed=args.seed)
    print("\n== dynamics (paper settings: 1,000 states, 20 continuations of up to 50 steps)")
    print(dynamics.table())
    print(f"\nexplained variance of PC1-3: {[round(v, 3) for v in dynamics.explained.tolist()]}")
    cut = dynamics.kick_cut.double()
    ranking = dynamics.kick["ranking"]
    print(f"largest ablation cuts: {[(i, round(float(cut[i]), 4)) for i in ranking[:8]]}")
    # the paper's reverse-engineered net had two groups of three: ablate the top 6 together
    generator = torch.Generator().manual_seed(args.seed + 1)
    starts = dynamics.states[torch.randperm(len(dynamics.states), generator=generator)[:64]]
    six = kick_neurons(net.double(), starts, generator=generator, steps=100, top_k=6)
    random = six["random_rates"].double()
    print(
        f"top-6 by cut {six['kick'].tolist()}: rate {six['baseline']:.4f} -> ablated "
        f"{six['ablated_rate']:.4f}; 20 random sets of 6 others: {float(random.mean()):.4f} ± "
        f"{float(random.std()):.4f} (min {float(random.min()):.4f})"
    )
    print(f"total time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
