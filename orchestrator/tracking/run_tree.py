"""The one MLflow writer: a parent run per configuration, a nested child run per LOSO fold.

Every MLflow write of ``medn train`` and of the studies goes through ``RunTreeWriter`` on the
driver (the local sqlite store breaks under concurrent writers, and only the driver is sure to
reach a tracking server). It is assembled from parts with one job each: ``RetryingClient``
(every call under one retry policy, ``retry.py``), ``Spool`` (results not yet logged,
``spool.py``), opening and claiming the experiment (``experiment.py``) and the pooled
science (``pooling.py``).
Callers only see run-tree operations, never the MLflow client.

Run tree:

- parent run (tag ``medn.role=parent``): every resolved parameter, ``config.yaml``, tags
  ``medn.dataset``, ``medn.task``, ``medn.variant``, ``medn.study`` (studies), the git commit,
  ``medn.dataset_digest``, ``medn.deviations`` (the non-paper switches), a description
  (``mlflow.note.content``) when given, the dataset as an MLflow input; once every fold has
  finished, what ``pooling`` makes (pooled ``uf1``, ``uar``, ``accuracy``, ``au_f1``,
  ``confusion_matrix.png``, ``predictions.csv``, ``per_au_f1.csv``).
- child run per fold (``medn.role=fold``, ``medn.fold=<subject>``, run name ``fold-<subject>``):
  per-epoch ``train/*`` and ``val/*`` metrics with ``step`` = epoch (1-based), and the fold's
  predictions as ``fold_result.json`` so that pooled metrics can be recomputed from MLflow alone.
- a failed attempt: a FAILED child with tags ``medn.error``, ``medn.attempt`` and ``error.txt``.

One FINISHED run per (variant, fold), however many drivers: a writer claims its experiment
(an exclusive ``flock`` beside a sqlite store, or in ``~/.cache/medn/locks/<store>`` for a
server) for as long as it lives, and a second driver is refused with who holds it
(``ExperimentBusy``). Drivers that the lock cannot see (a tracking server used from two
machines) are reconciled per fold: after writing a fold run the writer looks for other FINISHED
runs of the same fold and keeps the oldest, marking the others KILLED (``medn.duplicate_of``);
both drivers apply the same rule, so they agree.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_COMMIT,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_NAME,
    MLFLOW_RUN_NOTE,
)
from mlflow.utils.validation import MAX_DATASET_DIGEST_SIZE, MAX_TAG_VAL_LENGTH

from medn import config as medn_config
from medn.config import MednConfig
from medn.data.prepared import PreparedDataset
from medn.data.qc import qc_table_csv
from medn.train import FoldResult
from orchestrator.cost import parent_cost
from orchestrator.git_info import git_commit
from orchestrator.tracking import pooling
from orchestrator.tracking.experiment import ExperimentClaim, open_experiment
from orchestrator.tracking.retry import RetryingClient
from orchestrator.tracking.spool import Spool, SpoolEntry
from orchestrator.tracking.store import (
    default_spool_dir,
    move_credentials,
    redact_uri,
    ui_link,
)
from orchestrator.tracking.tags import (
    INHERITED_TAGS,
    ROLE_FOLD,
    ROLE_PARENT,
    TAG_ATTEMPT,
    TAG_CONFIG_DIGEST,
    TAG_DATASET,
    TAG_DATASET_DIGEST,
    TAG_DEVIATIONS,
    TAG_DEVICE,
    TAG_DUPLICATE_OF,
    TAG_ERROR,
    TAG_FOLD,
    TAG_INCOMPLETE,
    TAG_PROFILE,
    TAG_PRUNED,
    TAG_ROLE,
    TAG_STUDY,
    TAG_TASK,
    TAG_VARIANT,
)

FOLD_RESULT_ARTIFACT = "fold_result.json"
# Parents started this long before a driver looked for one may be a rival driver's new parent
# (allows for clocks a little apart: a run's start time is the creating machine's).
_RACE_WINDOW_MS = 60_000
# Configuration fields that say where things are, not what is trained: not part of the digest.
_LOCATION_FIELDS = ("data.annotations", "data.data_root", "data.cache_dir", "device")


def config_digest(cfg: MednConfig) -> str:
    """A short digest of what the configuration trains (file locations and device excluded)."""
    import hashlib

    params = {k: v for k, v in cfg.flat().items() if k not in _LOCATION_FIELDS}
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def describe_variant(name: str, label: str, overrides: dict[str, Any]) -> str:
    """A parent run's description (markdown): which variant it is and what it changes from
    the study's base configuration."""
    head = f"**{name}**" + (f" ({label})" if label and label != name else "")
    if not overrides:
        return f"{head}: the study's base configuration, unchanged."
    changes = "\n".join(f"- `{k}` = `{v}`" for k, v in sorted(overrides.items()))
    return f"{head} changes from the study's base configuration:\n\n{changes}"


