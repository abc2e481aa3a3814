"""Command-line commands of interp.degeneracy (registered on the main app by interp.cli)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _parse_options(options: list[str]) -> dict[str, object]:
    parsed: dict[str, object] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(
                f"task options look like key=value (e.g. bits=3), got {item!r}"
            )
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def degeneracy_command(
    task: str = typer.Option(
        "flipflop",
        help="Task to train on: flipflop, sine, delayed_discrimination, path_integration, parity, dms.",
    ),
    n_models: int = typer.Option(
        16, help="Number of networks in the ensemble (each with its own init and data seed)."
    ),
    out: Path = typer.Option(..., help="HTML report to write (distance heatmaps, MDS, tables)."),
    net: str = typer.Option("rnn_tanh", help="Network kind: rnn_tanh, rnn_relu, gru, lstm, leaky."),
    hidden: int = typer.Option(32, help="Hidden units per network."),
    steps: int = typer.Option(
        500, help="Training steps (all networks train together, one batch each per step)."
    ),
    batch_size: int = typer.Option(32, help="Sequences per training batch, per network."),
    lr: float = typer.Option(1e-2, help="AdamW learning rate."),
    weight_decay: float = typer.Option(
        0.0, help="AdamW decoupled weight decay (a regularizer that lowers degeneracy)."
    ),
    activity_penalty: float = typer.Option(
        0.0, help="Coefficient of the mean squared hidden activity added to the loss."
    ),
    seed: int = typer.Option(
        0, help="Network i uses init seed seed+i (its data seed is derived from it)."
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Task option key=value, repeatable (e.g. -o bits=3 -o steps=32)."
    ),
    eval_trials: int = typer.Option(
        64, help="Held-out sequences shared by every network, on which the metrics are measured."
    ),
    dsa_iters: int = typer.Option(
        300,
        help="Adam steps of the DSA Procrustes optimization per start (fewer: faster, rougher).",
    ),
    dsa_restarts: int = typer.Option(
        8,
        help="DSA starts from the spectral relaxation, on top of the identity, a reflection and "
        "the spectral start (0: those three only; faster, may miss the optimum).",
    ),
    save_ensemble: Path = typer.Option(
        None, help="Also save the trained ensemble (weights + settings) to this folder."
    ),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
) -> None:
    """Train an ensemble of RNNs on one task and report how different their solutions are.

    Degeneracy is measured at three levels (Huang et al. 2024): behaviour (output distances on
    held-out sequences and on out-of-distribution ones: longer, and with other input
    amplitudes), neural dynamics (DSA, eigenvalue transport, CKA, Procrustes) and weights
    (distance after matching hidden units).
    """
    from rich.console import Console

    from interp.degeneracy.ensemble import train_ensemble
    from interp.degeneracy.metrics import measure_degeneracy
    from interp.viz import Report

    for path in (out, save_ensemble):
        if path is not None and path.exists() and not overwrite:
            raise typer.BadParameter(
                f"{path} already exists; pass --overwrite or choose another path"
            )
    try:
        ensemble = train_ensemble(
            task,
            net,
            n_models,
            [seed + i for i in range(n_models)],
            hidden_size=hidden,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            activity_penalty=activity_penalty,
            task_options=_parse_options(option),
        )
        result = measure_degeneracy(
            ensemble, n_trials=eval_trials, dsa_iters=dsa_iters, dsa_restarts=dsa_restarts
        )
    except (ValueError, TypeError) as error:
        raise typer.BadParameter(str(error)) from error
    console = Console()
    console.print(ensemble.table())
    console.print(result.table())
    report = Report(f"Solution degeneracy: {n_models} {net} nets on {task}")
    report.text(
        "Each metric is an N x N distance matrix between ensemble members; degeneracy is its mean "
        "off-diagonal entry (0 = every network found the same solution)."
    )
    report.heading("Summary")
    report.preformatted(result.table())
    report.figure(result.figure())
    report.heading("Training")
    report.preformatted(ensemble.table())
    report.figure(ensemble.figure())
    report.write(out, overwrite=overwrite)
    if save_ensemble is not None:
        ensemble.save(save_ensemble, overwrite=overwrite)
        console.print(f"saved ensemble to {save_ensemble}")
    console.print(f"wrote report to {out}")


def register(app: typer.Typer) -> None:
    """Add this package's commands to the main `interp` app."""
    app.command("degeneracy")(degeneracy_command)
