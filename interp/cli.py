"""The `interp` command line.

Each command lives in its subpackage's ``cli`` module and is imported only when it runs (or when
``interp --help`` lists them), so a bad option is refused in a fraction of a second instead of
after seconds of torch/transformers imports. The group (:class:`~interp.cli_errors.CommandGroup`)
prints a user's mistake as one ``error:`` line and lets a bug keep its traceback.
"""

from __future__ import annotations

import functools
import importlib

import typer

from interp.cli_errors import CommandGroup

# command name -> (module, attribute): a command function, or a ``register(app)`` that adds it.
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("interp.models.cli", "register"),
    "capture": ("interp.models.cli", "register"),
    "heads": ("interp.heads.cli", "register"),
    "train": ("interp.rnn.cli", "train_command"),
    "fixed-points": ("interp.rnn.cli", "fixed_points_command"),
    "automaton": ("interp.rnn.automaton_cli", "register"),
    "hmm": ("interp.rnn.hmm_cli", "hmm_command"),
    "timescales": ("interp.rnn.timescales_cli", "timescales_command"),
    "phases": ("interp.depth.cli", "register"),
    "degeneracy": ("interp.degeneracy.cli", "degeneracy_command"),
    "mixers": ("interp.mixers.cli", "mixers_command"),
    "patch": ("interp.patching.cli", "register"),
    "lens": ("interp.patching.cli", "register"),
}


class _LazyCommands(CommandGroup):
    """Loads a command's module the first time the command is looked up."""

    def list_commands(self, ctx) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx, cmd_name: str):
        return _load(cmd_name) if cmd_name in COMMANDS else None


@functools.cache
def _load(name: str):
    module, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer(rich_markup_mode=app.rich_markup_mode)
    if attribute == "register":
        target(holder)
    else:
        holder.command(name)(target)
    return typer.main.get_group(holder).commands[name]


app = typer.Typer(
    cls=_LazyCommands,
    name="interp",
    rich_markup_mode=None,  # plain click help: re-wrapped to the terminal, nothing cut with "…"
    help="interp: find special attention heads, RNN fixed points and automata, depth phases.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _main() -> None:
    """interp: find special attention heads, RNN fixed points and automata, depth phases."""
