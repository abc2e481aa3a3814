"""Command-line commands of interp.rnn: `interp train` and `interp fixed-points`.

Every option is checked by typer (``min=``, callbacks) and every output location by
:func:`interp.outputs.check_output` before torch is imported, so a mistake costs a fraction of a
second, not a training run.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from interp.cli_errors import (
    accuracy_target,
    choice,
    non_negative_finite,
    positive_finite,
    user_errors,
)
from interp.outputs import check_output, write_or_keep

# For the help text; interp.rnn.nets.make_net checks the kind (it knows kinds added later).
NETS = ("rnn_tanh", "rnn_relu", "gru", "lstm", "leaky", "state_regularized")
FIXED_POINT_METHODS = ("lm", "adam", "adam+lm")


def parse_options(options: list[str]) -> dict[str, object]:
    """``-o key=value`` task options: JSON values (numbers, booleans, lists), else strings."""
    parsed: dict[str, object] = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(
                f"task options look like key=value (e.g. bits=3), got {item!r}",
                param_hint="'-o' / '--option'",
            )
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def _accepts(default: object, value: object) -> bool:
    """Whether ``value`` may replace a task option whose default is ``default``."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if not isinstance(default, int | float):
        return True  # strings, lists, None: the task checks them itself
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(default, float) or float(value).is_integer()


def make_task_checked(name: str, options: dict[str, object]):
    """Build the task, refusing an option whose value has another type than its default's.

    ``-o bits=abc`` would otherwise build a task whose first batch fails with a traceback.
    """
    from interp.rnn.tasks import make_task

    with user_errors(ValueError, TypeError):  # interp.rnn.tasks raises built-in types for now
        defaults = make_task(name).config
        for key, value in options.items():
            default = defaults.get(key)
            if not _accepts(default, value):
                kind = type(default).__name__
                raise typer.BadParameter(
                    f"{key}={value!r}: task {name!r} takes {'an' if kind == 'int' else 'a'} "
                    f"{kind} for {key} (default {default!r})",
                    param_hint="'-o' / '--option'",
                )
        typed = {
            k: int(v) if isinstance(defaults.get(k), int) and isinstance(v, float) else v
            for k, v in options.items()
        }
        return make_task(name, **typed)


def train_command(
    task: str = typer.Option(
        ...,
        help="Task name: flipflop, parity, dms, sine, delayed_discrimination, path_integration, "
        "tomita1..tomita7, parens.",
    ),
    out: Path = typer.Option(
        ..., help="Folder to write the trained run to (weights, configs, history)."
    ),
    net: str = typer.Option("gru", help=f"Network kind: {', '.join(NETS)}."),
    hidden: int = typer.Option(16, min=1, help="Number of hidden units."),
    steps: int = typer.Option(
        2000, min=1, help="Maximum number of training steps (one batch each)."
    ),
    batch_size: int = typer.Option(64, min=1, help="Sequences per training batch."),
    lr: float = typer.Option(1e-2, help="Adam learning rate.", callback=positive_finite),
    seed: int = typer.Option(
        0, help="Seed for the initial weights and the task's train/validation/test streams."
    ),
    target_accuracy: float = typer.Option(
        None,
        help="Stop early once validation accuracy reaches this (e.g. 0.99); test is only reported.",
        callback=accuracy_target,
    ),
    option: list[str] = typer.Option(
        [], "--option", "-o", help="Task option key=value, repeatable (e.g. -o bits=3 -o steps=32)."
    ),
    threads: int = typer.Option(
        1, min=1, help="CPU threads for torch (tiny RNNs run fastest on one)."
    ),
    overwrite: bool = typer.Option(False, help="Replace a run folder that interp wrote."),
) -> None:
    """Train a small recurrent net on a task and save the run (use it with `interp fixed-points --run`)."""
    task_options = parse_options(option)
    check_output(out, overwrite=overwrite)
    import torch
    from rich.console import Console

    from interp.rnn.nets import make_net
    from interp.rnn.training import save_run, train

    task_obj = make_task_checked(task, task_options)
    with user_errors(ValueError, TypeError):  # interp.rnn.nets raises built-in types for now
        model = make_net(net, task_obj.input_size, hidden, task_obj.output_size, seed=seed)
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
    write_or_keep(out, lambda path: save_run(path, model, task_obj, result, overwrite=overwrite))
    console = Console()
    console.print(result.table())
    console.print(f"saved run to {out}")


def check_run_files(run: Path) -> None:
    """Refuse a missing or damaged run folder before loading it (one line naming the file)."""
    from interp.errors import MissingInputError
    from interp.filecheck import check_safetensors, read_json

    if not (run / "config.json").is_file():
        raise MissingInputError(
            f"{run} is not a saved run (no config.json); create one with `interp train`"
        )
    read_json(run / "config.json")
    for name in ("weights.safetensors", "train/arrays.safetensors"):
        if (run / name).is_file():
            check_safetensors(run / name)
    if (run / "train" / "result.json").is_file():
        read_json(run / "train" / "result.json")


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
        1024, min=1, help="Number of starting states (visited states plus noise)."
    ),
    noise: float = typer.Option(
        0.5,
        help="Std of the Gaussian noise added to each starting state.",
        callback=non_negative_finite,
    ),
    method: str = typer.Option(
        "lm",
        help="Optimiser: lm (Levenberg-Marquardt), adam (the reference's), adam+lm.",
        callback=choice(*FIXED_POINT_METHODS),
    ),
    seed: int = typer.Option(0, help="Seed for the starting states."),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch."),
    overwrite: bool = typer.Option(False, help="Replace --out / --save outputs that interp wrote."),
) -> None:
    """Find the fixed and slow points of a trained RNN at zero input, with their stability.

    Starts from states the net visits on its task, minimises q = 1/2 |step(h) - h|^2 for all
    starts at once, merges duplicates and classifies each point as stable / saddle / unstable
    from the eigenvalues of its Jacobian (discrete time: stable iff every |eigenvalue| < 1).
    """
    for path in (out, save):
        if path is not None:
            check_output(path, overwrite=overwrite)
    check_run_files(run)
    import torch
    from rich.console import Console

    from interp.rnn.fixed_points import find_fixed_points
    from interp.rnn.training import load_run
    from interp.viz import Report

    torch.set_num_threads(threads)
    with user_errors(ValueError, FileNotFoundError):  # load_run's own checks, untyped for now
        net, task, history = load_run(run)
    points = find_fixed_points(
        net, task=task, n_starts=n_starts, noise=noise, method=method, seed=seed
    )
    console = Console()
    console.print(points.table())
    if save is not None:
        write_or_keep(save, lambda path: points.save(path, overwrite=overwrite))
        console.print(f"saved fixed points to {save}")
    if out is not None:
        report = Report(f"Fixed points of {net.config['kind']} on {task.name}")
        report.text(
            f"Run {run}: net {net.config}, task {task.config}, final test accuracy "
            f"{history.final_accuracy:.4f}."
        )
        report.figure(points.figure())
        report.preformatted(points.table(max_rows=200))
        report.figure(history.figure())
        write_or_keep(out, lambda path: report.write(path, overwrite=overwrite))
        console.print(f"wrote report to {out}")


def register(app: typer.Typer) -> None:
    """Add this package's commands to an app (``interp.cli`` loads them one by one)."""
    from interp.rnn.automaton_cli import register as register_automaton

    app.command("train")(train_command)
    app.command("fixed-points")(fixed_points_command)
    register_automaton(app)
