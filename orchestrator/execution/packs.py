"""Packs: one Tune trial trains several pending folds of one variant as ONE stacked model.

A fold of MEDN is too small to keep a GPU busy; ``medn.packing.train_folds`` trains K folds of
one configuration at the cost of about one (see docs/training.md, "Packed training"). A study
therefore groups each variant's pending folds into packs (``--pack K``; ``auto``: enough folds
per pack to keep every trial slot busy, at most what fits the device; ``1``: one fold per
trial with ``train_fold``, as before packing existed).

Nothing else changes: a pack reports ONE Tune result per fold as soon as it has it (the
recorder logs one MLflow child run per fold, the live table counts folds); a pack whose fold
fails reports its pack-mates' results, then fails naming the failed folds; Tune's retry of the
pack trains only the folds it has not reported yet (they are listed in the trial's checkpoint),
and a re-run of the study packs only the folds that have no FINISHED run.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from medn.config import MednConfig
from orchestrator.execution.units import Unit

SEPARATOR = "+"
AUTO = "auto"
# the most folds one auto pack holds (beyond this a pack only adds memory and latency)
AUTO_LIMIT = 32
# whether ``auto`` packs folds of CPU trials too. It does not pay there (docs/training.md: CPU
# time per fold packed vs unpacked 0.99-1.01 for quick, 1.11 for the paper-size model, and 2-4x
# the memory per fold), so CPU trials stay one fold each unless --pack K asks.
PACK_ON_CPU = False


class PackFoldsFailed(RuntimeError):
    """Folds of a pack failed (its other folds were reported); Tune retries the unfinished."""


def parse_pack(value: str | int) -> int | str:
    """``auto`` or a positive fold count; a ValueError naming ``--pack`` otherwise."""
    text = str(value).strip().lower()
    if text == AUTO:
        return AUTO
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--pack {value}: expected a positive number of folds or 'auto'")
    return int(text)


@dataclass(frozen=True, eq=False)
class PackUnit:
    """Pending folds of one (task, variant), trained together by one trial."""

    task: int
    variant: str
    subjects: tuple[str, ...]
    data_key: str
    config: dict[str, Any]

    @property
    def uid(self) -> str:
        """``3|variant|s01+s02``: the trial's ``config["unit"]`` (``3|variant|s01`` alone)."""
        return f"{self.task}|{self.variant}|{SEPARATOR.join(self.subjects)}"

    def medn_config(self) -> MednConfig:
        """The variant's configuration, validated again on the worker."""
        return MednConfig.model_validate(self.config)


def pack_of(uid: str) -> tuple[int, str, list[str]]:
    """``(task, variant, subjects)`` of a pack id (a single fold's id too)."""
    task, variant, subjects = uid.split("|", 2)
    return int(task), variant, subjects.split(SEPARATOR)


