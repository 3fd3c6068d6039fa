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
    from rich.markup import escape

    from orchestrator.report import FORMATS, ReportError, render, study_table
    from orchestrator.tracking import resolve_tracking_uri

    err = Console(stderr=True)
    if fmt not in FORMATS:
        err.print(f"[bold red]error:[/] --format {fmt!r}: expected one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    uri = resolve_tracking_uri(tracking_uri)
    db = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    if db and db != ":memory:" and not Path(db).is_file():
        err.print(f"[bold red]error:[/] no MLflow store at {escape(db)} ({escape(uri)}); run "
                  f"`medn study {escape(study)}` first, or pass --tracking-uri", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(1)
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
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    out = render(df, fmt)
    if isinstance(out, str):
        typer.echo(out, nl=False)
    else:
        Console(width=max(Console().width, 120)).print(out)


def register(app: typer.Typer) -> None:
    """Add ``medn report`` to ``app``."""
    app.command("report")(report_command)
