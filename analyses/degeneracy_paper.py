"""Huang et al. (arXiv 2410.03972) under their own settings: μP width scaling, loss-matched stopping.

The earlier sweep (analyses/degeneracy_sweep.py: standard parameterization, one Adam learning
rate for every width, a fixed step count) found width *raising* dynamical and weight degeneracy
and task complexity *lowering* weight degeneracy, both against the paper's Table 1. This study
repeats the width and complexity axes with the paper's protocol:

- net: μP leaky tanh (``mup_leaky``): h(t+1) − h(t) = τ(−h + (1/N) J tanh(h) + U x), τ = 0.1,
  J_ij ~ N(0, N), f = W tanh(h) / (γN), Adam (no weight decay, no clipping), η = γ η0, γ fixed;
- stopping: each net trains until its training MSE stays below a threshold for 3 consecutive
  steps (then frozen); nets that never get there are excluded and counted;
- metrics, both families: the paper's (σ_OOD = std over nets of the MSE on trials twice as long;
  DSA with the Euclidean score; d_PIF on W_h = J/N with permutations only, ÷ N² across widths,
  chance = two random initializations) and ours (RMS output distance on long trials, angular
  DSA, signed-permutation distance over all weights relative to its chance level);
- DSA's hyperparameters are fixed within a task (5 delays; the rank by a rule, not by hand: the
  median over every net of the task, all conditions together, of the least rank that keeps 99%
  of the delay embedding's energy, ``interp.degeneracy.dsa.explained_rank``); DSA at rank 10,
  the earlier runs' choice, is printed beside it.

Each level's degeneracy comes with a jackknife standard error over nets; a change between the
lowest and highest level of a factor counts only beyond twice its combined error ("flat" else).
Trained ensembles are kept in ``--cache DIR`` (one folder per condition) so a later run, or
``--dsa-sensitivity``, reuses them instead of training again; ``--only 0,1`` measures and prints
only those sections (to split the measuring over processes once the nets are cached):

    .venv/bin/python analyses/degeneracy_paper.py --cache /tmp/degeneracy_paper | tee analyses/results/degeneracy_paper.txt
    .venv/bin/python analyses/degeneracy_paper.py --cache /tmp/degeneracy_paper --dsa-sensitivity | tee -a analyses/results/degeneracy_paper.txt
    .venv/bin/python analyses/degeneracy_paper.py --loss-floor | tee -a analyses/results/degeneracy_paper.txt
    .venv/bin/python analyses/degeneracy_paper.py --cache /tmp/degeneracy_paper --sweep delay | tee analyses/results/degeneracy_paper_delay.txt

The main run (3-bit flip-flop: widths 32-256 at γ = 1 and at γ = 0.3, bits 1-3 at width 128, 32
nets each) and ``--sweep delay`` (delayed discrimination with f1, f2 ∈ [2, 10] at delays 5–10,
10–15 and 15–20, each without and with the auxiliary |f2 − f1| output, width 128, 32 nets each)
took 47 minutes of training plus 78 of measuring, and 97 minutes, on one thread each (torch and
BLAS limited to one thread; run them side by side on two cores). Both stop at training MSE 0.02: ``--loss-floor`` (about 5 minutes) shows why the
paper's 0.001 is not used — with a per-member plateau schedule the flip-flop nets level off near
0.01. ``--dsa-sensitivity`` (a few minutes, on the cached nets) measures DSA at other ranks and
delay counts and prints the explained-energy ranks, to see whether a DSA trend is a property of
the nets or of DSA's hyperparameters.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from interp.degeneracy import Ensemble, measure_degeneracy, train_ensemble
from interp.degeneracy.dsa import explained_rank
from interp.degeneracy.pairs import degeneracy, degeneracy_se, ratio_se
from interp.degeneracy.paper_metrics import pif_distances, recurrent_matrices, std_se
from interp.degeneracy.training import held_out, trial_steps

WIDTHS = (32, 64, 128, 256)
BITS = (1, 2, 3)
COMPLEXITY_WIDTH = 128  # the complexity sweeps' width
N_MODELS = 32
GAMMA, TAU, ETA0 = 1.0, 0.1, 0.3  # η = γ η0
GAMMA2 = 0.3  # the width sweep repeated at a second (lazier) γ
BATCH, MAX_STEPS, THRESHOLD, PATIENCE = 32, 5000, 0.02, 3
PAPER_THRESHOLD = 0.001  # the paper's flip-flop threshold (--loss-floor: out of reach here)
TASK = {"steps": 32, "p_pulse": 0.1}  # trial length 32, switch probability 0.1 per bit per step
CHANCE_NETS = 6  # d_PIF of random initializations on the first 6 nets (15 pairs)
EVAL_SEED, N_TRIALS = 1, 64  # the held-out batch of measure_degeneracy
DSA = {"n_delays": 5, "dsa_iters": 200, "dsa_restarts": 4}
# DSA's rank, fixed within a task by a rule: the median over every net of the task (all
# conditions) of the least rank keeping RANK_VARIANCE of the delay embedding's energy
RANK_VARIANCE, RANK_CAP, FIXED_RANK = 0.99, 30, 10  # FIXED_RANK: the earlier runs' choice
MEASURE = {"n_trials": N_TRIALS, "eval_seed": EVAL_SEED, "pif_options": {"random_starts": 0}}
PAPER = {  # Table 1 (qualitative): the direction of each level as the factor grows
    "width": {"behaviour": "down", "dynamics": "down", "weights": "down"},
    "bits": {"behaviour": "down", "dynamics": "down", "weights": "up"},
    "complexity": {"behaviour": "down", "dynamics": "down", "weights": "up"},  # delays, aux
}
# --sweep delay: delayed discrimination (f1, f2 ∈ [2, 10]) at three delay ranges within the
# paper's 5–20, each without and with the auxiliary |f2 − f1| output, at COMPLEXITY_WIDTH
DELAYS = ((5, 10), (10, 15), (15, 20))
DD_MAX_STEPS, DD_THRESHOLD = 6000, 0.02  # 0.01 (paper) is out of budget
LEVELS = {  # level -> (paper metrics, our metrics)
    "behaviour": ("sigma_ood", "behaviour_ood"),
    "dynamics": ("dsa_euclid", f"dsa_euclid@{FIXED_RANK}", "dsa"),
    "weights": ("d_pif_norm", "d_pif/chance", "weights/init"),
}
NAMES = {  # printed metric -> family ([paper]: the metrics Huang et al. used)
    "sigma_ood": "paper",
    "behaviour_ood": "ours",
    "dsa_euclid": "paper",
    f"dsa_euclid@{FIXED_RANK}": "paper",
    "dsa": "ours",
    "eigen_w1": "ours",
    "cka": "ours",
    "d_pif": "paper",
    "d_pif_norm": "paper",
    "d_pif_chance_norm": "paper",
    "d_pif/chance": "paper*",
    "weights": "ours",
    "weights/init": "ours",
}


def log(message: str) -> None:
    print(message, flush=True)


@dataclasses.dataclass(frozen=True)
class Condition:
    """One ensemble: flip-flop with ``bits`` bits, or (``delays`` given) delayed discrimination
    with delays in ``delays`` and, with ``aux``, the auxiliary |f2 − f1| output."""

    width: int
    gamma: float = GAMMA
    bits: int = 3
    delays: tuple[int, int] | None = None
    aux: bool = False

    @property
    def label(self) -> str:
        if self.delays is None:
            return f"bits {self.bits}"
        return f"delays {self.delays[0]}-{self.delays[1]}" + ("+aux" if self.aux else "")

    @property
    def key(self) -> str:
        return f"w{self.width}_g{self.gamma}_" + self.label.replace(" ", "").replace("+", "_")

    @property
    def threshold(self) -> float:
        return THRESHOLD if self.delays is None else DD_THRESHOLD

    def train(self, steps: int | None = None) -> Ensemble:
        if self.delays is None:
            task, options = "flipflop", {"bits": self.bits, **TASK}
            max_steps = MAX_STEPS
        else:
            task, max_steps = "delayed_discrimination_paper", DD_MAX_STEPS
            options = {"delay_min": self.delays[0], "delay_max": self.delays[1], "aux": self.aux}
        return train_ensemble(
            task,
            "mup_leaky",
            N_MODELS,
            hidden_size=self.width,
            steps=max_steps if steps is None else steps,
            batch_size=BATCH,
            lr=ETA0,
            grad_clip=None,
            net_options={"gamma": self.gamma, "tau": TAU},
            task_options=options,
            loss_threshold=self.threshold,
            patience=PATIENCE,
            progress=False,
        )


def trained(condition: Condition, cache: Path | None) -> Ensemble:
    """The condition's ensemble, from ``cache`` when it was trained before (saved there after)."""
    path = None if cache is None else cache / condition.key
    if path is not None and path.exists():
        return Ensemble.load(path)
    start = time.perf_counter()
    ensemble = condition.train()
    kept = len(ensemble.converged)
    stops = [s for s in ensemble.stop_step.tolist() if s >= 0]
    log(
        f"width {condition.width:>4} {condition.label} γ {condition.gamma}: {kept}/{N_MODELS} "
        f"reached loss {condition.threshold} (median stop step "
        f"{statistics.median(stops) if stops else 'none'}), train {time.perf_counter() - start:.0f} s"
    )
    if path is not None:
        ensemble.save(path)
    return ensemble


