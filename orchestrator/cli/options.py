"""Typer options built from ``StudyOptions``: the run flags are declared once, in the model.

``options_command(command, body)`` returns a function whose signature Typer reads: one option
per field of ``StudyOptions`` that ``command`` takes (plus ``extra`` parameters). It calls
``body(given, extra)`` with only the flags the user gave, so the model's defaults (and, for
``medn train``, a ``--config`` file) fill the rest, and the model does every check.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import typer

from orchestrator.studies.options import Flag, flags


def _option(flag: Flag, *, search: bool) -> typer.models.OptionInfo:
    hidden = flag.hidden_unless_search and not search
    if flag.cli_type is bool:
        return typer.Option(False, flag.name, help=flag.help, hidden=hidden)
    return typer.Option(None, flag.name, help=flag.help, hidden=hidden,
                        show_default=flag.show_default)


def options_command(command: str, body: Callable[[dict[str, Any], dict[str, Any]], None], *,
                    extra: list[inspect.Parameter] | None = None, search: bool = False,
                    doc: str | None = None) -> Callable[..., None]:
    """A Typer command taking ``extra`` parameters and every ``StudyOptions`` flag of
    ``command`` (``"study"`` or ``"train"``); see the module doc."""
    fields = {name: flag for name, flag in flags().items() if command in flag.commands}
    extra = list(extra or [])
    extra_names = {p.name for p in extra}

    def run(**kwargs: Any) -> None:
        given = {}
        for name in fields:
            value = kwargs.get(name)
            if value is None or value is False or (isinstance(value, list | tuple)
                                                   and not value):
                continue
            given[name] = list(value) if isinstance(value, list | tuple) else value
        body(given, {k: v for k, v in kwargs.items() if k in extra_names})

    params = [*extra, *(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                          default=_option(flag, search=search),
                                          annotation=flag.cli_type)
                        for name, flag in fields.items())]
    run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in params}
    run.__doc__ = doc
    return run
