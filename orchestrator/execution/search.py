"""The ``tune`` study: Bayesian search with Optuna (TPE) as the driver, folds on Ray Tune.

Optuna drives (ask / tell); each trial is one configuration = one MLflow parent run whose LOSO
folds run as one Ray Tune experiment. Fold scores are reported to the trial as steps (step = the
fold's LOSO index) in a fixed order (a seeded permutation of the folds, the same for every
trial), so Optuna's ``WilcoxonPruner`` can stop a configuration whose folds are significantly
worse than the best trial's on the same folds; a pruned configuration's remaining folds are
stopped and its parent run is tagged ``medn.pruned=true``. (Ray Tune's ``OptunaSearch`` only
samples: it never calls Optuna's pruners, hence this design.)

The Optuna study lives in an RDB storage so a re-run resumes: ``sqlite:///<folder of the
MLflow sqlite store>/optuna.db``, or for a tracking server ``<cache>/optuna/<host>.db``;
``MEDN_OPTUNA_STORAGE`` overrides it (e.g. the PostgreSQL database of the tracking server).
A trial left RUNNING by a killed driver is continued: its finished folds are read back from
MLflow, and only the missing ones are trained.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from medn import metrics as mm
from orchestrator.execution.context import (
    ExecutionReport,
    StudyContext,
    open_variant,
)
from orchestrator.execution.executor import execute_states
from orchestrator.execution.outcome import StudyOutcome, finish_study
from orchestrator.execution.ray_setup import ray_session
from orchestrator.execution.units import VariantState
from orchestrator.studies.expand import variant_config
from orchestrator.studies.spec import trial_variant

STORAGE_ENV = "MEDN_OPTUNA_STORAGE"
TAG_TRIAL = "medn.optuna_trial"


def optuna_storage(ctx: StudyContext) -> str:
    """Where the Optuna study is kept (see the module doc)."""
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    uri = ctx.tracking_uri
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return f"sqlite:///{db.parent / 'optuna.db'}"
    from orchestrator.tracking import store_slug

    folder = ctx.cache_dir / "optuna"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder.resolve() / (store_slug(uri) + '.db')}"


def fold_score(fold: dict[str, Any], metric: str) -> float:
    """The held-out subject's score under the study's metric (UF1, UAR or accuracy)."""
    y_true, y_pred = np.asarray(fold["y_true"]), np.asarray(fold["y_pred"])
    labels = list(range(int(fold.get("num_classes", 0)))) or None
    if metric == "accuracy":
        return float(mm.accuracy(y_true, y_pred))
    fn = mm.uf1 if metric == "uf1" else mm.uar
    return float(fn(y_true, y_pred, labels=labels))


def fold_order(subjects: list[str], seed: int) -> list[str]:
    """The fixed order in which a trial's folds run and are reported (the same every trial)."""
    rng = np.random.default_rng(seed)
    return [subjects[i] for i in rng.permutation(len(subjects))]


