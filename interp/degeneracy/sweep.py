"""Degeneracy as a function of task complexity, network size and regularization.

The sweep varies one factor at a time around a base setting (Huang et al. 2024's design): for
each level of each factor it trains one ensemble and measures every metric. Identical settings
reached from different factors (the base point) are trained once. Jobs go through an executor
(:mod:`interp.degeneracy.executors`): in this process by default, on Ray when given an address.

Factors are either ``train_ensemble`` arguments (``hidden_size``, ``weight_decay``,
``activity_penalty``, ``lr``, ``steps``, ``net``...) or options of the task (``bits`` for
flip-flop, ``delay_max`` for delayed discrimination, ...).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from interp import __version__
from interp.degeneracy.ensemble import train_ensemble
from interp.degeneracy.executors import Executor, LocalExecutor
from interp.degeneracy.metrics import ALL_METRICS, MIN_ACCURACY, measure_degeneracy
from interp.degeneracy.pairs import degeneracy_se, ratio_se
from interp.degeneracy.paper_metrics import std_se
from interp.results import Result

if TYPE_CHECKING:
    import pandas as pd

_TRAIN_ARGS = set(inspect.signature(train_ensemble).parameters) - {
    "task",
    "task_options",
    "progress",
}


@dataclasses.dataclass
class SweepJob:
    """One ensemble to train and measure (picklable, so it can travel to a Ray worker)."""

    task: str
    task_options: dict[str, Any]
    train: dict[str, Any]
    measure: dict[str, Any]

    def key(self) -> str:
        return json.dumps([self.task, self.task_options, self.train, self.measure], sort_keys=True)


def run_job(job: SweepJob) -> dict[str, Any]:
    """Train one ensemble and measure it; returns summaries, accuracy, timing and the matrices.

    Runs on one thread (a sweep's parallelism is across jobs), restoring the setting afterwards.
    ``worker`` (``host:pid``) records the process that ran the job.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        ensemble = train_ensemble(
            job.task, task_options=job.task_options, progress=False, **job.train
        )
        result = measure_degeneracy(ensemble, **job.measure)
    finally:
        torch.set_num_threads(threads)
    return {
        "summary": result.summary,
        "se": {
            **{name: degeneracy_se(d) for name, d in result.distances.items()},
            **(
                {"sigma_ood": std_se(result.per_member["ood_mse"])[1]}
                if "ood_mse" in result.per_member
                else {}
            ),
        },
        "weights_ratio_se": (
            ratio_se(result.distances["weights"], result.distances["weights_init"])
            if {"weights", "weights_init"} <= set(result.distances)
            else None
        ),
        "accuracy": float(ensemble.accuracy.mean()),
        "below_threshold": len(result.below_threshold),
        "final_loss": float(ensemble.losses[-10:].mean()),
        "seconds": time.perf_counter() - start,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "distances": {name: d.tolist() for name, d in result.distances.items()},
    }


@dataclasses.dataclass
class DegeneracySweep(Result):
    """Tidy rows (one per task x factor x level x metric) plus the distances of one example ensemble.

    Each row holds the ``degeneracy`` and its jackknife standard error ``se`` over members; the
    ``weights`` rows also hold ``ratio_se``, the jackknife error of ``weights / weights_init``.
    """

    rows: list[dict[str, Any]]
    example: dict[str, Tensor]
    example_label: str
    settings: dict[str, Any]
    version: str = __version__

    @property
    def frame(self) -> pd.DataFrame:
        """The tidy table as a pandas DataFrame."""
        import pandas as pd  # lazy: sweep workers (e.g. on Ray) need only torch

        return pd.DataFrame(self.rows)

    def table(self) -> str:
        frame = self.frame.assign(
            level=lambda f: f["level"].map(str)
        )  # keep 16 as 16, 0.01 as 0.01
        pivot = frame.pivot_table(
            index=["task", "factor", "level_rank", "level"],
            columns="metric",
            values="degeneracy",
            sort=False,
        )
        pivot = pivot.droplevel("level_rank")
        accuracy = frame.groupby(["task", "factor", "level_rank", "level"], sort=False)[
            "accuracy"
        ].first()
        pivot["accuracy"] = accuracy.droplevel("level_rank").reindex(pivot.index)
        if "below_threshold" not in frame:  # sweeps saved before the flag
            return pivot.to_string(float_format=lambda v: f"{v:.4f}")
        below = frame.groupby(["task", "factor", "level_rank", "level"], sort=False)[
            "below_threshold"
        ].first()
        pivot["below"] = below.droplevel("level_rank").reindex(pivot.index).astype(int)
        n_models = next((d.shape[0] for d in self.example.values()), "?")
        flagged = int((pivot["below"] > 0).sum())
        minimum = self.settings.get("measure", {}).get("min_accuracy", MIN_ACCURACY)
        note = (
            f"below = nets (of {n_models}) under the accuracy threshold {minimum:g}; "
            f"{flagged} of {len(pivot)} ensembles have some"
            + (
                "\n  (their degeneracy compares nets that did not learn the task)"
                if flagged
                else ""
            )
        )
        return pivot.to_string(float_format=lambda v: f"{v:.4f}") + "\n" + note

    def figure(self):
        from interp.degeneracy.figures import sweep_figure

        return sweep_figure(self.frame, self.example, self.example_label)


def _jobs(
    task: str,
    factors: Mapping[str, Sequence[Any]],
    base: Mapping[str, Any],
    base_task: Mapping[str, Any],
    measure: Mapping[str, Any],
) -> list[tuple[str, Any, int, SweepJob]]:
    out = []
    for factor, levels in factors.items():
        if not levels:
            raise ValueError(f"factor {factor!r} has no levels")
        for rank, level in enumerate(levels):
            train, options = dict(base), dict(base_task)
            (train if factor in _TRAIN_ARGS else options)[factor] = level
            out.append((factor, level, rank, SweepJob(task, options, train, dict(measure))))
    return out


def degeneracy_sweep(
    task: str = "flipflop",
    factors: Mapping[str, Sequence[Any]] | None = None,
    *,
    base: Mapping[str, Any] | None = None,
    task_options: Mapping[str, Any] | None = None,
    measure: Mapping[str, Any] | None = None,
    executor: Executor | None = None,
) -> DegeneracySweep:
    """Sweep ``factors`` one at a time around ``base`` on ``task``; returns a :class:`DegeneracySweep`.

    ``factors`` maps a name to its levels, e.g. ``{"hidden_size": [16, 32, 64], "bits": [1, 2, 3],
    "weight_decay": [0, 1e-3, 1e-2], "activity_penalty": [0, 1e-3, 1e-2]}``; ``base`` holds the
    ``train_ensemble`` arguments shared by every job (``n_models``, ``steps``, ``hidden_size``...),
    ``task_options`` the base task options, ``measure`` the ``measure_degeneracy`` arguments.
    """
    factors = dict(factors or {"hidden_size": [16, 32, 64]})
    base = {"n_models": 8, "steps": 300, "hidden_size": 32, **(base or {})}
    unknown = [k for k in base if k not in _TRAIN_ARGS]
    if unknown:
        raise ValueError(
            f"base has unknown train_ensemble arguments {unknown}; known: {sorted(_TRAIN_ARGS)}"
        )
    measure = {"metrics": None, **(measure or {})}
    planned = _jobs(task, factors, base, dict(task_options or {}), measure)
    unique: dict[str, SweepJob] = {}
    for *_, job in planned:
        unique.setdefault(job.key(), job)
    executor = executor or LocalExecutor()
    results = dict(zip(unique, executor.map(run_job, list(unique.values())), strict=True))
    rows = []
    for factor, level, rank, job in planned:
        outcome = results[job.key()]
        for metric, value in outcome["summary"].items():
            rows.append(
                {
                    "task": task,
                    "factor": factor,
                    "level": level,
                    "level_rank": rank,
                    "metric": metric,
                    "level_kind": ALL_METRICS[metric],
                    "degeneracy": value,
                    "se": outcome["se"][metric],
                    # jackknife error of weights / weights_init (same members): weights rows only
                    "ratio_se": outcome["weights_ratio_se"] if metric == "weights" else None,
                    "accuracy": outcome["accuracy"],
                    "below_threshold": outcome["below_threshold"],
                    "final_loss": outcome["final_loss"],
                    "seconds": outcome["seconds"],
                    "worker": outcome["worker"],
                }
            )
    first = results[planned[0][3].key()]
    label = f"{task}, {planned[0][0]}={planned[0][1]}"
    return DegeneracySweep(
        rows=rows,
        example={
            name: torch.tensor(d, dtype=torch.float64) for name, d in first["distances"].items()
        },
        example_label=label,
        settings={
            "factors": {k: list(v) for k, v in factors.items()},
            "base": base,
            "task_options": dict(task_options or {}),
            "measure": measure,
            "executor": repr(executor),
            "jobs": len(unique),
        },
    )
