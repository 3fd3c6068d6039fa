"""The ``tune`` study: Bayesian search with Optuna (TPE) as the driver, folds on Ray Tune.

Optuna drives (ask / tell); each trial is one configuration = one MLflow parent run whose LOSO
folds are units of ONE Ray Tune experiment per task. A Tune ``Searcher`` hands Tune one fold
at a time: up to ``search.parallel_trials`` (k) configurations are open at once, each with a
few folds in flight, and a new configuration is asked for as soon as an open one has no fold
left to submit, so workers do not idle at the tail of a trial. The sampler is
``TPESampler(constant_liar=True)``, so the k trials running at once are drawn apart.

One quantity everywhere: a fold's score is ``medn.metrics.fold_scores`` (UF1 over the classes
present in the held-out subject; the spec's metric), which is also the per-epoch ``val/uf1``
of ``medn.train``. Each fold's score is reported to the trial as a step (step = the fold's LOSO
index) in the trial's own shuffled fold order (seeded by the search seed and the trial number,
as Optuna's WilcoxonPruner documentation asks), and the trial's objective value is the MEAN of
its fold scores, so the pruner's "the average is already the best" guard compares like with
like. The pooled UF1 over all folds (the paper's number) stays in MLflow (parent metric) and
in the trial's user attribute ``pooled_<metric>``.

A configuration that ``WilcoxonPruner`` finds significantly worse than the best trial on the
same folds is pruned: its folds not yet submitted are never trained (folds already in flight
finish and are logged), its parent run is tagged ``medn.pruned=true`` and ended KILLED, and the
trial is TOLD THE ESTIMATE (the mean of the fold scores it reported), as Optuna's documentation
for this pruner recommends: TPE ranks trials in the PRUNED state by their last reported step,
which for this pruner is a fold id, not progress, so a PRUNED state would feed TPE a
meaningless ordering, while the estimate (an unbiased one, the folds being a random subset) is
the right signal. It can never become the best trial: the pruner only prunes a trial whose
average is below the best trial's. The trial carries ``pruned=True`` and ``folds_scored`` as
user attributes (the dashboard shows them).

The Optuna study lives in an RDB storage so a re-run resumes: ``sqlite:///<folder of the
MLflow sqlite store>/optuna.db``, or for a tracking server ``<cache>/optuna/<host>.db``;
``MEDN_OPTUNA_STORAGE`` overrides it (e.g. the PostgreSQL database of the tracking server).
A trial left RUNNING by a killed driver is resumed through the public API: it is told FAIL and
its parameters are enqueued (``Study.enqueue_trial``) with user attributes naming it; the new
trial takes over the same MLflow parent run, its finished folds are read back and reported, and
only the missing ones are trained. Superseded trials do not count against the budget. One
driver per search at a time.

``optuna-dashboard <storage URL>`` (e.g. ``optuna-dashboard sqlite:///mlruns/optuna.db``)
shows the study: trials, the fold scores as intermediate values, the pruned ones.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medn import metrics as mm
from orchestrator.execution.context import (
    ExecutionReport,
    StudyContext,
    StudyInputError,
    open_parents,
    open_variant,
    refresh_finished,
)
from orchestrator.execution.outcome import StudyOutcome, finish_study
from orchestrator.execution.units import Unit, VariantState
from orchestrator.studies.expand import variant_config
from orchestrator.studies.spec import Variant, trial_variant

STORAGE_ENV = "MEDN_OPTUNA_STORAGE"
TAG_TRIAL = "medn.optuna_trial"
ATTR_VARIANT = "medn.variant"  # the MLflow variant (parent run name) of a trial
ATTR_RESUMES = "medn.resumes"  # the number of the killed trial an enqueued one takes over
ATTR_PRUNED = "pruned"
ATTR_FOLDS = "folds_scored"
DIVERGED_KEY = "diverged"
ATTR_DIVERGED = "folds_diverged"
# The score of a fold whose training diverged (non-finite loss): the lowest UF1/UAR/accuracy.
# Such a configuration cannot be trained, so it must lose every pairing with one that can;
# the failure is deterministic, so it is not retried.
DIVERGED_SCORE = 0.0


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
    """The held-out subject's score: ``medn.metrics.fold_scores`` under the spec's metric."""
    return float(mm.fold_scores(np.asarray(fold["y_true"]), np.asarray(fold["y_pred"]))[metric])


def fold_order(subjects: list[str], seed: int, trial_number: int) -> list[str]:
    """The order in which a trial's folds run and are reported: a permutation seeded by the
    search seed and the trial number (a different order per trial, the same on a re-run)."""
    rng = np.random.default_rng([seed, trial_number])
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


def resume_killed_trials(study: Any) -> list[int]:
    """Trials left RUNNING by a killed driver: each is told FAIL and its parameters are
    enqueued (public API) with user attributes naming it and its MLflow variant, so that the
    next ``ask`` takes it over. Returns the numbers of the trials taken over."""
    import optuna

    resumed = []
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        variant = frozen.user_attrs.get(ATTR_VARIANT) or trial_variant(frozen.number, {}).name
        study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(frozen.params, user_attrs={ATTR_RESUMES: frozen.number,
                                                       ATTR_VARIANT: variant})
        resumed.append(frozen.number)
    return resumed


def trials_used(study: Any) -> int:
    """Trials that count against the budget: every finished trial except those a later trial
    took over (``resume_killed_trials``)."""
    trials = study.get_trials(deepcopy=False)
    superseded = {t.user_attrs.get(ATTR_RESUMES) for t in trials} - {None}
    return sum(1 for t in trials if t.state.is_finished() and t.number not in superseded)


class _FoldReporter:
    """Reports a trial's fold scores to Optuna in the trial's fold order (a prefix of it, so
    that the folds scored are a random subset); says when to prune."""

    def __init__(self, trial: Any, state: VariantState, order: list[str], metric: str) -> None:
        self.trial = trial
        self.state = state
        self.order = order
        self.metric = metric
        self.scores: dict[str, float | None] = {}  # None: the fold failed, no score
        self.reported: list[float] = []
        self.next = 0

    @property
    def skipped(self) -> list[str]:
        """Folds that failed for good (no score): passed over, so later ones still count."""
        return [s for s, score in self.scores.items() if score is None]

    def add(self, subject: str, score: float | None) -> bool:
        """Take one fold's score (None: it failed); True when the trial should be pruned."""
        self.scores.setdefault(subject, score)
        while self.next < len(self.order) and self.order[self.next] in self.scores:
            s = self.order[self.next]
            self.next += 1
            value = self.scores[s]
            if value is None:
                continue
            self.trial.report(value, self.state.subjects.index(s))
            self.reported.append(value)
            if self.next < len(self.order) and self.trial.should_prune():
                self.state.pruned = True
                return True
        return False

    @property
    def complete(self) -> bool:
        """Whether every fold's score was reported."""
        return self.next == len(self.order)

    def mean(self) -> float:
        """The mean of the reported fold scores (the objective; a pruned trial's estimate)."""
        return float(np.mean(self.reported)) if self.reported else math.nan


