"""The state one study run shares between its steps: options, tracking, prepared data, output.

The runner, the executors and the search all work on a ``StudyContext``; it lives in its own
module so that none of them imports another to reach it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from medn.config import ConfigError, MednConfig
from medn.data.prepared import PreparedDataset
from medn.io import slug
from orchestrator.execution import interrupts
from orchestrator.execution.units import VariantState, data_key
from orchestrator.studies.options import StudyOptions
from orchestrator.studies.spec import StudySpec, Variant, experiment_name

TAG_LABEL = "medn.label"
TAG_PRUNED = "medn.pruned"
TAG_STUDY = "medn.study"
TAG_MISSING = "medn.missing_clips"
TAG_SOURCE = "medn.source"
MISSING_SHOWN = 20  # failed clips listed on the console; MLflow keeps the count


class StudyError(RuntimeError):
    """A study that cannot go on; the message says what happened and what to do."""


class StudyInputError(StudyError):
    """A study that cannot start because of its input (data, flags, store): exit code 2."""


@dataclass
class ExecutionReport:
    """What one execution of units did: folds trained, Ray's log file, problems to report."""

    trained: int = 0
    ray_log: str = ""
    shown_live: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass
class StudyContext:
    """What a study run shares between its steps: options, tracking, datasets, output.

    ``executor`` is ``"ray"`` (Ray Tune, the default of ``medn study``) or ``"local"`` (this
    process, one fold after another: ``medn train``).
    """

    spec: StudySpec
    options: StudyOptions
    tracking_uri: str
    console: Console
    show_progress: bool
    cache_dir: Path
    run_name: str
    executor: str = "ray"
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

    def experiment(self, task: int) -> str:
        """The MLflow experiment of ``task`` (``--experiment`` of medn train, else the
        study's ``<study>/<dataset>-<task>class``)."""
        if self.options.experiment:
            return (self.options.experiment if len(self.options.tasks) == 1
                    else f"{self.options.experiment}/{self.options.dataset}-{task}class")
        return experiment_name(self.spec.name, self.options.dataset, task)

    def writer(self, experiment: str) -> Any:
        """The one ``RunTreeWriter`` of ``experiment`` (created on first use)."""
        if experiment not in self.writers:
            from orchestrator.tracking import RunTreeWriter

            self.writers[experiment] = RunTreeWriter(self.tracking_uri, experiment)
        return self.writers[experiment]

    def dataset(self, cfg: MednConfig) -> tuple[str, PreparedDataset]:
        """The prepared dataset of ``cfg.data``, prepared once per distinct data config.

        Every input problem (no sheet, a bad frame, an empty folder, one subject) becomes a
        ``StudyInputError`` naming the file or flag."""
        key = data_key(cfg.data)
        if key not in self.datasets:
            started = time.monotonic()
            self.console.print(f"preparing {cfg.data.dataset} ({cfg.data.task} classes, "
                               f"size {cfg.data.size}, {cfg.data.frames} frames) ...",
                               highlight=False)
            data = _prepare(cfg, self.options.allow_missing)
            self.datasets[key] = data
            self.console.print(f"  {len(data)} clips, {len(data.subject_ids)} subjects (folds), "
                               f"{data.num_aus} AUs in {time.monotonic() - started:.1f} s",
                               highlight=False)
            missing = missing_clips(data)
            if missing:
                lines = [f"    {m.clip} (sheet row {m.row}): {m.reason}"
                         for m in missing[:MISSING_SHOWN]]
                more = len(missing) - MISSING_SHOWN
                self.console.print(
                    f"[yellow]  {len(missing)} clip(s) missing[/] (--allow-missing; the runs "
                    f"are tagged {TAG_MISSING}={len(missing)}):\n" + escape("\n".join(lines))
                    + (f"\n    ... and {more} more" if more > 0 else ""), highlight=False)
        return key, self.datasets[key]


def missing_clips(data: PreparedDataset) -> tuple[Any, ...]:
    """The clips left out of ``data`` by ``--allow-missing`` (empty when complete)."""
    return tuple(getattr(data, "missing", ()) or ())


def _prepare(cfg: MednConfig, allow_missing: bool) -> PreparedDataset:
    from medn.data.dataset import PreparationError, prepare_dataset

    what = f"{cfg.data.dataset} (task {cfg.data.task})"
    try:
        data = prepare_dataset(cfg.data, allow_missing=allow_missing)
    except PreparationError as err:
        raise StudyInputError(f"preparing {what}: {err}") from None
    except (ConfigError, OSError, ValueError, KeyError) as err:
        raise StudyInputError(f"preparing {what}: {type(err).__name__}: {err}") from None
    subjects = sorted(set(data.subjects))
    if len(subjects) < 2:
        raise StudyInputError(
            f"{what}: leave-one-subject-out needs at least 2 subjects; the data has "
            f"{len(subjects)} ({', '.join(subjects)}) with {len(data)} clips "
            f"{'in ' + str(cfg.data.annotations) if cfg.data.annotations else ''}".rstrip())
    return data


