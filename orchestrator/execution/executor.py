"""Training a set of variants' pending folds, fed to the recorder: on Ray Tune (one experiment,
one trial per fold) or locally in this process (``medn train``: one fold after another).

Both executors go through the same steps: log what the spool holds, ask MLflow which folds
are FINISHED, train the rest, hand every result and failure to the one ``StudyRecorder``.
"""

from __future__ import annotations

import math
import os
import threading
import traceback
from collections.abc import Callable
from typing import Any

from medn.config import SMALL_PROFILES
from orchestrator.execution import interrupts
from orchestrator.execution.context import (
    ExecutionReport,
    StudyContext,
    StudyError,
    StudyInputError,
    open_parents,
    refresh_finished,
)
from orchestrator.execution.faults import maybe_inject_fault
from orchestrator.execution.progress import LiveProgress
from orchestrator.execution.recorder import ResultsNotLogged, StudyRecorder
from orchestrator.execution.units import Unit, VariantState


def default_threads(profile: str) -> int:
    """torch CPU threads of the local executor: one for the small models of
    ``SMALL_PROFILES`` (measured: a quick fold costs ~7x more CPU time on two threads than on
    one), all cores for the paper-size ones."""
    return 1 if profile in SMALL_PROFILES else (os.cpu_count() or 1)


def execute_states(ctx: StudyContext, states: list[VariantState], title: str,
                   on_fold: Callable[[VariantState, str, dict[str, Any]], bool] | None = None,
                   ) -> ExecutionReport:
    """Log what the spool holds, then train every pending fold of ``states``.

    ``on_fold(state, subject, fold_dict)`` is called for each result received; when it returns
    True every trial still running or pending is stopped (the search prunes this way).
    """
    report = ExecutionReport()
    stop = threading.Event()

    def fold_hook(state: VariantState, subject: str, fold: dict[str, Any]) -> None:
        if on_fold is not None and on_fold(state, subject, fold):
            stop.set()

    progress = LiveProgress(title, states, console=ctx.console, enabled=ctx.show_progress)
    recorder = StudyRecorder(
        states, writers=ctx.writers, datasets=ctx.datasets,
        tags=lambda s: dict(s.tags), on_fold=fold_hook, on_change=progress.refresh)
    epoch_note: list[str] = [""]

    def note() -> str:
        if recorder.tracking_down:
            return f"MLflow unreachable: results wait in the spool ({recorder.last_error[:80]})"
        return epoch_note[0]

    progress.note = note
    # results an earlier run trained but could not log: logged now, never retrained
    if not recorder.flush(force=True):
        raise ResultsNotLogged(f"MLflow at {ctx.tracking_uri} is unreachable ("
                               f"{recorder.last_error}); start it and re-run the same command")
    refresh_finished(ctx, states)
    recorder.flush(force=True)  # variants whose folds were all in: pooled now
    for state in states:
        if state.finished and not state.pruned:
            ctx.console.print(f"resuming {state.name} (run {state.parent_id}): "
                              f"{len(state.finished)} of {len(state.subjects)} folds already "
                              f"finished, {len(state.pending)} to train", highlight=False)
    units = [unit for state in states if not state.pruned for unit in state.units()]
    if units:
        with progress:
            report.shown_live = True
            try:
                if ctx.executor == "local":
                    ctx.console.print(f"{len(units)} fold trainings to run", highlight=False)
                    _run_local(ctx, units, recorder, stop, epoch_note, progress.refresh)
                else:
                    report.ray_log = str(ctx.ray_log_file)
                    ctx.console.print(f"{len(units)} fold trainings to run; Ray's log: "
                                      f"{ctx.ray_log_file}", highlight=False)
                    _run_tune(ctx, units, recorder, stop)
            except KeyboardInterrupt:
                recorder.flush(force=True)  # what was received reaches MLflow, else the spool
                raise
            try:
                recorder.finish()
            except ResultsNotLogged as err:
                report.problems.append(str(err))
    report.problems.extend(recorder.problems)
    report.trained = sum(len(s.received) for s in states)
    return report