def timing(conditions: list[Condition]) -> None:
    log(f"== timing: 20 training steps of the full ensemble ({N_MODELS} nets) ==")
    for condition in conditions:
        start = time.perf_counter()
        condition.train(steps=20)
        per_step = (time.perf_counter() - start) / 20
        log(f"width {condition.width:>4} {condition.label}: {1000 * per_step:.1f} ms/step")


def task_rank(ensembles: dict[Condition, Ensemble]) -> int:
    """DSA's rank for one task: the median over all its nets of each net's explained rank."""
    ranks = []
    for condition, ensemble in ensembles.items():
        kept = ensemble.subset(ensemble.converged)
        test = held_out(kept.make_task(), EVAL_SEED, N_TRIALS)
        _, states = kept.run(test.x)
        per_net = explained_rank(
            states.double(),
            n_delays=DSA["n_delays"],
            variance=RANK_VARIANCE,
            valid=trial_steps(test.mask),
        ).tolist()
        ranks += per_net
        log(
            f"  width {condition.width:>4} {condition.label} γ {condition.gamma}: rank for "
            f"{RANK_VARIANCE:.0%} of the delay-embedding energy, median {statistics.median(per_net)} "
            f"(range {min(per_net)}-{max(per_net)})"
        )
    chosen = round(statistics.median(ranks))
    capped = min(chosen, RANK_CAP)
    note = f" (capped at {RANK_CAP})" if capped < chosen else ""
    log(f"DSA rank for this task: {capped}{note}, {DSA['n_delays']} delays")
    return capped


