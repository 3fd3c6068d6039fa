"""``medn study``: list and show the study specs, and one command per study that runs it.

The per-study commands are made when they are asked for (``LazyStudyGroup``): starting ``medn``
reads no spec, so a broken file in ./studies never breaks an unrelated command.
"""

# No `from __future__ import annotations`: Typer reads these signatures at registration time,
# and the per-study commands are closures.
import json
from typing import Annotated, Any

import click
import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from orchestrator.cli.common import console, fail, run_study_command
from orchestrator.cli.options import options_command
from orchestrator.paper_numbers import PAPER_TITLES
from orchestrator.studies.discover import StudyEntry, discover_studies, find_study, study_files
from orchestrator.studies.spec import StudySpec, StudySpecError

STATIC_COMMANDS = ("list", "show")


def _value(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _size(spec: StudySpec) -> str:
    if spec.search is not None:
        return f"search, {spec.search.trials} trials"
    return str(len(spec.variants_for()))


def _entry_json(entry: StudyEntry) -> dict[str, Any]:
    spec = entry.spec
    return {"name": entry.name, "path": str(entry.path), "origin": entry.origin,
            "valid": spec is not None, "error": entry.error,
            "paper": PAPER_TITLES.get(spec.paper or "") if spec else None,
            "kind": spec.kind if spec else None,
            "variants": len(spec.variants_for()) if spec and spec.search is None else None,
            "trials": spec.search.trials if spec and spec.search else None,
            "tasks": list(spec.tasks) if spec else None,
            "description": spec.description if spec else None}


def list_command(
    as_json: Annotated[bool, typer.Option(
        "--json", help="one JSON array on stdout, for scripts")] = False,
) -> None:
    """List the studies (shipped ones and ./studies/*.yaml), with invalid files and why."""
    entries = discover_studies(check_model=True)
    if as_json:
        typer.echo(json.dumps([_entry_json(e) for e in entries.values()], indent=2))
        return
    table = Table(title="Studies", show_lines=False)
    # Names and paths are never folded: `medn study list | grep NAME` must find them whole;
    # the description takes what width is left, or goes below the table when too little is
    # (an 80-column pipe would fold it a few letters per line)
    widest = max((len(name) for name in entries), default=4)
    fixed = widest + len("Table VII") + len("search, 20 trials") + len("3,4,7") + len("builtin")
    inline = console.width - fixed - 3 * 6 >= 30
    table.add_column("name", no_wrap=True, min_width=widest)
    table.add_column("paper", no_wrap=True)
    table.add_column("variants", no_wrap=True)
    table.add_column("tasks", no_wrap=True)
    if inline:
        table.add_column("description", overflow="fold", ratio=1)
    table.add_column("from", no_wrap=True)
    invalid: list[StudyEntry] = []
    for entry in entries.values():
        origin = entry.origin if entry.origin == "builtin" else escape(str(entry.path))
        if entry.spec is None:
            invalid.append(entry)
            table.add_row(f"[red]{escape(entry.name)}[/]", "", "[red]invalid[/]", "",
                          *(["[red]see below[/]"] if inline else []), origin)
            continue
        spec = entry.spec
        table.add_row(spec.name, PAPER_TITLES.get(spec.paper or "", "-"), _size(spec),
                      ",".join(map(str, spec.tasks)),
                      *([escape(spec.description)] if inline else []), origin)
    console.print(table)
    if not inline:
        for entry in entries.values():
            if entry.spec is not None and entry.spec.description:
                console.print(f"[bold]{escape(entry.name)}[/]: {escape(entry.spec.description)}",
                              highlight=False)
    for entry in invalid:
        console.print(f"[red]invalid:[/] {escape(entry.error or '')}", highlight=False,
                      soft_wrap=True)
    if not entries:
        console.print("No study specs found (looked in the shipped studies/ and ./studies).")


def show_command(name: Annotated[str, typer.Argument(help="the study's name")]) -> None:
    """Show one study: what it reproduces, its base configuration and its variants."""
    try:
        spec = find_study(name)
    except StudySpecError as err:
        raise fail(str(err)) from None
    console.print(f"[bold]{spec.name}[/]: {escape(spec.description)}")
    console.print(f"  paper: {PAPER_TITLES.get(spec.paper or '', 'none')}   tasks: "
                  f"{', '.join(map(str, spec.tasks))} (change with --task)   metric: {spec.metric}"
                  f"   file: {spec.source}", highlight=False)
    if spec.base:
        console.print(f"  base (over the --profile): {escape(json.dumps(spec.base))}",
                      highlight=False)
    if spec.search is not None:
        search = spec.search
        console.print(f"  search: {search.sampler} sampler ({search.startup_trials} random "
                      f"startup trials, seed {search.seed}), pruner {search.pruner} "
                      f"(p < {search.p_threshold}), {search.trials} trials (--trials)",
                      highlight=False)
        table = Table(title="search space")
        for column in ("key", "type", "range / choices", "scale"):
            table.add_column(column)
        for key, param in search.space.items():
            span = (_value(param.choices) if param.type == "categorical"
                    else f"[{param.low:g}, {param.high:g}]")
            table.add_row(key, param.type, escape(span), "log" if param.log else "linear")
        console.print(table)
        return
    variants = spec.variants_for()
    keys = list(dict.fromkeys(k for v in variants for k in v.overrides))
    table = Table(title=f"{len(variants)} variants")
    for column in ("#", "label", "variant", *keys):
        table.add_column(column, overflow="fold")
    for i, variant in enumerate(variants, 1):
        table.add_row(str(i), escape(variant.label), escape(variant.name),
                      *(escape(_value(variant.overrides[k])) if k in variant.overrides
                        else "(base)" for k in keys))
    console.print(table)


def _make_run_command(name: str, spec: StudySpec | None, error: str | None) -> Any:
    def run(given: dict[str, Any], extra: dict[str, Any]) -> None:
        del extra
        from orchestrator.studies.options import StudyOptions, StudyOptionsError

        try:
            found = find_study(name)
            options = StudyOptions(**{"tasks": list(found.tasks), **given})
        except (StudySpecError, StudyOptionsError) as err:
            raise fail(str(err)) from None
        outcome = run_study_command(found, options, executor="ray")
        if not outcome.complete:
            raise fail(f"study {name!r} is incomplete; run the same command again to resume it",
                       1)

    description = (spec.description if spec is not None
                   else f"(invalid spec: {error or name}; see `medn study list`)")
    doc = f"Run the study {name!r}: {description}"
    return options_command("study", run, search=spec is not None and spec.search is not None,
                           doc=doc)


class LazyStudyGroup(TyperGroup):
    """``medn study``: ``list``, ``show`` and one command per spec file, each made (and its spec
    read) only when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The static commands, then every study file's name (no spec is read)."""
        return [*STATIC_COMMANDS, *(n for n in study_files() if n not in STATIC_COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A static command, or the run command of study ``cmd_name`` (its spec read now;
        an invalid spec still gives a command, which explains the problem when run)."""
        if cmd_name in STATIC_COMMANDS:
            return super().get_command(ctx, cmd_name)
        file = study_files().get(cmd_name)
        if file is None:
            return None
        from orchestrator.studies.discover import load_entry

        entry = load_entry(file)
        command = _make_run_command(cmd_name, entry.spec, entry.error)
        single = typer.Typer(add_completion=False)
        single.command(cmd_name, help=command.__doc__)(command)
        click_command = typer.main.get_command(single)
        click_command.name = cmd_name
        return click_command


def build_study_app() -> typer.Typer:
    """The ``study`` sub-app: ``list``, ``show`` and one command per discovered study."""
    study_app = typer.Typer(cls=LazyStudyGroup, no_args_is_help=True,
                            help="Run, list and show studies (variants x LOSO folds on Ray "
                                 "Tune, tracked in MLflow).")
    study_app.command("list")(list_command)
    study_app.command("show")(show_command)
    return study_app


def register(app: typer.Typer) -> None:
    """Add ``medn study ...`` to ``app``."""
    app.add_typer(build_study_app(), name="study")
