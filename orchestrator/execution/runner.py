"""``run_study``: a study's (task, variant, fold) units trained, every result in MLflow.

One run of a study command (``medn study NAME``; ``medn train`` is a one-variant study through
the same steps with the local executor):

1. expands the spec into variants per task and validates every configuration;
2. checks the tracking store can be written, before anything is prepared or created;
3. prepares each distinct dataset ONCE on the driver (variants sharing ``data`` share it);
4. gets or creates each variant's parent run (``--fresh``: new ones), logs what the spool
   still holds from an earlier run, and asks MLflow which folds are FINISHED;
5. trains the folds still missing: on Ray Tune (one trial per fold, ``max_failures`` retries,
   reused worker actors) or locally, one after another;
6. the recorder persists each result to the spool, logs it as the variant's child run and pools
   the parent once all its folds are in;
7. writes the study's summary run per task and prints the table and where to look.

Ctrl-C and SIGTERM end every parent run this run opened as KILLED (none is left RUNNING) and
raise ``Interrupted``; a re-run resumes.
"""

from __future__ import annotations

import errno
import tempfile
import time
from pathlib import Path

from rich.console import Console

from orchestrator.execution import interrupts
from orchestrator.execution.context import (
    StudyContext,
    StudyError,
    StudyInputError,
    end_interrupted,
    make_context,
    open_variant,
)
from orchestrator.execution.environment import apply_env_defaults
from orchestrator.execution.executor import execute_states
from orchestrator.execution.outcome import StudyOutcome, VariantOutcome, finish_study
from orchestrator.execution.recorder import ResultsNotLogged
from orchestrator.execution.search import run_search
from orchestrator.execution.units import VariantState
from orchestrator.studies.expand import study_configs
from orchestrator.studies.options import StudyOptions, StudyOptionsError
from orchestrator.studies.spec import StudySpec, StudySpecError

__all__ = ["StudyError", "StudyInputError", "StudyOutcome", "VariantOutcome", "run_study"]


def run_study(spec: StudySpec, options: StudyOptions, *, console: Console | None = None,
              show_progress: bool = True, executor: str = "ray") -> StudyOutcome:
    """Run (or resume) ``spec`` with ``options`` and return how every variant ended.

    ``executor``: ``"ray"`` (Ray Tune) or ``"local"`` (this process, no Ray). Folds already
    FINISHED in MLflow are not trained again; results left in the spool by an earlier run are
    logged first. A search spec (``tune``) runs the Optuna search instead. Raises
    ``StudyInputError`` for bad input (data, flags, store), ``StudyError`` when the run cannot
    go on, ``interrupts.Interrupted`` on Ctrl-C / SIGTERM.
    """
    from orchestrator.tracking import TrackingError, TrackingStoreError

    apply_env_defaults(mlflow=True)
    interrupts.reset()
    if options.seeds is not None and options.seeds > 1 and spec.search is not None:
        raise StudyInputError(f"--seeds {options.seeds}: a search trains one seed per "
                              "trial; run the best configuration as a study with --seeds")
    if options.trials is not None and spec.search is None:
        raise StudyInputError(f"--trials {options.trials}: study {spec.name!r} has fixed "
                              "variants, not a search")
    options.check_study_size(spec)  # on the counts, before any parent run is opened
    states: list[VariantState] = []
    try:
        ctx = make_context(spec, options, console, show_progress, executor)
        check_store(ctx.tracking_uri)
    except TrackingStoreError as err:
        raise StudyInputError(str(err)) from None
    try:
        if spec.search is not None:
            return run_search(ctx, states)
        return _run_variants(ctx, states)
    except (KeyboardInterrupt, StudyError):  # Ctrl-C, SIGTERM, Ray failing under the study
        end_interrupted(ctx, states)
        raise
    except (StudySpecError, StudyOptionsError, TrackingStoreError) as err:
        raise StudyInputError(str(err)) from None
    except (TrackingError, ResultsNotLogged) as err:  # unreachable, disk full, a bad spool file
        raise StudyError(str(err)) from None
    finally:
        for writer in ctx.writers.values():  # the experiments are free for the next driver
            writer.close()


def _run_variants(ctx: StudyContext, states: list[VariantState]) -> StudyOutcome:
    from orchestrator.report import TAG_SEEDS
    from orchestrator.tracking import TAG_SEED

    started = time.monotonic()
    configs = [(task, variant, cfg) for task in ctx.options.tasks
               for variant, cfg in study_configs(ctx.spec, ctx.options, task)]
    seeds = ctx.options.seeds or ctx.spec.seeds
    for task, variant, cfg in configs:
        # each seed is one parent run (its own config digest: the seed is part of it)
        for seed in range(cfg.seed, cfg.seed + seeds):
            seeded = cfg if seed == cfg.seed else cfg.model_copy(update={"seed": seed})
            state = open_variant(ctx, task, variant, seeded,
                                 {TAG_SEED: str(seed), TAG_SEEDS: str(seeds)})
            state.seed = seed if seeds > 1 else None
            states.append(state)
    report = execute_states(ctx, states, title=f"{_kind(ctx)} {ctx.spec.name}")
    return finish_study(ctx, states, started, report)


def _kind(ctx: StudyContext) -> str:
    return "train" if ctx.executor == "local" else "study"


def check_store(tracking_uri: str) -> None:
    """Fail fast, with the path named, where a local store cannot be written (a read-only
    ``mlruns/``): MLflow would otherwise retry its writes for minutes. Probes by writing, so
    it holds for any user and any mount."""
    path = _local_store_path(tracking_uri)
    if path is None:
        return
    folder = path if path.is_dir() else path.parent
    try:
        if path.is_file():
            with open(path, "r+b"):
                pass
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".medn-write-probe-"):
            pass
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StudyError(f"disk full at {folder}: the tracking store cannot be written; "
                             "free some space and re-run the same command") from None
        raise StudyInputError(f"--tracking-uri {tracking_uri}: {err.filename or folder} cannot "
                              f"be written ({err.strerror or err}); fix its permissions or "
                              "pass another --tracking-uri") from None


def _local_store_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        db = uri[len("sqlite:///"):]
        return None if db in ("", ":memory:") else Path(db)
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if "://" not in uri:
        return Path(uri)
    return None