def measured(condition: Condition, ensemble: Ensemble, rank: int) -> dict:
    """Both metric families for one trained ensemble, each with its jackknife error."""
    start = time.perf_counter()
    dsa = {"n_delays": DSA["n_delays"], "dsa_iters": DSA["dsa_iters"]}
    dsa["dsa_restarts"] = DSA["dsa_restarts"]
    result = measure_degeneracy(ensemble, family="both", rank=rank, **dsa, **MEASURE)
    fixed = measure_degeneracy(
        ensemble, metrics=["dsa_euclid"], rank=FIXED_RANK, n_trials=N_TRIALS, **dsa
    )
    kept = ensemble.subset(ensemble.converged)
    chance = pif_distances(
        recurrent_matrices(kept.subset(list(range(min(CHANCE_NETS, kept.n_models)))), initial=True),
        **MEASURE["pif_options"],
    )
    d = dict(result.distances)
    d[f"dsa_euclid@{FIXED_RANK}"] = fixed.distances["dsa_euclid"]
    values = {name: (degeneracy(m), degeneracy_se(m)) for name, m in d.items()}
    values["sigma_ood"] = std_se(result.per_member["ood_mse"])
    values["weights/init"] = (
        degeneracy(d["weights"]) / degeneracy(d["weights_init"]),
        ratio_se(d["weights"], d["weights_init"]),
    )
    width = condition.width
    values["d_pif_chance"] = (degeneracy(chance), degeneracy_se(chance))
    values["d_pif_chance_norm"] = (degeneracy(chance) / width**2, degeneracy_se(chance) / width**2)
    # d_PIF over its chance level (the chance SE, from fewer nets, dominates the ratio's error)
    ratio = values["d_pif"][0] / degeneracy(chance)
    values["d_pif/chance"] = (
        ratio,
        ratio
        * math.hypot(
            values["d_pif"][1] / values["d_pif"][0], values["d_pif_chance"][1] / degeneracy(chance)
        ),
    )
    stops = [s for s in ensemble.stop_step.tolist() if s >= 0]
    log(
        f"measured width {width} {condition.label} γ {condition.gamma} in {time.perf_counter() - start:.0f} s"
    )
    return {
        "condition": condition,
        "width": width,
        "bits": condition.bits,
        "kept": kept.n_models,
        "stop": statistics.median(stops) if stops else float("nan"),
        "final_loss": float(kept.final_loss.mean()),
        "accuracy": float(kept.accuracy.mean()),
        "dW_h": float(kept.weight_change["weight_hh"].mean()),
        "dU": float(kept.weight_change["weight_ih"].mean()),
        "dW_out": float(kept.weight_change["out.weight"].mean()),
        "values": values,
    }


