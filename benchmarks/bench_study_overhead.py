"""Orchestration overhead of a study: run_study on Ray Tune vs a plain loop over train_fold.

The same (variant, fold) trainings — every variant of a study on synth, smoke profile by
default — run side by side in one process:

1. a plain sequential loop calling ``medn.train.train_fold`` with 1 torch thread (what one
   trial gets), no Ray, no MLflow: ``loop_wall``;
2. the study through ``run_study`` (Ray start-up, object store, Tune trials, MLflow logging of
   every fold and parent, summary run) with ``--max-concurrent C`` for each C asked:
   ``study_wall``.

Printed per C: ``overhead per trial = (study_wall - loop_wall / C) / trials`` (the time the
study costs beyond the loop's training work ideally spread over C concurrent trials; Ray's
start-up is included) and ``ratio = study_wall / loop_wall``.

    .venv/bin/python benchmarks/bench_study_overhead.py [--study ablation-components]
        [--profile smoke] [--concurrency 1 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="ablation-components")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    from medn.data.dataset import prepare_dataset
    from medn.train import train_fold
    from orchestrator.execution import run_study
    from orchestrator.studies import StudyOptions, find_study, study_configs

    work = Path(tempfile.mkdtemp(prefix="medn-bench-"))
    cache = work / "cache"
    spec = find_study(args.study)
    options = StudyOptions(profile=args.profile, cache_dir=cache, tasks=[spec.tasks[0]])
    configs = study_configs(spec, options, spec.tasks[0])
    data = prepare_dataset(configs[0][1].data)  # fills the cache; the study reads it back
    trials = len(configs) * len(data.subject_ids)

    torch.set_num_threads(1)
    started = time.perf_counter()
    for _, cfg in configs:
        for subject in data.subject_ids:
            train_fold(cfg, data, subject)
    loop_wall = time.perf_counter() - started

    console = Console(quiet=True)
    rows = []
    for concurrency in args.concurrency:
        uri = f"sqlite:///{work}/mlflow-c{concurrency}.db"
        opts = StudyOptions(profile=args.profile, cache_dir=cache, tasks=[spec.tasks[0]],
                            tracking_uri=uri, max_concurrent=concurrency)
        started = time.perf_counter()
        outcome = run_study(spec, opts, console=console, show_progress=False)
        study_wall = time.perf_counter() - started
        assert outcome.complete, outcome.problems
        assert outcome.trained_folds == trials
        overhead = (study_wall - loop_wall / concurrency) / trials
        rows.append((concurrency, study_wall, overhead, study_wall / loop_wall))

    print(f"study {args.study}, profile {args.profile}: {trials} trainings "
          f"({len(configs)} variants x {len(data.subject_ids)} folds), "
          f"{torch.get_num_threads()} torch thread per training")
    print(f"plain loop over train_fold: {loop_wall:8.2f} s ({loop_wall / trials:.2f} s/trial)")
    print("concurrency  study wall   overhead/trial   study/loop")
    for concurrency, study_wall, overhead, ratio in rows:
        print(f"{concurrency:11d}  {study_wall:8.2f} s   {overhead:+10.2f} s    {ratio:8.2f}")
    print("overhead/trial = (study wall - loop wall / concurrency) / trials; it includes Ray's "
          "start-up, MLflow logging of every fold and parent, and the summary run")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
