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
  DSA, signed-permutation distance over all weights relative to its chance level).

Each level's degeneracy comes with a jackknife standard error over nets; a change between the
lowest and highest level of a factor counts only beyond twice its combined error ("flat" else).

    .venv/bin/python analyses/degeneracy_paper.py | tee analyses/results/degeneracy_paper.txt
    .venv/bin/python analyses/degeneracy_paper.py --dsa-sensitivity | tee -a analyses/results/degeneracy_paper.txt

    .venv/bin/python analyses/degeneracy_paper.py --sweep delay | tee analyses/results/degeneracy_paper_delay.txt

``--sweep delay`` (about 7 minutes on two threads, ``torch.set_num_threads(2)``) is the complexity
sweep on delayed discrimination instead: f1, f2 ∈ [2, 10], delays 5–10, 10–15 and 15–20, each
without and with the auxiliary |f2 − f1| output, at ``COMPLEXITY_WIDTH``, 20 nets per condition,
stopping at training MSE 0.02 (the paper's 0.01 is out of reach within the step budget).

``--dsa-sensitivity`` (about 4 minutes) retrains 10 nets per width and per bit count and measures DSA with other
delay-embedding ranks and delay counts, to see whether the width trend of DSA is a property of
the nets or of the DSA hyperparameters (rank 10, 5 delays in the main run).

Sized to about 20 minutes on one core (``torch.set_num_threads(1)``); see the printed settings
for what was cut relative to the paper.
"""

from __future__ import annotations

import math
import statistics
import sys
import time

import torch

from interp.degeneracy import measure_degeneracy, train_ensemble
from interp.degeneracy.pairs import degeneracy, degeneracy_se, ratio_se
from interp.degeneracy.paper_metrics import pif_distances, recurrent_matrices, std_se

WIDTHS = (32, 64, 128)
BITS = (1, 2, 3)
COMPLEXITY_WIDTH = 64  # the complexity sweep's width (128 does not fit the time budget)
N_MODELS = 20
GAMMA, TAU, ETA0 = 1.0, 0.1, 0.3  # η = γ η0
GAMMA2 = 0.3  # the width sweep repeated at a second (lazier) γ
BATCH, MAX_STEPS, THRESHOLD, PATIENCE = 32, 5000, 0.02, 3
TASK = {"steps": 32, "p_pulse": 0.1}  # trial length 32, switch probability 0.1 per bit per step
CHANCE_NETS = 6  # d_PIF of random initializations on the first 6 nets (15 pairs)
MEASURE = {"n_trials": 64, "dsa_iters": 200, "dsa_restarts": 4, "pif_options": {"random_starts": 0}}
PAPER = {  # Table 1 (qualitative): the direction of each level as the factor grows
    "width": {"behaviour": "down", "dynamics": "down", "weights": "down"},
    "bits": {"behaviour": "down", "dynamics": "down", "weights": "up"},
    "complexity": {"behaviour": "down", "dynamics": "down", "weights": "up"},  # delays, aux
}
# --sweep delay: delayed discrimination (f1, f2 ∈ [2, 10]) at three delay ranges within the
# paper's 5–20, each without and with the auxiliary |f2 − f1| output, at COMPLEXITY_WIDTH
DELAYS = ((5, 10), (10, 15), (15, 20))
DD_N_MODELS, DD_MAX_STEPS, DD_THRESHOLD = 20, 6000, 0.02  # 0.01 (paper) is out of budget
LEVELS = {  # level -> (paper metric, our metric)
    "behaviour": ("sigma_ood", "behaviour_ood"),
    "dynamics": ("dsa_euclid", "dsa"),
    "weights": ("d_pif_norm", "d_pif/chance", "weights/init"),
}


def log(message: str) -> None:
    print(message, flush=True)


def train(
    width: int, bits: int, gamma: float = GAMMA, steps: int | None = None, dd: dict | None = None
):
    """Flip-flop with ``bits`` bits, or (``dd`` given) the delay sweep's delayed discrimination."""
    if dd is not None:
        return train_ensemble(
            "delayed_discrimination_paper",
            "mup_leaky",
            N_MODELS,
            hidden_size=width,
            steps=DD_MAX_STEPS if steps is None else steps,
            batch_size=BATCH,
            lr=ETA0,
            grad_clip=None,
            net_options={"gamma": gamma, "tau": TAU},
            task_options=dd,
            loss_threshold=DD_THRESHOLD,
            patience=PATIENCE,
            progress=False,
        )
    return train_ensemble(
        "flipflop",
        "mup_leaky",
        N_MODELS,
        hidden_size=width,
        steps=MAX_STEPS if steps is None else steps,
        batch_size=BATCH,
        lr=ETA0,
        grad_clip=None,
        net_options={"gamma": gamma, "tau": TAU},
        task_options={"bits": bits, **TASK},
        loss_threshold=THRESHOLD,
        patience=PATIENCE,
        progress=False,
    )


def timing() -> None:
    log("== timing: 20 training steps of the full ensemble per width ==")
    for width in WIDTHS:
        start = time.perf_counter()
        train(width, 3, steps=20)
        per_step = (time.perf_counter() - start) / 20
        log(f"width {width:>4}: {1000 * per_step:.1f} ms/step for {N_MODELS} nets")


def condition(width: int, bits: int, gamma: float = GAMMA, dd: dict | None = None) -> dict:
    start = time.perf_counter()
    ensemble = train(width, bits, gamma, dd=dd)
    trained = time.perf_counter() - start
    result = measure_degeneracy(ensemble, family="both", **MEASURE)
    kept = ensemble.subset(ensemble.converged)
    chance = pif_distances(
        recurrent_matrices(kept.subset(list(range(min(CHANCE_NETS, kept.n_models)))), initial=True),
        **MEASURE["pif_options"],
    )
    d = result.distances
    values = {name: (result.summary[name], degeneracy_se(m)) for name, m in d.items()}
    values["sigma_ood"] = std_se(result.per_member["ood_mse"])
    values["weights/init"] = (
        degeneracy(d["weights"]) / degeneracy(d["weights_init"]),
        ratio_se(d["weights"], d["weights_init"]),
    )
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
    row = {
        "width": width,
        "bits": bits,
        "gamma": gamma,
        **({"delay": dd_label(dd)} if dd is not None else {}),
        "kept": kept.n_models,
        "stop": statistics.median(stops) if stops else float("nan"),
        "final_loss": float(kept.final_loss.mean()),
        "accuracy": float(kept.accuracy.mean()),
        "dW_h": float(kept.weight_change["weight_hh"].mean()),
        "dU": float(kept.weight_change["weight_ih"].mean()),
        "dW_out": float(kept.weight_change["out.weight"].mean()),
        "values": values,
        "seconds": time.perf_counter() - start,
    }
    what = f"delays {row['delay']}" if dd is not None else f"bits {bits}"
    log(
        f"width {width:>4} {what} γ {gamma}: {kept.n_models}/{N_MODELS} reached loss "
        f"{THRESHOLD if dd is None else DD_THRESHOLD} "
        f"(median stop step {row['stop']}), train {trained:.0f} s, total {row['seconds']:.0f} s"
    )
    return row


def print_rows(rows: list[dict]) -> None:
    names = [
        "sigma_ood",
        "behaviour_ood",
        "dsa_euclid",
        "dsa",
        "eigen_w1",
        "cka",
        "d_pif",
        "d_pif_norm",
        "d_pif_chance_norm",
        "d_pif/chance",
        "weights",
        "weights/init",
    ]
    task = "delays" if "delay" in rows[0] else "bits"
    size = max([4] + [len(str(r.get("delay", ""))) for r in rows])
    log(
        f"{'N':>4} {task:>{size}} {'γ':>4} {'kept':>5} {'stop':>6} {'loss':>7} {'acc':>6} "
        f"{'dW_h':>6} {'dU':>6} {'dW_out':>6}"
    )
    for r in rows:
        log(
            f"{r['width']:>4} {r.get('delay', r['bits']):>{size}} {r['gamma']:>4} {r['kept']:>5} {r['stop']:>6} {r['final_loss']:>7.4f} "
            f"{r['accuracy']:>6.3f} {r['dW_h']:>6.3f} {r['dU']:>6.2f} {r['dW_out']:>6.3f}"
        )
    for name in names:
        family = "paper" if name.startswith(("sigma", "dsa_e", "d_pif")) else "ours"
        family = "paper*" if name == "d_pif/chance" else family
        cells = "  ".join(f"{r['values'][name][0]:.4g} ± {r['values'][name][1]:.2g}" for r in rows)
        log(f"  {name:<18} [{family:<6}] {cells}")
    legend()


def legend() -> None:
    log("  [paper]: the metrics Huang et al. used; [paper*]: d_PIF over its chance level (ours)")
    log("  value ± jackknife SE over nets; dW_h, dU, dW_out: mean ‖W_T − W_0‖/‖W_0‖ per matrix")


def direction(first: tuple[float, float], last: tuple[float, float]) -> str:
    diff = last[0] - first[0]
    noise = 2 * math.sqrt(first[1] ** 2 + last[1] ** 2)
    if not abs(diff) > noise:
        return "flat"
    return "up" if diff > 0 else "down"


def verdicts(factor: str, rows: list[dict]) -> None:
    first, last = rows[0], rows[-1]
    log(f"direction as {factor} grows ({factor} {first[factor]} -> {last[factor]}), paper vs ours:")
    for level, metrics in LEVELS.items():
        expected = PAPER[factor][level]
        parts = []
        for metric in metrics:
            seen = direction(first["values"][metric], last["values"][metric])
            verdict = "agrees" if seen == expected else ("flat" if seen == "flat" else "disagrees")
            parts.append(f"{metric} {seen} ({verdict})")
        log(f"  {level:<10} paper: {expected:<5} | " + "; ".join(parts))


def dd_label(dd: dict) -> str:
    return f"{dd['delay_min']}-{dd['delay_max']}" + ("+aux" if dd["aux"] else "")


def delay_verdicts(rows: list[dict]) -> None:
    """Paper vs ours for each complexity step: short -> long delays (without, with aux), and
    without -> with aux (at each delay range)."""
    by = {r["delay"]: r for r in rows}
    labels = [dd_label({"delay_min": a, "delay_max": b, "aux": False}) for a, b in DELAYS]
    steps = [(labels[0], labels[-1]), (labels[0] + "+aux", labels[-1] + "+aux")]
    steps += [(label, label + "+aux") for label in labels]
    for first, last in steps:
        log(f"direction {first} -> {last}, paper vs ours:")
        for level, metrics in LEVELS.items():
            expected = PAPER["complexity"][level]
            parts = []
            for metric in metrics:
                seen = direction(by[first]["values"][metric], by[last]["values"][metric])
                verdict = (
                    "agrees" if seen == expected else ("flat" if seen == "flat" else "disagrees")
                )
                parts.append(f"{metric} {seen} ({verdict})")
            log(f"  {level:<10} paper: {expected:<5} | " + "; ".join(parts))


def delay_sweep() -> None:
    """Delayed discrimination at three delay ranges, without and with the aux output."""
    global N_MODELS
    N_MODELS = DD_N_MODELS
    begin = time.perf_counter()
    conditions = [
        {"delay_min": a, "delay_max": b, "aux": aux} for aux in (False, True) for a, b in DELAYS
    ]
    log(
        f"settings: delayed discrimination (f1, f2 ∈ [2, 10], delays {DELAYS}, without and with "
        f"the aux |f2 − f1| output), width {COMPLEXITY_WIDTH}, mup_leaky γ={GAMMA} τ={TAU}, "
        f"Adam η=γ·{ETA0}, batch {BATCH}, stop at training MSE < {DD_THRESHOLD} for {PATIENCE} "
        f"steps (max {DD_MAX_STEPS}), {N_MODELS} nets per condition; metrics on "
        f"{MEASURE['n_trials']} held-out trials, OOD = delays doubled; d_PIF heuristic with "
        f"{MEASURE['pif_options']}"
    )
    log("== timing: 20 training steps of the full ensemble, longest delays with aux ==")
    start = time.perf_counter()
    train(COMPLEXITY_WIDTH, 0, steps=20, dd=conditions[-1])
    log(f"{1000 * (time.perf_counter() - start) / 20:.1f} ms/step for {N_MODELS} nets")
    log(f"== complexity sweep at width {COMPLEXITY_WIDTH}: delay range × aux output ==")
    rows = [condition(COMPLEXITY_WIDTH, 0, dd=dd) for dd in conditions]
    print_rows(rows)
    delay_verdicts(rows)
    log(f"total {time.perf_counter() - begin:.0f} s")


def dsa_sensitivity(n_models: int = 10) -> None:
    """DSA (Euclidean score) for several (rank, delays) settings on the same nets: the width sweep
    (3 bits) and the complexity sweep (bits 1-3 at ``COMPLEXITY_WIDTH``)."""
    global N_MODELS
    N_MODELS = n_models
    settings = [(5, 5), (10, 5), (20, 5), (10, 10)]
    conditions = [(w, 3) for w in WIDTHS] + [(COMPLEXITY_WIDTH, b) for b in BITS if b != 3]
    log(f"== DSA sensitivity: {n_models} nets per condition, flip-flop, γ={GAMMA} ==")
    ensembles = {c: train(*c) for c in conditions}
    header = "  ".join(f"N={w} bits={b}".ljust(16) for w, b in conditions)
    log(f"rank/delays  {header}")
    for rank, delays in settings:
        cells = []
        for c in conditions:
            r = measure_degeneracy(
                ensembles[c],
                metrics=["dsa_euclid"],
                n_trials=64,
                rank=rank,
                n_delays=delays,
                dsa_iters=200,
                dsa_restarts=4,
            )
            d = r.distances["dsa_euclid"]
            cells.append(f"{degeneracy(d):.4f} ± {degeneracy_se(d):.4f}".ljust(16))
        log(f"{rank:>4}/{delays:<6}  " + "  ".join(cells))


def main() -> None:
    if "--sweep" in sys.argv[1:] and sys.argv[sys.argv.index("--sweep") + 1 :][:1] == ["delay"]:
        torch.set_num_threads(2)
        delay_sweep()
        return
    torch.set_num_threads(1)
    if "--dsa-sensitivity" in sys.argv[1:]:
        dsa_sensitivity()
        return
    begin = time.perf_counter()
    log(
        f"settings: 3-bit flip-flop (trial {TASK['steps']} steps, switch probability "
        f"{TASK['p_pulse']}), mup_leaky γ={GAMMA} τ={TAU}, Adam η=γ·{ETA0}, batch {BATCH}, "
        f"stop at training MSE < {THRESHOLD} for {PATIENCE} steps (max {MAX_STEPS}), "
        f"{N_MODELS} nets per condition; metrics on {MEASURE['n_trials']} held-out trials, "
        f"OOD = trials twice as long; d_PIF heuristic with {MEASURE['pif_options']}"
    )
    timing()
    log("== width sweep (μP, γ fixed), 3-bit flip-flop ==")
    width_rows = [condition(width, 3) for width in WIDTHS]
    print_rows(width_rows)
    verdicts("width", width_rows)
    log(f"== complexity sweep at width {COMPLEXITY_WIDTH}: flip-flop bits ==")
    reuse = {r["bits"]: r for r in width_rows if r["width"] == COMPLEXITY_WIDTH}
    bit_rows = [reuse.get(bits) or condition(COMPLEXITY_WIDTH, bits) for bits in BITS]
    print_rows(bit_rows)
    verdicts("bits", bit_rows)
    log(f"== width sweep repeated at γ = {GAMMA2} (η = γ η0 = {GAMMA2 * ETA0:g}) ==")
    lazy_rows = [condition(width, 3, GAMMA2) for width in WIDTHS]
    print_rows(lazy_rows)
    verdicts("width", lazy_rows)
    log(f"total {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()
