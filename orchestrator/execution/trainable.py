"""The Ray Tune function that trains one (task, variant, fold) unit on a worker."""

from __future__ import annotations

import os
from typing import Any

import ray
import torch
from ray import tune

from medn.data.prepared import PreparedDataset
from medn.train import train_fold
from orchestrator.execution.faults import maybe_inject_fault
from orchestrator.execution.units import Unit

# The prepared datasets this worker process has already fetched from the object store, by data
# key: with reused actors a worker deserialises each dataset once, not once per fold.
_DATASETS: dict[str, PreparedDataset] = {}


def _dataset(key: str, refs: dict[str, Any]) -> PreparedDataset:
    if key not in _DATASETS:
        ref = refs[key]
        _DATASETS[key] = ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref
    return _DATASETS[key]


def fold_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The fold's last-epoch held-out scores (``val/uf1`` ... as ``uf1`` ...), for the live
    table and the search's pruner."""
    last = result["history"][-1] if result.get("history") else {}
    return {name.removeprefix("val/"): float(value) for name, value in last.items()
            if name.startswith("val/")}


def train_unit(config: dict[str, Any], *, units: dict[str, Unit], datasets: dict[str, Any],
               threads: int) -> None:
    """Train the unit named by ``config["unit"]`` and report ONE result: the ``FoldResult``
    as a JSON-safe dict under ``fold``, plus its held-out scores."""
    unit = units[config["unit"]]
    torch.set_num_threads(threads)
    data = _dataset(unit.data_key, datasets)
    maybe_inject_fault(unit.variant, unit.subject)
    result = train_fold(unit.medn_config(), data, unit.subject).to_dict()
    tune.report({"unit": unit.uid, "fold": result, "pid": os.getpid(),
                 **fold_metrics(result)})
