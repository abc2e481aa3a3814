"""Command-line commands of interp.degeneracy (registered on the main app by interp.cli)."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.cli_errors import non_negative_finite, positive_finite, user_errors
from interp.outputs import check_output, write_or_keep
from interp.rnn.cli import NETS, make_task_checked, parse_options


def degeneracy_command(
    task: str = typer.Option(
        "flipflop",
        help="Task to train on: flipflop, sine, delayed_discrimination, path_integration, parity, dms.",
    ),
    n_models: int = typer.Option(
        16, min=2, help="Number of networks in the ensemble (each with its own init and data seed)."
    ),
    out: Path = typer.Option(..., help="HTML report to write (distance heatmaps, MDS, tables)."),
    net: str = typer.Option("rnn_tanh", help=f"Network kind: {', '.join(NETS)}."),
    hidden: int = typer.Option(32, min=1, help="Hidden units per network."),
    steps: int = typer.Option(
        500, min=1, help="Training steps (all networks train together, one batch each per step)."
    ),
    batch_size: int = typer.Option(32, min=1, help="Sequences per training batch, per network."),
    lr: float = typer.Option(1e-2, help="AdamW learning rate.", callback=positive_finite),
    weight_decay: float = typer.Option(
        0.0,
        help="AdamW decoupled weight decay (a regularizer that lowers degeneracy).",
        callback=non_negative_finite,
    ),
    activity_penalty: float = typer.Option(
        0.0,
        help="Coefficient of the mean squared hidden activity added to the loss.",
        callback=non_negative_finite,
    ),
    seed: int = typer.Option(
        0, help="Network i uses init seed seed+i (its data seed is derived from it)."
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Task option key=value, repeatable (e.g. -o bits=3 -o steps=32)."
    ),
    eval_trials: int = typer.Option(
        64,
        min=1,
        help="Held-out sequences shared by every network, on which the metrics are measured.",
    ),
    dsa_iters: int = typer.Option(
        300,
        min=1,
        help="Adam steps of the DSA Procrustes optimization per start (fewer: faster, rougher).",
    ),
    dsa_restarts: int = typer.Option(
        8,
        min=0,
        help="DSA starts from the spectral relaxation, on top of the identity, a reflection and "
        "the spectral start (0: those three only; faster, may miss the optimum).",
    ),
    gamma: float = typer.Option(
        None,
        help="μP feature-learning strength γ of --net mup_leaky (readout / (γN), learning rate "
        "γ·lr; default 1). Only for mup_leaky.",
        callback=positive_finite,
    ),
    loss_threshold: float = typer.Option(
        None,
        help="Stop each network once its training loss stays below this for --patience steps "
        "(its weights are then frozen; --steps is the maximum). Networks that never get there "
        "are excluded from the metrics and counted.",
        callback=positive_finite,
    ),
    patience: int = typer.Option(3, min=1, help="Consecutive steps below --loss-threshold."),
    lr_plateau: str = typer.Option(
        None,
        help="Lower each network's learning rate on its own loss plateaus: FACTOR,PATIENCE,WINDOW "
        "(e.g. 0.5,40,50: halve after more than 40 windows of 50 steps without a relative "
        "improvement of 1e-4 in the window's mean loss; Huang et al.'s ReduceLROnPlateau).",
    ),
    metrics_family: str = typer.Option(
        "ours",
        help="Metrics to report: ours, paper (Huang et al.: sigma_OOD, Euclidean DSA, d_PIF on "
        "W_h), or both.",
    ),
    save_ensemble: Path = typer.Option(
        None, help="Also save the trained ensemble (weights + settings) to this folder."
    ),
    overwrite: bool = typer.Option(False, help="Replace outputs that interp wrote."),
) -> None:
    """Train an ensemble of RNNs on one task and report how different their solutions are.

    Degeneracy is measured at three levels (Huang et al. 2024): behaviour (output distances on
    held-out sequences and on out-of-distribution ones: longer, and with other input
    amplitudes), neural dynamics (DSA, eigenvalue transport, CKA, Procrustes) and weights
    (distance after matching hidden units).
    """
    task_options = parse_options(option)
    if metrics_family not in ("ours", "paper", "both"):
        raise typer.BadParameter(
            f"must be ours, paper or both, got {metrics_family!r}", param_hint="--metrics-family"
        )
    if gamma is not None and net != "mup_leaky":
        raise typer.BadParameter(
            f"applies only to --net mup_leaky, not {net!r}", param_hint="--gamma"
        )
    net_options = {} if gamma is None else {"gamma": gamma}
    plateau = None if lr_plateau is None else _plateau(lr_plateau)
    for path in (out, save_ensemble):
        if path is not None:
            check_output(path, overwrite=overwrite)
    from rich.console import Console

    from interp.degeneracy.ensemble import train_ensemble
    from interp.degeneracy.metrics import measure_degeneracy
    from interp.rnn.nets import make_net
    from interp.viz import Report

    task_obj = make_task_checked(task, task_options)  # a bad task or option: before training
    with user_errors(ValueError, TypeError):  # interp.rnn.nets raises built-in types for now
        make_net(net, task_obj.input_size, hidden, task_obj.output_size, **net_options)
    with user_errors(ValueError, TypeError):  # interp.degeneracy raises built-in types for now
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
            task_options=task_options,
            net_options=net_options,
            loss_threshold=loss_threshold,
            patience=patience,
            lr_plateau=plateau,
        )
    with user_errors(ValueError):  # e.g. every net excluded, or a paper metric that does not apply
        result = measure_degeneracy(
            ensemble,
            n_trials=eval_trials,
            dsa_iters=dsa_iters,
            dsa_restarts=dsa_restarts,
            family=metrics_family,
        )
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
    write_or_keep(out, lambda path: report.write(path, overwrite=overwrite))
    if save_ensemble is not None:
        write_or_keep(save_ensemble, lambda path: ensemble.save(path, overwrite=overwrite))
        console.print(f"saved ensemble to {save_ensemble}")
    console.print(f"wrote report to {out}")


def register(app: typer.Typer) -> None:
    """Add this package's commands to the main `interp` app."""
    app.command("degeneracy")(degeneracy_command)


def _plateau(text: str) -> dict[str, float | int]:
    """``"FACTOR,PATIENCE,WINDOW"`` -> the ``lr_plateau`` options of ``train_ensemble``."""
    parts = text.split(",")
    try:
        factor, patience, window = float(parts[0]), int(parts[1]), int(parts[2])
        if len(parts) != 3 or not 0 < factor < 1 or patience < 0 or window < 1:
            raise ValueError
    except (ValueError, IndexError):
        raise typer.BadParameter(
            f"must be FACTOR,PATIENCE,WINDOW with 0 < FACTOR < 1, PATIENCE >= 0 and WINDOW >= 1 "
            f"(e.g. 0.5,40,50), got {text!r}",
            param_hint="--lr-plateau",
        ) from None
    return {"factor": factor, "patience": patience, "window": window}
