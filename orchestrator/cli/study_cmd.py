"""``medn study``: list and show the study specs, and one command per study that runs it."""

# No `from __future__ import annotations`: Typer reads these signatures at registration time,
# and the per-study commands are closures.
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.paper_numbers import PAPER_TITLES
from orchestrator.studies.discover import StudyEntry, discover_studies, find_study
from orchestrator.studies.options import StudyOptions, StudyOptionsError
from orchestrator.studies.spec import StudySpec, StudySpecError

console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _value(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _size(spec: StudySpec) -> str:
    if spec.search is not None:
        return f"search, {spec.search.trials} trials"
    return str(len(spec.variants_for()))


def list_command() -> None:
    """List the studies (shipped ones and ./studies/*.yaml), with invalid files and why."""
    entries = discover_studies(check_model=True)
    table = Table(title="Studies", show_lines=False)
    for column in ("name", "paper", "variants", "tasks", "description", "from"):
        table.add_column(column, overflow="fold")
    invalid: list[StudyEntry] = []
    for entry in entries.values():
        if entry.spec is None:
            invalid.append(entry)
            table.add_row(f"[red]{entry.name}[/]", "", "[red]invalid[/]", "",
                          "[red]see below[/]", str(entry.path))
            continue
        spec = entry.spec
        table.add_row(spec.name, PAPER_TITLES.get(spec.paper or "", "-"), _size(spec),
                      ",".join(map(str, spec.tasks)), escape(spec.description),
                      entry.origin if entry.origin == "builtin" else str(entry.path))
    console.print(table)
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
        raise _fail(str(err)) from None
    console.print(f"[bold]{spec.name}[/]: {spec.description}")
    console.print(f"  paper: {PAPER_TITLES.get(spec.paper or '', 'none')}   tasks: "
                  f"{', '.join(map(str, spec.tasks))} (change with --task)   metric: {spec.metric}"
                  f"   file: {spec.source}", highlight=False)
    if spec.base:
        console.print(f"  base (over the --profile): {json.dumps(spec.base)}", highlight=False)
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


def _make_run_command(entry: StudyEntry):  # noqa: ANN202 - a Typer command function
    spec_name = entry.name
    is_search = entry.spec is not None and entry.spec.search is not None

    def run_command(
        dataset: Annotated[str, typer.Option(
            help="synth (generated, no files needed), casme2, samm or casme3a")] = "synth",
        annotations: Annotated[Path | None, typer.Option(
            help="the dataset's annotation sheet (real datasets)")] = None,
        data_root: Annotated[Path | None, typer.Option(
            help="the dataset's frames folder (real datasets)")] = None,
        task: Annotated[list[int] | None, typer.Option(
            "--task", help="label protocol: 3, 4, 5 or 7 classes; repeatable "
                           "(default: the study's tasks)")] = None,
        profile: Annotated[str, typer.Option(help="smoke, quick or paper")] = "quick",
        address: Annotated[str | None, typer.Option(
            help="an existing Ray cluster (default: RAY_ADDRESS, else a local Ray)")] = None,
        tracking_uri: Annotated[str | None, typer.Option(
            help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)"
        )] = None,
        gpus_per_trial: Annotated[float | None, typer.Option(
            help="GPUs per (variant, fold) trial, e.g. 0.25 packs four folds on one GPU "
                 "(default: 1 when the cluster has GPUs, else 0)")] = None,
        cpus_per_trial: Annotated[float, typer.Option(help="CPUs per trial")] = 1.0,
        max_concurrent: Annotated[int | None, typer.Option(
            help="most trials running at once (default: as many as resources allow)")] = None,
        max_failures: Annotated[int, typer.Option(
            help="retries of a failed fold before it counts as failed")] = 2,
        fresh: Annotated[bool, typer.Option(
            "--fresh", help="start a new study run beside the old one instead of resuming")
        ] = False,
        set_: Annotated[list[str] | None, typer.Option(
            "--set", help="KEY=VALUE configuration override for every variant; repeatable")
        ] = None,
        cache_dir: Annotated[Path | None, typer.Option(
            help="preprocessing cache (default: .medn_cache)")] = None,
        trials: Annotated[int | None, typer.Option(
            hidden=not is_search, help="trial budget of the search (default: the spec's)")
        ] = None,
    ) -> None:
        try:
            spec = find_study(spec_name)
            if trials is not None and spec.search is None:
                raise StudyOptionsError(f"--trials: study {spec_name!r} has fixed variants, "
                                        "not a search")
            options = StudyOptions(
                dataset=dataset, annotations=annotations, data_root=data_root,
                tasks=list(task) if task else list(spec.tasks), profile=profile,
                address=address, tracking_uri=tracking_uri, gpus_per_trial=gpus_per_trial,
                cpus_per_trial=cpus_per_trial, max_concurrent=max_concurrent,
                max_failures=max_failures, fresh=fresh, sets=list(set_ or []),
                cache_dir=cache_dir, trials=trials)
        except (StudySpecError, StudyOptionsError) as err:
            raise _fail(str(err)) from None
        from orchestrator.execution import StudyError, run_study  # lazy: Ray/MLflow are slow

        try:
            outcome = run_study(spec, options)
        except (StudyError, StudySpecError, StudyOptionsError) as err:
            raise _fail(str(err), code=1) from None
        if not getattr(outcome, "complete", False):
            raise _fail(f"study {spec_name!r} is incomplete; run the same command again to "
                        "resume it", code=1)

    description = (entry.spec.description if entry.spec is not None
                   else f"(invalid spec: {entry.path}; see `medn study list`)")
    run_command.__doc__ = f"Run the study {spec_name!r}: {description}"
    return run_command


def build_study_app() -> typer.Typer:
    """The ``study`` sub-app: ``list``, ``show`` and one command per discovered study."""
    study_app = typer.Typer(help="Run, list and show studies (variants x LOSO folds on Ray "
                                 "Tune, tracked in MLflow).", no_args_is_help=True)
    study_app.command("list")(list_command)
    study_app.command("show")(show_command)
    for entry in discover_studies().values():
        command = _make_run_command(entry)
        study_app.command(entry.name, help=command.__doc__)(command)
    return study_app


def register(app: typer.Typer) -> None:
    """Add ``medn study ...`` to ``app``."""
    app.add_typer(build_study_app(), name="study")
