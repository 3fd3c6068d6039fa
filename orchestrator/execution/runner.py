"""``run_study``: a study's (task, variant, fold) units on Ray Tune, every result in MLflow.

One run of a study command:

1. expands the spec into variants per task and validates every configuration;
2. prepares each distinct dataset ONCE on the driver (variants sharing ``data`` share it);
3. gets or creates each variant's parent run (``--fresh``: new ones), logs what the spool
   still holds from an earlier run, and asks MLflow which folds are FINISHED;
4. puts each dataset in Ray's object store once and runs ONE Tune experiment over the folds
   still missing (one trial per fold, ``max_failures`` retries, reused worker actors);
5. the driver-side callback persists each result to the writer's spool, logs it as the variant's
   child run and pools the parent once all its folds are in;
6. writes the study's summary run per task and prints the table and where to look.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

# MLflow's artifact download bars would break the live table (the writer reads fold results
# back to pool them).
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from medn.config import MednConfig
from medn.data.prepared import PreparedDataset
from medn.io import slug
from orchestrator.execution.units import VariantState, data_key
from orchestrator.studies.expand import study_configs
from orchestrator.studies.options import StudyOptions
from orchestrator.studies.spec import StudySpec, Variant, experiment_name

TAG_LABEL = "medn.label"
TAG_PRUNED = "medn.pruned"
TAG_STUDY = "medn.study"


class StudyError(RuntimeError):
    """A study that cannot run as asked; the message says what to change."""


@dataclass
class VariantOutcome:
    """How one (task, variant) ended: ``status`` is ``complete`` (pooled metrics logged),
    ``incomplete`` (some fold never finished: no pooled numbers), or ``pruned`` (search)."""

    task: int
    variant: str
    label: str
    experiment: str
    parent_run_id: str
    status: str
    folds_finished: int
    folds_total: int
    failed_attempts: int
    missing: list[str]
    pooled: dict[str, float] | None


@dataclass
class StudyOutcome:
    """The result of ``run_study``: one entry per (task, variant), the experiments written,
    the summary runs, and whether everything finished (the CLI exits non-zero if not)."""

    study: str
    variants: list[VariantOutcome]
    experiments: list[str]
    tracking_uri: str
    summary_run_ids: dict[int, str] = field(default_factory=dict)
    trained_folds: int = 0
    elapsed_s: float = 0.0
    ray_log: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Whether every variant is complete (pruned search trials count as done) and every
        result reached MLflow."""
        return not self.problems and all(v.status in ("complete", "pruned")
                                          for v in self.variants)


@dataclass
class StudyContext:
    """What a study run shares between its steps: options, tracking, datasets, output."""

    spec: StudySpec
    options: StudyOptions
    tracking_uri: str
    console: Console
    show_progress: bool
    cache_dir: Path
    run_name: str
    writers: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, PreparedDataset] = field(default_factory=dict)

    @property
    def ray_log_file(self) -> Path:
        """The file Ray's driver-side log lines go to."""
        return self.cache_dir / "logs" / f"ray-{self.run_name}.log"

    @property
    def tune_storage(self) -> Path:
        """Tune's experiment folder (trial state and error files; no checkpoints)."""
        return (self.cache_dir / "ray_results").resolve()

    def writer(self, experiment: str) -> Any:
        """The one ``RunTreeWriter`` of ``experiment`` (created on first use)."""
        if experiment not in self.writers:
            from orchestrator.tracking import RunTreeWriter

            self.writers[experiment] = RunTreeWriter(self.tracking_uri, experiment)
        return self.writers[experiment]

    def dataset(self, cfg: MednConfig) -> tuple[str, PreparedDataset]:
        """The prepared dataset of ``cfg.data``, prepared once per distinct data config."""
        key = data_key(cfg.data)
        if key not in self.datasets:
            from medn.data.dataset import prepare_dataset

            started = time.monotonic()
            self.console.print(f"preparing {cfg.data.dataset} ({cfg.data.task} classes, "
                               f"size {cfg.data.size}, {cfg.data.frames} frames) ...",
                               highlight=False)
            self.datasets[key] = prepare_dataset(cfg.data)
            data = self.datasets[key]
            self.console.print(f"  {len(data)} clips, {len(data.subject_ids)} subjects (folds), "
                               f"{data.num_aus} AUs in {time.monotonic() - started:.1f} s",
                               highlight=False)
        return key, self.datasets[key]


