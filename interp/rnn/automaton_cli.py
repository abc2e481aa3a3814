"""The ``interp automaton`` command: extract the DFA a recurrent net implements on a grammar task.

Every option (ranges by typer's ``min=``, choices and the L* limits by callbacks and
:class:`~interp.rnn.lstar.LStarOptions`) and every output location is checked before a net is
loaded or trained, so a mistake costs a fraction of a second and prints one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from interp.cli_errors import choice, positive_finite, user_errors
from interp.outputs import check_output, write_or_keep

if TYPE_CHECKING:
    from interp.rnn.extraction_result import Extraction

METHODS = ("kmeans", "centroids", "lstar")
EQUIVALENCE = ("abstraction", "pac")
GRAMMARS = tuple(f"tomita{i}" for i in range(1, 8)) + ("parens",)


def write_report(
    extraction: Extraction, path: Path, *, title: str, overwrite: bool = False
) -> Path:
    """An HTML report: headline numbers, the state graph and agreement curves, the tables."""
    from interp.viz import Report

    report = Report(title)
    report.heading("Summary")
    report.preformatted(extraction.table())
    report.figure(extraction.figure())
    if extraction.settings.get("method") == "lstar":
        report.heading("L*: counterexamples in the order the teacher returned them")
        sizes = extraction.settings.get("hypothesis_sizes", [])
        report.table(
            ["equivalence query", "hypothesis states", "counterexample"],
            [
                [i + 1, size, repr(ce) if ce is not None else "(accepted)"]
                for i, (size, ce) in enumerate(
                    zip(sizes, [*(extraction.counterexamples or []), None], strict=False)
                )
            ],
        )
    else:
        report.heading("Choice of k (validation fidelity of the minimized DFA)")
        report.table(
            ["k", "validation fidelity"],
            list(
                zip(extraction.search_k.tolist(), extraction.search_fidelity.tolist(), strict=True)
            ),
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


def _check_options(
    method: str, clusters: int | None, max_states: int, time_limit: float, epsilon: float,
    delta: float, equivalence: str,
) -> None:  # fmt: skip
    """Refuse option combinations before any work (ranges are typer's)."""
    if clusters is not None and method != "kmeans":
        raise typer.BadParameter(
            "--clusters applies to --method kmeans only", param_hint="--clusters"
        )
    if method == "lstar":
        from interp.rnn.lstar import LStarOptions

        with user_errors():
            LStarOptions(
                equivalence=equivalence, max_states=max_states, time_limit=time_limit,
                epsilon=epsilon, delta=delta,
            )  # fmt: skip


def _load_or_train(task: str | None, model: Path | None, kind: str, hidden: int, seed: int,
                   save_model: Path | None, overwrite: bool):  # fmt: skip
    """The net and its grammar task: from a saved run, or trained here."""
    from interp.rnn.grammars import GrammarTask, grammar_task

    if model is not None:
        from interp.rnn.cli import check_run_files
        from interp.rnn.training import load_run

        check_run_files(model)
        with user_errors(ValueError, FileNotFoundError):  # load_run's own checks, untyped
            net, run_task, _ = load_run(model)
        if not isinstance(run_task, GrammarTask):
            raise typer.BadParameter(
                f"the run in {model} was trained on {run_task.name!r}, not a grammar task",
                param_hint="--model",
            )
        if task is not None and task != run_task.name:
            raise typer.BadParameter(
                f"--task {task} but the run in {model} was trained on {run_task.name}",
                param_hint="--task",
            )
        return net, run_task
    from interp.rnn.grammar_training import train_grammar_net

    typer.echo(f"training a {kind} (hidden {hidden}) on {task} ...")
    with user_errors(ValueError):  # an unknown net kind
        net, grammar, result = train_grammar_net(
            grammar_task(task), kind=kind, hidden_size=hidden, seed=seed
        )
    typer.echo(f"trained: test accuracy {result.final_accuracy:.4f}")
    if save_model is not None:
        from interp.rnn.training import save_run

        write_or_keep(
            save_model, lambda path: save_run(path, net, grammar, result, overwrite=overwrite)
        )
    return net, grammar


def register(app: typer.Typer) -> None:
    """Add ``automaton`` to the main `interp` app."""

    @app.command("automaton")
    def automaton(
        task: str = typer.Option(
            None,
            help="Grammar task: tomita1..tomita7 or parens. Optional with --model (taken from "
            "the run).",
            callback=choice(*GRAMMARS),
        ),
        model: Path = typer.Option(
            None,
            help="A saved run folder (from `interp train` / save_run). Without it a small net is "
            "trained first.",
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
        hidden: int = typer.Option(10, min=1, help="Hidden size of the trained net."),
        method: str = typer.Option(
            "kmeans",
            help="kmeans (any RNN), centroids (state_regularized nets: argmax of the attention) "
            "or lstar (Angluin's L* with the net answering the queries).",
            callback=choice(*METHODS),
        ),
        clusters: int = typer.Option(
            None, min=1, help="Fix the number of k-means clusters instead of searching for it."
        ),
        max_clusters: int = typer.Option(
            20, min=2, help="Largest k tried by the search (from k = 2)."
        ),
        equivalence: str = typer.Option(
            "abstraction",
            help="lstar: equivalence oracle, abstraction (Weiss et al. 2018) or pac (sampling).",
            callback=choice(*EQUIVALENCE),
        ),
        max_states: int = typer.Option(200, min=1, help="lstar: stop past this many states."),
        time_limit: float = typer.Option(
            60.0, help="lstar: stop after this many seconds.", callback=positive_finite
        ),
        epsilon: float = typer.Option(0.01, help="lstar --equivalence pac: error ε in (0, 1)."),
        delta: float = typer.Option(0.01, help="lstar --equivalence pac: confidence δ in (0, 1)."),
        seed: int = typer.Option(0, help="Seed for training, string samples and k-means."),
        overwrite: bool = typer.Option(
            False, help="Replace --out/--save/--save-model outputs that interp wrote."
        ),
    ) -> None:
        """Extract the finite automaton a recurrent net implements on a grammar task.

        kmeans: collects the net's states after every prefix of many strings, clusters them, builds the majority-vote transition graph and minimizes it. lstar: learns the automaton with Angluin's L*, the net answering membership queries and an abstraction of its state space answering equivalence queries. Then prints the transition table with its fidelity to the net, its accuracy and whether it is exactly equivalent to the grammar's true automaton (with a shortest counterexample if not).

        Example: interp automaton --task tomita4 --method lstar   (writes automaton_tomita4.html)
        """
        if model is None and task is None:
            raise typer.BadParameter("give --task (tomita1..tomita7, parens) or --model")
        _check_options(method, clusters, max_states, time_limit, epsilon, delta, equivalence)
        for path in (out, save, save_model):
            if path is not None:
                check_output(path, overwrite=overwrite)
        net, grammar = _load_or_train(task, model, kind, hidden, seed, save_model, overwrite)
        from interp.rnn.extraction import extract_automaton

        extraction = extract_automaton(
            net, grammar, method=method, n_clusters=clusters, max_clusters=max_clusters,
            seed=seed, equivalence=equivalence, max_states=max_states, time_limit=time_limit,
            epsilon=epsilon, delta=delta,
        )  # fmt: skip
        typer.echo(extraction.table())
        if save is not None:
            write_or_keep(save, lambda path: extraction.save(path, overwrite=overwrite))
            typer.echo(f"saved the extraction to {save}")
        if report:
            if out is None:
                out, renamed = default_report_path(grammar.name)
                if renamed:
                    typer.echo(f"automaton_{grammar.name}.html exists; writing {out} instead")
            title = f"Automaton extracted on {grammar.name}"
            write_or_keep(
                out, lambda path: write_report(extraction, path, title=title, overwrite=overwrite)
            )
            typer.echo(f"wrote the report to {out}")
