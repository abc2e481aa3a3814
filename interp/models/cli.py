"""Command-line commands of interp.models (registered on the main app by interp.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the main `interp` app."""
