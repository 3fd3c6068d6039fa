"""``medn report STUDY``: a study's table re-read from MLflow, the paper's numbers beside it."""

# No `from __future__ import annotations`: Typer reads the signature.
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def report_command(
    ctx: typer.Context,
    study: Annotated[str, typer.Argument(help="the study's name, e.g. ablation-components")],
    dataset: Annotated[str, typer.Option(help="the dataset the study ran on")] = "synth",
    task: Annotated[int, typer.Option(help="the label protocol (3, 4, 5 or 7 classes)")] = 3,
    fmt: Annotated[str, typer.Option(
        "--format", help="table (rich), markdown or csv")] = "table",
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    ] = None,
    profile: Annotated[str | None, typer.Option(
        help="only runs of this profile (default: each variant's newest run, any profile)")
    ] = None,
) -> None:
    """Print a study's table from MLflow (pooled UF1/UAR per variant, folds done, status)."""
    from orchestrator.cli.common import fail
    from orchestrator.report import FORMATS, ReportError, render, study_table
    from orchestrator.studies.discover import study_files
    from orchestrator.tracking import (
        TrackingStoreError,
        configure_mlflow_environment,
        resolve_tracking_uri,
    )
    from orchestrator.tracking.store import redact_text, redact_uri

    if fmt not in FORMATS:
        raise fail(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    configure_mlflow_environment(reader=True)  # a read fails in seconds, not minutes
    try:
        uri = resolve_tracking_uri(tracking_uri)
    except TrackingStoreError as exc:
        raise fail(str(exc), 2) from None
    known = study_files()
    db = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    no_store = db is not None and not Path(db).is_file()
    if study not in known and (no_store or not _store_has_study(uri, study)):
        raise fail(f"no study named {study!r} (known: {', '.join(known) or 'none'})", 2)
    if no_store:
        raise fail(f"no MLflow store at {db} ({uri}); run `medn study {study}` first, or pass "
                   "--tracking-uri", 1)
    from orchestrator.main_results import main_results_spec, main_results_table
    from orchestrator.main_results import render as render_main_results

    # Tables III/IV: every dataset and task of the study at once, unless --dataset or --task
    # asks for one experiment's table
    given = [getattr(ctx.get_parameter_source(name), "name", "DEFAULT")
             for name in ("dataset", "task")]
    main_spec = None if set(given) - {"DEFAULT"} else main_results_spec(study)
    try:
        if main_spec is not None:
            df, render = main_results_table(uri, main_spec, profile), render_main_results
        else:
            df = study_table(uri, study, dataset, task, profile=profile)
    except ReportError as exc:
        raise fail(redact_text(str(exc)), 1) from None
    except Exception as exc:
        raise _store_failure(exc, redact_uri(uri)) from None
    out = render(df, fmt)
    if isinstance(out, str):
        typer.echo(out, nl=False)
    else:
        Console(width=max(Console().width, 120)).print(out)


def _store_has_study(uri: str, study: str) -> bool:
    """Whether the store holds an experiment of ``study`` (a spec removed since it ran)."""
    from orchestrator.tracking import open_client

    quoted = study.replace("'", "''")
    try:
        experiments = open_client(uri).search_experiments(
            filter_string=f"name LIKE '{quoted}/%'", max_results=1)
    except Exception as exc:
        raise _store_failure(exc, uri) from None
    return bool(experiments)


def _store_failure(exc: Exception, shown_uri: str) -> typer.Exit:
    """A failed read as an ``error:`` line: a store that cannot be reached exits 1; any other
    error is a bug and propagates."""
    from orchestrator.cli.common import fail
    from orchestrator.tracking.retry import classify, one_line
    from orchestrator.tracking.store import redact_uri

    shown_uri = redact_uri(shown_uri)
    if classify(exc) != "transient":
        raise exc
    what = ("the MLflow tracking server" if shown_uri.startswith(("http://", "https://"))
            else "the MLflow tracking store")
    return fail(f"cannot reach {what} at {shown_uri} ({one_line(exc, 200)}); is it running? "
                "Pass another --tracking-uri, or retry when it is back", 1)


def register(app: typer.Typer) -> None:
    """Add ``medn report`` to ``app``."""
    app.command("report")(report_command)
