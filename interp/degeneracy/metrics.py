"""Degeneracy of a trained ensemble at three levels: behaviour, neural dynamics, weights.

Every metric is an ``[N, N]`` distance matrix between members; its summary *degeneracy* is the
mean off-diagonal distance (:func:`interp.degeneracy.pairs.degeneracy`), i.e. how far apart two
independently trained solutions are on average (Huang et al. 2024).

- ``behaviour``: RMS difference of the members' outputs (after the task's output nonlinearity:
  identity for mse, sigmoid for bce, softmax for ce) over the masked steps of a shared held-out
  batch. Two out-of-distribution sets, reported separately: ``behaviour_ood`` on sequences
  ``ood_factor`` times longer than training ones (delays, memory spans and generation horizons
  beyond training), ``behaviour_amp`` on training-length inputs whose amplitude is scaled by each
  of ``ood_amplitudes`` (flip-flop pulses, delayed-discrimination stimuli; one RMS over all of
  them). ``behaviour_amp`` exists only for tasks whose ``amplitude`` option changes the inputs;
  for other tasks it is skipped (``settings["skipped"]`` says why).
- ``dsa``: Dynamical Similarity Analysis angular distance (radians) of the members' state
  trajectories on the held-out batch; ``eigen_w1`` its optimization-free eigenvalue-transport
  variant; ``cka`` (1 − linear CKA) and ``procrustes`` (angular shape distance) compare the state
  geometry without time. All four use only the steps of each trial up to its last scored step
  (the padding of variable-length trials is left out).
- ``weights``: relative weight distance after matching hidden units by a signed permutation
  (signs only for odd nonlinearities); ``weights_init`` the same distance between the members'
  *initial* weights — the chance level of unrelated random networks of this size, which grows with
  the hidden size. ``weights / weights_init < 1`` means training brought the solutions closer.

The paper's own metrics (Huang et al.; :mod:`interp.degeneracy.paper_metrics`) are selectable
beside these: ``sigma_ood`` (std over nets of the OOD MSE; a per-member quantity, kept in
``per_member["ood_mse"]``, summarized as the std with a jackknife SE), ``dsa_euclid`` (DSA with the
Euclidean score), ``d_pif`` / ``d_pif_norm`` (÷ N²) / ``d_pif_init`` (two random initializations:
chance) on the recurrent matrix with permutations only. ``family="paper"`` or ``"both"`` picks
them; the table labels each row with the family it belongs to.

Members that never reached the training loss threshold (early stopping, ``Ensemble.converged``)
are excluded before anything is measured; ``settings["excluded"]`` lists their seeds.

Members whose held-out accuracy is below ``min_accuracy`` (default :data:`MIN_ACCURACY`, 0.9)
have not learned the task: distances to them compare a solution with a failure, so the table,
the figure and ``below_threshold`` flag and count them (the numbers themselves are unchanged).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from interp import __version__
from interp.degeneracy.dsa import dsa_distances, eigenvalue_wasserstein, fit_dmd
from interp.degeneracy.ensemble import MIN_ACCURACY, Ensemble
from interp.degeneracy.geometry import cka_distances, procrustes_distances
from interp.degeneracy.pairs import degeneracy, pair_indices, square_from_pairs
from interp.degeneracy.paper_metrics import (
    PAPER_METRICS,
    ood_mse,
    pif_distances,
    recurrent_matrices,
    std_se,
)
from interp.degeneracy.training import held_out, stack_batches, trial_steps
from interp.degeneracy.weights import weight_distances
from interp.errors import InputTypeError, InvalidArgumentError
from interp.results import Result
from interp.rnn.nets import make_net
from interp.rnn.tasks import Task, TaskBatch, make_task

METRICS = {
    "behaviour": "behaviour",
    "behaviour_ood": "behaviour",
    "behaviour_amp": "behaviour",
    "dsa": "dynamics",
    "eigen_w1": "dynamics",
    "cka": "dynamics",
    "procrustes": "dynamics",
    "weights": "weights",
    "weights_init": "weights",
}
ALL_METRICS = {**METRICS, **PAPER_METRICS}
FAMILIES = {"ours": list(METRICS), "paper": list(PAPER_METRICS), "both": list(ALL_METRICS)}


@dataclasses.dataclass
class Degeneracy(Result):
    """Distance matrices ``[N, N]`` per metric, their summaries, and what produced them."""

    distances: dict[str, Tensor]
    summary: dict[str, float]
    accuracy: Tensor
    ensemble: dict[str, Any]
    settings: dict[str, Any]
    per_member: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    version: str = __version__

    @property
    def min_accuracy(self) -> float:
        """The accuracy below which a member is flagged (results saved before it: 0.9)."""
        return float(self.settings.get("min_accuracy", MIN_ACCURACY))

    @property
    def below_threshold(self) -> list[int]:
        """Indices of the members whose held-out accuracy is below :attr:`min_accuracy`."""
        return [i for i, a in enumerate(self.accuracy.tolist()) if a < self.min_accuracy]

    def accuracy_note(self) -> str | None:
        """Two lines flagging the members below the accuracy threshold, or None when all pass."""
        below = self.below_threshold
        if not below:
            return None
        return (
            f"WARNING: {len(below)} of {len(self.accuracy)} nets did not learn the task "
            f"(held-out accuracy < {self.min_accuracy:g});\n  models "
            f"{', '.join(map(str, below))}; train longer or change the hidden size or lr"
        )

    def table(self) -> str:
        e = self.ensemble
        below = len(self.below_threshold)
        lines = [
            f"Degeneracy of {len(e['seeds'])} {e['net']['kind']} nets (hidden {e['net']['hidden_size']}) "
            f"on {e['task']['name']}",
            f"mean accuracy {float(self.accuracy.mean()):.3f}; {below} of {len(self.accuracy)} "
            f"below the accuracy threshold {self.min_accuracy:g}",
        ]
        note = self.accuracy_note()
        if note is not None:
            lines.append(note)
        excluded = self.settings.get("excluded", [])
        if excluded:
            lines.append(
                f"{len(excluded)} nets never reached the loss threshold and are excluded "
                f"(seeds {', '.join(map(str, excluded))})"
            )
        lines.append(
            f"{'metric':<14} {'level':<10} {'family':<6} {'degeneracy':>11} {'min':>9} {'max':>9}"
        )
        for name, d in self.distances.items():
            left, right = pair_indices(d.shape[0])
            pairs = d[left, right]
            family = "paper" if name in PAPER_METRICS else "ours"
            lines.append(
                f"{name:<14} {ALL_METRICS.get(name, '?'):<10} {family:<6} {self.summary[name]:>11.4g} "
                f"{float(pairs.min()):>9.4g} {float(pairs.max()):>9.4g}" + ("  *" if below else "")
            )
        if "ood_mse" in self.per_member:
            values = self.per_member["ood_mse"]
            lines.append(
                f"{'sigma_ood':<14} {'behaviour':<10} {'paper':<6} {self.summary['sigma_ood']:>11.4g} "
                f"{float(values.min()):>9.4g} {float(values.max()):>9.4g}  (std of OOD MSE; min/max: MSE)"
            )
        lines.append("degeneracy = mean distance over the N(N-1)/2 pairs of distinct members")
        if any(name in PAPER_METRICS for name in self.summary):
            lines.append(
                "family 'paper': the metrics Huang et al. used (σ_OOD, DSA Euclidean score, d_PIF on "
                "W_h); d_pif_norm = d_pif / N²; d_pif_init = two random initializations (chance)"
            )
        if below:
            lines.append("* includes pairs with a net below the accuracy threshold")
        return "\n".join(lines)

    def figure(self):
        from interp.degeneracy.figures import distances_figure  # lazy: plotly + sklearn

        e = self.ensemble
        title = f"Degeneracy: {e['net']['kind']} on {e['task']['name']} ({len(e['seeds'])} models)"
        below = self.below_threshold
        if below:
            title += f"; {len(below)} below accuracy {self.min_accuracy:g} (red in the MDS)"
        return distances_figure(self.distances, self.summary, title, flagged=below)


def behaviour_distances(outputs: Tensor, mask: Tensor, loss: str) -> Tensor:
    """``[N, N]`` RMS output differences over masked steps; ``outputs [N, B, T, O]``, ``mask [B, T]``."""
    if outputs.ndim != 4 or outputs.shape[1:3] != mask.shape:
        raise ValueError(
            f"outputs must be [N, B, T, O] matching mask [B, T]; got {tuple(outputs.shape)}, {tuple(mask.shape)}"
        )
    readout = {"mse": lambda o: o, "bce": torch.sigmoid, "ce": lambda o: o.softmax(-1)}[loss](
        outputs.double()
    )
    left, right = pair_indices(outputs.shape[0])
    weight = mask.double()[None, :, :, None]
    squared = ((readout[left] - readout[right]).square() * weight).sum(dim=(1, 2, 3))
    count = weight.sum() * outputs.shape[-1]
    return square_from_pairs((squared / count.clamp_min(1.0)).sqrt(), outputs.shape[0])


def ensemble_weights(
    ensemble: Ensemble, *, initial: bool = False
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """``(w_rec [N, G, H, H], w_in [N, G, H, I], w_out [N, O, H], signs)`` of an ensemble's nets.

    ``initial=True`` gives the members' weights before training (rebuilt from their init seeds).

    ``G`` is the number of gate blocks (1 for Elman/leaky, 3 for GRU, 4 for LSTM); ``signs`` is
    whether flipping a unit's sign is a symmetry (tanh Elman, leaky or μP nets). For the μP net
    the effective matrices are returned (``J / N`` and ``W_readout / (γ N)``), not the raw
    parameters, whose scale is set by the parameterization rather than by the function.
    """
    p, hidden = ensemble.params, ensemble.net["hidden_size"]
    if initial:
        nets = [make_net(**ensemble.net, seed=s) for s in ensemble.seeds]
        p = {
            name: torch.stack([dict(m.named_parameters())[name].detach() for m in nets])
            for name in p
        }
    if not {"weight_hh", "weight_ih", "out.weight"} <= set(p):
        raise ValueError(
            f"weight distance needs weight_hh, weight_ih and out.weight; the nets have {sorted(p)}"
        )
    n = ensemble.n_models
    w_rec = p["weight_hh"].reshape(n, -1, hidden, hidden)
    w_in = p["weight_ih"].reshape(n, w_rec.shape[1], hidden, -1)
    w_out = p["out.weight"]
    kind = ensemble.net["kind"]
    if kind == "mup_leaky":  # the matrices that act: W_h = J / N, readout W / (γ N)
        w_rec = w_rec / hidden
        w_out = w_out / (ensemble.net.get("gamma", 1.0) * hidden)
    signs = kind in {"rnn_tanh", "mup_leaky"} or (
        kind == "leaky" and ensemble.net.get("nonlinearity") == "tanh"
    )
    return w_rec, w_in, w_out, signs


def amplitude_batch(
    task: Task, seed: int, batch_size: int, amplitudes: tuple[float, ...]
) -> TaskBatch | str:
    """Held-out inputs with their amplitude scaled by each of ``amplitudes`` (stacked along the batch).

    The factors multiply the task's own ``amplitude`` (1 unless trained otherwise). Returns a
    reason (str) instead when the task has no ``amplitude`` option or it leaves the inputs alone.
    """
    if not amplitudes or any(not a > 0 for a in amplitudes):
        raise ValueError(f"ood_amplitudes must be positive factors, got {amplitudes!r}")
    base = task.config.get("amplitude", 1.0)
    try:
        tasks = [make_task(**{**task.config, "amplitude": base * a}) for a in amplitudes]
    except TypeError:
        return f"task {task.name!r} has no amplitude option"
    batches = [held_out(t, seed, batch_size) for t in tasks]
    reference = held_out(task, seed, batch_size).x
    if all(torch.equal(b.x, reference) for b in batches):
        return f"the amplitude option of {task.name!r} does not change its inputs"
    stacked = stack_batches(batches)
    return TaskBatch(*(t.flatten(0, 1) for t in (stacked.x, stacked.y, stacked.mask)))


def measure_degeneracy(
    ensemble: Ensemble,
    *,
    n_trials: int = 64,
    eval_seed: int = 1,
    ood_factor: float = 2.0,
    ood_amplitudes: tuple[float, ...] = (0.5, 2.0),
    n_delays: int = 5,
    rank: int = 10,
    ridge: float = 1e-4,
    dsa_iters: int = 300,
    dsa_restarts: int = 8,
    metrics: list[str] | None = None,
    family: str = "ours",
    min_accuracy: float = MIN_ACCURACY,
    pif_options: dict[str, Any] | None = None,
) -> Degeneracy:
    """All distance matrices of ``ensemble`` (or the subset named in ``metrics``; see ``METRICS``).

    Inputs are one held-out batch of ``n_trials`` sequences (``eval_seed``) shared by every member;
    the out-of-distribution sets are ``ood_factor`` times longer and scaled by ``ood_amplitudes``.
    DSA uses ``n_delays`` delays, a rank-``rank`` DMD with ridge ``ridge``, and ``dsa_iters`` Adam
    steps from ``3 + dsa_restarts`` starts of the batched Procrustes optimization. With
    ``metrics=None`` every metric that applies to the task is measured; naming one that does not
    apply (``behaviour_amp`` for a task without input amplitude) is an error. Members whose
    held-out accuracy is below ``min_accuracy`` are flagged (see the module docstring).
    ``family`` ("ours", "paper", "both") picks the default set when ``metrics`` is None;
    ``pif_options`` go to :func:`interp.degeneracy.paper_metrics.pif_distance`.
    """
    chosen, ensemble, excluded = _checked(ensemble, metrics, family, min_accuracy)
    task = ensemble.make_task()
    test = held_out(task, eval_seed, n_trials)
    outputs, states = ensemble.run(test.x)
    steps = trial_steps(test.mask)  # [B, T]: drop the padding of variable-length trials
    distances: dict[str, Tensor] = {}
    skipped: dict[str, str] = {}
    ood_options = (ood_factor, tuple(ood_amplitudes), metrics is not None)
    _behaviour(distances, skipped, chosen, ensemble, task, test, outputs, eval_seed, ood_options)
    dsa_options = {"n_delays": n_delays, "rank": rank, "ridge": ridge}
    dsa_options |= {"iters": dsa_iters, "restarts": dsa_restarts}
    _dynamics(distances, chosen, states, steps, dsa_options)
    pif = dict(pif_options or {})
    _weights(distances, chosen, ensemble, pif)
    summary = {name: degeneracy(d) for name, d in distances.items()}
    per_member: dict[str, Tensor] = {}
    if "sigma_ood" in chosen:
        per_member["ood_mse"] = ood_mse(ensemble, n_trials, eval_seed)
        summary["sigma_ood"], _ = std_se(per_member["ood_mse"])
    return Degeneracy(
        distances=distances,
        summary=summary,
        per_member=per_member,
        accuracy=ensemble.accuracy.clone(),
        ensemble={
            "net": ensemble.net,
            "task": ensemble.task,
            "seeds": ensemble.seeds,
            "settings": ensemble.settings,
        },
        settings={
            "n_trials": n_trials,
            "eval_seed": eval_seed,
            "ood_factor": ood_factor,
            "ood_amplitudes": list(ood_amplitudes),
            "n_delays": n_delays,
            "rank": rank,
            "ridge": ridge,
            "dsa_iters": dsa_iters,
            "dsa_restarts": dsa_restarts,
            "skipped": skipped,
            "summary": "mean off-diagonal distance",
            "min_accuracy": float(min_accuracy),
            "excluded": excluded,
            "family": family,
            "pif_options": pif,
        },
    )


def _checked(
    ensemble: Ensemble, metrics: list[str] | None, family: str, min_accuracy: float
) -> tuple[list[str], Ensemble, list[int]]:
    """The metrics to measure, the ensemble without members that never reached the loss
    threshold, and those members' seeds; every argument checked first."""
    if not isinstance(ensemble, Ensemble):
        raise InputTypeError(
            "measure_degeneracy needs an Ensemble (from interp.degeneracy.train_ensemble(...) or "
            f"Ensemble.load(path)), got {type(ensemble).__name__}"
        )
    if not 0.0 <= float(min_accuracy) <= 1.0:
        raise InvalidArgumentError(f"min_accuracy must lie in [0, 1], got {min_accuracy}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {list(FAMILIES)}, got {family!r}")
    chosen = list(FAMILIES[family]) if metrics is None else list(metrics)
    unknown = [m for m in chosen if m not in ALL_METRICS]
    if unknown or not chosen:
        raise ValueError(f"unknown metrics {unknown or chosen}; choose from {list(ALL_METRICS)}")
    excluded = [ensemble.seeds[i] for i in range(ensemble.n_models) if i not in ensemble.converged]
    if excluded:
        ensemble = ensemble.subset(ensemble.converged)
    if ensemble.n_models < 2:
        raise ValueError(
            "an ensemble needs at least 2 members to measure degeneracy"
            + (f" ({len(excluded)} excluded: never reached the loss threshold)" if excluded else "")
        )
    return chosen, ensemble, excluded