def make_context(spec: StudySpec, options: StudyOptions, console: Console | None = None,
                 show_progress: bool = True, executor: str = "ray") -> StudyContext:
    """The shared state of one study run (tracking URI resolved, cache folder chosen)."""
    from orchestrator.tracking import resolve_tracking_uri

    cache_dir = Path(options.cache_dir or os.environ.get("MEDN_CACHE_DIR") or ".medn_cache")
    return StudyContext(spec=spec, options=options,
                        tracking_uri=resolve_tracking_uri(options.tracking_uri),
                        console=console or Console(), show_progress=show_progress,
                        cache_dir=cache_dir, executor=executor,
                        run_name=f"{slug(spec.name)}-{time.strftime('%Y%m%d-%H%M%S')}-"
                                 f"{os.getpid()}")


def variant_tags(ctx: StudyContext, variant: Variant, data: PreparedDataset,
                 extra: dict[str, str] | None = None) -> dict[str, str]:
    """The tags the study adds to a variant's parent run."""
    tags = {TAG_STUDY: ctx.spec.name, TAG_LABEL: variant.label}
    if ctx.executor == "local":
        tags[TAG_SOURCE] = "medn train"
    missing = missing_clips(data)
    if missing:  # the fold runs inherit it from the parent
        tags[TAG_MISSING] = str(len(missing))
    return {**tags, **(extra or {})}


def open_variant(ctx: StudyContext, task: int, variant: Variant, cfg: MednConfig,
                 extra_tags: dict[str, str] | None = None) -> VariantState:
    """The variant's state: its data prepared, its existing parent run (unless ``--fresh``)
    and the folds already FINISHED there. Nothing is created or reopened in MLflow here:
    ``open_parents`` does that once every check of the run has passed, so that a refused run
    leaves no empty or RUNNING parent behind."""
    from orchestrator.tracking import describe_variant

    interrupts.raise_if_received()
    experiment = ctx.experiment(task)
    writer = ctx.writer(experiment)
    key, data = ctx.dataset(cfg)
    tags = variant_tags(ctx, variant, data, extra_tags)
    state = VariantState(task=task, name=variant.name, label=variant.label, config=cfg,
                         experiment=experiment, data_key=key, subjects=list(data.subject_ids))
    state.parent_tags = tags
    state.description = describe_variant(variant.name, variant.label, variant.overrides)
    if ctx.options.folds:
        unknown = [s for s in ctx.options.folds if s not in state.subjects]
        if unknown:
            raise StudyInputError(f"--fold {', '.join(unknown)}: no such subject in "
                                  f"{data.name}; subjects: {', '.join(state.subjects)}")
        state.only = set(ctx.options.folds)
    existing = None if ctx.options.fresh else writer.find_parent(variant.name, cfg, data, tags)
    if existing is not None:
        state.parent_id = existing
        state.finished = set(writer.finished_folds(existing))
        parent = writer.parent_state(existing)
        if parent.pooled is not None and state.all_finished:
            # done in an earlier run: nothing to reopen or re-pool
            state.finalized = True
            state.pooled = parent.pooled
            state.pruned = parent.tags.get(TAG_PRUNED) == "true"
    return state


def open_parents(ctx: StudyContext, states: list[VariantState]) -> None:
    """Create (or resume and set RUNNING) the parent run of every state that will train."""
    for state in states:
        if state.opened or state.finalized or state.pruned:
            continue
        with interrupts.deferred():  # a parent that exists is always one this run can end
            state.parent_id = ctx.writer(state.experiment).parent_run(
                state.name, state.config, ctx.datasets[state.data_key], state.parent_tags,
                fresh=ctx.options.fresh, description=state.description or None)
            state.opened = True


def refresh_finished(ctx: StudyContext, states: list[VariantState]) -> None:
    """Ask MLflow which folds of each open variant have a FINISHED run."""
    for state in states:
        if not state.finalized and state.parent_id:
            state.finished = set(ctx.writer(state.experiment).finished_folds(state.parent_id))


def end_interrupted(ctx: StudyContext, states: list[VariantState]) -> None:
    """After Ctrl-C or SIGTERM: end every parent run this run opened and did not finish as
    KILLED (so none is left RUNNING); their finished folds stay and a re-run resumes them."""
    for state in states:
        if state.opened and not state.finalized:
            try:
                ctx.writer(state.experiment).terminate(state.parent_id, "KILLED")
            except Exception as err:  # noqa: BLE001 - the interruption is what gets reported
                ctx.console.print(f"[red]could not end parent run {state.parent_id}:[/] {err}",
                                  highlight=False)
