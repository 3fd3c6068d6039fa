"""``medn train``: one configuration's full LOSO, locally and without Ray, logged to MLflow."""

# No `from __future__ import annotations`: Typer reads these signatures at registration time.
import os
import time
import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from medn.config import ConfigError, MednConfig, load_config

console = Console()
err_console = Console(stderr=True)

UI_HINT = ("open the MLflow UI with `medn ui`, or `mlflow ui --backend-store-uri {uri}`"
           " and browse experiment {experiment!r}")


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def build_train_config(dataset: str | None, annotations: Path | None, data_root: Path | None,
                       task: int | None, config: Path | None, overrides: list[str],
                       profile: str | None) -> MednConfig:
    """The configuration of ``medn train``'s flags: profile < --config file < --set < the data
    flags given explicitly (--dataset, --task, --annotations, --data-root)."""
    flags: list[str] = []
    if dataset is not None:
        flags.append(f"data.dataset={dataset}")
    if task is not None:
        flags.append(f"data.task={task}")
    if annotations is not None:
        flags.append(f"data.annotations={annotations}")
    if data_root is not None:
        flags.append(f"data.data_root={data_root}")
    cfg = load_config(profile=profile, config_file=config, overrides=[*overrides, *flags])
    from medn.models import validate_model_config

    validate_model_config(cfg)
    return cfg


def default_threads(cfg: MednConfig) -> int:
    """torch CPU threads for ``cfg``: one for the small smoke/quick models (measured: a quick
    fold costs ~7x more CPU time on two threads than on one), all cores for ``paper``."""
    return 1 if cfg.profile in ("smoke", "quick") else (os.cpu_count() or 1)