def make_context(spec: StudySpec, options: StudyOptions, console: Console | None = None,
                 show_progress: bool = True) -> StudyContext:
    """The shared state of one study run (tracking URI resolved, cache folder chosen)."""
    from orchestrator.tracking import resolve_tracking_uri

    cache_dir = Path(options.cache_dir or os.environ.get("MEDN_CACHE_DIR") or ".medn_cache")
    return StudyContext(spec=spec, options=options,
                        tracking_uri=resolve_tracking_uri(options.tracking_uri),
                        console=console or Console(), show_progress=show_progress,
                        cache_dir=cache_dir,
                        run_name=f"{slug(spec.name)}-{time.strftime('%Y%m%d-%H%M%S')}-"
                                 f"{os.getpid()}")


def variant_tags(spec: StudySpec, variant: Variant, extra: dict[str, str] | None = None
                 ) -> dict[str, str]:
    """The tags the study adds to a variant's parent run."""
    return {TAG_STUDY: spec.name, TAG_LABEL: variant.label, **(extra or {})}


def open_variant(ctx: StudyContext, task: int, variant: Variant, cfg: MednConfig,
                 extra_tags: dict[str, str] | None = None) -> VariantState:
    """The variant's state: its parent run (resumed or new) and the folds already FINISHED."""
    experiment = experiment_name(ctx.spec.name, ctx.options.dataset, task)
    writer = ctx.writer(experiment)
    key, data = ctx.dataset(cfg)
    tags = variant_tags(ctx.spec, variant, extra_tags)
    state = VariantState(task=task, name=variant.name, label=variant.label, config=cfg,
                         experiment=experiment, data_key=key, subjects=list(data.subject_ids))
    existing = None if ctx.options.fresh else writer.find_parent(variant.name, cfg, data, tags)
    if existing is not None:
        run = writer.call(writer.client.get_run, existing, what="get parent run")
        if run.info.status == "FINISHED" and "uf1" in run.data.metrics:
            state.parent_id = existing
            state.finished = set(writer.finished_folds(existing))
            if state.all_finished:  # done in an earlier run: nothing to reopen or re-pool
                state.finalized = True
                state.pooled = {k: v for k, v in run.data.metrics.items()
                                if k in ("uf1", "uar", "accuracy", "au_f1")}
                state.pruned = run.data.tags.get(TAG_PRUNED) == "true"
                return state
    state.parent_id = writer.parent_run(variant.name, cfg, data, tags, fresh=ctx.options.fresh)
    return state


def refresh_finished(ctx: StudyContext, states: list[VariantState]) -> None:
    """Ask MLflow which folds of each open variant have a FINISHED run."""
    for state in states:
        if not state.finalized:
            state.finished = set(ctx.writer(state.experiment).finished_folds(state.parent_id))


def run_study(spec: StudySpec, options: StudyOptions, *, console: Console | None = None,
              show_progress: bool = True) -> StudyOutcome:
    """Run (or resume) ``spec`` with ``options`` and return how every variant ended.

    Folds already FINISHED in MLflow are not trained again; results left in the spool by an
    earlier run are logged first. A search spec (``tune``) runs the Optuna search instead
    (``orchestrator.execution.search.run_search``).
    """
    from orchestrator.execution.recorder import ResultsNotLogged
    from orchestrator.tracking import SpoolError, TrackingUnavailable

    try:
        if spec.search is not None:
            from orchestrator.execution.search import run_search

            return run_search(spec, options, console=console, show_progress=show_progress)
        return _run_variants(spec, options, console, show_progress)
    except (TrackingUnavailable, ResultsNotLogged, SpoolError) as err:
        raise StudyError(str(err)) from None


def _run_variants(spec: StudySpec, options: StudyOptions, console: Console | None,
                  show_progress: bool) -> StudyOutcome:
    ctx = make_context(spec, options, console, show_progress)
    started = time.monotonic()
    states: list[VariantState] = []
    for task in options.tasks:
        for variant, cfg in study_configs(spec, options, task):
            states.append(open_variant(ctx, task, variant, cfg))
    from orchestrator.execution.execute import execute_states

    report = execute_states(ctx, states, title=f"study {spec.name}")
    return finish_study(ctx, states, started, report)