@dataclass(eq=False)
class _TrialRun:
    """One open Optuna trial: its MLflow state, reporter, folds to submit and in flight."""

    trial: Any
    state: VariantState
    reporter: _FoldReporter
    queue: list[str]
    in_flight: set[str] = field(default_factory=set)
    diverged: set[str] = field(default_factory=set)
    told: bool = False


class SearchDriver:
    """Opens trials, hands their folds to Tune one at a time, reports results to Optuna.

    ``next_unit`` answers the Tune searcher (a unit's config, None: nothing now, or
    ``"FINISHED"``); ``on_fold`` is the recorder's hook for a fold's result; ``unit_ended`` is
    called when Tune is done with a fold (result, final failure, or stop).
    """

    FINISHED = "FINISHED"

    def __init__(self, ctx: StudyContext, study: Any, task: int, budget: int, parallel: int,
                 states: list[VariantState]) -> None:
        self.ctx = ctx
        self.study = study
        self.task = task
        self.budget = budget
        self.parallel = max(1, parallel)
        self.states = states
        self.run_states: list[VariantState] = []  # this task's trials (the live table)
        self.runs: list[_TrialRun] = []
        self.by_tune_id: dict[str, tuple[_TrialRun, str]] = {}
        self.recorder: Any = None  # set once the recorder exists (it calls on_fold)
        self.slots = 1
        self.data_keys: set[str] = set()
        self.folds_skipped = 0  # folds of pruned trials never trained
        self.error: BaseException | None = None

    # -- trials ------------------------------------------------------------------------------
    def _can_open(self) -> bool:
        import optuna

        waiting = self.study.get_trials(deepcopy=False,
                                        states=(optuna.trial.TrialState.WAITING,))
        open_now = sum(1 for run in self.runs if not run.told)
        return bool(waiting) or trials_used(self.study) + open_now < self.budget

    def open_trial(self) -> _TrialRun:
        """Ask Optuna for a trial (an enqueued take-over first), open its MLflow parent, and
        report the folds it already has (a resumed trial)."""
        search = self.ctx.spec.search
        assert search is not None
        trial = self.study.ask()
        try:
            return self._open(trial)
        except BaseException:
            import optuna

            # a trial that cannot even start (a bad configuration) is not left RUNNING
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise

    def _open(self, trial: Any) -> _TrialRun:
        search = self.ctx.spec.search
        assert search is not None
        params = search.suggest(trial)
        drawn = trial_variant(trial.number, params)
        # a trial taking over a killed one keeps its MLflow parent run (same variant name)
        variant = Variant(name=trial.user_attrs.get(ATTR_VARIANT) or drawn.name,
                          label=drawn.label, overrides=drawn.overrides)
        name = variant.name
        trial.set_user_attr(ATTR_VARIANT, name)
        cfg = variant_config(self.ctx.spec, variant, self.ctx.options, self.task)
        state = open_variant(self.ctx, self.task, variant, cfg, {TAG_TRIAL: str(trial.number)})
        open_parents(self.ctx, [state])  # the resources were checked before the first trial
        if self.data_keys and state.data_key not in self.data_keys:
            raise StudyInputError("search.space: a search may not vary data.* settings (each "
                                  "trial must train on the one prepared dataset)")
        writer = self.ctx.writer(state.experiment)
        writer.set_tags(state.parent_id, {TAG_TRIAL: str(trial.number)})
        refresh_finished(self.ctx, [state])
        order = fold_order(state.subjects, search.seed, trial.number)
        state.fold_order = order
        reporter = _FoldReporter(trial, state, order, self.ctx.spec.metric)
        run = _TrialRun(trial=trial, state=state, reporter=reporter, queue=[])
        self.runs.append(run)
        self.states.append(state)
        self.run_states.append(state)
        if self.recorder is not None:
            self.recorder.states[state.key] = state
        finished = writer.finished_folds(state.parent_id)
        for subject in order:  # a resumed trial: its folds in MLflow are reported first
            if subject in finished and reporter.add(subject, fold_score(
                    writer.load_fold_result(finished[subject]).to_dict(), self.ctx.spec.metric)):
                break
        run.queue = [] if state.pruned else list(state.pending)
        if state.pruned:
            self._prune(run)
        self.tell_if_done(run)
        return run

    # -- Tune's questions --------------------------------------------------------------------
    def next_unit(self, tune_id: str) -> dict[str, Any] | str | None:
        """The next fold to train, as a Tune trial config (see the class doc)."""
        try:
            return self._next_unit(tune_id)
        except BaseException as err:  # raised inside Tune's loop: kept and re-raised after
            self.error = err
            return self.FINISHED

    def _next_unit(self, tune_id: str) -> dict[str, Any] | str | None:
        cap = max(1, math.ceil(self.slots / self.parallel))  # folds in flight per trial
        queued = [run for run in self.runs if run.queue]
        run = next((r for r in queued if len(r.in_flight) < cap), None)
        while run is None and len(queued) < self.parallel and self._can_open():
            opened = self.open_trial()
            if opened.queue:
                run = opened
                queued.append(opened)
        if run is None and queued:
            run = queued[0]  # every open trial is at its cap: the oldest takes the free slot
        if run is None:
            in_flight = any(r.in_flight for r in self.runs)
            return None if in_flight else self.FINISHED
        subject = run.queue.pop(0)
        run.in_flight.add(subject)
        self.by_tune_id[tune_id] = (run, subject)
        state = run.state
        unit = Unit(state.task, state.name, subject, state.subjects.index(subject),
                    state.data_key, state.config.model_dump(mode="json"))
        return {"unit": unit.uid, "unit_json": json.dumps(_unit_fields(unit))}

    def unit_ended(self, tune_id: str, result: dict[str, Any] | None = None,
                   error: bool = False) -> None:
        """Tune is done with this fold: its result arrived, its training diverged (scored
        ``DIVERGED_SCORE``), it failed for good (``error``: no score), or it was stopped."""
        entry = self.by_tune_id.pop(tune_id, None)
        if entry is None:
            return
        run, subject = entry
        run.in_flight.discard(subject)
        state = run.state
        if result and result.get(DIVERGED_KEY):
            run.diverged.add(subject)
            if self.recorder is not None:  # a FAILED child run with the reason, never retried
                self.recorder.failed(state.task, state.name, subject, str(result[DIVERGED_KEY]),
                                     1, final=True)
            if not run.told and run.reporter.add(subject, DIVERGED_SCORE):
                self._prune(run)
        elif ((error or subject in state.gave_up) and not run.told
              and run.reporter.add(subject, None)):
            self._prune(run)
        self.tell_if_done(run)

    # -- results -------------------------------------------------------------------------------
    def on_fold(self, state: VariantState, subject: str, fold: dict[str, Any]) -> None:
        """A fold's result reached the driver (the recorder's hook): report it to Optuna."""
        run = next((r for r in self.runs if r.state is state), None)
        if run is None or run.told:
            return  # a pruned trial's fold that was in flight: logged, not reported
        if run.reporter.add(subject, fold_score(fold, self.ctx.spec.metric)):
            self._prune(run)
        self.tell_if_done(run)

    def _prune(self, run: _TrialRun) -> None:
        """Stop submitting the trial's folds, tag its parent, tell Optuna the estimate."""
        self.folds_skipped += len(run.queue)
        run.queue = []
        run.state.pruned = True
        run.state.note = (f"pruned after {len(run.reporter.reported)} of "
                          f"{len(run.state.subjects)} folds")
        writer = self.ctx.writer(run.state.experiment)
        writer.mark_pruned(run.state.parent_id)
        writer.terminate(run.state.parent_id, "KILLED")
        self._tell(run, pruned=True)

    def tell_if_done(self, run: _TrialRun, final: bool = False) -> None:
        """Tell Optuna how a trial ended once it has (see the comment below)."""
        import optuna

        if run.told:
            return
        state = run.state
        # a complete trial is told once Tune is done with its last fold, by when the recorder
        # has logged it and pooled the parent (the pooled score goes along as a user attribute)
        failed = state.gave_up - run.diverged
        if failed and not run.queue and not run.in_flight:
            run.told = True  # a fold failed for good: no value; the parent says incomplete
            self.study.tell(run.trial, state=optuna.trial.TrialState.FAIL)
        elif run.reporter.complete and (final or not run.in_flight):
            if run.diverged:  # no pooled numbers can exist: given up on like a pruned trial
                self._give_up_diverged(run)
            self._tell(run, pruned=False)

    def _give_up_diverged(self, run: _TrialRun) -> None:
        """A trial that reported every fold but diverged on some: its parent can never be
        pooled and a re-run would diverge again, so it is tagged and ended like a pruned one
        (``medn.pruned=true``, KILLED) and the trial says how many folds diverged."""
        run.state.pruned = True
        run.state.note = f"diverged on {len(run.diverged)} of {len(run.state.subjects)} folds"
        writer = self.ctx.writer(run.state.experiment)
        writer.mark_pruned(run.state.parent_id)
        writer.terminate(run.state.parent_id, "KILLED")
        run.trial.set_user_attr(ATTR_DIVERGED, len(run.diverged))

    def _tell(self, run: _TrialRun, pruned: bool) -> None:
        run.told = True
        metric = self.ctx.spec.metric
        run.trial.set_user_attr(ATTR_FOLDS, len(run.reporter.reported))
        if run.diverged:
            run.trial.set_user_attr(ATTR_DIVERGED, len(run.diverged))
        if pruned:
            run.trial.set_user_attr(ATTR_PRUNED, True)
        if run.state.pooled is not None and metric in run.state.pooled:
            run.trial.set_user_attr(f"pooled_{metric}", float(run.state.pooled[metric]))
        self.study.tell(run.trial, run.reporter.mean())


