"""Command-line commands of interp.rnn (registered on the main app by interp.cli)."""

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


def train_command(
    task: str = typer.Option(
        ...,
        help="Task name: flipflop, parity, dms, sine, delayed_discrimination, path_integration, tomita1..tomita7, parens.",
    ),
    out: Path = typer.Option(
        ..., help="Folder to write the trained run to (weights, configs, history)."
    ),
    net: str = typer.Option("gru", help="Network kind: rnn_tanh, rnn_relu, gru, lstm, leaky."),
    hidden: int = typer.Option(16, help="Number of hidden units."),
    steps: int = typer.Option(2000, help="Maximum number of training steps (one batch each)."),
    batch_size: int = typer.Option(64, help="Sequences per training batch."),
    lr: float = typer.Option(1e-2, help="Adam learning rate."),
    seed: int = typer.Option(
        0, help="Seed for the initial weights and the task's train/validation/test streams."
    ),
    target_accuracy: float = typer.Option(
        None,
        help="Stop early once validation accuracy reaches this (e.g. 0.99); test is only reported.",
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Task option key=value, repeatable (e.g. -o bits=3 -o steps=32)."
    ),
    threads: int = typer.Option(1, help="CPU threads for torch (tiny RNNs run fastest on one)."),
    overwrite: bool = typer.Option(False, help="Replace an existing run folder."),
) -> None:
    """Train a small recurrent net on a task and save the run (use it with `interp fixed-points --run`)."""
    import torch
    from rich.console import Console

    from interp.rnn.nets import make_net
    from interp.rnn.tasks import make_task
    from interp.rnn.training import save_run, train

    if out.exists() and not overwrite:
        raise typer.BadParameter(f"{out} already exists; pass --overwrite or choose another --out")
    try:
        task_obj = make_task(task, **_parse_options(option))
        model = make_net(net, task_obj.input_size, hidden, task_obj.output_size, seed=seed)
    except (ValueError, TypeError) as error:
        raise typer.BadParameter(str(error)) from error
    torch.set_num_threads(threads)
    result = train(
        model,
        task_obj,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        target_accuracy=target_accuracy,
    )
    save_run(out, model, task_obj, result, overwrite=overwrite)
    console = Console()
    console.print(result.table())
    console.print(f"saved run to {out}")


def fixed_points_command(
    run: Path = typer.Option(
        ..., help="A run folder written by `interp train` (or interp.rnn.save_run)."
    ),
    out: Path = typer.Option(
        None, help="Write a self-contained HTML report (table + 3-D figure) here."
    ),
    save: Path = typer.Option(
        None, help="Save the FixedPoints result (JSON + safetensors folder) here."
    ),
    n_starts: int = typer.Option(
        1024, help="Number of starting states (visited states plus noise)."
    ),
    noise: float = typer.Option(
        0.5, help="Std of the Gaussian noise added to each starting state."
    ),
    method: str = typer.Option(
        "lm", help="Optimiser: lm (Levenberg-Marquardt), adam (the reference's), adam+lm."
    ),
    seed: int = typer.Option(0, help="Seed for the starting states."),
    threads: int = typer.Option(1, help="CPU threads for torch."),
    overwrite: bool = typer.Option(False, help="Replace existing --out / --save outputs."),
) -> None:
    """Find the fixed and slow points of a trained RNN at zero input, with their stability.

    Starts from states the net visits on its task, minimises q = 1/2 |step(h) - h|^2 for all starts at
    once, merges duplicates and classifies each point as stable / saddle / unstable from the
    eigenvalues of its Jacobian (discrete time: stable iff every |eigenvalue| < 1).
    """
    import torch
    from rich.console import Console

    from interp.rnn.fixed_points import find_fixed_points
    from interp.rnn.training import load_run
    from interp.viz import Report

    for path in (out, save):
        if path is not None and path.exists() and not overwrite:
            raise typer.BadParameter(
                f"{path} already exists; pass --overwrite or choose another path"
            )
    torch.set_num_threads(threads)
    try:
        net, task, history = load_run(run)
        points = find_fixed_points(
            net, task=task, n_starts=n_starts, noise=noise, method=method, seed=seed
        )
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error)) from error
    console = Console()
    console.print(points.table())
    if save is not None:
        points.save(save, overwrite=overwrite)
        console.print(f"saved fixed points to {save}")
    if out is not None:
        report = Report(f"Fixed points of {net.config['kind']} on {task.name}")
        report.text(
            f"Run {run}: net {net.config}, task {task.config}, final test accuracy {history.final_accuracy:.4f}."
        )
        report.preformatted(points.table(max_rows=200))
        report.figure(points.figure())
        report.figure(history.figure())
        report.write(out, overwrite=overwrite)
        console.print(f"wrote report to {out}")


def register(app: typer.Typer) -> None:
    """Add this package's commands to the main `interp` app."""
    from interp.rnn.automaton_cli import register as register_automaton

    app.command("train")(train_command)
    app.command("fixed-points")(fixed_points_command)
    register_automaton(app)
