"""Running a set of variants' pending folds as ONE Ray Tune experiment, fed to the recorder."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrator.execution.progress import LiveProgress
from orchestrator.execution.recorder import ResultsNotLogged, StudyRecorder
from orchestrator.execution.units import Unit, VariantState

if TYPE_CHECKING:
    from orchestrator.execution.runner import ExecutionReport, StudyContext


def _stop_flag() -> Any:
    """A Tune stopper whose ``stop_all`` is set from the driver (a pruned configuration)."""
    from ray import tune

    class StopFlag(tune.Stopper):
        def __init__(self) -> None:
            self.event: threading.Event | None = threading.Event()

        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.event is not None and self.event.is_set()

        def __getstate__(self) -> dict:  # Tune pickles it for Tuner.restore, unused here
            return {"event": None}

    return StopFlag()


def execute_states(ctx: StudyContext, states: list[VariantState], title: str,
                   on_fold: Callable[[VariantState, str, dict[str, Any]], bool] | None = None,
                   ) -> ExecutionReport:
    """Log what the spool holds, then train every pending fold of ``states`` on Ray Tune.

    ``on_fold(state, subject, fold_dict)`` is called for each result received; when it returns
    True every trial still running or pending is stopped (the search prunes this way).
    """
    from orchestrator.execution.runner import ExecutionReport

    report = ExecutionReport()
    stop = _stop_flag()

    def fold_hook(state: VariantState, subject: str, fold: dict[str, Any]) -> None:
        if on_fold is not None and on_fold(state, subject, fold):
            stop.event.set()

    progress = LiveProgress(title, states, console=ctx.console, enabled=ctx.show_progress)
    recorder = StudyRecorder(
        states, writers=ctx.writers, datasets=ctx.datasets,
        tags=lambda s: {}, on_fold=fold_hook, on_change=progress.refresh)
    progress.note = lambda: ("MLflow unreachable: results wait in the spool "
                             f"({recorder.last_error[:80]})" if recorder.tracking_down else "")
    # results an earlier run trained but could not log: logged now, never retrained
    if not recorder.flush(force=True):
        raise ResultsNotLogged(f"MLflow at {ctx.tracking_uri} is unreachable ("
                               f"{recorder.last_error}); start it and re-run the same command")
    from orchestrator.execution.runner import refresh_finished

    refresh_finished(ctx, states)
    recorder.flush(force=True)  # variants whose folds were all in: pooled now
    units = [unit for state in states if not state.pruned for unit in state.units()]
    if units:
        with progress:
            report.shown_live = True
            report.ray_log = str(ctx.ray_log_file)
            ctx.console.print(f"{len(units)} fold trainings to run; Ray's log: "
                              f"{ctx.ray_log_file}", highlight=False)
            _run_tune(ctx, units, recorder, stop)
            try:
                recorder.finish()
            except ResultsNotLogged as err:
                report.problems.append(str(err))
    report.problems.extend(recorder.problems)
    report.trained = sum(len(s.received) for s in states)
    return report


def _run_tune(ctx: StudyContext, units: list[Unit], recorder: StudyRecorder,
              stop: Any) -> None:
    import ray
    from ray import tune

    from orchestrator.execution.callbacks import StudyCallback
    from orchestrator.execution.ray_setup import ray_session
    from orchestrator.execution.trainable import train_unit

    options = ctx.options
    if (options.address or "").startswith("ray://"):
        from orchestrator.execution.runner import StudyError

        raise StudyError(
            f"--address {options.address}: Ray client (ray://) runs Tune's loop on the head "
            "node, away from this process's single MLflow writer and spool. Use the cluster's "
            "GCS address (host:6379) from a machine of the cluster, or submit the command with "
            "`ray job submit -- medn study ...`.")
    with ray_session(options.address, ctx.ray_log_file) as session:
        gpus = options.resolve_gpus_per_trial(session.cluster_gpus)
        cpus = float(options.cpus_per_trial)
        if cpus > session.cluster_cpus:
            from orchestrator.execution.runner import StudyError

            raise StudyError(f"--cpus-per-trial {cpus:g}: the Ray cluster has only "
                             f"{session.cluster_cpus:g} CPUs")
        needed = {u.data_key for u in units}
        refs = {key: ray.put(ctx.datasets[key]) for key in needed}
        table = {u.uid: u for u in units}
        trainable = tune.with_parameters(train_unit, units=table, datasets=refs,
                                         threads=max(1, math.floor(cpus)))
        trainable = tune.with_resources(trainable, {"cpu": cpus, "gpu": gpus})
        tuner = tune.Tuner(
            trainable,
            param_space={"unit": tune.grid_search([u.uid for u in units])},
            tune_config=tune.TuneConfig(max_concurrent_trials=options.max_concurrent,
                                        reuse_actors=True),
            run_config=tune.RunConfig(
                name=ctx.run_name, storage_path=str(ctx.tune_storage), verbose=0,
                callbacks=[StudyCallback(recorder)], stop=stop,
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                log_to_file=True),
        )
        tuner.fit()