def _behaviour(distances, skipped, chosen, ensemble, task, test, outputs, eval_seed, ood) -> None:
    """Behavioural distances: in distribution, on longer trials, at other input amplitudes."""
    ood_factor, amplitudes, named = ood
    n_trials = test.x.shape[0]
    if "behaviour" in chosen:
        distances["behaviour"] = behaviour_distances(outputs, test.mask, task.loss)
    if "behaviour_ood" in chosen:
        ood_set = held_out(
            task, eval_seed, n_trials, length=int(round(ood_factor * test.x.shape[1]))
        )
        distances["behaviour_ood"] = behaviour_distances(
            ensemble.run(ood_set.x)[0], ood_set.mask, task.loss
        )
    if "behaviour_amp" in chosen:
        scaled = amplitude_batch(task, eval_seed, n_trials, amplitudes)
        if isinstance(scaled, str):
            if named:
                raise ValueError(f"behaviour_amp does not apply: {scaled}")
            skipped["behaviour_amp"] = scaled
        else:
            distances["behaviour_amp"] = behaviour_distances(
                ensemble.run(scaled.x)[0], scaled.mask, task.loss
            )


def _dynamics(distances, chosen, states, steps, options) -> None:
    """Dynamical distances: DSA (angular, Euclidean) and eigenvalue W1 on one DMD fit, CKA and
    Procrustes on the states."""
    if {"dsa", "eigen_w1", "dsa_euclid"} & set(chosen):
        operators = fit_dmd(
            states.double(),
            n_delays=options["n_delays"],
            rank=min(options["rank"], options["n_delays"] * states.shape[-1]),
            ridge=options["ridge"],
            valid=steps,
        )
        search = {"iters": options["iters"], "restarts": options["restarts"]}
        if "dsa" in chosen:
            distances["dsa"] = dsa_distances(operators, **search)
        if "eigen_w1" in chosen:
            distances["eigen_w1"] = eigenvalue_wasserstein(operators)
        if "dsa_euclid" in chosen:
            distances["dsa_euclid"] = dsa_distances(operators, **search, score="euclidean")
    if "cka" in chosen:
        distances["cka"] = cka_distances(states[:, steps])
    if "procrustes" in chosen:
        distances["procrustes"] = procrustes_distances(states[:, steps])


def _weights(distances, chosen, ensemble, pif) -> None:
    """Weight distances: ours (matched, all matrices, final and initial) and the paper's d_PIF."""
    for name, initial in (("weights", False), ("weights_init", True)):
        if name in chosen:
            w_rec, w_in, w_out, signs = ensemble_weights(ensemble, initial=initial)
            distances[name] = weight_distances(w_rec, w_in, w_out, signs=signs)
    n = ensemble.net["hidden_size"]
    if {"d_pif", "d_pif_norm"} & set(chosen):
        d_pif = pif_distances(recurrent_matrices(ensemble), **pif)
        if "d_pif" in chosen:
            distances["d_pif"] = d_pif
        if "d_pif_norm" in chosen:
            distances["d_pif_norm"] = d_pif / n**2
    if "d_pif_init" in chosen:
        distances["d_pif_init"] = pif_distances(recurrent_matrices(ensemble, initial=True), **pif)
