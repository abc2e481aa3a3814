"""The `interp` command line."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="interp: find special attention heads, RNN fixed points and automata, depth phases.",
    no_args_is_help=True,
    add_completion=False,
)


def _register_all() -> None:
    from interp.degeneracy.cli import register as degeneracy
    from interp.depth.cli import register as depth
    from interp.heads.cli import register as heads
    from interp.models.cli import register as models
    from interp.rnn.cli import register as rnn

    for register in (models, heads, rnn, depth, degeneracy):
        register(app)


_register_all()
