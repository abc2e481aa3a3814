"""``interp hmm``: train (or load) a noise-driven RNN on an HMM, then analyse its dynamics.

Every option and output location is checked before training; a non-stochastic ``T``/``E`` or an
unknown HMM prints one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from interp.cli_errors import choice, non_negative_finite, positive_finite, user_errors

HMMS = ("linear2", "linear3", "linear4", "linear5", "cyclic4", "full3", "full4", "full5", "custom")


def _matrix(text: str | None, label: str):
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise typer.BadParameter(
            f"{label} must be a JSON matrix like [[0.9,0.1],[0.1,0.9]]"
        ) from error


def _write_report(path: Path, title: str, fit_table: str, dynamics, figures, overwrite: bool):
    from interp.viz import Report

    report = Report(title)
    report.heading("Fit of the output statistics")
    report.preformatted(fit_table)
    report.heading("Dynamics")
    report.preformatted(dynamics.table())
    for name, fig in figures.items():
        report.heading(name.replace("_", " "))
        report.figure(fig)
    report.heading("Settings")
    report.table(["setting", "value"], sorted((k, str(v)) for k, v in dynamics.settings.items()))
    return report.write(path, overwrite=overwrite)


def hmm_command(
    hmm: str = typer.Option("cyclic4", help="HMM: " + ", ".join(HMMS), callback=choice(*HMMS)),
    transition: str = typer.Option(None, help="custom T as JSON (rows: from-state)."),
    emission: str = typer.Option(None, help="custom E as JSON (rows: states, columns: outputs)."),
    model: Path = typer.Option(None, help="a saved noise-RNN run (from --save-model) to analyse"),
    out: Path = typer.Option(None, help="HTML report (fit, dynamics, figures)."),
    save: Path = typer.Option(None, help="save the NoiseDynamics result folder here"),
    save_model: Path = typer.Option(None, help="save the trained run here"),
    hidden: int = typer.Option(50, min=1, help="hidden units (paper: 150)"),
    noise_size: int = typer.Option(10, min=1, help="noise inputs (paper: 100)"),
    length: int = typer.Option(20, min=2, help="sequence length (paper: 100)"),
    steps: int = typer.Option(1000, min=1, help="training steps"),
    batch_size: int = typer.Option(256, min=1, help="sequences per step (paper: 4096)"),
    lr: float = typer.Option(1e-2, callback=positive_finite, help="Adam lr (paper: 1e-3)"),
    blur: float = typer.Option(0.2, callback=positive_finite, help="Sinkhorn blur"),
    backend: str = typer.Option(
        "tensorized",
        callback=choice("tensorized", "online", "multiscale"),
        help="geomloss backend (online/multiscale need pykeops, for a GPU)",
    ),
    states: int = typer.Option(1000, min=2, help="noisy-trajectory states analysed"),
    continuations: int = typer.Option(20, min=1, help="noisy continuations per state"),
    horizon: int = typer.Option(50, min=1, help="continuation length"),
    min_cut: float = typer.Option(
        0.2,
        callback=non_negative_finite,
        help="kick neurons: ablation cuts the transition rate by >= this fraction",
    ),
    top_k: int = typer.Option(
        None, min=1, help="take the k largest cuts as kick neurons (default: cut >= --min-cut)"
    ),
    seed: int = typer.Option(0, help="seed (weights, data, noise)"),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch"),
    overwrite: bool = typer.Option(False, help="replace interp's own earlier outputs"),
) -> None:
    """Train a bias-free ReLU RNN driven by noise to emit like an HMM (Sinkhorn divergence), then
    find its zero-input fixed point, noise-sustained orbit and phase, residency zones, local
    instability and kick neurons (Torre et al. 2025)."""
    from interp.outputs import check_output, write_or_keep

    t_matrix, e_matrix = _matrix(transition, "--transition"), _matrix(emission, "--emission")
    if (t_matrix is None) != (e_matrix is None) or (hmm == "custom") != (t_matrix is not None):
        raise typer.BadParameter("--hmm custom needs both --transition and --emission (only then)")
    for path in (out, save, save_model):
        if path is not None:
            with user_errors():
                check_output(path, overwrite=overwrite)
    import torch

    from interp.rnn.dynamics_analysis import analyze_noise_rnn
    from interp.rnn.hmm_net import NoiseRNN, load_hmm_run, save_hmm_run, train_hmm
    from interp.rnn.tasks import make_task

    torch.set_num_threads(threads)
    with user_errors():
        if model is not None:
            net, task, result = load_hmm_run(model)
        else:
            task = make_task(
                "hmm", hmm=hmm, steps=length, noise_size=noise_size,
                transition=t_matrix, emission=e_matrix,
            )  # fmt: skip
            if backend != "tensorized":
                from interp.rnn.hmm_net import sinkhorn_loss

                sinkhorn_loss(blur, backend)  # refuses a missing pykeops before training
            torch.manual_seed(seed)
            net = NoiseRNN(noise_size, hidden, task.output_size)
            result = train_hmm(
                net, task, steps=steps, batch_size=batch_size, lr=lr, blur=blur,
                backend=backend, seed=seed, n_sequences=max(4 * batch_size, 4096),
            )  # fmt: skip
    typer.echo(result.table())
    if save_model is not None and model is None:
        write_or_keep(save_model, lambda p: save_hmm_run(p, net, task, result, overwrite=overwrite))
    with user_errors():
        dynamics = analyze_noise_rnn(
            net, steps=states, n_continuations=continuations, horizon=horizon,
            min_cut=min_cut, top_k=top_k, seed=seed,
        )  # fmt: skip
    typer.echo(dynamics.table())
    if save is not None:
        write_or_keep(save, lambda p: dynamics.save(p, overwrite=overwrite))
        typer.echo(f"saved the result to {save}")
    if out is not None:
        figures = {"training": result.figure(), **dynamics.figures()}
        title = f"Noise-driven RNN emulating the {task.hmm.name} HMM"
        write_or_keep(
            out, lambda p: _write_report(p, title, result.table(), dynamics, figures, overwrite)
        )
        typer.echo(f"wrote the report to {out}")
