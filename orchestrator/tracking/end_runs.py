"""``python -m orchestrator.tracking.end_runs JSON``: after a driver has died, end as KILLED the
parent runs it left RUNNING.

A driver starts it when its raylet dies: Ray may end the driver at any moment after that (its
next put into the dead raylet's object store exits the process), even while it is still
creating a parent run. So this separate process waits for the driver to be gone, then takes
each experiment's claim (the lock drivers hold) and ends every RUNNING parent run of the
driver's variants there. An experiment whose claim another driver took meanwhile (the user
re-ran at once) is left to that driver, which resumes those parents. Credentials reach this
process through MLflow's environment variables, as they reach the driver.

JSON: ``{"tracking_uri": ..., "driver_pid": ..., "experiments": {experiment_id: lock_path},
"variants": [name, ...]}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone (or the pid is another user's now)
        return False
    try:  # an exited process its parent has not reaped yet is a zombie: it is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.1)
    return False


def end_left_parents(job: dict[str, Any], wait_s: float = 120.0) -> int:
    """Do what the module says for ``job``; returns how many runs could not be ended."""
    from mlflow import MlflowClient

    from orchestrator.tracking import locks
    from orchestrator.tracking.tags import ROLE_PARENT, TAG_ROLE, TAG_VARIANT

    client = MlflowClient(job["tracking_uri"])  # imports MLflow while the driver ends
    if not _wait_for_exit(int(job["driver_pid"]), wait_s):
        print(f"driver {job['driver_pid']} still runs: its parent runs are left to it",
              file=sys.stderr)
        return 1
    variants = set(job["variants"])
    failed = 0
    for experiment_id, lock_path in job["experiments"].items():
        holder = locks.try_claim(Path(lock_path))
        if holder is not None:  # a new driver runs this experiment: its parents are its own
            continue
        try:
            running = client.search_runs(
                [experiment_id], f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}' and "
                "attributes.status = 'RUNNING'", max_results=5000)
            for run in running:
                if run.data.tags.get(TAG_VARIANT) not in variants:
                    continue
                try:
                    client.set_terminated(run.info.run_id, "KILLED")
                except Exception as err:  # noqa: BLE001 - the others are still ended
                    failed += 1
                    print(f"could not end run {run.info.run_id}: {err}", file=sys.stderr)
        except Exception as err:  # noqa: BLE001 - reported; the re-run resumes them anyway
            failed += 1
            print(f"could not search experiment {experiment_id}: {err}", file=sys.stderr)
        finally:
            locks.release(Path(lock_path))
    return failed


if __name__ == "__main__":
    sys.exit(1 if end_left_parents(json.loads(sys.argv[1])) else 0)
