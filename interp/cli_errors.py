"""How the command line reports a user's mistake: ``error: <message>`` on stderr, one line.

The rule (DESIGN.md, "Errors"): an :class:`~interp.errors.InterpError` is the user's mistake (bad
input, a damaged file, an output location that cannot be written) and prints as one line with
exit status 1; an ``OSError`` that names a file (a path the user gave cannot be read or written)
prints the same way; a bad option value (typer's ``min=``/``max=`` and the callbacks below) prints
one line with exit status 2, click's usage-error status. Anything else is a bug in interp and
keeps its traceback. :class:`CommandGroup` applies the rule to every command at once, so a new
command gets it without doing anything.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import NoReturn

import typer
from typer.core import TyperGroup

from interp.errors import InterpError

# The usage-error base class of the click that typer runs on (typer 0.29 ships its own copy).
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def message(error: BaseException) -> str:
    """The error's text (a KeyError's ``str()`` wraps it in quotes; its first argument is it)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def fail(text: str, code: int = 1) -> NoReturn:
    """Print ``error: text`` to stderr and exit with ``code``."""
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(code)


def os_error_line(error: OSError) -> str:
    """One line for an ``OSError`` raised on a path: what failed and which path."""
    reason = error.strerror or str(error)
    target = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
    return f"{target}: {reason}"


@contextlib.contextmanager
def user_errors(*legacy: type[BaseException]) -> Iterator[None]:
    """Report an :class:`InterpError` (and the ``legacy`` types) raised in the block in one line.

    ``legacy`` names built-in types that one specific call raises for bad input while its module
    does not raise typed errors yet; keep the block around that call only.
    """
    try:
        yield
    except InterpError as error:
        fail(message(error))
    except legacy as error:
        fail(message(error))


class CommandGroup(TyperGroup):
    """The `interp` group: applies the error rule above to every subcommand."""

    def invoke(self, ctx) -> object:
        try:
            return super().invoke(ctx)
        except UsageError as error:  # a bad option value, an unknown option
            fail(usage_line(error), code=2)
        except InterpError as error:
            fail(message(error))
        except OSError as error:
            if error.filename is None:
                raise
            fail(os_error_line(error))


def usage_line(error: Exception) -> str:
    """click's message for a bad option, with the value it got and where the help is."""
    text = error.format_message().rstrip(".")
    details = getattr(error.__cause__, "errors", None)  # typer's pydantic range check
    if callable(details) and "Input should be" in text:
        text = text.replace("Input should be", f"got {details()[0]['input']}, should be")
    ctx = getattr(error, "ctx", None)
    return text + (f" (see `{ctx.command_path} --help`)" if ctx is not None else "")


# Option callbacks (typer's min=/max= cover plain ranges).


def choice(*allowed: str) -> Callable[[str | None], str | None]:
    """A callback accepting only ``allowed`` values (``None``: the option was not given)."""

    def check(value: str | None) -> str | None:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}")
        return value

    return check


def positive_finite(value: float | None) -> float | None:
    """A callback for rates and scales: a finite number above 0."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value} is not a finite number above 0")
    return value


def accuracy_target(value: float | None) -> float | None:
    """A callback for a target accuracy: in (0, 1]."""
    if value is not None and not (0.0 < value <= 1.0):
        raise typer.BadParameter(f"{value} is not in (0, 1]")
    return value


def fraction(value: float | None) -> float | None:
    """A callback for accuracies and rates in [0, 1]."""
    if value is not None and not (0.0 <= value <= 1.0):
        raise typer.BadParameter(f"{value} is not in [0, 1]")
    return value


def non_negative_finite(value: float | None) -> float | None:
    """A callback for penalties and noise levels: a finite number >= 0."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value} is not a finite number >= 0")
    return value
