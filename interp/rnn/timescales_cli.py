"""``interp timescales``: train through a curriculum on N-parity / N-DMS, then measure timescales.

Every option and output location is checked before training; N < 1 or an unknown curriculum
prints one line.
"""

from __future__ import annotations

from pathlib import Path

import typer

from interp.cli_errors import choice, positive_finite, user_errors

CURRICULA = ("single", "multi", "sliding")
NETS = ("timescale_rnn", "gru", "lstm", "leaky", "rnn_tanh", "rnn_relu")


def _write_report(path: Path, curriculum, timescales, overwrite: bool) -> Path:
    from interp.viz import Report

    report = Report(f"Timescales: {curriculum.curriculum} curriculum on {curriculum.task}")
    report.heading("Curriculum")
    report.preformatted(curriculum.table())
    report.figure(curriculum.figure())
    report.heading("Timescales of the final net")
    report.preformatted(timescales.table())
    report.figure(timescales.figure())
    report.heading("Settings")
    rows = [(f"curriculum.{k}", str(v)) for k, v in curriculum.settings.items()]
    rows += [(f"timescales.{k}", str(v)) for k, v in timescales.settings.items()]
    report.table(["setting", "value"], sorted(rows))
    return report.write(path, overwrite=overwrite)


def timescales_command(
    task: str = typer.Option("nparity", help="nparity or ndms", callback=choice("nparity", "ndms")),
    curriculum: str = typer.Option(
        "multi", help="single, multi or sliding", callback=choice(*CURRICULA)
    ),
    out: Path = typer.Option(None, help="HTML report (curriculum, τ vs τ_net, autocorrelation)"),
    save: Path = typer.Option(None, help="save the Timescales result folder here"),
    net: str = typer.Option(
        "timescale_rnn",
        help="timescale_rnn (the paper's), or an existing kind: gru, lstm, leaky, rnn_tanh",
        callback=choice(*NETS),
    ),
    hidden: int = typer.Option(64, min=1, help="neurons (paper: 500)"),
    start_n: int = typer.Option(2, min=1, help="first N (N >= 1)"),
    max_n: int = typer.Option(8, min=1, help="stop once this N is solved"),
    window: int = typer.Option(3, min=1, help="sliding-window width (heads)"),
    epochs: int = typer.Option(10, min=1, help="training budget in epochs"),
    steps_per_epoch: int = typer.Option(200, min=1, help="SGD steps per epoch (paper: 600)"),
    batch_size: int = typer.Option(64, min=1, help="batch (paper: 256)"),
    eval_batches: int = typer.Option(10, min=1, help="test batches per epoch (paper: 50)"),
    lr: float = typer.Option(0.05, callback=positive_finite, help="SGD lr (Nesterov 0.1)"),
    tau_steps: int = typer.Option(20000, min=100, help="steps per trial for τ_net (paper: 1e5)"),
    tau_trials: int = typer.Option(2, min=1, help="trials for τ_net (paper: 10)"),
    seed: int = typer.Option(0, help="seed"),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch"),
    overwrite: bool = typer.Option(False, help="replace interp's own earlier outputs"),
) -> None:
    """Train the leaky RNN with per-neuron τ (Khajehabdollahi et al. 2023) through a curriculum,
    then measure τ (parameters), τ_net (autocorrelation fits chosen by AIC) and the Jacobian
    timescales at the zero-input fixed points."""
    from interp.outputs import check_output, write_or_keep

    if max_n < start_n:
        raise typer.BadParameter(f"--max-n {max_n} is below --start-n {start_n}")
    for path in (out, save):
        if path is not None:
            with user_errors():
                check_output(path, overwrite=overwrite)
    import torch

    import interp.rnn.timescales_net  # noqa: F401  (registers timescale_rnn)
    from interp.rnn.nets import make_net
    from interp.rnn.timescales_result import analyze_timescales
    from interp.rnn.timescales_training import train_curriculum

    torch.set_num_threads(threads)
    slots = 1 if curriculum == "single" else max_n - start_n + 1
    model = make_net(net, 1, hidden, 2 * slots, seed=seed)
    with user_errors():
        history = train_curriculum(
            model, task, curriculum, epochs=epochs, steps_per_epoch=steps_per_epoch,
            batch_size=batch_size, lr=lr, eval_batches=eval_batches, start_n=start_n,
            max_n=max_n, window=window, seed=seed,
        )  # fmt: skip
    typer.echo(history.table())
    summary = {
        "curriculum": curriculum,
        "max_n": history.max_n,
        "solved": history.solved,
        "epochs_run": len(history.epoch_n),
    }
    n = max(history.max_n, start_n)
    with user_errors():
        timescales = analyze_timescales(
            model, task, n, steps=tau_steps, trials=tau_trials, seed=seed, curriculum=summary
        )
    typer.echo(timescales.table())
    if save is not None:
        write_or_keep(save, lambda p: timescales.save(p, overwrite=overwrite))
        typer.echo(f"saved the result to {save}")
    if out is not None:
        write_or_keep(out, lambda p: _write_report(p, history, timescales, overwrite))
        typer.echo(f"wrote the report to {out}")
