"""MLflow logging cost of one fold next to its training cost, measured side by side.

For a few LOSO folds of ``synth`` on the chosen profile: the seconds ``train_fold`` takes, then
the seconds ``RunTreeWriter.log_fold`` takes to write that fold (per-epoch metrics batched, the
predictions artifact), against a fresh sqlite store; and once, ``parent_run`` and
``finalize_parent``. Prints the per-fold ratio log/train.

    .venv/bin/python benchmarks/bench_tracking.py                 # quick profile, 3 folds
    .venv/bin/python benchmarks/bench_tracking.py --profile smoke --folds 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from medn.config import load_config
from medn.data.dataset import prepare_dataset
from medn.train import train_fold
from orchestrator.tracking import RunTreeWriter, configure_mlflow_environment


def main() -> None:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", default=".medn_cache")
    args = parser.parse_args()
    configure_mlflow_environment()  # as a medn command does at start-up
    torch.set_num_threads(args.threads)
    cfg = load_config(profile=args.profile, overrides=[f"data.cache_dir={args.cache_dir}",
                                                       "device=cpu"])
    data = prepare_dataset(cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlruns/mlflow.db"
        Path(tmp, "mlruns").mkdir()
        t0 = time.perf_counter()
        writer = RunTreeWriter(uri, "bench", spool_dir=Path(tmp, "spool"))
        t_open = time.perf_counter() - t0
        t0 = time.perf_counter()
        parent = writer.parent_run("bench", cfg, data, {})
        t_parent = time.perf_counter() - t0
        print(f"{args.profile}: {len(data)} clips, {cfg.optim.epochs} epochs, "
              f"{args.threads} thread(s)")
        print(f"open store (creates the sqlite schema) {t_open:6.2f} s; parent run "
              f"{t_parent:5.2f} s")
        print(f"{'fold':>6} {'train s':>8} {'log s':>7} {'log/train':>9}")
        total_train = total_log = 0.0
        for subject in data.subject_ids[: args.folds]:
            result = train_fold(cfg, data, subject)
            t0 = time.perf_counter()
            writer.log_fold(parent, result, {})
            t_log = time.perf_counter() - t0
            total_train += result.seconds
            total_log += t_log
            print(f"{subject:>6} {result.seconds:8.2f} {t_log:7.3f} "
                  f"{t_log / result.seconds:9.1%}")
        print(f"{'all':>6} {total_train:8.2f} {total_log:7.3f} {total_log / total_train:9.1%}")
        for subject in data.subject_ids[args.folds:]:  # finalize needs every fold: reuse one
            result = train_fold(cfg.model_copy(update={"optim": cfg.optim.model_copy(
                update={"epochs": 1})}), data, subject)
            writer.log_fold(parent, result, {})
        t0 = time.perf_counter()
        writer.finalize_parent(parent, data)
        print(f"finalize_parent ({len(data.subject_ids)} folds read back, pooled, plotted): "
              f"{time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