def _run_local(ctx: StudyContext, units: list[Unit], recorder: StudyRecorder,
               stop: threading.Event, epoch_note: list[str], refresh: Callable[[], None]) -> None:
    """Train ``units`` in this process (no Ray): one fold after another, or packs of folds
    trained as one stacked model where ``--pack`` asks for it (``auto``: on a GPU only)."""
    import torch

    from medn.train import resolve_device
    from orchestrator.execution.packs import make_packs, parse_pack

    first = units[0].medn_config()
    try:
        device = resolve_device(first)
    except RuntimeError as err:
        raise StudyInputError(str(err)) from None
    torch.set_num_threads(ctx.options.threads or default_threads(first.profile))
    packs = make_packs(units, parse_pack(ctx.options.pack), slots=1,
                       on_gpu=device.type == "cuda")
    if len(packs) < len(units):
        ctx.console.print(f"{len(units)} folds in {len(packs)} pack"
                          f"{'s' * (len(packs) > 1)} (up to "
                          f"{max(len(p.subjects) for p in packs)} folds each)", highlight=False)
    by_fold = {(u.task, u.variant, u.subject): u for u in units}
    open_parents(ctx, list(recorder.states.values()))
    for pack in packs:
        interrupts.raise_if_received()  # a signal whose exception a library swallowed
        if stop.is_set():
            break
        members = [by_fold[(pack.task, pack.variant, s)] for s in pack.subjects]
        if len(members) == 1:
            _train_one_local(ctx, members[0], recorder, device, epoch_note, refresh)
        else:
            _train_pack_local(ctx, members, recorder, device, epoch_note, refresh)
    epoch_note[0] = ""


def _train_one_local(ctx: StudyContext, unit: Unit, recorder: StudyRecorder, device: Any,
                     epoch_note: list[str], refresh: Callable[[], None]) -> None:
    """One fold with ``train_fold``; its result or its failure goes to the recorder."""
    from medn.train import train_fold

    cfg = unit.medn_config()
    recorder.started(unit.task, unit.variant, unit.subject)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        epoch_note[0] = (f"fold {unit.subject}: epoch {epoch}/{cfg.optim.epochs}, loss "
                         f"{metrics['train/loss']:.3f}, val UF1 {metrics['val/uf1']:.3f}")
        refresh()
        interrupts.raise_if_received()

    try:
        maybe_inject_fault(unit.variant, unit.subject)
        result = train_fold(cfg, ctx.datasets[unit.data_key], unit.subject, device=device,
                            on_epoch=on_epoch)
    except Exception:  # a fold failure is recorded (a FAILED run); the others go on
        with interrupts.deferred():
            recorder.failed(unit.task, unit.variant, unit.subject, traceback.format_exc(), 1,
                            final=True)
        return
    with interrupts.deferred():  # a fold run is logged whole, never cut half-way
        recorder.received(unit.task, unit.variant, unit.subject, result.to_dict())


def _train_pack_local(ctx: StudyContext, members: list[Unit], recorder: StudyRecorder,
                      device: Any, epoch_note: list[str], refresh: Callable[[], None]) -> None:
    """Folds of one variant as stacked models (``train_in_packs``, in parts that fit the
    device); every finished fold's result and every failure goes to the recorder."""
    from medn.packing import PackError, max_pack_size, train_in_packs

    first = members[0]
    cfg = first.medn_config()
    data = ctx.datasets[first.data_key]
    errors: dict[str, str] = {}
    todo: list[str] = []
    for unit in members:
        recorder.started(unit.task, unit.variant, unit.subject)
        try:
            maybe_inject_fault(unit.variant, unit.subject)
        except Exception:  # noqa: BLE001 - this fold fails; its pack-mates train
            errors[unit.subject] = traceback.format_exc()
            continue
        todo.append(unit.subject)

    def on_epoch(subject: str, epoch: int, metrics: dict[str, float]) -> None:
        epoch_note[0] = (f"pack of {len(todo)} folds: epoch {epoch}/{cfg.optim.epochs}, fold "
                         f"{subject} loss {metrics['train/loss']:.3f}")
        refresh()
        interrupts.raise_if_received()

    results = []
    if todo:
        try:
            results = train_in_packs(cfg, data, todo,
                                     pack_size=min(len(todo), max_pack_size(cfg, data, device)),
                                     device=device, on_epoch=on_epoch)
        except PackError as err:
            results = err.results
            errors.update({s: "".join(traceback.format_exception(e))
                           for s, e in err.errors.items()})
        except Exception:  # the pack as a whole failed: each of its folds is a FAILED run
            errors.update({s: traceback.format_exc() for s in todo})
    with interrupts.deferred():  # fold runs are logged whole, never cut half-way
        for result in results:
            recorder.received(first.task, first.variant, result.subject, result.to_dict())
        for subject, text in errors.items():
            recorder.failed(first.task, first.variant, subject, text, 1, final=True)


