"""The `interp` command line."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="interp: find special attention heads, RNN fixed points and automata, depth phases.",
    no_args_is_help=True,
    add_completion=False,
)
