"""`interp heads`: find induction, successor and retrieval heads and write an HTML report.

Every default is the library's (``induction_scores``, ``successor_scores``, ``retrieval_grid``),
so the command and a notebook calling the functions with no arguments measure the same thing.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from interp.cli_errors import user_errors
from interp.outputs import check_output, write_or_keep

KINDS = ("induction", "successor", "retrieval")
DEFAULT_OUT = Path("out/heads_report.html")


def _check_outputs(out: Path, save: Path | None, kinds: list[str], overwrite: bool) -> None:
    """Refuse the report and result locations before minutes of scanning, not after."""
    if out == DEFAULT_OUT:
        out.parent.mkdir(exist_ok=True)  # the default's own folder, in the working directory
    check_output(out, overwrite=overwrite)
    if save is None:
        return
    if not save.exists():
        check_output(save)
        return  # a new folder: nothing inside to collide with
    if not save.is_dir():
        from interp.errors import OutputLocationError

        raise OutputLocationError(f"--save {save} is a file; --save takes a folder")
    for kind in kinds:
        check_output(save / kind, overwrite=overwrite)


def _parse_kinds(find: str) -> list[str]:
    kinds = [k.strip() for k in find.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise typer.BadParameter(
            f"unknown kind(s) {unknown or find!r}; choose from {', '.join(KINDS)}"
        )
    return kinds


def _parse_list(name: str, text: str | None, kind: type) -> list | None:
    """Comma-separated numbers, or None when the option was not given."""
    if text is None:
        return None
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{name} must be comma-separated {kind.__name__}s, got {text!r}"
        ) from None
    if not values:
        raise typer.BadParameter(f"{name} is empty; give comma-separated {kind.__name__}s")
    return values


def _successor(lm, console: Console, report):
    """Successor scores, or None (with a message and a report note) when no task survives."""
    from interp.heads import successor_report_sections, successor_scores
    from interp.heads.ordinal_tasks import resolve_tasks

    try:
        resolve_tasks(lm.tokenizer, lm.d_vocab)
    except ValueError as error:  # the reason, without the long per-task list that follows it
        message = (
            f"successor: skipped — {str(error).split(': {', 1)[0]}; the other finders still run"
        )
        console.print(f"[yellow]{message}[/yellow]")
        report.heading("Successor heads")
        report.text(message)
        return None
    scores = successor_scores(lm)
    console.print("successor tasks kept for this tokenizer (single-token items):")
    for name, info in scores.settings["tasks"].items():
        console.print(f"  {name:<24} {len(info['items']):>3} tokens {info['pairs']:>3} pairs")
    dropped = scores.settings["dropped_tasks"]
    console.print(f"  dropped: {', '.join(dropped) or 'none'}")
    successor_report_sections(scores, report)
    return scores


def register(app: typer.Typer) -> None:
    """Add `interp heads` to the main app."""
    from interp.heads.defaults import (
        DEFAULT_DEPTHS,
        MAX_LENGTH,
        MAX_NEW_TOKENS,
        MIN_LENGTH,
        N_NEEDLES,
    )

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
        out: Path = typer.Option(DEFAULT_OUT, "--out", help="Where to write the HTML report."),
        save: Path = typer.Option(
            None, "--save", help="Folder to save each HeadScores result in (reloadable)."
        ),
        top: int = typer.Option(10, "--top", min=1, help="How many top heads to print per metric."),
        max_length: int = typer.Option(
            None,
            "--max-length",
            min=1,
            help=f"Retrieval: longest prompt in tokens (default: min({MAX_LENGTH}, what the "
            "context leaves room to decode)).",
        ),
        lengths: str = typer.Option(
            None,
            "--lengths",
            help=f"Retrieval: prompt lengths in tokens, comma-separated (default: doubling from "
            f"{MIN_LENGTH} up to --max-length). Long prompts dominate the run time.",
        ),
        depths: str = typer.Option(
            ",".join(f"{d:g}" for d in DEFAULT_DEPTHS),
            "--depths",
            help="Retrieval: needle depths in [0, 1], comma-separated.",
        ),
        needles: int = typer.Option(
            N_NEEDLES, "--needles", min=1, help="Retrieval: how many needles to test."
        ),
        synthetic: bool = typer.Option(
            False,
            "--synthetic",
            help="Retrieval: random-word code needles with a 'repeat it' question (small models).",
        ),
        max_new_tokens: int = typer.Option(
            MAX_NEW_TOKENS,
            "--max-new-tokens",
            min=1,
            help="Retrieval: greedy decoding steps per test.",
        ),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace an existing report / saved results."
        ),
    ) -> None:
        """Score every attention head of a model and print the top heads per kind.

        Induction heads (prefix matching + OV copying on repeated random tokens), successor heads
        (effective OV circuit on ordinal sequences, pure weights; skipped with a message when no
        ordinal task survives the tokenizer) and retrieval heads (needle-in-a-haystack copy-paste
        during greedy decoding). Writes a self-contained HTML report with interactive heatmaps.
        """
        kinds = _parse_kinds(find)
        length_list = _parse_list("--lengths", lengths, int)
        depth_list = _parse_list("--depths", depths, float)
        if any(n < 2 for n in length_list or []):
            raise typer.BadParameter(
                f"lengths are token counts >= 2, got {lengths}", param_hint="'--lengths'"
            )
        if any(not 0.0 <= d <= 1.0 for d in depth_list or []):
            raise typer.BadParameter(
                f"depths are fractions in [0, 1], got {depths}", param_hint="'--depths'"
            )
        _check_outputs(out, save, kinds, overwrite)  # before minutes of scanning, not after
        from interp.heads.induction import induction_report_sections, induction_scores
        from interp.heads.retrieval import retrieval_grid, retrieval_report_sections
        from interp.models import load_model
        from interp.viz import Report

        console = Console()
        with user_errors():
            lm = load_model(model)
        console.print(f"[bold]{lm!r}[/bold]")
        report = Report(f"Attention heads of {lm.name}")
        report.text(repr(lm))
        results = {}
        if "induction" in kinds:
            results["induction"] = induction_scores(lm)
            induction_report_sections(results["induction"], report)
        if "successor" in kinds:
            scores = _successor(lm, console, report)
            if scores is not None:
                results["successor"] = scores
        if "retrieval" in kinds:
            # a grid the model cannot take (lengths, needles); interp.heads raises ValueError
            with user_errors(ValueError):
                grid = retrieval_grid(
                    lm,
                    lengths=length_list,
                    depths=depth_list,
                    max_length=max_length,
                    n_needles=needles,
                    synthetic=synthetic,
                    max_new_tokens=max_new_tokens,
                )
            results["retrieval"] = grid.scores()
            retrieval_report_sections(results["retrieval"], grid, report)
            console.print(grid.table(), markup=False, highlight=False, soft_wrap=True)
        for kind, scores in results.items():
            console.rule(f"{kind} heads")
            if kind == "retrieval" and not scores.settings.get("successful_tests"):
                # no retrieved test: every score is NaN; grid.table() said why and what to change
                console.print("retrieval heads: not scored (no needle test was retrieved)")
            else:
                console.print(scores.table(k=top), markup=False, highlight=False, soft_wrap=True)
                found = scores.heads()
                console.print(
                    f"classified as {kind} heads: {', '.join(f'L{layer}H{head}' for layer, head in found) or 'none'}"
                )
            if save is not None:
                save.mkdir(exist_ok=True)
                write_or_keep(save / kind, lambda path, s=scores: s.save(path, overwrite=overwrite))
        write_or_keep(out, lambda path: report.write(path, overwrite=overwrite))
        console.print(f"report written to {out}")
