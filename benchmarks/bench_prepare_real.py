"""Benchmark: prepare the real datasets at their real size, from replica frame trees.

Run: ``.venv/bin/python benchmarks/bench_prepare_real.py [--form casme3a-color] [--subjects N]
[--workers 1,2] [--root DIR]``.

For every clip the reader keeps from the real sheet in ``../shared/annotations`` (CAS(ME)^3 Part A:
860; CASME II: 253, of which 145 are 3-class; SAMM: 159, of which 133 are 3-class), a replica tree
is built in the release's layout (``medn.data.synth.replica``: synthetic faces at the release's
resolution, the release's file names, the frames around each clip, videos holding several clips),
then prepared at paper settings (144 px, T = 8) with a cold cache once per worker count, side by
side: clips per second and the speedup over 1 worker. A last run on the filled cache must
recompute nothing. Prints the prepared counts per label protocol, the failures (there should be
none), and the QC medians.

``--root`` keeps the tree (building CAS(ME)^3 writes ~34 000 frames of 1280x720, ~2 GB); it is
reused by a later run. Without it a temporary folder is used and removed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from medn.data.annotations import apply_protocol, load_annotations
from medn.data.preprocess import PreprocessParams, preprocess_clips
from medn.data.synth.replica import RELEASES, build_replica_tree

SHEETS = {"casme2": "CASME2-coding-20140508.xlsx", "samm": "SAMM_Micro_FACS_Codes_v2.xlsx",
          "casme3a": "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"}
TASKS = {"casme2": (3, 5), "samm": (3, 5), "casme3a": (3, 4, 7)}
DEFAULT_SHEETS = Path(__file__).resolve().parents[2] / "shared" / "annotations"


def run(form: str, sheets: Path, root: Path, cache_root: Path, workers: list[int],
        subjects: int | None, size: int, frames: int) -> None:
    """Build the replica tree of ``form`` under ``root`` and prepare it per worker count."""
    release = RELEASES[form]
    table = load_annotations(release.dataset, sheets / SHEETS[release.dataset])
    records = table.records
    if subjects is not None:
        keep = sorted({r.subject for r in records})[:subjects]
        records = [r for r in records if r.subject in keep]
    print(f"{form}: {len(records)} clips of {len({r.subject for r in records})} subjects "
          f"(the sheet keeps {len(table.records)}), {size} px, T = {frames}")
    start = time.perf_counter()
    written = build_replica_tree(records, root, form)
    print(f"  replica tree: {written} frames written in {time.perf_counter() - start:.1f} s "
          f"under {root}")
    params = PreprocessParams(size=size, num_frames=frames)
    timings: dict[int, float] = {}
    outcomes = []
    for count in workers:
        cache = cache_root / f"workers{count}"
        start = time.perf_counter()
        outcomes = preprocess_clips(records, params, cache, data_root=root, workers=count)
        timings[count] = time.perf_counter() - start
        computed = sum(o.status == "computed" for o in outcomes)
        print(f"  cold, {count} worker(s): {computed} computed in {timings[count]:7.1f} s = "
              f"{len(records) / timings[count]:6.2f} clips/s"
              + (f", speedup {timings[workers[0]] / timings[count]:.2f}x"
                 if count != workers[0] else ""))
    start = time.perf_counter()
    again = preprocess_clips(records, params, cache_root / f"workers{workers[-1]}",
                             data_root=root, workers=workers[-1])
    seconds = time.perf_counter() - start
    recomputed = sum(o.status == "computed" for o in again)
    print(f"  warm, {workers[-1]} worker(s): {recomputed} recomputed, "
          f"{sum(o.status == 'cached' for o in again)} from the cache in {seconds:.1f} s")
    failed = [o for o in outcomes if o.status == "failed"]
    prepared = {o.record.key for o in outcomes if o.status != "failed"}
    counts = []
    for task in TASKS[release.dataset]:
        labelled = apply_protocol(records, release.dataset, task)
        keys = [r.key for r in labelled.records]
        counts.append(f"{task}-class {sum(k in prepared for k in keys)}/{len(keys)}")
    print(f"  prepared: {len(prepared)}/{len(records)} ({', '.join(counts)}); "
          f"failed: {len(failed)}")
    for outcome in failed[:20]:
        print(f"    {outcome.record.key} (row {outcome.record.row}): {outcome.reason}")
    good = [o.qc for o in outcomes if o.status != "failed"]
    if good:
        def median(name: str) -> float:
            values = [q[name] for q in good if q.get(name) is not None]
            return statistics.median(values) if values else float("nan")

        print(f"  QC medians: inter-ocular {median('interocular_px'):.1f} px, outside share "
              f"{median('outside_share'):.3%} (max "
              f"{max(q['outside_share'] for q in good):.3%}), face flow "
              f"{median('flow_face'):.3f} px")


def main() -> None:
    """Parse the options and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--form", default="casme3a-color",
                        help=f"one of {', '.join(RELEASES)}, or 'all'")
    parser.add_argument("--subjects", type=int, default=None,
                        help="only the first N subjects (default: every clip of the sheet)")
    parser.add_argument("--workers", default="1,2", help="worker counts, side by side")
    parser.add_argument("--root", type=Path, default=None, help="where to keep the trees")
    parser.add_argument("--sheets", type=Path, default=DEFAULT_SHEETS)
    parser.add_argument("--size", type=int, default=144)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    forms = list(RELEASES) if args.form == "all" else [args.form]
    with tempfile.TemporaryDirectory(prefix="medn-bench-real-") as tmp:
        base = args.root or Path(tmp)
        for form in forms:
            run(form, args.sheets, base / form, Path(tmp) / "cache" / form, workers,
                args.subjects, args.size, args.frames)


if __name__ == "__main__":
    main()
