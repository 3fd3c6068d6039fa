"""What a configuration costs, as parent-run metrics, and the report's check of the paper's
cost claim.

Each parent run logs ``cost/params`` and ``cost/flops_per_clip`` (the whole model), the same
for the emotion branch (``cost/params_emotion``, ``cost/flops_per_clip_emotion``: SEVit, the
"module" of the paper's sentence), when it is created; and ``cost/train_seconds`` (the sum of
its folds' training times) when it is pooled. The paper says of Table VI that
[1,1,2,2,4,4,8,8] "nearly doubles the overall computational cost of the module" compared with
[1,2,4,8]; ``cost_notes`` puts the measured ratios beside that sentence in the report.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from medn.config import MednConfig
    from medn.data.prepared import PreparedDataset
    from medn.train import FoldResult

PARAMS = "cost/params"
FLOPS = "cost/flops_per_clip"
PARAMS_EMOTION = "cost/params_emotion"
FLOPS_EMOTION = "cost/flops_per_clip_emotion"
TRAIN_SECONDS = "cost/train_seconds"
COST_ERROR_TAG = "medn.cost_error"
COST_METRICS = (PARAMS, FLOPS, PARAMS_EMOTION, FLOPS_EMOTION, TRAIN_SECONDS)
# report columns, in this order
COST_COLUMNS = {PARAMS: "params", FLOPS: "flops_per_clip", PARAMS_EMOTION: "params_emotion",
                FLOPS_EMOTION: "flops_per_clip_emotion", TRAIN_SECONDS: "train_seconds"}
PAPER_COST_CLAIM = ("[1,1,2,2,4,4,8,8] \"nearly doubles the overall computational cost of the "
                    "module\" (paper, on Table VI)")
_RATES = re.compile(r"\[([\d,\s]+)\]")
_NOT_RATES = re.compile(r"[\d,\[\]\s_-]")


def model_cost_metrics(cfg: MednConfig, data: PreparedDataset) -> dict[str, float]:
    """``cost/params``, ``cost/flops_per_clip`` and their emotion-branch (SEVit) parts for the
    model ``cfg`` builds for ``data``'s classes and AUs (one forward pass of one zero clip on
    the CPU, counted by ``torch.utils.flop_counter``; the global RNG is left as it was)."""
    import torch
    from torch.utils import flop_counter

    from medn.models import build_model, count_parameters
    from medn.models import cost as model_cost

    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg, num_classes=data.num_classes, num_aus=data.num_aus)
    model.eval()
    # the same per-op formulas as medn.models.cost (CPU attention counted like CUDA's)
    mapping = model_cost._custom_mapping()
    with torch.no_grad(), flop_counter.FlopCounterMode(display=False,
                                                       custom_mapping=mapping) as counter:
        model(**model_cost.example_inputs(cfg))
    by_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    parameters = count_parameters(model)
    return {PARAMS: float(parameters["total"]), FLOPS: float(counter.get_total_flops()),
            PARAMS_EMOTION: float(parameters["emotion"]),
            FLOPS_EMOTION: float(by_module.get(f"{type(model).__name__}.emotion", 0))}


def train_seconds(results: Sequence[FoldResult]) -> dict[str, float]:
    """``cost/train_seconds``: the training time of every fold, summed."""
    return {TRAIN_SECONDS: float(sum(r.seconds for r in results))}


def add_cost_columns(df: pd.DataFrame, metrics_by_run: Mapping[str, Mapping[str, float]]
                     ) -> None:
    """Add ``params``, ``flops_per_clip``, ``params_emotion``, ``flops_per_clip_emotion`` and
    ``train_seconds`` to a report table (``df.run_id``: one id or several joined by commas,
    one per seed; the mean over them). Nothing is added when no run logged a cost."""
    if not any(k in m for m in metrics_by_run.values() for k in COST_METRICS):
        return
    for metric, column in COST_COLUMNS.items():
        values = []
        for run_ids in df["run_id"]:
            found = [metrics_by_run.get(r, {}).get(metric) for r in str(run_ids).split(",") if r]
            found = [v for v in found if v is not None]
            values.append(sum(found) / len(found) if found else math.nan)
        df[column] = values


def _ratio(a: float, b: float) -> str:
    return f"×{a / b:.2f}" if b and math.isfinite(a) and math.isfinite(b) else "-"


def _si(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def _name(row: pd.Series) -> str:
    variant = str(row.get("variant", row["label"]))
    return str(row["label"]) if variant == row["label"] else f"{row['label']} ({variant})"


def _doubled(rates: list[int]) -> list[int]:
    return [r for r in rates for _ in (0, 1)]


def cost_notes(df: pd.DataFrame) -> list[str]:
    """Report notes: every variant's cost, and for each pair of variants whose sparsity rates
    are a list and that list with each rate twice ([1,2,4,8] and [1,1,2,2,4,4,8,8], the rest
    of their labels equal) the measured ratios beside the paper's claim. Empty without cost
    columns."""
    if "flops_per_clip" not in df.columns:
        return []
    parts = [f"{r['label']} {_si(r['params'])} · {_si(r['flops_per_clip'])} · "
             f"{r['train_seconds']:.0f} s" if math.isfinite(r["train_seconds"]) else
             f"{r['label']} {_si(r['params'])} · {_si(r['flops_per_clip'])} · -"
             for _, r in df.iterrows()]
    notes = ["cost (parameters · FLOPs per clip · training seconds, all folds): "
             + "; ".join(parts)]
    keyed: dict[tuple[str, str, tuple[int, ...]], pd.Series] = {}
    for _, row in df.iterrows():
        match = _RATES.search(str(row["label"]))
        if match:
            rates = tuple(int(x) for x in match[1].replace(" ", "").split(",") if x)
            # what else tells the two apart (e.g. the grouping in "s1-2-4-8-strided")
            other = _NOT_RATES.sub("", str(row.get("variant", "")))
            keyed[(other, _RATES.sub("[]", str(row["label"])), rates)] = row
    for (other, rest, rates), row in keyed.items():
        twice = keyed.get((other, rest, tuple(_doubled(list(rates)))))
        if twice is None or len(rates) < 2:
            continue
        notes.append(
            f"cost of {_name(twice)} against {_name(row)}: SEVit FLOPs "
            f"{_ratio(twice['flops_per_clip_emotion'], row['flops_per_clip_emotion'])}, "
            f"SEVit parameters {_ratio(twice['params_emotion'], row['params_emotion'])}, "
            f"model FLOPs {_ratio(twice['flops_per_clip'], row['flops_per_clip'])}, "
            f"training time {_ratio(twice['train_seconds'], row['train_seconds'])}; "
            f"the paper: {PAPER_COST_CLAIM}")
    return notes


def parent_cost(cfg: MednConfig, data: PreparedDataset) -> tuple[list[Any], list[Any]]:
    """What a new parent run logs about its cost: the metrics of ``model_cost_metrics`` (MLflow
    ``Metric``s, step 0), or, if counting fails, no metric and the tag ``medn.cost_error``
    saying why (never a failed run for want of a FLOP count)."""
    import time

    from mlflow.entities import Metric, RunTag

    try:
        values = model_cost_metrics(cfg, data)
    except Exception as err:  # noqa: BLE001 - recorded on the run, not hidden
        return [], [RunTag(COST_ERROR_TAG, f"{type(err).__name__}: {err}"[:5000])]
    now = int(time.time() * 1000)
    return [Metric(k, v, now, 0) for k, v in values.items()], []
