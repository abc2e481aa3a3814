"""Solution degeneracy vs network size, task complexity and regularization (Huang et al. 2024).

Trains ensembles of tanh RNNs on K-bit flip-flop and on delayed discrimination, varying one
factor at a time around a base setting, and measures degeneracy (mean pairwise distance) at three
levels: behaviour, neural dynamics (DSA and friends) and weights. Prints the tidy table (with the
ensembles' mean test accuracy), then a verdict on each of the paper's claims (agrees / partly
agrees / no significant change / mixed / partly disagrees / disagrees, with the numbers):

1. larger networks lower degeneracy at all three levels;
2. more task complexity lowers dynamical degeneracy ...
3. ... and raises weight degeneracy;
4. regularization (weight decay, activity penalty) lowers degeneracy at all three levels.

Each level is read from one measure: behaviour = ``behaviour`` (held-out RMS output distance),
dynamics = ``dsa`` (angular DSA distance), weights = ``weights / weights_init``: the matched
weight distance of the trained nets divided by that of their initial weights. The raw relative
weight distance is not comparable across hidden sizes (its chance level, ``weights_init``, grows
with the size: matching more units by a permutation leaves relatively less residual), so the
ratio, "how much closer than chance training brought the solutions", is the size-normalised
measure. A change from the lowest to the highest level of a factor counts only when it exceeds
twice its jackknife standard error (over ensemble members); smaller ones are "flat".

    .venv/bin/python analyses/degeneracy_sweep.py [--models 8] [--steps 300] [--ray ADDRESS] [--out out/degeneracy_sweep]

Delayed discrimination trains for 4/3 as many steps as flip-flop (at a lower learning rate).
Writes ``<out>.csv`` (the tidy table) and ``<out>.html`` (the sweep figure). Measured on one
core: about 65 s with the defaults (18 ensembles of 8 nets), 4 minutes with
``--models 16 --steps 600`` and 7 minutes with ``--models 16 --steps 1500``.
"""

from __future__ import annotations

import argparse
import math
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
        {"lr": 3e-3},
    ),
}
LEVELS = {"behaviour": "behaviour", "dynamics": "dsa", "weights": "weights / weights_init"}
CLAIMS = [
    ("larger networks lower degeneracy at all levels", ["hidden_size"], list(LEVELS), "down"),
    ("more task complexity lowers dynamical degeneracy", ["complexity"], ["dynamics"], "down"),
    ("more task complexity raises weight degeneracy", ["complexity"], ["weights"], "up"),
    (
        "regularization lowers degeneracy at all levels",
        ["weight_decay", "activity_penalty"],
        list(LEVELS),
        "down",
    ),
]


def level_values(rows: pd.DataFrame) -> dict[str, tuple[list[float], list[float]]]:
    """``{level: (degeneracy per factor level, its standard error)}`` for one task x factor."""
    wide = rows.pivot_table(
        index="level_rank", columns="metric", values=["degeneracy", "se", "ratio_se"], dropna=False
    )
    d, se = wide["degeneracy"], wide["se"]
    ratio = d["weights"] / d["weights_init"]
    ratio_se = wide["ratio_se"]["weights"]  # jackknifed jointly: both are over the same members
    return {
        "behaviour": (d["behaviour"].tolist(), se["behaviour"].tolist()),
        "dynamics": (d["dsa"].tolist(), se["dsa"].tolist()),
        "weights": (ratio.tolist(), ratio_se.tolist()),
    }


def direction(values: list[float], errors: list[float]) -> str:
    """``up`` / ``down`` when last - first exceeds twice its standard error, else ``flat``."""
    change = values[-1] - values[0]
    noise = 2 * math.sqrt(errors[0] ** 2 + errors[-1] ** 2)
    return "flat" if abs(change) <= noise else ("up" if change > 0 else "down")


def verdicts(table: pd.DataFrame) -> list[str]:
    """One line per claim (agrees / disagrees / mixed) followed by the evidence it rests on."""
    lines = []
    for claim, factors, levels, expected in CLAIMS:
        found, evidence = [], []
        for (task, factor), rows in table.groupby(["task", "factor"], sort=False):
            role = "complexity" if factor == rows.complexity_factor.iloc[0] else factor
            if role not in factors:
                continue
            accuracy = rows.groupby("level_rank").accuracy.first().min()
            values = level_values(rows)
            for level in levels:
                means, errors = values[level]
                way = direction(means, errors)
                found.append(way)
                evidence.append(
                    f"    {task[:14]:<14} {factor:<16} {level:<9} "
                    + " -> ".join(f"{v:.4f}" for v in means)
                    + f"  (±{errors[0]:.4f}, ±{errors[-1]:.4f}): {way}"
                    + ("" if accuracy >= 0.9 else f"  [accuracy down to {accuracy:.2f}]")
                )
        opposite = {"down": "up", "up": "down"}[expected]
        agree, disagree = found.count(expected), found.count(opposite)
        counts = f"{agree} agree, {disagree} opposite, {found.count('flat')} flat"
        if not found:
            verdict = "NOT TESTED (no factor of this kind in the sweep)"
        elif agree == len(found):
            verdict = "AGREES"
        elif disagree == len(found):
            verdict = "DISAGREES"
        elif agree == disagree == 0:
            verdict = f"NO SIGNIFICANT CHANGE ({counts})"
        elif disagree == 0:
            verdict = f"PARTLY AGREES ({counts})"
        elif agree == 0:
            verdict = f"PARTLY DISAGREES ({counts})"
        else:
            verdict = f"MIXED ({counts})"
        lines += [f"{claim} (paper: {expected}): {verdict}", *evidence]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8, help="networks per ensemble")
    parser.add_argument(
        "--steps", type=int, default=300, help="training steps (flip-flop; 4/3 of it for DD)"
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
        steps = args.steps if task == "flipflop" else round(4 * args.steps / 3)
        sweep = degeneracy_sweep(
            task,
            factors,
            base={**base, "steps": steps, **overrides},
            task_options=options,
            measure=measure,
            executor=executor,
        )
        sweeps.append(sweep)
        frames.append(sweep.frame.assign(complexity_factor=complexity))
        print(f"\n{task} ({args.models} nets per ensemble, {steps} training steps)")
        print(sweep.table(), flush=True)
    table = pd.concat(frames, ignore_index=True)
    print(f"\nsweep took {time.perf_counter() - start:.0f} s")
    print(
        "\nVerdicts (lowest -> highest level of each factor; ± = jackknife SE over members;"
        " weights = weights / weights_init):"
    )
    print("\n".join(verdicts(table)))
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