def print_rows(rows: list[dict]) -> None:
    labels = [r["condition"].label for r in rows]
    size = max(len(label) for label in labels)
    log(
        f"{'N':>4} {'task':>{size}} {'γ':>4} {'kept':>5} {'stop':>6} {'loss':>7} {'acc':>6} "
        f"{'dW_h':>6} {'dU':>6} {'dW_out':>6}"
    )
    for r, label in zip(rows, labels, strict=True):
        log(
            f"{r['width']:>4} {label:>{size}} {r['condition'].gamma:>4} {r['kept']:>5} "
            f"{r['stop']:>6} {r['final_loss']:>7.4f} {r['accuracy']:>6.3f} {r['dW_h']:>6.3f} "
            f"{r['dU']:>6.2f} {r['dW_out']:>6.3f}"
        )
    for name, family in NAMES.items():
        cells = "  ".join(f"{r['values'][name][0]:.4g} ± {r['values'][name][1]:.2g}" for r in rows)
        log(f"  {name:<18} [{family:<6}] {cells}")
    log("  [paper]: the metrics Huang et al. used; [paper*]: d_PIF over its chance level (ours)")
    log(
        f"  dsa_euclid, dsa: at the task's rule-chosen rank; dsa_euclid@{FIXED_RANK}: rank "
        f"{FIXED_RANK} (the earlier runs)"
    )
    log("  value ± jackknife SE over nets; dW_h, dU, dW_out: mean ‖W_T − W_0‖/‖W_0‖ per matrix")


def direction(first: tuple[float, float], last: tuple[float, float]) -> str:
    diff = last[0] - first[0]
    noise = 2 * math.sqrt(first[1] ** 2 + last[1] ** 2)
    if not abs(diff) > noise:
        return "flat"
    return "up" if diff > 0 else "down"


def verdicts(factor: str, first: dict, last: dict) -> None:
    """Paper vs ours from ``first`` to ``last`` (a change counts beyond twice its combined SE)."""
    a, b = first["condition"], last["condition"]
    log(f"direction w{a.width} {a.label} -> w{b.width} {b.label} ({factor} grows), paper vs ours:")
    for level, metrics in LEVELS.items():
        expected = PAPER[factor][level]
        parts = []
        for metric in metrics:
            seen = direction(first["values"][metric], last["values"][metric])
            verdict = "agrees" if seen == expected else ("flat" if seen == "flat" else "disagrees")
            parts.append(f"{metric} {seen} ({verdict})")
        log(f"  {level:<10} paper: {expected:<5} | " + "; ".join(parts))


