"""Validate the fixed-point finder on the 3-bit flip-flop (Sussillo & Barak 2013).

A net that solves the K-bit flip-flop must hold 2^K memories; at zero input each memory is a
stable fixed point whose readout is one of the 2^K sign patterns, separated by saddles. This
script trains a GRU and a vanilla tanh RNN (16 units each, seeded), finds their fixed points
from 1,024 starts and prints, per net: stable points, their distinct sign patterns, saddles
and slow points. Results land under ``out/rnn_flipflop/`` (FixedPoints + a 3-D figure).

    .venv/bin/python analyses/rnn_flipflop.py [--hidden 16] [--steps 3000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from interp.results import write_atomically
from interp.rnn import find_fixed_points, make_net, make_task, train

NETS = {"gru": "GRU", "rnn_tanh": "vanilla tanh RNN"}


def train_flipflop(kind: str, hidden: int, steps: int, seed: int = 0):
    """A net of ``kind`` trained on the 3-bit flip-flop to a low loss (clean attractors)."""
    task = make_task("flipflop", bits=3)
    net = make_net(kind, task.input_size, hidden, task.output_size, seed=seed)
    result = train(net, task, steps=steps, lr=1e-2, eval_every=250, seed=seed, progress=False)
    return net, task, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=Path("out/rnn_flipflop"))
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results in --out")
    args = parser.parse_args()
    earlier = sorted(args.out.glob("*_fixed_points*")) if args.out.is_dir() else []
    if earlier and not args.overwrite:
        parser.error(f"{args.out} already holds results ({earlier[0].name}, ...); pass --overwrite")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind, label in NETS.items():
        net, task, history = train_flipflop(kind, args.hidden, args.steps)
        start = time.perf_counter()
        fp = find_fixed_points(net, task=task, n_starts=1024)
        seconds = time.perf_counter() - start
        stable = fp.stable
        patterns = {tuple(r) for r in torch.sign(fp.readouts[stable]).int().tolist()}
        saddles = sum(c == "saddle" for c in fp.classes)
        marginal = sum(c in ("marginal", "saturated") for c in fp.classes)
        rows.append(
            (
                label,
                history.test_loss,
                history.final_accuracy,
                int(stable.sum()),
                len(patterns),
                saddles,
                marginal,
                int(fp.slow.sum()),
                seconds,
            )
        )
        print(f"== {label}\n{fp.table(max_rows=12)}\n")
        fp.save(args.out / f"{kind}_fixed_points", overwrite=args.overwrite)
        write_atomically(
            args.out / f"{kind}_fixed_points.html",
            lambda tmp, fp=fp: fp.figure().write_html(tmp, include_plotlyjs="cdn"),
            overwrite=args.overwrite,
        )
    print(
        "| net | test loss | test acc | stable | sign patterns | saddles | marginal or saturated "
        "| slow | find time (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, loss, acc, n_stable, n_patterns, saddles, marginal, slow, seconds in rows:
        print(
            f"| {label} | {float(loss):.1e} | {float(acc):.3f} | {n_stable} | {n_patterns}/8 "
            f"| {saddles} | {marginal} | {slow} | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