@dataclass(frozen=True)
class ParentState:
    """What MLflow holds about a parent run: status, metrics and tags."""

    run_id: str
    status: str
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def pooled(self) -> dict[str, float] | None:
        """The pooled metrics when the parent is FINISHED with them, else None."""
        if self.status != "FINISHED" or "uf1" not in self.metrics:
            return None
        return {k: v for k, v in self.metrics.items() if k in ("uf1", "uar", "accuracy",
                                                                 "au_f1")}


def _filter_value(value: str, field: str) -> str:
    if "'" in value:
        raise ValueError(f"{field} {value!r} must not contain a single quote")
    return f"'{value}'"


def _truncate(text: str, limit: int = MAX_TAG_VAL_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " ...[truncated]"


class RunTreeWriter:
    """Writes one experiment's run tree (see the module doc)."""

    def __init__(self, tracking_uri: str, experiment: str, *, retries: int = 6,
                 backoff_s: float = 0.5, spool_dir: Path | None = None,
                 claim: bool = True) -> None:
        """Connect to ``tracking_uri`` and get or create the experiment ``experiment``.

        ``spool_dir`` holds fold results and failed attempts not yet logged (default
        ``default_spool_dir(tracking_uri)``). With ``claim`` (the default) the writer holds
        the experiment's driver lock while it lives; ``ExperimentBusy`` when another process
        holds it. ``TrackingStoreError`` when the store cannot be used (unsupported URI,
        read-only store, deleted experiment).
        """
        self.tracking_uri = move_credentials(tracking_uri)
        self.display_uri = redact_uri(self.tracking_uri)
        self.experiment_name = experiment
        self.spool_dir = Path(spool_dir if spool_dir is not None
                              else default_spool_dir(self.tracking_uri))
        self._mlflow, self.experiment_id = open_experiment(
            self.tracking_uri, experiment, retries=retries, backoff_s=backoff_s)
        self.spool = Spool(self.spool_dir, self.experiment_id)
        self._claim = ExperimentClaim(self.tracking_uri, experiment, self.experiment_id,
                                      self.spool_dir)
        if claim:
            self.claim()
        self._parent_tags: dict[str, dict[str, str]] = {}

    # -- retry policy ---------------------------------------------------------------------------
    @property
    def retries(self) -> int:
        """How many times a transient failure is retried."""
        return self._mlflow.retries

    @retries.setter
    def retries(self, value: int) -> None:
        self._mlflow.retries = value

    @property
    def backoff_s(self) -> float:
        """The first retry's delay (doubled each time, capped at 30 s)."""
        return self._mlflow.backoff_s

    @backoff_s.setter
    def backoff_s(self, value: float) -> None:
        self._mlflow.backoff_s = value

    # -- the experiment's claim -----------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        """The lock file that a driver of this experiment holds."""
        return self._claim.path

    def claim(self) -> None:
        """Claim this experiment for this process (re-entrant); ``ExperimentBusy`` naming the
        holder when another process runs it."""
        self._claim.acquire()

    def close(self) -> None:
        """Release this writer's claim of the experiment."""
        self._claim.release()

    def ui_link(self, port: int = 5000, host: str = "127.0.0.1") -> str:
        """This experiment's runs in the MLflow UI (``medn ui`` serves it on ``port``)."""
        return ui_link(self.experiment_id, port=port, host=host)

    def store_client(self) -> RetryingClient:
        """A client of this store whose every call is retried under this writer's policy, for
        writes outside the run tree (the study's summary run)."""
        return self._mlflow

    # -- plumbing -------------------------------------------------------------------------------
    def log_batch(self, run_id: str, metrics: Sequence[Metric] = (),
                  params: Sequence[Param] = (), tags: Sequence[RunTag] = ()) -> None:
        """Log metrics, params and tags (``MlflowClient.log_batch`` splits them into requests
        within MLflow's limits)."""
        if metrics or params or tags:
            self._mlflow.log_batch(run_id, metrics=list(metrics), params=list(params),
                                   tags=list(tags))

    def _search(self, filter_string: str, order_by: list[str] | None = None,
                max_results: int | None = None) -> list[Any]:
        runs: list[Any] = []
        token = None
        while True:
            page = self._mlflow.search_runs([self.experiment_id], filter_string,
                                            max_results=min(max_results or 1000, 1000),
                                            order_by=order_by, page_token=token)
            runs.extend(page)
            token = page.token
            if not token or (max_results is not None and len(runs) >= max_results):
                return runs

    def children(self, parent_id: str, status: str | None = None) -> list[Any]:
        """Every child run of ``parent_id`` (optionally of one status), oldest first."""
        filt = f"tags.{MLFLOW_PARENT_RUN_ID} = {_filter_value(parent_id, 'run id')}"
        if status:
            filt += f" and attributes.status = '{status}'"
        return self._search(filt, order_by=["attributes.start_time ASC"])

    # -- parent runs ----------------------------------------------------------------------------
    @staticmethod
    def _parent_filter(variant: str, cfg: MednConfig, data: PreparedDataset,
                       tags: dict[str, str] | None) -> str:
        parts = [f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}'",
                 f"tags.`{TAG_VARIANT}` = {_filter_value(variant, 'variant')}",
                 f"tags.`{TAG_CONFIG_DIGEST}` = '{config_digest(cfg)}'",
                 f"tags.`{TAG_DATASET_DIGEST}` = {_filter_value(data.digest, 'dataset digest')}"]
        if tags and tags.get(TAG_STUDY):
            parts.append(f"tags.`{TAG_STUDY}` = {_filter_value(tags[TAG_STUDY], 'study')}")
        return " and ".join(parts)

    def find_parent(self, variant: str, cfg: MednConfig, data: PreparedDataset,
                    tags: dict[str, str] | None = None) -> str | None:
        """The newest parent run of (variant, configuration, dataset[, study]), if any."""
        runs = self._search(self._parent_filter(variant, cfg, data, tags),
                            order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def parent_state(self, run_id: str) -> ParentState:
        """A parent run's status, metrics and tags as MLflow holds them now."""
        run = self._mlflow.get_run(run_id)
        return ParentState(run_id=run_id, status=run.info.status,
                           metrics=dict(run.data.metrics), tags=dict(run.data.tags))

    def parent_run(self, variant: str, cfg: MednConfig, data: PreparedDataset,
                   tags: dict[str, str], *, fresh: bool = False,
                   description: str | None = None) -> str:
        """Get (resume) or create the parent run of (variant, configuration, dataset).

        ``fresh=True`` always creates a new parent beside any old one; call it only once every
        check of the run has passed, so that a refused run leaves no empty parent behind. A
        resumed parent is set back to RUNNING and gets what waits for it in the spool logged.
        ``description`` (markdown) becomes the run's description in the MLflow UI.
        """
        searched_at = int(time.time() * 1000)
        if not fresh:
            existing = self.find_parent(variant, cfg, data, tags)
            if existing is not None:
                return self._resume_parent(existing, tags, description)
        run_tags: dict[str, str] = {
            TAG_ROLE: ROLE_PARENT,
            TAG_VARIANT: variant,
            TAG_DATASET: data.name,
            TAG_TASK: str(data.task),
            TAG_DATASET_DIGEST: data.digest,
            TAG_CONFIG_DIGEST: config_digest(cfg),
            TAG_PROFILE: cfg.profile,
            "medn.folds": str(len(data.subject_ids)),
        }
        deviations = getattr(medn_config, "deviations", None)
        if callable(deviations):
            run_tags[TAG_DEVIATIONS] = _truncate(", ".join(deviations(cfg)) or "none")
        commit = git_commit()
        if commit:
            run_tags[MLFLOW_GIT_COMMIT] = commit
        if description:
            run_tags[MLFLOW_RUN_NOTE] = description
        run_tags.update({k: _truncate(str(v)) for k, v in tags.items()})
        run = self._mlflow.create_run(self.experiment_id, tags=run_tags, run_name=variant)
        run_id = run.info.run_id
        self._parent_tags[run_id] = {**run_tags, MLFLOW_RUN_NAME: variant}
        params = [Param(k, "None" if v is None else str(v)) for k, v in cfg.flat().items()]
        self.log_batch(run_id, params=params)
        self._mlflow.log_text(run_id, yaml.safe_dump(cfg.model_dump(mode="json"),
                                                     sort_keys=False), "config.yaml")
        self._mlflow.log_inputs(run_id, datasets=[_dataset_input(cfg, data)])
        # Per-clip alignment QC beside the dataset input, so a run shows what it was fed.
        self._mlflow.log_text(run_id, qc_table_csv(data), "data/qc.csv")
        # parameters, FLOPs per clip (Table VI's claim); own names: ``tags`` is still needed
        cost_metrics, cost_tags = parent_cost(cfg, data)
        self.log_batch(run_id, metrics=cost_metrics, tags=cost_tags)
        if fresh:
            return run_id
        kept = self._keep_one_parent(self._parent_filter(variant, cfg, data, tags), run_id,
                                     since_ms=searched_at - _RACE_WINDOW_MS)
        return run_id if kept == run_id else self._resume_parent(kept, tags, description)

    def _resume_parent(self, run_id: str, tags: dict[str, str],
                       description: str | None) -> str:
        state = self.parent_state(run_id)
        self._parent_tags[run_id] = state.tags
        if state.status != "RUNNING":
            self._mlflow.update_run(run_id, status="RUNNING")
        extra = {k: str(v) for k, v in tags.items() if state.tags.get(k) != str(v)}
        if description and state.tags.get(MLFLOW_RUN_NOTE) != description:
            extra[MLFLOW_RUN_NOTE] = description
        if extra:  # e.g. a missing-clips count that changed since the last run
            self.log_batch(run_id, tags=[RunTag(k, _truncate(v)) for k, v in extra.items()])
            self._parent_tags[run_id].update(extra)
        self.flush_spool(run_id)
        return run_id

    def _keep_one_parent(self, parent_filter: str, mine: str, since_ms: int) -> str:
        """One parent per (variant, configuration, dataset, study) when drivers the lock cannot
        see both created one at the same moment: of the RUNNING parents started since
        ``since_ms`` the oldest is kept and the others are deleted (they hold nothing yet);
        every driver applies the same rule, so they agree."""
        rivals = self._search(f"{parent_filter} and attributes.status = 'RUNNING' and "
                              f"attributes.start_time >= {int(since_ms)}")
        if len(rivals) <= 1:
            return mine
        keep = min(rivals, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id
        if keep != mine:
            self.set_tags(mine, {TAG_DUPLICATE_OF: keep})
            self._mlflow.delete_run(mine)
        return keep

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags on a run of this experiment (values truncated to MLflow's limit)."""
        self.log_batch(run_id, tags=[RunTag(k, _truncate(str(v))) for k, v in tags.items()])
        if run_id in self._parent_tags:
            self._parent_tags[run_id].update({k: str(v) for k, v in tags.items()})

    def mark_pruned(self, parent_id: str) -> None:
        """End a parent whose configuration the search pruned: tag ``medn.pruned``, KILLED."""
        self.set_tags(parent_id, {TAG_PRUNED: "true"})
        self._mlflow.set_terminated(parent_id, "KILLED")

    def terminate(self, run_id: str, status: str = "KILLED") -> None:
        """End a run with ``status`` (``FINISHED``, ``FAILED`` or ``KILLED``)."""
        self._mlflow.set_terminated(run_id, status)

    def _tags_of(self, parent_id: str) -> dict[str, str]:
        if parent_id not in self._parent_tags:
            self._parent_tags[parent_id] = self.parent_state(parent_id).tags
        return self._parent_tags[parent_id]

    def _child_tags(self, parent_id: str, subject: str, extra: dict[str, str]) -> dict[str, str]:
        parent = self._tags_of(parent_id)
        tags = {k: parent[k] for k in INHERITED_TAGS if k in parent}
        tags.update({MLFLOW_PARENT_RUN_ID: parent_id, TAG_ROLE: ROLE_FOLD, TAG_FOLD: subject})
        tags.update({k: str(v) for k, v in extra.items()})
        return tags

    # -- fold runs ------------------------------------------------------------------------------
    def finished_folds(self, parent_id: str) -> dict[str, str]:
        """Held-out subject -> its FINISHED child run id (the oldest, if there were several)."""
        done: dict[str, str] = {}
        for run in self.children(parent_id, status="FINISHED"):
            subject = run.data.tags.get(TAG_FOLD)
            if subject is not None and subject not in done:
                done[subject] = run.info.run_id
        return done

    def log_fold(self, parent_id: str, result: FoldResult, tags: dict[str, str]) -> str:
        """Log one fold as a FINISHED child run of ``parent_id`` and return its id.

        The result is spooled first and unspooled once its run is FINISHED. If the fold already
        has a FINISHED run, that run's id is returned and nothing is written; RUNNING leftovers
        of the same fold (a crash mid-write) are marked KILLED.
        """
        return self.log_spooled(self.spool_fold(parent_id, result, tags))

    def log_failed_fold(self, parent_id: str, subject: str, error: str, attempt: int,
                        tags: dict[str, str]) -> str:
        """Record a failed training attempt of a fold as a FAILED child run with its error
        (spooled first, like ``log_fold``)."""
        return self.log_spooled(self.spool_failed(parent_id, subject, error, attempt, tags))

    def log_spooled(self, entry: SpoolEntry) -> str:
        """Write the run of a spooled ``entry`` (a FINISHED fold run or a FAILED attempt), then
        remove it from the spool; returns the run's id."""
        if entry.kind == "fold":
            run_id = self._write_fold_run(entry.parent_id, entry.fold_result(), entry.tags)
        else:
            run_id = self._write_failed_run(entry.parent_id, entry.subject, entry.error,
                                            entry.attempt, entry.tags)
        self.spool.remove(entry)
        return run_id

    def _fold_runs(self, parent_id: str, subject: str) -> list[Any]:
        return [r for r in self.children(parent_id) if r.data.tags.get(TAG_FOLD) == subject]

    def _write_fold_run(self, parent_id: str, result: FoldResult, tags: dict[str, str]) -> str:
        subject = result.subject
        runs = self._fold_runs(parent_id, subject)
        for run in runs:
            if run.info.status == "FINISHED":
                return run.info.run_id
        for run in runs:
            if run.info.status == "RUNNING":
                self._mlflow.set_terminated(run.info.run_id, "KILLED")
        run_tags = self._child_tags(parent_id, subject, {TAG_DEVICE: result.device, **tags})
        run = self._mlflow.create_run(self.experiment_id, tags=run_tags,
                                      run_name=f"fold-{subject}")
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, epoch)
                   for epoch, entry in enumerate(result.history, start=1)
                   for key, value in entry.items()]
        metrics.append(Metric("fold_seconds", float(result.seconds), now, 0))
        self.log_batch(run_id, metrics=metrics)
        self._mlflow.log_dict(run_id, result.to_dict(), FOLD_RESULT_ARTIFACT)
        self._mlflow.set_terminated(run_id, "FINISHED")
        return self._keep_one_finished(parent_id, subject, run_id)

    def _keep_one_finished(self, parent_id: str, subject: str, mine: str) -> str:
        """Exactly one FINISHED run per fold: if a driver the lock could not see finished the
        same fold too, the oldest run is kept and the others are marked KILLED (every driver
        applies the same rule, so they agree)."""
        finished = [r for r in self._fold_runs(parent_id, subject)
                    if r.info.status == "FINISHED"]
        if len(finished) <= 1:
            return mine
        keep = min(finished, key=lambda r: (r.info.start_time, r.info.run_id))
        for run in finished:
            if run.info.run_id != keep.info.run_id:
                self.set_tags(run.info.run_id, {TAG_DUPLICATE_OF: keep.info.run_id})
                self._mlflow.set_terminated(run.info.run_id, "KILLED")
        return keep.info.run_id

    def _write_failed_run(self, parent_id: str, subject: str, error: str, attempt: int,
                          tags: dict[str, str]) -> str:
        run_tags = self._child_tags(parent_id, subject, {
            TAG_ERROR: _truncate(error), TAG_ATTEMPT: str(attempt), **tags})
        run = self._mlflow.create_run(self.experiment_id, tags=run_tags,
                                      run_name=f"fold-{subject}-failed-{attempt}")
        run_id = run.info.run_id
        self._mlflow.log_text(run_id, error, "error.txt")
        self._mlflow.set_terminated(run_id, "FAILED")
        return run_id

    def load_fold_result(self, run_id: str) -> FoldResult:
        """The ``FoldResult`` a fold run holds (its ``fold_result.json`` artifact)."""
        with tempfile.TemporaryDirectory(prefix="medn-fold-") as tmp:
            path = self._mlflow.download_artifacts(run_id, FOLD_RESULT_ARTIFACT, tmp)
            return FoldResult.from_dict(json.loads(Path(path).read_text()))

    # -- spool ----------------------------------------------------------------------------------
    def spool_fold(self, parent_id: str, result: FoldResult,
                   tags: dict[str, str] | None = None) -> SpoolEntry:
        """Persist a fold's result for ``parent_id`` (no MLflow call); complete on disk when
        this returns. ``DiskFull`` / ``SpoolError`` when it cannot be written."""
        return self.spool.put_fold(parent_id, result, tags)

    def spool_failed(self, parent_id: str, subject: str, error: str, attempt: int,
                     tags: dict[str, str] | None = None) -> SpoolEntry:
        """Persist a failed attempt of ``subject``'s fold (no MLflow call), to be logged as a
        FAILED run; every attempt is its own entry."""
        return self.spool.put_failed(parent_id, subject, error, attempt, tags)

    def _unspool(self, entry: SpoolEntry) -> None:
        self.spool.remove(entry)

    def spooled(self, parent_id: str | None = None) -> list[SpoolEntry]:
        """What waits in this experiment's spool (only ``parent_id``'s when given), oldest
        first; ``SpoolError`` names a file that cannot be read."""
        return self.spool.entries(parent_id)

    def spooled_results(self, parent_id: str) -> list[FoldResult]:
        """Fold results of ``parent_id`` computed but not yet logged (kept on local disk)."""
        return [e.fold_result() for e in self.spooled(parent_id) if e.kind == "fold"]

    def flush_spool(self, parent_id: str | None = None) -> list[str]:
        """Log everything waiting in this experiment's spool (only ``parent_id``'s when given);
        the ids of the runs written."""
        return [self.log_spooled(entry) for entry in self.spooled(parent_id)]

    # -- pooling --------------------------------------------------------------------------------
    def finalize_parent(self, parent_id: str, data: PreparedDataset) -> dict[str, float] | None:
        """Pool exactly one FINISHED run per fold of ``data`` and log the parent's results
        (what ``pooling.parent_metrics`` / ``parent_tables`` / ``parent_figures`` make).

        The predictions are read back from MLflow. If some fold has no FINISHED run, no pooled
        metric is logged: the parent is tagged ``medn.incomplete`` with the missing subjects,
        ended as KILLED, and None is returned.
        """
        done = self.finished_folds(parent_id)
        missing = [s for s in data.subject_ids if s not in done]
        if missing:
            note = (f"{len(missing)} of {len(data.subject_ids)} folds have no finished run: "
                    + ", ".join(missing))
            self.set_tags(parent_id, {TAG_INCOMPLETE: note})
            self._mlflow.set_terminated(parent_id, "KILLED")
            return None
        results = [self._checked_result(done[s], s, data) for s in data.subject_ids]
        pooled = pooling.pool(results, data, variant=self._tags_of(parent_id).get(TAG_VARIANT,
                                                                                   ""))
        now = int(time.time() * 1000)
        self.log_batch(parent_id, metrics=[
            Metric(k, float(v), now, 0) for k, v in pooling.parent_metrics(pooled).items()],
            tags=[RunTag("medn.pooled_runs",
                         _truncate(",".join(done[s] for s in data.subject_ids))),
                  RunTag("medn.clips", str(len(pooled.y_true)))])
        for name, text in pooling.parent_tables(pooled).items():
            self._mlflow.log_text(parent_id, text, name)
        for name, figure in pooling.parent_figures(pooled).items():
            self._mlflow.log_figure(parent_id, figure, name)
        if TAG_INCOMPLETE in self.parent_state(parent_id).tags:
            self._mlflow.delete_tag(parent_id, TAG_INCOMPLETE)
        self._mlflow.set_terminated(parent_id, "FINISHED")
        return pooled.metrics

    def _checked_result(self, run_id: str, subject: str, data: PreparedDataset) -> FoldResult:
        result = self.load_fold_result(run_id)
        expected = sorted(data.clips[i] for i in data.fold(subject).test_idx)
        if sorted(result.clips) != expected:
            raise ValueError(f"fold run {run_id} (subject {subject!r}) holds predictions for "
                             f"clips {sorted(result.clips)[:5]}..., not the dataset's "
                             f"{expected[:5]}...: it was made from other data")
        return result


def _dataset_input(cfg: MednConfig, data: PreparedDataset) -> DatasetInput:
    source = {"dataset": cfg.data.dataset, "task": data.task,
              "annotations": str(cfg.data.annotations) if cfg.data.annotations else None,
              "data_root": str(cfg.data.data_root) if cfg.data.data_root else None}
    profile = {"clips": len(data), "subjects": len(set(data.subjects)),
               "classes": list(data.classes), "aus": list(data.au_names),
               "flows_shape": list(data.flows.shape), "digest": data.digest}
    dataset = Dataset(name=f"{data.name}-{data.task}class",
                      digest=data.digest[:MAX_DATASET_DIGEST_SIZE], source_type="local",
                      source=json.dumps(source), profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])