def study(
    sections: list[tuple[str, str, list[Condition]]], cache: Path | None, only: list[int] | None
) -> None:
    """Train every condition (or load it from ``cache``), fix DSA's rank for the task from all of
    them, measure, and print each section's table and its first -> last verdict. ``only``: the
    indices of the sections to measure and print (the rank still comes from all of them)."""
    conditions = list(dict.fromkeys(c for _, _, section in sections for c in section))
    ensembles = {c: trained(c, cache) for c in conditions}
    log("== DSA rank rule ==")
    rank = task_rank(ensembles)
    shown = [s for i, s in enumerate(sections) if only is None or i in only]
    wanted = list(dict.fromkeys(c for _, _, section in shown for c in section))
    rows = {c: measured(c, ensembles[c], rank) for c in wanted}
    for title, factor, section in shown:
        log(f"== {title} ==")
        print_rows([rows[c] for c in section])
        verdicts(factor, rows[section[0]], rows[section[-1]])


def flipflop_sections() -> list[tuple[str, str, list[Condition]]]:
    lazy = f"width sweep repeated at γ = {GAMMA2} (η = γ η0 = {GAMMA2 * ETA0:g})"
    return [
        ("width sweep (μP, γ fixed), 3-bit flip-flop", "width", [Condition(w) for w in WIDTHS]),
        (
            f"complexity sweep at width {COMPLEXITY_WIDTH}: flip-flop bits",
            "bits",
            [Condition(COMPLEXITY_WIDTH, bits=b) for b in BITS],
        ),
        (lazy, "width", [Condition(w, GAMMA2) for w in WIDTHS]),
    ]


def delay_sections() -> list[tuple[str, str, list[Condition]]]:
    plain = [Condition(COMPLEXITY_WIDTH, delays=d) for d in DELAYS]
    aux = [Condition(COMPLEXITY_WIDTH, delays=d, aux=True) for d in DELAYS]
    sections = [
        ("longer delays, no aux output", "complexity", plain),
        ("longer delays, with the aux output", "complexity", aux),
    ]
    sections += [
        (f"adding the aux output at {c.label}", "complexity", [c, a])
        for c, a in zip(plain, aux, strict=True)
    ]
    return sections


def settings_line(task: str, threshold: float, max_steps: int) -> str:
    return (
        f"settings: {task}, mup_leaky τ={TAU}, Adam η=γ·{ETA0} (no clipping, no decay), batch "
        f"{BATCH}, stop at training MSE < {threshold} for {PATIENCE} steps (max {max_steps}), "
        f"{N_MODELS} nets per condition; metrics on {N_TRIALS} held-out trials, OOD = "
        f"{'delays doubled' if 'delayed' in task else 'trials twice as long'}; DSA "
        f"{DSA['n_delays']} delays, rank by the {RANK_VARIANCE:.0%}-energy rule; d_PIF heuristic "
        f"with {MEASURE['pif_options']}"
    )


def dsa_sensitivity(cache: Path | None, n_models: int = 10) -> None:
    """DSA (Euclidean score) at several (rank, delays) settings on the first ``n_models`` nets of
    the γ = 1 width sweep and the bits sweep, with each condition's explained-energy ranks."""
    conditions = [Condition(w) for w in WIDTHS]
    conditions += [Condition(COMPLEXITY_WIDTH, bits=b) for b in BITS if b != 3]
    log(f"== DSA sensitivity: first {n_models} nets per condition, flip-flop, γ={GAMMA} ==")
    ensembles = {}
    for c in conditions:
        ensemble = trained(c, cache)
        ensembles[c] = ensemble.subset(ensemble.converged[:n_models])
    header = "  ".join(f"N={c.width} bits={c.bits}".ljust(16) for c in conditions)
    log(f"rank/delays  {header}")
    for rank, delays in [(5, 5), (10, 5), (20, 5), (10, 10)]:
        cells = []
        for c in conditions:
            d = measure_degeneracy(
                ensembles[c],
                metrics=["dsa_euclid"],
                n_trials=N_TRIALS,
                rank=rank,
                n_delays=delays,
                dsa_iters=DSA["dsa_iters"],
                dsa_restarts=DSA["dsa_restarts"],
            ).distances["dsa_euclid"]
            cells.append(f"{degeneracy(d):.4f} ± {degeneracy_se(d):.4f}".ljust(16))
        log(f"{rank:>4}/{delays:<6}  " + "  ".join(cells))
    for variance in (0.9, 0.95, 0.99):
        cells = []
        for c in conditions:
            test = held_out(ensembles[c].make_task(), EVAL_SEED, N_TRIALS)
            states = ensembles[c].run(test.x)[1].double()
            ranks = explained_rank(
                states, n_delays=DSA["n_delays"], variance=variance, valid=trial_steps(test.mask)
            )
            cells.append(f"median rank {statistics.median(ranks.tolist())}".ljust(16))
        log(f"{variance:.0%} energy  " + "  ".join(cells))


