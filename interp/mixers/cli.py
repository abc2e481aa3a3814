"""`interp mixers`: interaction rank per layer, spectra and gradient paths of a model's mixers."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.cli_errors import user_errors
from interp.outputs import check_output, write_or_keep


def _layers(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"--layers takes comma-separated indices, got {value!r}") from None


def mixers_command(
    model: str = typer.Option(
        None,
        "--model",
        help="Registry name, local folder, .gguf file or hub id: a transformer (attention) or a "
        "Mamba / Mamba-2 model (SSM). Default: the embedded SmolLM2-135M.",
    ),
    out: Path = typer.Option(None, "--out", help="Write an HTML report (tables and figures)."),
    layers: str = typer.Option(
        None, "--layers", callback=_layers, help="Comma-separated layer indices (default: all)."
    ),
    length: int = typer.Option(32, "--length", min=2, help="Random input tokens (after BOS)."),
    text: str = typer.Option(None, "--text", help="Analyze this text instead of random tokens."),
    rtol: float = typer.Option(
        1e-6, "--rtol", help="Relative tolerance of the numerical rank (sigma_r > rtol sigma_1)."
    ),
    paths: bool = typer.Option(
        True, "--paths/--no-paths", help="Measure gradient paths (||dy_i/dx_j|| vs i - j)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the random input tokens."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a report interp wrote."),
) -> None:
    """Interaction operators of every layer (Ghodsi 2025): numerical rank and singular spectrum
    of the stacked W_ij (per-head OV maps for attention; the per-token maps of a selective SSM)
    at a stated tolerance, and gradient paths against distance."""
    if out is not None:
        check_output(out, overwrite=overwrite)
    if not 0 < rtol < 1:
        raise typer.BadParameter(f"--rtol must be in (0, 1), got {rtol}")
    import torch

    from interp.mixers.model import analyze_mixers, check_layer, mixer_kind
    from interp.models.registry import load_model

    with user_errors():
        lm = load_model(model)
    mixer_kind(lm)  # one line for a model with no attention or SSM layers
    for layer in layers or []:
        check_layer(lm, layer)
    if text is not None:
        inputs = text
    else:
        g = torch.Generator().manual_seed(seed)
        inputs = torch.randint(0, lm.d_vocab, (1, length), generator=g)
    result = analyze_mixers(lm, inputs, layers, rtol=rtol, paths=paths)
    typer.echo(result.table())
    if out is not None:
        report = mixers_report(result, lm.name)
        write_or_keep(out, lambda path: report.write(path, overwrite=overwrite))
        typer.echo(f"report written to {out}")


def mixers_report(result, name: str):
    """The HTML report of a :class:`~interp.mixers.model.MixerAnalysis`."""
    from interp.viz.report import Report

    report = Report(f"Sequence mixers of {name}")
    report.text(
        "Every layer written as y_i = sum_j W_ij(X) x_j (Ghodsi 2025). Rank: the number of "
        f"singular values of the stacked operators above {result.rtol:g} times the largest; "
        "H position-only attention heads emulate a layer exactly when H >= that rank."
    )
    report.table(
        ["layer", "kind", "rank", "bound", "rho"],
        [
            [layer, kind, rank, bound, f"{rho:.3g}"]
            for layer, kind, rank, bound, rho in zip(
                result.layers, result.kinds, result.ranks, result.bounds, result.rhos, strict=True
            )
        ],
    )
    report.figure(result.figure())
    if result.profiles:
        report.heading("Gradient paths")
        report.figure(result.paths_figure())
    return report