def _run_tune(ctx: StudyContext, units: list[Unit], recorder: StudyRecorder,
              stop: threading.Event) -> None:
    import ray
    from ray import tune

    from orchestrator.execution.callbacks import StudyCallback
    from orchestrator.execution.packs import make_packs, parse_pack, train_pack, trial_slots
    from orchestrator.execution.ray_setup import ray_session
    from orchestrator.execution.tune_guards import stop_flag, watch_raylet

    options = ctx.options
    if (options.address or "").startswith("ray://"):
        raise StudyInputError(
            f"--address {options.address}: Ray client (ray://) runs Tune's loop on the head "
            "node, away from this process's single MLflow writer and spool. Use the cluster's "
            "GCS address (host:6379) from a machine of the cluster, or submit the command with "
            "`ray job submit -- medn study ...`.")
    with ray_session(options.address, ctx.ray_log_file) as session, watch_raylet(ctx, recorder):
        gpus, cpus = session.trial_resources(options)
        needed = {u.data_key for u in units}
        refs = {key: ray.put(ctx.datasets[key]) for key in needed}
        # a trial trains a pack of one variant's pending folds (--pack; 1 = one fold)
        slots = trial_slots(session.cluster_cpus, session.cluster_gpus, cpus, gpus,
                            options.max_concurrent)
        packs = make_packs(units, parse_pack(options.pack), slots, on_gpu=gpus > 0)
        if len(packs) < len(units):
            ctx.console.print(f"{len(units)} folds in {len(packs)} packed trial"
                              f"{'s' * (len(packs) > 1)} (up to "
                              f"{max(len(p.subjects) for p in packs)} folds each)",
                              highlight=False)
        trainable = tune.with_parameters(train_pack, packs={p.uid: p for p in packs},
                                         datasets=refs, threads=max(1, math.floor(cpus)),
                                         memory_fraction=min(1.0, gpus) if gpus else 1.0)
        trainable = tune.with_resources(trainable, {"cpu": cpus, "gpu": gpus})
        tuner = tune.Tuner(
            trainable,
            param_space={"unit": tune.grid_search([p.uid for p in packs])},
            tune_config=tune.TuneConfig(max_concurrent_trials=options.max_concurrent,
                                        reuse_actors=True),
            run_config=tune.RunConfig(
                name=ctx.run_name, storage_path=str(ctx.tune_storage), verbose=0,
                callbacks=[StudyCallback(recorder)], stop=stop_flag(stop),
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                log_to_file=True),
        )
        open_parents(ctx, list(recorder.states.values()))  # every check has passed
        try:
            with interrupts.graceful(stop.set):
                tuner.fit()
        except (KeyboardInterrupt, StudyError):
            raise
        except Exception as err:  # Ray itself failed (a killed raylet, a lost GCS)
            if recorder.fatal is not None:
                # the recorder stopped the study from Tune's callback (disk full, spool, store):
                # Tune re-raises it as a TuneError; the user gets its own message
                raise recorder.fatal from None
            text = " ".join(str(err).split())[:300]
            raise StudyError(
                f"Ray failed while training the folds ({type(err).__name__}: {text}). Folds "
                "already FINISHED are kept in MLflow and results received are in the spool; "
                f"re-run the same command to resume. Ray's log: {ctx.ray_log_file}") from None
        interrupts.raise_if_received()
