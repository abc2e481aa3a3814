"""The ``interp automaton`` command: extract the DFA a recurrent net implements on a grammar task."""

from __future__ import annotations

from pathlib import Path

import typer

from interp.rnn.extraction_result import Extraction


def write_report(
    extraction: Extraction, path: Path, *, title: str, overwrite: bool = False
) -> Path:
    """An HTML report: headline numbers, the state graph and agreement curves, the tables."""
    from interp.viz import Report

    report = Report(title)
    report.heading("Summary")
    report.preformatted(extraction.table())
    report.figure(extraction.figure())
    report.heading("Choice of k (validation fidelity of the minimized DFA)")
    report.table(
        ["k", "validation fidelity"],
        list(zip(extraction.search_k.tolist(), extraction.search_fidelity.tolist(), strict=True)),
    )
    target = extraction.target
    if target is not None:
        report.heading("Ground truth (minimized)")
        report.preformatted(target.minimize().table())
    report.heading("Settings")
    report.table(["setting", "value"], sorted(extraction.settings.items()))
    return report.write(path, overwrite=overwrite)


def default_report_path(task: str, directory: Path = Path()) -> tuple[Path, bool]:
    """``automaton_<task>.html`` in ``directory``, or the first free ``automaton_<task>_<n>.html``
    when that exists; the flag says whether a suffix was needed."""
    path, number = directory / f"automaton_{task}.html", 1
    while path.exists():
        number += 1
        path = directory / f"automaton_{task}_{number}.html"
    return path, number > 1


def register(app: typer.Typer) -> None:
    """Add ``automaton`` to the main `interp` app."""

    @app.command("automaton")
    def automaton(
        task: str = typer.Option(
            None,
            help="Grammar task: tomita1..tomita7 or parens. Optional with --model (taken from the run).",
        ),
        model: Path = typer.Option(
            None,
            help="A saved run folder (from `interp train` / save_run). Without it a small net is trained first.",
        ),
        out: Path = typer.Option(
            None,
            help="HTML report path (state graph, agreement by length). Default "
            "automaton_<task>.html here, or automaton_<task>_2.html ... if that exists.",
        ),
        report: bool = typer.Option(True, help="Write the HTML report (--no-report: skip it)."),
        save: Path = typer.Option(
            None, help="Save the Extraction result folder here (reload with Extraction.load)."
        ),
        save_model: Path = typer.Option(
            None, help="When a net is trained here, also save the run to this folder."
        ),
        kind: str = typer.Option(
            "gru", help="Net kind to train when no --model is given (e.g. gru, lstm)."
        ),
        hidden: int = typer.Option(10, help="Hidden size of the trained net."),
        method: str = typer.Option(
            "kmeans",
            help="kmeans (any RNN) or centroids (state_regularized nets: argmax of the attention).",
        ),
        clusters: int = typer.Option(
            None, help="Fix the number of k-means clusters instead of searching for it."
        ),
        max_clusters: int = typer.Option(20, help="Largest k tried by the search."),
        seed: int = typer.Option(0, help="Seed for training, string samples and k-means."),
        overwrite: bool = typer.Option(
            False, help="Replace existing --out/--save/--save-model paths."
        ),
    ) -> None:
        """Extract the finite automaton a recurrent net implements on a grammar task.

        Collects the net's states after every prefix of many strings, clusters them, builds the majority-vote transition graph and minimizes it; then prints the transition table with its fidelity to the net, its accuracy and whether it is exactly equivalent to the grammar's true automaton (with a shortest counterexample if not).

        Example: interp automaton --task tomita4   (writes automaton_tomita4.html)
        """
        from interp.rnn.extraction import extract_automaton
        from interp.rnn.grammars import GrammarTask, grammar_task

        for path in (out, save, save_model):
            if path is not None and path.exists() and not overwrite:
                raise typer.BadParameter(
                    f"{path} already exists; pass --overwrite or choose another path"
                )
        if model is not None:
            from interp.rnn.training import load_run

            try:
                net, run_task, _ = load_run(model)
            except FileNotFoundError as error:
                raise typer.BadParameter(str(error), param_hint="--model") from error
            if not isinstance(run_task, GrammarTask):
                raise typer.BadParameter(
                    f"the run in {model} was trained on {run_task.name!r}, not a grammar task"
                )
            if task is not None and task != run_task.name:
                raise typer.BadParameter(
                    f"--task {task} but the run in {model} was trained on {run_task.name}"
                )
            grammar = run_task
        else:
            if task is None:
                raise typer.BadParameter("give --task (tomita1..tomita7, parens) or --model")
            from interp.rnn.grammar_training import train_grammar_net

            try:
                base = grammar_task(task)
            except ValueError as error:
                raise typer.BadParameter(str(error)) from error
            typer.echo(f"training a {kind} (hidden {hidden}) on {task} ...")
            net, grammar, result = train_grammar_net(base, kind=kind, hidden_size=hidden, seed=seed)
            typer.echo(f"trained: test accuracy {result.final_accuracy:.4f}")
            if save_model is not None:
                from interp.rnn.training import save_run

                save_run(save_model, net, grammar, result, overwrite=overwrite)
        try:
            extraction = extract_automaton(
                net,
                grammar,
                method=method,
                n_clusters=clusters,
                max_clusters=max_clusters,
                seed=seed,
            )
        except (ValueError, TypeError) as error:
            raise typer.BadParameter(str(error)) from error
        typer.echo(extraction.table())
        if save is not None:
            extraction.save(save, overwrite=overwrite)
            typer.echo(f"saved the extraction to {save}")
        if report:
            if out is None:
                out, renamed = default_report_path(grammar.name)
                if renamed:
                    typer.echo(f"automaton_{grammar.name}.html exists; writing {out} instead")
            write_report(
                extraction, out, title=f"Automaton extracted on {grammar.name}", overwrite=overwrite
            )
            typer.echo(f"wrote the report to {out}")