def train(
    dataset: Annotated[str | None, typer.Option(
        help="synth, casme2, samm or casme3a", show_default="synth")] = None,
    annotations: Annotated[Path | None, typer.Option(
        help="the dataset's annotation sheet (not needed for synth)")] = None,
    data_root: Annotated[Path | None, typer.Option(
        help="the folder holding the dataset's frames (not needed for synth)")] = None,
    task: Annotated[int | None, typer.Option(
        help="number of emotion classes: 3, 4, 5 or 7", show_default="3")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="a YAML configuration file")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="KEY=VALUE override, e.g. --set loss.lambda_au=0.5 (repeatable)")] = None,
    profile: Annotated[str | None, typer.Option(
        help="smoke, quick or paper", show_default="quick")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI",
        show_default="$MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db")] = None,
    variant: Annotated[str, typer.Option(
        help="the name of this configuration (the parent run's name)")] = "default",
    experiment: Annotated[str | None, typer.Option(
        help="MLflow experiment", show_default="train/<dataset>-<task>class")] = None,
    fold: Annotated[list[str] | None, typer.Option(
        "--fold", help="train only this held-out subject (repeatable); pooled metrics need "
                       "every fold")] = None,
    fresh: Annotated[bool, typer.Option(
        "--fresh", help="start a new parent run instead of resuming the last one")] = False,
    threads: Annotated[int | None, typer.Option(
        min=1, help="CPU threads for torch; the small smoke/quick models run fastest on one",
        show_default="1 for smoke and quick, all cores for paper")] = None,
) -> None:
    """Train one configuration with leave-one-subject-out cross-validation and log it to MLflow.

    Re-running the same command resumes: folds already FINISHED in MLflow are skipped.
    """
    import torch

    from medn.data.dataset import PreparationError, prepare_dataset
    from medn.train import resolve_device, train_fold
    from orchestrator.tracking import RunTreeWriter, TrackingUnavailable, resolve_tracking_uri

    try:
        cfg = build_train_config(dataset, annotations, data_root, task, config, overrides or [],
                                 profile)
        device = resolve_device(cfg)
    except (ConfigError, RuntimeError) as err:
        raise _fail(str(err), 2) from None
    torch.set_num_threads(threads or default_threads(cfg))

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as progress:
        bar = progress.add_task(f"preparing {cfg.data.dataset} (task {cfg.data.task})",
                                total=None)
        try:
            data = prepare_dataset(
                cfg.data, progress=lambda done, total: progress.update(bar, completed=done,
                                                                       total=total))
        except (PreparationError, ConfigError, FileNotFoundError, ValueError) as err:
            raise _fail(str(err), 1) from None

    subjects = data.subject_ids
    if fold:
        unknown = [s for s in fold if s not in subjects]
        if unknown:
            raise _fail(f"--fold {', '.join(unknown)}: no such subject in {data.name}; "
                        f"subjects: {', '.join(subjects)}", 2)
        subjects = [s for s in subjects if s in set(fold)]

    uri = resolve_tracking_uri(tracking_uri)
    experiment = experiment or f"train/{data.name}-{data.task}class"
    console.print(f"[bold]medn train[/] {variant}: {data.name} task {data.task} "
                  f"({len(data)} clips, {len(data.subject_ids)} subjects, classes "
                  f"{', '.join(data.classes)}), profile {cfg.profile}, {cfg.optim.epochs} epochs, "
                  f"device {device}", highlight=False)
    log_seconds = 0.0
    train_seconds = 0.0
    failed: list[str] = []
    try:
        started = time.perf_counter()
        writer = RunTreeWriter(uri, experiment)
        parent = writer.parent_run(variant, cfg, data, {"medn.source": "medn train"},
                                   fresh=fresh)
        done = writer.finished_folds(parent)
        log_seconds += time.perf_counter() - started
        todo = [s for s in subjects if s not in done]
        if len(todo) < len(subjects):
            console.print(f"resuming run {parent}: {len(subjects) - len(todo)} fold(s) already "
                          f"finished, {len(todo)} to train", highlight=False)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=err_console) as progress:
            folds_bar = progress.add_task("folds", total=len(todo))
            epochs_bar = progress.add_task("epochs", total=cfg.optim.epochs)
            for subject in todo:
                progress.update(epochs_bar, completed=0,
                                description=f"fold {subject}: epochs")

                def on_epoch(epoch: int, metrics: dict[str, float],
                             subject: str = subject) -> None:
                    progress.update(epochs_bar, completed=epoch,
                                    description=f"fold {subject}: loss "
                                                f"{metrics['train/loss']:.3f} val UF1 "
                                                f"{metrics['val/uf1']:.3f}")

                try:
                    result = train_fold(cfg, data, subject, device=device, on_epoch=on_epoch)
                except Exception as err:  # a fold failure is recorded, the others go on
                    failed.append(subject)
                    err_console.print(f"[red]fold {subject} failed:[/] {err}", highlight=False)
                    writer.log_failed_fold(parent, subject, traceback.format_exc(), 1, {})
                    progress.advance(folds_bar)
                    continue
                train_seconds += result.seconds
                t0 = time.perf_counter()
                writer.log_fold(parent, result, {})
                log_seconds += time.perf_counter() - t0
                progress.advance(folds_bar)
                last = result.history[-1]
                progress.console.print(
                    f"  fold {subject}: {len(result.clips)} clips, val UF1 {last['val/uf1']:.3f}"
                    f" UAR {last['val/uar']:.3f} ({result.seconds:.1f} s)", highlight=False)
        t0 = time.perf_counter()
        pooled = writer.finalize_parent(parent, data)
        log_seconds += time.perf_counter() - t0
    except TrackingUnavailable as err:
        raise _fail(str(err), 1) from None

    _print_summary(pooled, data.subject_ids, writer.finished_folds(parent), parent, experiment,
                   uri, train_seconds, log_seconds)
    if failed:
        raise _fail(f"fold(s) {', '.join(failed)} failed (kept as FAILED runs); re-run the same "
                    "command to retry them", 1)


def _print_summary(pooled: dict[str, float] | None, subjects: list[str], done: dict[str, str],
                   parent: str, experiment: str, uri: str, train_seconds: float,
                   log_seconds: float) -> None:
    if pooled is None:
        missing = [s for s in subjects if s not in done]
        console.print(f"[yellow]incomplete:[/] {len(missing)} of {len(subjects)} folds have no "
                      f"finished run ({', '.join(missing)}); no pooled metrics were logged. "
                      "Run without --fold (or re-run) to complete them.", highlight=False)
    else:
        table = Table(title=f"pooled over {len(subjects)} LOSO folds")
        table.add_column("metric")
        table.add_column("value", justify="right")
        names = {"uf1": "UF1", "uar": "UAR", "accuracy": "accuracy", "au_f1": "AU F1 (mean)"}
        for key, name in names.items():
            if key in pooled:
                table.add_row(name, f"{pooled[key]:.4f}")
        console.print(table)
    if train_seconds > 0:
        console.print(f"training {train_seconds:.1f} s, MLflow logging {log_seconds:.1f} s "
                      f"({100 * log_seconds / (train_seconds + log_seconds):.1f}% of the time)",
                      highlight=False)
    console.print(f"MLflow run {parent} in experiment {experiment!r} at {uri}", highlight=False)
    console.print(UI_HINT.format(uri=uri, experiment=experiment), highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``medn train`` to ``app``."""
    app.command("train")(train)