def _unit_fields(unit: Unit) -> dict[str, Any]:
    return {"task": unit.task, "variant": unit.variant, "subject": unit.subject,
            "fold_index": unit.fold_index, "data_key": unit.data_key, "config": unit.config}


def train_search_unit(config: dict[str, Any], *, datasets: dict[str, Any],
                      threads: int) -> None:
    """The Tune function of a search fold: the unit travels in the config (trials are made
    while the experiment runs), then as ``trainable.train_unit``."""
    from ray import tune

    from medn.train import NonFiniteLossError
    from orchestrator.execution.trainable import train_unit

    unit = Unit(**json.loads(config["unit_json"]))
    try:
        train_unit({"unit": unit.uid}, units={unit.uid: unit}, datasets=datasets,
                   threads=threads)
    except NonFiniteLossError as err:  # deterministic: reported as a result, not retried
        tune.report({"unit": unit.uid, DIVERGED_KEY: str(err)})


def _searcher(driver: SearchDriver) -> Any:
    from ray.tune.search import Searcher

    class UnitSearcher(Searcher):
        """Tune's view of the driver: one trial per fold, made on demand."""

        def __init__(self, search_driver: SearchDriver) -> None:
            super().__init__()
            self.driver: SearchDriver | None = search_driver

        def suggest(self, trial_id: str) -> dict | str | None:
            assert self.driver is not None
            answer = self.driver.next_unit(trial_id)
            return Searcher.FINISHED if answer == SearchDriver.FINISHED else answer

        def on_trial_complete(self, trial_id: str, result: dict | None = None,
                              error: bool = False) -> None:
            if self.driver is not None:
                self.driver.unit_ended(trial_id, result, error)

        def __getstate__(self) -> dict:  # Tune pickles its state; the driver stays here
            return {**self.__dict__, "driver": None}

    return UnitSearcher(driver)


