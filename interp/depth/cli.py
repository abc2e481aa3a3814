"""Command-line commands of interp.depth (registered on the main app by interp.cli)."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.cli_errors import choice, fraction, user_errors
from interp.outputs import check_output, write_or_keep

METHODS = ("dp", "maxcut")  # interp.depth.phases.METHODS (not imported: it loads torch)
METRICS = ("cosine", "cka")  # interp.depth.similarity.METRICS
MAXCUT_LAYERS = 22
DIGITS_VIT_DEPTH = 12  # ViTConfig().depth, known here so --k is checked before torch is imported


def register(app: typer.Typer) -> None:
    """Add this package's commands to the main `interp` app."""

    @app.command("phases")
    def phases(
        model: str = typer.Option(
            "digits-vit",
            "--model",
            help="'digits-vit' (a small ViT trained here on scikit-learn's 8x8 digits, cached under "
            "$INTERP_CACHE) or a language model: registry name, local folder, .gguf file or hub id "
            "(see `interp models`; 'smollm2-135m' is the embedded model).",
        ),
        k: int = typer.Option(
            None,
            "--k",
            min=1,
            help="Number of phases (at most the number of layers). Default: chosen by the "
            "--epsilon stopping rule.",
        ),
        method: str = typer.Option(
            "dp",
            "--method",
            callback=choice(*METHODS),
            help="'dp': exact best split into contiguous runs of layers; 'maxcut': the paper's recursive "
            "max-cut (phases need not be contiguous; at most 22 layers).",
        ),
        epsilon: float = typer.Option(
            0.1,
            "--epsilon",
            callback=fraction,
            help="Stopping rule when --k is not given: add a phase only if it cuts at least this "
            "fraction of the total dissimilarity; the phases are then kept only if they beat a "
            "structureless null (block score >= 0.25), else 1 phase is reported.",
        ),
        metric: str = typer.Option(
            "cosine",
            "--metric",
            callback=choice(*METRICS),
            help="'cosine' (1 - cos, the paper's) or 'cka'.",
        ),
        drop_path: float = typer.Option(
            0.0,
            "--drop-path",
            callback=fraction,
            help="digits-vit only: stochastic-depth rate the ViT is trained with.",
        ),
        epochs: int = typer.Option(30, "--epochs", min=1, help="digits-vit only: training epochs."),
        raptor: bool = typer.Option(
            None,
            "--raptor/--no-raptor",
            help="Fit a Raptor surrogate (one weight-tied block per phase; --k phases, default 2 for "
            "digits-vit and 3 for language models) and report how much of the original it recovers: "
            "linear-probe accuracy (digits-vit) or next-token agreement and loss on held-out corpus "
            "windows (language models, Llama-style families only). Default: on for digits-vit (about "
            "a minute), off for language models (several minutes on a CPU for the embedded model).",
        ),
        steps: int = typer.Option(
            None,
            "--steps",
            min=1,
            help="Raptor training steps per stage (two stages). Default: 300 for digits-vit, 100 "
            "for language models.",
        ),
        samples: int = typer.Option(
            32, "--samples", min=1, help="Language models: number of text windows (64 tokens each)."
        ),
        out: Path = typer.Option(
            None, "--out", help="Write an HTML report (tables and interactive figures)."
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace a report that interp wrote."
        ),
    ) -> None:
        """Find the block-recurrent depth phases of a network (Jacobs et al. 2025) and print them.

        Computes the layer-by-layer dissimilarity of the network's representations, splits the layers into phases of similar layers (compared with a structureless null that keeps only how dissimilarity grows with depth distance), and reports how token trajectories converge. With --raptor it also fits a Raptor surrogate: one shared block per phase, applied recurrently.
        """
        if out is not None:
            check_output(out, overwrite=overwrite)
        if model == "digits-vit":
            _check_k(k, DIGITS_VIT_DEPTH, method, "the digits ViT")
            from interp.depth.vit import ViTConfig

            config = ViTConfig(drop_path=drop_path, epochs=epochs)
            result = _study_digits(config, k, method, epsilon, metric, raptor, steps)
        else:
            from interp.depth.study import study_language_model
            from interp.models.registry import load_model

            with user_errors():
                lm = load_model(model)
            _check_k(k, lm.n_layers, method, lm.name)
            result = study_language_model(
                lm,
                k=k,
                method=method,
                epsilon=epsilon,
                metric=metric,
                samples=samples,
                raptor=bool(raptor),
                phase_steps=100 if steps is None else steps,
                end_to_end_steps=100 if steps is None else steps,
            )
        typer.echo(result.table())
        if out is not None:
            report = result.report(f"Depth phases of {result.similarity.source}")
            write_or_keep(out, lambda path: report.write(path, overwrite=overwrite))
            typer.echo(f"report written to {out}")


def _check_k(k: int | None, layers: int, method: str, name: str) -> None:
    """--k and --method against the model's depth, before any similarity is computed."""
    from interp.errors import InvalidArgumentError

    if k is not None and k > layers:
        raise InvalidArgumentError(f"--k {k}: {name} has {layers} layers; pass --k 1..{layers}")
    if method == "maxcut" and layers > MAXCUT_LAYERS:
        raise InvalidArgumentError(
            f"--method maxcut handles at most {MAXCUT_LAYERS} layers and {name} has {layers}; "
            "use --method dp"
        )


def _study_digits(config, k, method, epsilon, metric, raptor, steps):
    """The digits study; the ViT is trained first, with a message, when it is not cached."""
    from interp.depth.study import study_digits
    from interp.depth.vit import cache_dir, digits_vit

    typer.echo(
        f"digits ViT ({config.depth} blocks, {config.epochs} epochs): loaded from {cache_dir()} "
        "when trained before, else trained now (about 40 s on 2 cores; one line per epoch)",
        err=True,
    )
    digits_vit(config, verbose=True)  # trains and caches on first use; study_digits reloads it
    return study_digits(
        config,
        k=k,
        method=method,
        epsilon=epsilon,
        metric=metric,
        raptor=True if raptor is None else raptor,
        phase_steps=300 if steps is None else steps,
        end_to_end_steps=300 if steps is None else steps,
    )