def trial_slots(cluster_cpus: float, cluster_gpus: float, cpus_per_trial: float,
                gpus_per_trial: float, max_concurrent: int | None) -> int:
    """How many trials the cluster runs at once (CPUs, GPUs, ``--max-concurrent``)."""
    slots = cluster_cpus // cpus_per_trial
    if gpus_per_trial > 0:
        slots = min(slots, cluster_gpus // gpus_per_trial)
    if max_concurrent:
        slots = min(slots, max_concurrent)
    return max(1, int(slots))


def pack_size(option: int | str, pending: int, slots: int, on_gpu: bool = True) -> int:
    """Folds per pack: the number asked for, or for ``auto`` enough folds that ``slots``
    trials running at once share the ``pending`` folds, at most ``AUTO_LIMIT`` (the worker
    then trains a pack in memory-sized parts: ``medn.packing.max_pack_size``); on CPU trials
    at most ``CPU_PACK_LIMIT`` (1 unless ``PACK_ON_CPU``)."""
    from medn.packing import CPU_PACK_LIMIT

    if option != AUTO:
        return int(option)
    limit = AUTO_LIMIT if on_gpu else (CPU_PACK_LIMIT if PACK_ON_CPU else 1)
    return max(1, min(limit, math.ceil(pending / max(1, slots))))


def make_packs(units: list[Unit], option: int | str, slots: int,
               on_gpu: bool = True) -> list[PackUnit]:
    """The pending fold units grouped into packs: consecutive folds of one (task, variant), in
    their order, ``pack_size`` at most per pack."""
    size = pack_size(option, len(units), slots, on_gpu)
    packs: list[PackUnit] = []
    groups: dict[tuple[int, str], list[Unit]] = {}
    for unit in units:
        groups.setdefault((unit.task, unit.variant), []).append(unit)
    for members in groups.values():
        for start in range(0, len(members), size):
            part = members[start:start + size]
            packs.append(PackUnit(part[0].task, part[0].variant,
                                  tuple(u.subject for u in part), part[0].data_key,
                                  part[0].config))
    return packs


def _done_subjects() -> set[str]:
    """The folds an earlier attempt of this trial reported (from its last checkpoint)."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return set()
    with checkpoint.as_directory() as folder:
        path = os.path.join(folder, "done.json")
        with open(path) as handle:
            return set(json.load(handle))


def _report(uid: str, fold: dict[str, Any], done: set[str]) -> None:
    """One fold's result, with a checkpoint listing every fold this trial has reported."""
    from ray import tune

    from orchestrator.execution.trainable import fold_metrics

    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "done.json"), "w") as handle:
            json.dump(sorted(done), handle)
        tune.report({"unit": uid, "subject": fold["subject"], "fold": fold,
                     "pid": os.getpid(), **fold_metrics(fold)},
                    checkpoint=tune.Checkpoint.from_directory(folder))


def train_pack(config: dict[str, Any], *, packs: dict[str, PackUnit], datasets: dict[str, Any],
               threads: int, memory_fraction: float = 1.0) -> None:
    """The Tune function of a pack: train its folds not reported yet, one result per fold.

    One fold: ``train_fold`` (exactly the unpacked training). Several: ``train_folds`` in
    parts that fit the device (``max_pack_size``). A failed fold (an injected fault, a
    non-finite loss) does not stop its pack-mates; the trial fails at the end naming it.
    """
    import torch

    from medn.packing import PackError, max_pack_size, train_in_packs
    from medn.train import resolve_device, train_fold
    from orchestrator.execution.faults import maybe_inject_fault
    from orchestrator.execution.trainable import _dataset

    pack = packs[config["unit"]]
    torch.set_num_threads(threads)
    data = _dataset(pack.data_key, datasets)
    cfg = pack.medn_config()
    done = _done_subjects()
    failed: dict[str, str] = {}
    todo = []
    for subject in pack.subjects:
        if subject in done:
            continue
        try:
            maybe_inject_fault(pack.variant, subject)
        except Exception as err:  # noqa: BLE001 - this fold fails; its pack-mates train
            failed[subject] = f"{type(err).__name__}: {err}"
            continue
        todo.append(subject)
    if len(pack.subjects) == 1 and todo:
        result = train_fold(cfg, data, todo[0])
        done.add(result.subject)
        _report(pack.uid, result.to_dict(), done)
    elif todo:
        device = resolve_device(cfg)
        fit = max_pack_size(cfg, data, device, memory_fraction)
        for start in range(0, len(todo), fit):
            part = todo[start:start + fit]
            try:
                results = train_in_packs(cfg, data, part, pack_size=len(part), device=device)
            except PackError as err:
                results = err.results
                failed.update({s: f"{type(e).__name__}: {e}" for s, e in err.errors.items()})
            for result in results:
                done.add(result.subject)
                _report(pack.uid, result.to_dict(), done)
    if failed:
        raise PackFoldsFailed("; ".join(f"fold {s}: {text}" for s, text in failed.items()))