def run_search(ctx: StudyContext, states: list[VariantState]) -> StudyOutcome:
    """Run or resume the Bayesian search of ``ctx.spec`` for each task (see the module doc);
    ``states`` receives each trial's state as it opens."""
    spec, options = ctx.spec, ctx.options
    search = spec.search
    assert search is not None
    if any(key.startswith("data.") for key in search.space):
        raise StudyInputError("search.space: a search may not vary data.* settings (each "
                              "trial must train on the one prepared dataset)")
    budget = options.trials or search.trials
    started = time.monotonic()
    total = ExecutionReport()
    for task in options.tasks:
        experiment = ctx.experiment(task)
        study = _open_optuna_study(ctx, experiment)
        resumed = resume_killed_trials(study)
        ctx.console.print(f"search {study.study_name}: budget {budget} trials, "
                          f"{search.parallel_trials} at a time; Optuna storage "
                          f"{optuna_storage(ctx)}"
                          + (f"; resuming trial(s) {', '.join(map(str, resumed))}"
                             if resumed else ""), highlight=False)
        if trials_used(study) >= budget and not resumed:
            continue
        driver = SearchDriver(ctx, study, task, budget, search.parallel_trials, states)
        _run_driver(ctx, driver, total)
        saved = driver.folds_skipped
        if saved:
            ctx.console.print(f"pruning saved {saved} fold trainings", highlight=False)
        if total.problems:  # e.g. MLflow unreachable: the open trials resume next run
            break
    return finish_study(ctx, states, started, total)