def _open_optuna_study(ctx: StudyContext, experiment: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = ctx.spec.search
    assert search is not None
    storage = optuna.storages.RDBStorage(optuna_storage(ctx))
    names = [s for s in optuna.get_all_study_summaries(storage)
             if s.study_name == experiment or s.study_name.startswith(experiment + "@")]
    if ctx.options.fresh or not names:
        name = experiment if not names else f"{experiment}@{time.strftime('%Y%m%d-%H%M%S')}"
    else:
        newest = max(names, key=lambda s: (s.datetime_start is not None, s.datetime_start
                                           or 0, s.study_name))
        name = newest.study_name
    return optuna.create_study(storage=storage, study_name=name, direction="maximize",
                               sampler=search.make_sampler(), pruner=search.make_pruner(),
                               load_if_exists=True)


class _FoldReporter:
    """Reports a trial's fold scores to Optuna in the fixed fold order; says when to prune."""

    def __init__(self, trial: Any, state: VariantState, order: list[str], metric: str) -> None:
        self.trial = trial
        self.state = state
        self.order = order
        self.metric = metric
        self.scores: dict[str, float] = {}
        self.next = 0
        frozen = next(t for t in trial.study.get_trials(deepcopy=False)
                      if t.number == trial.number)
        self.reported = set(frozen.intermediate_values)

    def add(self, subject: str, score: float) -> bool:
        """Take one fold's score; True when the trial should be pruned."""
        self.scores[subject] = score
        while self.next < len(self.order) and self.order[self.next] in self.scores:
            s = self.order[self.next]
            step = self.state.subjects.index(s)
            if step not in self.reported:
                self.trial.report(self.scores[s], step)
                self.reported.add(step)
            self.next += 1
            if self.next < len(self.order) and self.trial.should_prune():
                self.state.pruned = True
                return True
        return False


def run_search(ctx: StudyContext, states: list[VariantState]) -> StudyOutcome:
    """Run or resume the Bayesian search of ``ctx.spec`` for each task (see the module doc);
    ``states`` receives each trial's state as it opens."""
    import optuna

    spec, options = ctx.spec, ctx.options
    search = spec.search
    assert search is not None
    budget = options.trials or search.trials
    started = time.monotonic()
    total = ExecutionReport()
    ray_up = False
    with contextlib.ExitStack() as stack:
        for task in options.tasks:
            experiment = ctx.experiment(task)
            study = _open_optuna_study(ctx, experiment)
            ctx.console.print(f"search {study.study_name}: budget {budget} trials, Optuna "
                              f"storage {optuna_storage(ctx)}", highlight=False)
            while True:
                trials = study.get_trials(deepcopy=False)
                running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
                finished = [t for t in trials if t.state.is_finished()]
                if running:
                    trial = optuna.trial.Trial(study, running[0]._trial_id)  # a killed run's
                elif len(finished) >= budget:
                    break
                else:
                    trial = study.ask()
                if not ray_up:  # one Ray for every trial, started when there is work
                    stack.enter_context(ray_session(options.address, ctx.ray_log_file))
                    ray_up = True
                _run_trial(ctx, study, trial, task, total, states)
                if total.problems:  # e.g. MLflow unreachable: the trial resumes next run
                    break
    return finish_study(ctx, states, started, total)


def _run_trial(ctx: StudyContext, study: Any, trial: Any, task: int, total: ExecutionReport,
               states: list[VariantState]) -> VariantState:
    import optuna

    spec, options = ctx.spec, ctx.options
    assert spec.search is not None
    params = spec.search.suggest(trial)
    variant = trial_variant(trial.number, params)
    cfg = variant_config(spec, variant, options, task)
    state = open_variant(ctx, task, variant, cfg, {TAG_TRIAL: str(trial.number)})
    states.append(state)
    order = fold_order(state.subjects, spec.search.seed)
    state.fold_order = order  # trained in the order they are reported
    reporter = _FoldReporter(trial, state, order, spec.metric)
    writer = ctx.writer(state.experiment)
    for subject, run_id in writer.finished_folds(state.parent_id).items():  # resumed trial
        if reporter.add(subject, fold_score(writer.load_fold_result(run_id).to_dict(),
                                            spec.metric)):
            break
    if not state.pruned:
        report = execute_states(
            ctx, [state], title=f"search {spec.name}: trial {trial.number}",
            on_fold=lambda s, subject, fold: reporter.add(subject, fold_score(fold,
                                                                              spec.metric)))
        total.trained += report.trained
        total.problems += report.problems
        total.ray_log = report.ray_log or total.ray_log
        total.shown_live = total.shown_live or report.shown_live
    if state.pruned:
        writer.mark_pruned(state.parent_id)
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    elif state.finalized and state.pooled is not None:
        study.tell(trial, float(state.pooled[spec.metric]))
    elif not total.problems:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return state
