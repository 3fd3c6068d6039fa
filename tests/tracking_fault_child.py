"""A second medn process for the tracking fault tests (``test_tracking_faults.py``).

``python tracking_fault_child.py MODE ARGS...`` prints one JSON line on stdout:

- ``hold URI EXPERIMENT``: open a writer (claiming the experiment), print ``{"ready": true}``,
  then wait until stdin closes;
- ``open URI EXPERIMENT GO_FILE``: wait for ``GO_FILE``, then open a writer on a (fresh) store;
- ``log_folds URI EXPERIMENT GO_FILE SPOOL``: wait for ``GO_FILE``, then get or create the
  parent ``v`` and log every fold, without claiming the experiment;
- ``open_parent URI EXPERIMENT``: open a writer and create a parent run;
- ``full_spool DIR STORE``: the spool on a tiny filesystem mounted at ``DIR``, the sqlite store
  in ``STORE`` taken away: one fold waits in the spool, the disk fills, the next fold arrives;
- ``full_store DIR SPOOL``: a sqlite store on a tiny filesystem at ``DIR``; fill it, log a fold.

Errors are reported as ``{"error": <class name>, "message": ...}`` (and the retry warnings that
were logged), never as a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_helpers import fake_result, random_dataset, tiny_config  # noqa: E402

from orchestrator.tracking import RunTreeWriter, TrackingError  # noqa: E402

RETRY_WARNINGS: list[str] = []


class _Collect(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage():
            RETRY_WARNINGS.append(record.getMessage())


def _fill(folder: Path, leave: int = 0) -> None:
    """Fill the filesystem of ``folder`` up to ``leave`` bytes (a real ENOSPC afterwards)."""
    chunk = b"\0" * 4096
    handle = (folder / "filler.bin").open("wb", buffering=0)
    try:
        while handle.write(chunk):
            pass
    except OSError:
        pass
    finally:
        handle.close()
    if leave:
        (folder / "filler.bin").truncate((folder / "filler.bin").stat().st_size - leave)


def _full_spool(folder: Path, store: Path) -> dict:
    """The spool on a tiny filesystem; the MLflow store (elsewhere) taken away after the parent
    run is made, so that results wait in the spool as they do while a server is down."""
    import os
    import shutil

    from orchestrator.execution.callbacks import StudyCallback
    from orchestrator.execution.recorder import StudyRecorder
    from orchestrator.execution.units import VariantState

    os.environ["MLFLOW_SQLALCHEMYSTORE_POOLCLASS"] = "NullPool"  # a connection per call
    cfg = tiny_config()
    data = random_dataset(cfg, subjects=3, clips_per_subject=4)
    spool = folder / "spool"
    experiment = "full/synth-3class"
    writer = RunTreeWriter(f"sqlite:///{store}/mlflow.db", experiment, retries=0,
                           spool_dir=spool)
    parent = writer.parent_run("v", cfg, data, {})
    state = VariantState(task=3, name="v", label="v", config=cfg, experiment=experiment,
                         data_key="k", subjects=list(data.subject_ids), parent_id=parent)
    recorder = StudyRecorder([state], {experiment: writer}, {"k": data}, tags=lambda s: {})
    callback = StudyCallback(recorder)
    shutil.move(store, store.with_name("away"))  # the store is unreachable now
    store.write_text("not a folder")

    class Trial:
        def __init__(self, subject: str) -> None:
            self.config = {"unit": f"3|v|{subject}"}

    first, second, _ = data.subject_ids
    callback.on_trial_result(0, [], Trial(first), {"fold": fake_result(data, first).to_dict()})
    _fill(folder)
    out: dict = {"spool": str(spool / writer.experiment_id / parent)}
    try:
        callback.on_trial_result(0, [], Trial(second),
                                 {"fold": fake_result(data, second).to_dict()})
        out["error"] = None
    except TrackingError as err:
        out.update(error=type(err).__name__, message=str(err))
    (folder / "filler.bin").unlink()
    out["kept"] = sorted(e.subject for e in writer.spooled(parent))
    out["received"] = sorted(state.received)
    out["problems"] = recorder.problems
    out["temp_files"] = [p.name for p in spool.rglob("*.tmp")]
    return out


def _full_store(folder: Path, spool: Path) -> dict:
    cfg = tiny_config()
    data = random_dataset(cfg, subjects=2, clips_per_subject=4)
    writer = RunTreeWriter(f"sqlite:///{folder}/mlflow.db", "store-full", retries=6,
                           backoff_s=0.5, spool_dir=spool)
    parent = writer.parent_run("v", cfg, data, {})
    _fill(folder)
    out: dict = {}
    try:
        writer.log_fold(parent, fake_result(data, "s01", epochs=200), {})
        out["error"] = None
    except TrackingError as err:
        out.update(error=type(err).__name__, message=str(err))
    (folder / "filler.bin").unlink()
    out["kept"] = [e.subject for e in writer.spooled(parent)]
    return out


def main() -> None:
    """Run the mode named on the command line; print its JSON line."""
    logging.getLogger("orchestrator.tracking").addHandler(_Collect())
    mode, *args = sys.argv[1:]
    out: dict
    try:
        if mode == "hold":
            RunTreeWriter(args[0], args[1], spool_dir=Path(args[0][len("sqlite:///"):]).parent)
            print(json.dumps({"ready": True}), flush=True)
            sys.stdin.read()
            return
        if mode == "open":
            while not Path(args[2]).exists():
                time.sleep(0.005)
            writer = RunTreeWriter(args[0], args[1], claim=False)
            out = {"experiment_id": writer.experiment_id}
        elif mode == "log_folds":
            while not Path(args[2]).exists():
                time.sleep(0.005)
            cfg = tiny_config()
            data = random_dataset(cfg, subjects=3, clips_per_subject=4)
            writer = RunTreeWriter(args[0], args[1], claim=False, spool_dir=Path(args[3]))
            parent = writer.parent_run("v", cfg, data, {})
            out = {"parent": parent,
                   "kept": {s: writer.log_fold(parent, fake_result(data, s), {})
                            for s in data.subject_ids}}
        elif mode == "open_parent":
            cfg = tiny_config()
            writer = RunTreeWriter(args[0], args[1])
            out = {"parent": writer.parent_run("v", cfg, random_dataset(cfg, subjects=2), {})}
        elif mode == "full_spool":
            out = _full_spool(Path(args[0]), Path(args[1]))
        elif mode == "full_store":
            out = _full_store(Path(args[0]), Path(args[1]))
        else:
            raise SystemExit(f"unknown mode {mode}")
    except TrackingError as err:
        out = {"error": type(err).__name__, "message": str(err)}
    out["retry_warnings"] = RETRY_WARNINGS
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
