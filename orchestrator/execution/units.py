"""The units of work of a study: one (task, variant, fold subject) training each."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from medn.config import DataConfig, MednConfig


def data_key(data: DataConfig) -> str:
    """A short id of a data configuration: variants with equal ``data`` share one prepared set."""
    text = json.dumps(data.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def unit_id(task: int, variant: str, subject: str) -> str:
    """The id of one unit, also the Tune trial's ``config["unit"]``: ``3|no5-full|s01``."""
    return f"{task}|{variant}|{subject}"


@dataclass(frozen=True, eq=False)
class Unit:
    """One (task, variant, fold) training as it travels to a Ray worker: plain, picklable data.

    ``config`` is the variant's ``MednConfig`` dumped to JSON-safe values; ``data_key`` names the
    prepared dataset (put once in Ray's object store) that the worker trains on.
    """

    task: int
    variant: str
    subject: str
    fold_index: int
    data_key: str
    config: dict[str, Any]

    @property
    def uid(self) -> str:
        """This unit's id (``unit_id``)."""
        return unit_id(self.task, self.variant, self.subject)

    def medn_config(self) -> MednConfig:
        """The variant's configuration, validated again on the worker."""
        return MednConfig.model_validate(self.config)


@dataclass(eq=False)
class VariantState:
    """What the driver knows of one (task, variant) during a study run.

    ``subjects`` are the LOSO folds in order; ``finished`` those with a FINISHED child run in
    MLflow; ``received`` those whose result reached the driver (in the spool or logged);
    ``running`` those training now; ``gave_up`` those whose every attempt failed.
    """

    task: int
    name: str
    label: str
    config: MednConfig
    experiment: str
    data_key: str
    subjects: list[str]
    parent_id: str = ""
    finished: set[str] = field(default_factory=set)
    received: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)
    failed_attempts: int = 0
    gave_up: set[str] = field(default_factory=set)
    pooled: dict[str, Any] | None = None
    finalized: bool = False
    pruned: bool = False
    note: str = ""
    fold_order: list[str] | None = None  # the order folds are submitted (default: LOSO order)
    only: set[str] | None = None  # train only these folds (medn train --fold)
    tags: dict[str, str] = field(default_factory=dict)  # added to every fold run
    parent_tags: dict[str, str] = field(default_factory=dict)  # the parent run's, when opened
    description: str = ""  # the parent run's description (markdown)
    opened: bool = False  # the parent run was created or resumed (set RUNNING) by this run
    seed: int | None = None  # one of several training seeds (``--seeds``): its own parent run

    @property
    def unit_name(self) -> str:
        """The variant's name in unit ids and the live table: ``no5-full``, or
        ``no5-full@seed1`` when the study trains several seeds (each one a parent run)."""
        return self.name if self.seed is None else f"{self.name}@seed{self.seed}"

    @property
    def key(self) -> tuple[int, str]:
        """``(task, unit name)``."""
        return (self.task, self.unit_name)

    @property
    def pending(self) -> list[str]:
        """The subjects still to train, in fold order."""
        order = self.fold_order or self.subjects
        return [s for s in order if s not in self.finished and s not in self.received
                and (self.only is None or s in self.only)]

    @property
    def all_finished(self) -> bool:
        """Whether every fold has a FINISHED run in MLflow."""
        return all(s in self.finished for s in self.subjects)

    def units(self) -> list[Unit]:
        """The pending folds as units."""
        cfg = self.config.model_dump(mode="json")
        return [Unit(self.task, self.unit_name, s, self.subjects.index(s), self.data_key, cfg)
                for s in self.pending]

    @property
    def status(self) -> str:
        """``complete``, ``pruned``, ``incomplete`` (a fold never finished) or ``running``."""
        if self.pruned:
            return "pruned"
        if self.finalized and self.all_finished:
            return "complete"
        if self.gave_up:
            return "incomplete"
        return "running" if self.running else ("pending" if not self.all_finished
                                               else "finishing")