@dataclass
class ExecutionReport:
    """What one execution of units did: folds trained, Ray's log file, problems to report."""

    trained: int = 0
    ray_log: str = ""
    shown_live: bool = False
    problems: list[str] = field(default_factory=list)


def finish_study(ctx: StudyContext, states: list[VariantState], started: float,
                 report: ExecutionReport,
                 extra_summary: Callable[[StudyContext], None] | None = None) -> StudyOutcome:
    """Mark incomplete variants in MLflow, write each task's summary run, print the table and
    where to look; return the outcome."""
    from orchestrator.execution.progress import study_table
    from orchestrator.report import render, write_summary
    from orchestrator.report import study_table as report_table

    problems = list(report.problems)
    for state in states:
        if not state.finalized and not state.pruned and not report.problems:
            # some fold never finished: the writer tags the parent incomplete, no pooled numbers
            try:
                state.pooled = ctx.writer(state.experiment).finalize_parent(
                    state.parent_id, ctx.datasets[state.data_key])
                state.finalized = state.pooled is not None
            except Exception as err:  # noqa: BLE001 - reported, never hidden
                problems.append(f"{state.name}: could not update its parent run: {err}")
    summaries: dict[int, str] = {}
    experiments = list(dict.fromkeys(s.experiment for s in states))
    if not report.problems:
        for task in ctx.options.tasks:
            experiment = experiment_name(ctx.spec.name, ctx.options.dataset, task)
            try:
                summaries[task] = write_summary(ctx.writer(experiment), ctx.tracking_uri,
                                                ctx.spec, ctx.options.dataset, task)
            except Exception as err:  # noqa: BLE001 - reported, never hidden
                problems.append(f"summary of task {task}: {err}")
    console = ctx.console
    if not (report.shown_live and ctx.show_progress):  # the live table already shows it
        console.print(study_table(f"study {ctx.spec.name}", states,
                                  time.monotonic() - started))
    if not report.problems:
        for task in ctx.options.tasks:
            try:
                df = report_table(ctx.tracking_uri, ctx.spec.name, ctx.options.dataset, task,
                                  spec=ctx.spec)
                console.print(render(df, "table"))
            except Exception as err:  # noqa: BLE001
                problems.append(f"report of task {task}: {err}")
    outcome = StudyOutcome(
        study=ctx.spec.name, tracking_uri=ctx.tracking_uri, experiments=experiments,
        summary_run_ids=summaries, trained_folds=report.trained,
        elapsed_s=time.monotonic() - started, ray_log=report.ray_log, problems=problems,
        variants=[VariantOutcome(
            task=s.task, variant=s.name, label=s.label, experiment=s.experiment,
            parent_run_id=s.parent_id,
            status=("pruned" if s.pruned else "complete" if s.finalized and s.all_finished
                    else "incomplete"),
            folds_finished=len(s.finished), folds_total=len(s.subjects),
            failed_attempts=s.failed_attempts,
            missing=[x for x in s.subjects if x not in s.finished], pooled=s.pooled)
            for s in states])
    for experiment in experiments:
        console.print(f"MLflow experiment: [bold]{experiment}[/] in {ctx.tracking_uri}",
                      highlight=False)
    ui = ("medn ui" if ctx.options.tracking_uri is None
          else f"medn ui --tracking-uri {ctx.tracking_uri}")
    console.print(f"open it with: {ui}   (tables again: medn report {ctx.spec.name})",
                  highlight=False)
    if report.ray_log:
        console.print(f"Ray's log: {report.ray_log}", highlight=False)
    for problem in problems:
        console.print(f"[red]problem:[/] {problem}", highlight=False)
    incomplete = [v for v in outcome.variants if v.status == "incomplete"]
    for v in incomplete:
        console.print(f"[red]incomplete:[/] {v.variant} (task {v.task}): "
                      f"{len(v.missing)} fold(s) never finished ({', '.join(v.missing[:10])}); "
                      "no pooled numbers. Re-run the same command to train them.",
                      highlight=False)
    return outcome
