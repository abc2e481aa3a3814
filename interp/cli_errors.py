"""How the command line reports bad input: ``error: <message>`` on stderr and exit status 1.

What bad input raises (an unknown model name or hook, a missing file, folder or wheel, a hub id
that cannot be fetched, a text or length beyond the context) is a message for the user, not a
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import NoReturn

import typer

USER_ERRORS = (KeyError, ValueError, OSError, ModuleNotFoundError)


def message(error: BaseException) -> str:
    """The error's text (a KeyError's ``str()`` wraps it in quotes; its first argument is it)."""
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def fail(text: str) -> NoReturn:
    """Print ``error: text`` to stderr and exit with status 1."""
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Report the :data:`USER_ERRORS` raised inside the block in one line and exit 1."""
    try:
        yield
    except USER_ERRORS as error:
        fail(message(error))
