"""``medn data prepare``: fill the preprocessing cache (flows of every clip) and summarise.

Human output: a summary table, every failed clip with its reason, the QC medians and the
outliers (``medn.data.qc.outliers``). ``--json``: exactly one JSON object on stdout (progress
and errors go to stderr).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medn.config import ConfigError
from orchestrator.cli.data_options import (
    AnnotationsOption,
    CacheDirOption,
    DataRootOption,
    DatasetOption,
    FramesOption,
    ProfileOption,
    SeedOption,
    SetOption,
    SizeOption,
    SubjectsOption,
    SynthProfileOption,
    TaskOption,
    WorkersOption,
    build_data_config,
)

if TYPE_CHECKING:  # torch and scikit-learn load only when a command runs
    from medn.data.dataset import Preparation

T = TypeVar("T")


def run_with_progress(console: Console, description: str,
                      work: Callable[[Callable[[int, int], None]], T], *,
                      transient: bool = False) -> T:
    """``work(progress)`` under a rich progress bar on ``console``; ``work`` calls
    ``progress(done, total)`` as clips are prepared. Returns what ``work`` returns."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=transient) as bar:
        job = bar.add_task(description, total=None)
        return work(lambda done, total: bar.update(job, completed=done, total=total))


def summary_table(prep: Preparation) -> Table:
    """The per-status counts of one preparation as a rich table."""
    cfg = prep.data_cfg
    table = Table(title=f"{cfg.dataset}: {len(prep.outcomes)} clips",
                  caption=f"task {cfg.task}, {cfg.size} px, T={cfg.frames}")
    table.add_column("status")
    table.add_column("clips", justify="right")
    computed, cached, failed = prep.count("computed"), prep.count("cached"), prep.count("failed")
    table.add_row("prepared (computed now)", str(computed))
    table.add_row("prepared (from cache)", str(cached))
    table.add_row("failed", str(failed), style="red" if failed else None)
    return table


def failure_table(prep: Preparation) -> Table:
    """Every failed clip with its sheet row and reason."""
    table = Table(title="failed clips")
    for name in ("clip", "sheet row", "reason"):
        table.add_column(name)
    for outcome in prep.failed:
        table.add_row(outcome.record.key, str(outcome.record.row), outcome.reason or "")
    return table


def qc_report(console: Console, prep: Preparation) -> None:
    """The QC medians and maxima, then every outlier clip with why."""
    from medn.data.qc import outliers, qc_rows, summary

    rows = qc_rows(prep)
    figures = summary(rows)
    if figures["flow_face_median"] is not None:
        parts = [f"face flow median {figures['flow_face_median']:.3f} px "
                 f"(max {figures['flow_face_max']:.3f})",
                 f"crop outside the image: median {figures['outside_share_median']:.1%}, "
                 f"max {figures['outside_share_max']:.1%}"]
        if figures["interocular_px_median"] is not None:
            parts.insert(0, f"inter-ocular distance median {figures['interocular_px_median']:.0f}"
                            " px")
        console.print("QC: " + "; ".join(parts))
    flagged = outliers(rows)
    if not flagged:
        console.print("QC: no outliers")
        return
    table = Table(title=f"QC outliers ({len(flagged)}): look at them with `medn data preview`")
    table.add_column("clip", no_wrap=True)
    table.add_column("why")
    for clip, why in flagged:
        table.add_row(clip, why, style="yellow")
    console.print(table)


def json_report(prep: Preparation) -> dict:
    """The object ``medn data prepare --json`` prints."""
    from medn.data.qc import qc_json_records

    cfg = prep.data_cfg
    return {"dataset": cfg.dataset, "task": cfg.task, "total": len(prep.outcomes),
            "prepared": len(prep.outcomes) - prep.count("failed"),
            "computed": prep.count("computed"), "cached": prep.count("cached"),
            "failed": [m.as_dict() for m in prep.missing()], "qc": qc_json_records(prep)}


def register(app: typer.Typer) -> None:
    """Add ``prepare`` to the ``medn data`` group."""

    @app.command("prepare")
    def prepare(
        dataset: DatasetOption = "synth",
        annotations: AnnotationsOption = None,
        data_root: DataRootOption = None,
        task: TaskOption = None,
        workers: WorkersOption = None,
        size: SizeOption = None,
        frames: FramesOption = None,
        cache_dir: CacheDirOption = None,
        profile: ProfileOption = "quick",
        synth_profile: SynthProfileOption = None,
        subjects: SubjectsOption = None,
        seed: SeedOption = None,
        set_: SetOption = None,
        json_out: Annotated[bool, typer.Option(
            "--json", help="print one JSON object (counts, failed clips, per-clip QC) on stdout")
                            ] = False,
    ) -> None:
        """Compute (or find in the cache) the TV-L1 flow of every clip, then print a summary
        with per-clip quality checks.

        Exits non-zero only if no clip could be prepared.
        """
        from medn.data.dataset import PreparationError, prepare_clips
        from medn.data.qc import dumps

        console = Console(stderr=json_out)
        errors = Console(stderr=True)
        try:
            data_cfg = build_data_config(dataset, annotations, data_root, task, size, frames,
                                         cache_dir, profile, synth_profile, subjects, seed, set_)
        except (ConfigError, ValueError) as err:
            errors.print(f"[red]error:[/red] {err}")
            raise typer.Exit(2) from None
        try:
            prep = run_with_progress(console, f"preparing {dataset}", lambda progress:
                                     prepare_clips(data_cfg, workers=workers, progress=progress))
        except (PreparationError, ValueError, FileNotFoundError) as err:
            errors.print(f"[red]error:[/red] {err}")
            raise typer.Exit(2) from None
        if json_out:
            print(dumps(json_report(prep)))
            if prep.count("failed") == len(prep.outcomes):
                raise typer.Exit(1)
            return
        console.print(summary_table(prep))
        qc_report(console, prep)
        if prep.failed:
            console.print(failure_table(prep))
            reasons = Counter((o.reason or "").split(":")[0] for o in prep.failed)
            console.print("failure kinds: " + ", ".join(f"{k} x{n}" for k, n in
                                                        reasons.most_common()))
        if prep.excluded:
            console.print(f"{len(prep.excluded)} annotated clips are left out by the "
                          f"task-{data_cfg.task} protocol or the sheet checks "
                          f"(listed by `medn data validate`).")
        console.print(f"cache: {Path(data_cfg.cache_dir).resolve()}")
        if prep.count("failed") == len(prep.outcomes):
            console.print("[red]no clip could be prepared[/red]")
            raise typer.Exit(1)