def loss_floor(n_models: int = 12, width: int = 64, steps: int = 12000) -> None:
    """Can the flip-flop nets reach the paper's threshold? Train ``n_models`` nets with a
    per-member plateau schedule (the paper's ReduceLROnPlateau, factor 0.5) toward MSE 0.001 and
    print the 100-step mean training loss over time."""
    schedule = {"factor": 0.5, "patience": 4, "window": 100}
    log(
        f"== loss floor: {n_models} nets, width {width}, 3-bit flip-flop, γ={GAMMA}, η0={ETA0}, "
        f"lr plateau {schedule} (halve after 500 steps without progress), stop at "
        f"{PAPER_THRESHOLD} (patience {PATIENCE}), {steps} steps =="
    )
    start = time.perf_counter()
    ensemble = train_ensemble(
        "flipflop",
        "mup_leaky",
        n_models,
        hidden_size=width,
        steps=steps,
        batch_size=BATCH,
        lr=ETA0,
        grad_clip=None,
        net_options={"gamma": GAMMA, "tau": TAU},
        task_options={"bits": 3, **TASK},
        loss_threshold=PAPER_THRESHOLD,
        patience=PATIENCE,
        lr_plateau=schedule,
        progress=False,
    )
    windows = ensemble.losses[: len(ensemble.losses) // 100 * 100].reshape(-1, 100, n_models)
    means = windows.mean(1)  # [windows, N]
    log(f"{'step':>6} {'median':>8} {'best net':>8}  (100-step mean training MSE over nets)")
    for row in range(9, len(means), 10):
        log(f"{100 * (row + 1):>6} {means[row].median():>8.4f} {means[row].min():>8.4f}")
    reached = int((ensemble.stop_step >= 0).sum())
    log(
        f"{reached}/{n_models} reached {PAPER_THRESHOLD}; final 100-step means "
        f"{', '.join(f'{v:.4f}' for v in means[-1].tolist())}; {time.perf_counter() - start:.0f} s"
    )


def option(name: str) -> str | None:
    args = sys.argv[1:]
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


def main() -> None:
    # one thread for torch and for numpy's BLAS (d_PIF): without the BLAS limit, runs side by
    # side kept two busy threads each and oversubscribed the two cores
    torch.set_num_threads(1)
    threadpool_limits(1)
    cache = Path(option("--cache")) if option("--cache") else None
    only = None if option("--only") is None else [int(i) for i in option("--only").split(",")]
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    if "--dsa-sensitivity" in sys.argv[1:]:
        dsa_sensitivity(cache)
    elif "--loss-floor" in sys.argv[1:]:
        loss_floor()
    elif option("--sweep") == "delay":
        log(
            settings_line(
                "delayed discrimination (f1, f2 ∈ [2, 10], three delay ranges, without and with "
                f"the aux |f2 − f1| output), width {COMPLEXITY_WIDTH}, γ={GAMMA}",
                DD_THRESHOLD,
                DD_MAX_STEPS,
            )
        )
        timing([Condition(COMPLEXITY_WIDTH, delays=DELAYS[-1], aux=True)])
        study(delay_sections(), cache, only)
    else:
        log(
            settings_line(
                f"3-bit flip-flop (trial {TASK['steps']} steps, switch probability "
                f"{TASK['p_pulse']}), γ={GAMMA} (and {GAMMA2})",
                THRESHOLD,
                MAX_STEPS,
            )
        )
        timing([Condition(w) for w in WIDTHS])
        study(flipflop_sections(), cache, only)
    log(f"total {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
