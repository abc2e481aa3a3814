"""Solution degeneracy vs network size, task complexity and regularization (Huang et al. 2024).

Trains small ensembles of tanh RNNs on K-bit flip-flop and on delayed discrimination,
varying one factor at a time around a base setting, and measures degeneracy (mean pairwise
distance) at three levels: behaviour, neural dynamics (DSA and friends) and weights. Prints the
tidy table, then for each factor whether degeneracy goes down or up from its lowest to its
highest level — the paper's claims are: larger networks and regularization lower degeneracy at
all levels; more task complexity lowers dynamical but raises weight degeneracy.

    .venv/bin/python analyses/degeneracy_sweep.py [--models 8] [--steps 300] [--ray ADDRESS] [--out out/degeneracy_sweep]

Writes ``<out>.csv`` (the tidy table) and ``<out>.html`` (the sweep figure). About 5-10 minutes
on one core with the defaults.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from interp.degeneracy import degeneracy_sweep, make_executor
from interp.results import write_atomically

TASKS = {
    # task: (base task options, complexity factor and its levels, training overrides)
    "flipflop": ({"bits": 2, "steps": 32}, ("bits", [1, 2, 3]), {}),
    # complexity = memory demand: the longest delay between the two stimuli
    "delayed_discrimination": (
        {"delay_min": 2, "delay_max": 6},
        ("delay_max", [4, 6, 10]),
        {"lr": 3e-3, "steps": 400},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8, help="networks per ensemble")
    parser.add_argument(
        "--steps", type=int, default=300, help="training steps (flip-flop; 400 for DD)"
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--ray", default=None, help="Ray address (e.g. auto); default: run here")
    parser.add_argument("--out", type=Path, default=Path("out/degeneracy_sweep"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    executor = make_executor(args.ray)
    base = {"n_models": args.models, "steps": args.steps, "hidden_size": 32, "batch_size": 32}
    measure = {"n_trials": 32, "dsa_iters": 200}
    frames, sweeps = [], []
    start = time.perf_counter()
    for task in args.tasks:
        options, (complexity, levels), overrides = TASKS[task]
        factors = {
            "hidden_size": [16, 32, 64],
            complexity: levels,
            "weight_decay": [0.0, 1e-2, 1e-1],
            "activity_penalty": [0.0, 1e-2, 1e-1],
        }
        sweep = degeneracy_sweep(
            task,
            factors,
            base={**base, **overrides},
            task_options=options,
            measure=measure,
            executor=executor,
        )
        sweeps.append(sweep)
        frames.append(sweep.frame.assign(complexity_factor=complexity))
        print(sweep.table(), flush=True)
    table = pd.concat(frames, ignore_index=True)
    print(f"\nsweep took {time.perf_counter() - start:.0f} s")
    print("\nDirection of change from the lowest to the highest level (− = less degenerate):")
    for (task, factor), rows in table.groupby(["task", "factor"], sort=False):
        first = rows[rows.level_rank == 0].set_index("metric").degeneracy
        last = rows[rows.level_rank == rows.level_rank.max()].set_index("metric").degeneracy
        change = ((last - first) / first.abs().clip(lower=1e-12)).map(lambda v: f"{v:+.0%}")
        print(f"{task[:9]:>9} {factor:<17} " + "  ".join(f"{m}:{c}" for m, c in change.items()))
    print(
        "\nTrained vs initial weight distance (weights / weights_init; < 1 = closer than chance):"
    )
    wide = table.pivot_table(
        index=["task", "factor", "level_rank", "level"],
        columns="metric",
        values="degeneracy",
        sort=False,
    )
    print(
        (wide["weights"] / wide["weights_init"])
        .droplevel("level_rank")
        .to_string(float_format="{:.3f}".format)
    )
    csv = args.out.with_suffix(".csv")
    write_atomically(csv, lambda tmp: table.to_csv(tmp, index=False), overwrite=args.overwrite)
    from interp.degeneracy.figures import sweep_figure

    figure = sweep_figure(table, sweeps[0].example, sweeps[0].example_label)
    html = args.out.with_suffix(".html")
    write_atomically(
        html, lambda tmp: figure.write_html(tmp, include_plotlyjs=True), overwrite=args.overwrite
    )
    print(f"wrote {csv} and {html}")
    if hasattr(executor, "close"):
        executor.close()


if __name__ == "__main__":
    main()
