"""Placeholder until this command group is written (see the open issues)."""

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
