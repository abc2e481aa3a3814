"""`interp heads`: find induction, successor and retrieval heads and write an HTML report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

KINDS = ("induction", "successor", "retrieval")


def _parse_kinds(find: str) -> list[str]:
    kinds = [k.strip() for k in find.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise typer.BadParameter(
            f"unknown kind(s) {unknown or find!r}; choose from {', '.join(KINDS)}"
        )
    return kinds


def register(app: typer.Typer) -> None:
    """Add `interp heads` to the main app."""

    @app.command("heads")
    def heads(
        model: str = typer.Option(
            None,
            "--model",
            help="Model name, folder, .gguf file or hub id (default: embedded SmolLM2-135M).",
        ),
        find: str = typer.Option(
            ",".join(KINDS),
            "--find",
            help="Which heads to look for, comma-separated: induction,successor,retrieval.",
        ),
        out: Path = typer.Option(
            Path("out/heads_report.html"), "--out", help="Where to write the HTML report."
        ),
        save: Path = typer.Option(
            None, "--save", help="Folder to save each HeadScores result in (reloadable)."
        ),
        top: int = typer.Option(10, "--top", help="How many top heads to print per metric."),
        lengths: str = typer.Option(
            "256,512,1024",
            "--lengths",
            help="Retrieval: haystack lengths in tokens, comma-separated.",
        ),
        depths: str = typer.Option(
            "0,0.5,1", "--depths", help="Retrieval: needle depths in [0, 1], comma-separated."
        ),
        needles: int = typer.Option(
            2, "--needles", help="Retrieval: how many shipped needles to test."
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace an existing report / saved results."
        ),
    ) -> None:
        """Score every attention head of a model and print the top heads per kind.

        Induction heads (prefix matching + OV copying on repeated random tokens), successor heads
        (effective OV circuit on ordinal sequences, pure weights) and retrieval heads
        (needle-in-a-haystack copy-paste during greedy decoding). Writes a self-contained HTML
        report with interactive heatmaps.
        """
        from interp.heads import successor_report_sections, successor_scores
        from interp.heads.induction import induction_report_sections, induction_scores
        from interp.heads.retrieval import retrieval_grid, retrieval_report_sections
        from interp.models import load_model
        from interp.viz import Report

        kinds = _parse_kinds(find)
        if out.exists() and not overwrite:
            raise typer.BadParameter(f"{out} exists; pass --overwrite or choose another --out")
        console = Console()
        lm = load_model(model)
        console.print(f"[bold]{lm!r}[/bold]")
        report = Report(f"Attention heads of {lm.name}")
        report.text(repr(lm))
        results = {}
        if "induction" in kinds:
            with console.status(
                "induction: repeated random tokens through the attention statistics"
            ):
                results["induction"] = induction_scores(lm)
            induction_report_sections(results["induction"], report)
        if "successor" in kinds:
            with console.status("successor: effective OV circuits of every head"):
                results["successor"] = successor_scores(lm)
            successor_report_sections(results["successor"], report)
        if "retrieval" in kinds:
            grid = retrieval_grid(
                lm,
                lengths=[int(x) for x in lengths.split(",")],
                depths=[float(x) for x in depths.split(",")],
                n_needles=needles,
            )
            results["retrieval"] = grid.scores()
            retrieval_report_sections(results["retrieval"], grid, report)
        for kind, scores in results.items():
            console.rule(f"{kind} heads")
            console.print(scores.table(k=top))
            found = scores.heads()
            console.print(
                f"classified as {kind} heads: {', '.join(f'L{layer}H{head}' for layer, head in found) or 'none'}"
            )
            if save is not None:
                scores.save(save / kind, overwrite=overwrite)
        report.write(out, overwrite=overwrite)
        console.print(f"report written to {out}")