def _run_driver(ctx: StudyContext, driver: SearchDriver, total: ExecutionReport) -> None:
    """One Tune experiment whose trials (folds) the driver makes on demand."""
    import ray
    from ray import tune

    from orchestrator.execution import interrupts
    from orchestrator.execution.callbacks import StudyCallback
    from orchestrator.execution.progress import LiveProgress
    from orchestrator.execution.ray_setup import ray_session
    from orchestrator.execution.recorder import ResultsNotLogged, StudyRecorder
    from orchestrator.execution.tune_guards import stop_flag, watch_raylet

    options = ctx.options
    if (options.address or "").startswith("ray://"):
        raise StudyInputError(f"--address {options.address}: Ray client (ray://) is not "
                              "supported; use the cluster's GCS address (host:6379)")
    progress = LiveProgress(f"search {ctx.spec.name}", driver.run_states, console=ctx.console,
                            enabled=ctx.show_progress)
    recorder = StudyRecorder([], writers=ctx.writers, datasets=ctx.datasets,
                             tags=lambda s: dict(s.tags), on_fold=driver.on_fold,
                             on_change=progress.refresh)
    ctx.writer(ctx.experiment(driver.task))
    if not recorder.flush(force=True):  # results an earlier run could not log: logged first
        raise ResultsNotLogged(f"MLflow at {ctx.tracking_uri} is unreachable ("
                               f"{recorder.last_error}); start it and re-run the same command")
    driver.recorder = recorder
    stop = threading.Event()
    with ray_session(options.address, ctx.ray_log_file) as session, watch_raylet(ctx, recorder):
        gpus, cpus = session.trial_resources(options)
        slots = max(1, math.floor(session.cluster_cpus / cpus))
        if gpus > 0:
            slots = min(slots, max(1, math.floor(session.cluster_gpus / gpus)))
        driver.slots = min(slots, options.max_concurrent or slots)
        # the first trial opens here: its dataset is prepared once and put in the object store
        first = driver.open_trial()
        driver.data_keys = {first.state.data_key}
        refs = {first.state.data_key: ray.put(ctx.datasets[first.state.data_key])}
        trainable = tune.with_parameters(train_search_unit, datasets=refs,
                                         threads=max(1, math.floor(cpus)))
        trainable = tune.with_resources(trainable, {"cpu": cpus, "gpu": gpus})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=_searcher(driver), num_samples=-1,
                                        max_concurrent_trials=driver.slots, reuse_actors=True),
            run_config=tune.RunConfig(
                name=ctx.run_name, storage_path=str(ctx.tune_storage), verbose=0,
                callbacks=[StudyCallback(recorder)], stop=stop_flag(stop),
                failure_config=tune.FailureConfig(max_failures=options.max_failures),
                log_to_file=True),
        )
        ctx.console.print(f"{driver.slots} folds at a time; Ray's log: {ctx.ray_log_file}",
                          highlight=False)
        with progress:
            total.shown_live = True
            with interrupts.graceful(stop.set):
                tuner.fit()
            interrupts.raise_if_received()
        if driver.error is not None:
            raise driver.error
    try:
        recorder.finish()
    except ResultsNotLogged as err:
        total.problems.append(str(err))
    for run in driver.runs:  # every fold reported but the last one told: tell now
        driver.tell_if_done(run, final=True)
    total.problems.extend(recorder.problems)
    total.trained += sum(len(s.received) for s in driver.states if s.task == driver.task)
    total.ray_log = str(ctx.ray_log_file)
