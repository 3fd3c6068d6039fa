"""How a study run ended: one ``VariantOutcome`` per (task, variant), and the end of a run
(incomplete parents marked, summary runs written, the table and where to look printed)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.markup import escape

from orchestrator.execution.context import ExecutionReport, StudyContext
from orchestrator.execution.units import VariantState


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
        if (not state.finalized and not state.pruned and state.parent_id
                and not report.problems):
            # some fold never finished: the writer tags the parent incomplete, no pooled numbers
            try:
                state.pooled = ctx.writer(state.experiment).finalize_parent(
                    state.parent_id, ctx.datasets[state.data_key])
                state.finalized = state.pooled is not None
            except Exception as err:  # noqa: BLE001 - reported, never hidden
                problems.append(f"{state.name}: could not update its parent run: {err}")
    summaries: dict[int, str] = {}
    experiments = list(dict.fromkeys(s.experiment for s in states))

    def own_parents(task: int) -> set[str] | None:
        # a run's table is made of the parents it made or resumed, never of another profile's
        # newer runs in the same experiment; a search's table holds every trial ever run
        if ctx.spec.search is not None:
            return None
        return {s.parent_id for s in states if s.task == task and s.parent_id}

    if not report.problems and ctx.executor != "local":  # one configuration: no summary
        for task in ctx.options.tasks:
            experiment = ctx.experiment(task)
            try:
                summaries[task] = write_summary(ctx.writer(experiment), ctx.tracking_uri,
                                                ctx.spec, ctx.options.dataset, task,
                                                parent_ids=own_parents(task))
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
                                  spec=ctx.spec, parent_ids=own_parents(task))
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
        console.print(f"MLflow experiment: [bold]{escape(experiment)}[/] in {ctx.tracking_uri}",
                      highlight=False)
        link = experiment_link(ctx, experiment)
        if link:
            console.print(f"  runs: {link}", highlight=False, soft_wrap=True)
    ui = ("medn ui" if ctx.options.tracking_uri is None
          else f"medn ui --tracking-uri {ctx.tracking_uri}")
    console.print(f"open it with: {ui}   (tables again: medn report {ctx.spec.name})",
                  highlight=False)
    if report.ray_log:
        console.print(f"Ray's log: {report.ray_log}", highlight=False)
    for problem in problems:
        console.print(f"[red]problem:[/] {problem}", highlight=False)
    incomplete = [v for v in outcome.variants if v.status == "incomplete"]
    hint = ("Run without --fold to train them all." if ctx.options.folds
            else "Re-run the same command to train them.")
    for v in incomplete:
        console.print(f"[yellow]incomplete:[/] {v.variant} (task {v.task}): "
                      f"{len(v.missing)} of {v.folds_total} folds have no finished run "
                      f"({', '.join(v.missing[:10])}{' ...' if len(v.missing) > 10 else ''}); "
                      f"no pooled metrics were logged. {hint}", highlight=False)
    return outcome


def experiment_link(ctx: StudyContext, experiment: str) -> str | None:
    """The address of ``experiment``'s runs in the MLflow UI (machine-learning view), for a
    store ``medn ui`` serves on its default port or for a tracking server."""
    writer = ctx.writers.get(experiment)
    if writer is None:
        return None
    link = writer.ui_link()
    uri = ctx.tracking_uri
    if uri.startswith(("http://", "https://")):  # the tracking server serves the UI itself
        return uri.rstrip("/") + link[link.index("/#/"):]
    return link
