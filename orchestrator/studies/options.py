"""The options of one study run: the flags every ``medn study NAME`` command takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from medn.config import PROFILES, DatasetName

TASKS = (3, 4, 5, 7)
DATASETS: tuple[str, ...] = get_args(DatasetName)


class StudyOptionsError(ValueError):
    """A study option with a bad value; the message names the flag and what was expected."""


@dataclass
class StudyOptions:
    """How to run a study: which data and tasks, where to run, where to record.

    ``tasks`` is the list of label protocols, one MLflow experiment each. ``gpus_per_trial=None``
    means *auto*: 0 where the Ray cluster has no GPU, else 1 (see ``resolve_gpus_per_trial``).
    ``address=None`` means a local Ray instance unless ``RAY_ADDRESS`` is set; ``tracking_uri=None``
    means ``orchestrator.tracking.resolve_tracking_uri(None)`` (``MLFLOW_TRACKING_URI`` or the
    project's sqlite store). ``sets`` are ``--set key=value`` items applied over every variant.
    ``trials`` overrides the trial budget of a search study (``tune``); other studies ignore it.
    """

    dataset: str = "synth"
    annotations: Path | None = None
    data_root: Path | None = None
    tasks: list[int] = field(default_factory=lambda: [3])
    profile: str = "quick"
    address: str | None = None
    tracking_uri: str | None = None
    gpus_per_trial: float | None = None
    cpus_per_trial: float = 1.0
    max_concurrent: int | None = None
    max_failures: int = 2
    fresh: bool = False
    sets: list[str] = field(default_factory=list)
    cache_dir: Path | None = None
    trials: int | None = None

    def __post_init__(self) -> None:
        self.tasks = list(self.tasks)
        self.sets = list(self.sets)
        checks: list[tuple[bool, str]] = [
            (self.dataset in DATASETS,
             f"--dataset {self.dataset!r}: expected one of {', '.join(DATASETS)}"),
            (bool(self.tasks), "--task: give at least one task (3, 4, 5 or 7)"),
            (all(t in TASKS for t in self.tasks),
             f"--task {self.tasks}: each task must be one of 3, 4, 5, 7"),
            (len(set(self.tasks)) == len(self.tasks), f"--task {self.tasks}: a task is repeated"),
            (self.profile in PROFILES,
             f"--profile {self.profile!r}: expected one of {', '.join(PROFILES)}"),
            (self.gpus_per_trial is None or self.gpus_per_trial >= 0,
             f"--gpus-per-trial {self.gpus_per_trial}: expected a number >= 0 (0.25 packs four "
             "folds on one GPU)"),
            (self.cpus_per_trial > 0, f"--cpus-per-trial {self.cpus_per_trial}: expected > 0"),
            (self.max_concurrent is None or self.max_concurrent >= 1,
             f"--max-concurrent {self.max_concurrent}: expected an integer >= 1"),
            (self.max_failures >= 0, f"--max-failures {self.max_failures}: expected >= 0"),
            (self.trials is None or self.trials >= 1, f"--trials {self.trials}: expected >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise StudyOptionsError(message)

    def data_tree(self, task: int) -> dict[str, Any]:
        """The ``data`` section these options set for ``task`` (merged over the study's base)."""
        data: dict[str, Any] = {"dataset": self.dataset, "task": task}
        if self.annotations is not None:
            data["annotations"] = str(self.annotations)
        if self.data_root is not None:
            data["data_root"] = str(self.data_root)
        if self.cache_dir is not None:
            data["cache_dir"] = str(self.cache_dir)
        return {"data": data}

    def resolve_gpus_per_trial(self, cluster_gpus: float) -> float:
        """GPUs each (variant, fold) trial asks Ray for, given the GPUs the cluster has."""
        if self.gpus_per_trial is not None:
            if self.gpus_per_trial > 0 and cluster_gpus <= 0:
                raise StudyOptionsError(
                    f"--gpus-per-trial {self.gpus_per_trial}: the Ray cluster has no GPU; "
                    "use --gpus-per-trial 0")
            return float(self.gpus_per_trial)
        return 1.0 if cluster_gpus > 0 else 0.0
