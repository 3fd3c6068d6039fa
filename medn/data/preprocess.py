"""One clip -> its (T-1, 2, H, W) TV-L1 flow sequence; many clips in parallel, via the cache.

Real clips: sample T frames (``medn.data.frames``), read them as grayscale, fit one alignment on
the first (``medn.data.face``), warp every frame with it, flow of each frame against the first
(``medn.data.flow``), the flow zeroed on crop pixels outside the source image. A frame sampled
twice (short clips) is flowed once. Synthetic clips are rendered pre-aligned by
``medn.data.synth.render_clip`` and go through the same flow and cache. Each clip also gets its
quality record (``medn.data.qc``), cached with its flow and aligned frames.

``preprocess_clips`` plans every clip in the calling process (sampling and frame hashing decide
the cache key), answers what it can from the cache, and computes the rest in ``workers``
processes. A clip that fails is returned with its reason; the others go on.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from medn.data import cache
from medn.data.face import ALIGNMENT_VERSION, NoFaceError, fit_alignment, outside_mask, warp_face
from medn.data.flow import DEFAULT_FLOW, FlowParams, tvl1_flow
from medn.data.frames import SAMPLING_RULE, FrameError, sample_clip_frames
from medn.data.records import ClipRecord

Status = Literal["computed", "cached", "failed"]


@dataclass(frozen=True)
class PreprocessParams:
    """Everything that shapes a clip's flow besides its frames (all of it enters the cache key)."""

    size: int = 144
    num_frames: int = 8
    flow: FlowParams = DEFAULT_FLOW

    def as_dict(self, synthetic: bool = False) -> dict[str, Any]:
        """The parameters as a plain dict; real clips add the alignment rule's version."""
        return {"size": self.size, "num_frames": self.num_frames, "flow": self.flow.as_dict(),
                "alignment": "pre-aligned" if synthetic else ALIGNMENT_VERSION,
                "sampling": "synth" if synthetic else SAMPLING_RULE}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape of each array of a cache entry made with these parameters."""
        t, s = self.num_frames, self.size
        return {"flow": (t - 1, 2, s, s), "frames": (t, s, s), "frame_numbers": (t,)}


@dataclass(frozen=True)
class SynthSource:
    """How synthetic clips are rendered: the generator's profile, seed and subject count."""

    profile: str
    seed: int
    subjects: int | None = None


@dataclass(frozen=True)
class ClipJob:
    """A planned clip: its cache key and what the worker needs to compute it."""

    record: ClipRecord
    key: str
    frame_numbers: tuple[int, ...]
    paths: tuple[str, ...] = ()
    synth: SynthSource | None = None


@dataclass
class ClipOutcome:
    """What happened to one clip: ``computed``, ``cached`` or ``failed`` (with ``reason``)."""

    record: ClipRecord
    status: Status
    key: str | None = None
    flow: np.ndarray | None = field(default=None, repr=False)
    frame_numbers: tuple[int, ...] = ()
    reason: str | None = None
    frames: np.ndarray | None = field(default=None, repr=False)
    qc: dict[str, Any] = field(default_factory=dict)


def synth_frame_numbers(record: ClipRecord, num_frames: int) -> tuple[int, ...]:
    """The frame numbers a synthetic clip's T rendered frames stand for (the generator's own)."""
    from medn.data.synth import frame_numbers

    return tuple(int(n) for n in frame_numbers(record, num_frames))


def _record_payload(record: ClipRecord) -> dict[str, Any]:
    return {"dataset": record.dataset, "clip": record.key, "video": record.video,
            "emotion": record.emotion, "onset": record.onset, "apex": record.apex,
            "offset": record.offset,
            "aus": sorted((au.number, au.side or "", au.intensity or "", au.uncertain)
                          for au in record.aus),
            "extra": dict(sorted(record.extra.items()))}


def plan_clip(record: ClipRecord, params: PreprocessParams, data_root: Path | None,
              synth: SynthSource | None = None) -> ClipJob:
    """The clip's sampled frames and cache key. Raises ``FrameError`` for unusable frames."""
    if synth is not None:
        payload = {"source": "synth", "record": _record_payload(record),
                   "synth": {"profile": synth.profile, "seed": synth.seed,
                             "subjects": synth.subjects, "generator": _synth_version()},
                   "params": params.as_dict(synthetic=True)}
        numbers = synth_frame_numbers(record, params.num_frames)
        return ClipJob(record, cache.make_key(payload), numbers, synth=synth)
    if data_root is None:
        raise ValueError("real datasets need data_root (--data-root): the folder that holds "
                         "the subjects' frame folders")
    sampled = sample_clip_frames(record, data_root, params.num_frames)
    _check_inside(sampled.paths, data_root, record)
    hashes = []
    for path in sampled.paths:
        try:
            hashes.append(cache.file_digest(path))
        except OSError as err:
            raise FrameError(f"unreadable frame {path}: {err.strerror or err}") from None
    payload = {"source": "frames", "dataset": record.dataset, "clip": record.key,
               "video": record.video, "frames": list(sampled.numbers), "content": hashes,
               "params": params.as_dict()}
    return ClipJob(record, cache.make_key(payload), sampled.numbers,
                   paths=tuple(str(p) for p in sampled.paths))


def _check_inside(paths: Sequence[Path], data_root: Path, record: ClipRecord) -> None:
    """``FrameError`` if a frame file resolves outside ``data_root`` (a symlink leading out)."""
    root = data_root.resolve()
    for path in paths:
        if not Path(path).resolve().is_relative_to(root):
            raise FrameError(f"sheet row {record.row}: frame {path} resolves to "
                             f"{Path(path).resolve()}, outside --data-root {root}")


def _synth_version() -> str | None:
    from medn.data import synth

    return getattr(synth, "GENERATOR_VERSION", None)


def read_gray(path: str | Path) -> np.ndarray:
    """A frame file as uint8 grayscale; ``FrameError`` naming the file if it cannot be decoded."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FrameError(f"unreadable frame {path}")
    return image


def read_clip(paths: Sequence[str | Path]) -> list[np.ndarray]:
    """The clip's frames as grayscale, all of the first frame's size (else ``FrameError``)."""
    grays = [read_gray(p) for p in paths]
    for path, gray in zip(paths, grays, strict=True):
        if gray.shape != grays[0].shape:
            raise FrameError(f"frame {path} is {gray.shape[1]}x{gray.shape[0]}, the clip's first "
                             f"frame is {grays[0].shape[1]}x{grays[0].shape[0]}")
    return grays


def aligned_frames(paths: Sequence[str | Path], size: int) -> np.ndarray:
    """The clip's frames, aligned by the first frame's transform: ``(T, size, size)`` uint8."""
    grays = read_clip(paths)
    try:
        fit = fit_alignment(grays[0], size)
    except NoFaceError as err:
        raise NoFaceError(f"{err} ({paths[0]})") from None
    return np.stack([warp_face(g, fit.matrix, size) for g in grays])


def clip_flow(frames: np.ndarray, frame_numbers: Sequence[int],
              params: FlowParams = DEFAULT_FLOW) -> np.ndarray:
    """``(T-1, 2, H, W)`` float32 flow of each frame against the first; a frame number that
    repeats (short clips sampled with repetition) is flowed once and its flow reused."""
    first = np.ascontiguousarray(frames[0])
    computed: dict[int, np.ndarray] = {}
    flows = []
    for number, frame in zip(frame_numbers[1:], frames[1:], strict=True):
        if number not in computed:
            computed[number] = tvl1_flow(first, np.ascontiguousarray(frame), params)
        flows.append(computed[number])
    return np.stack(flows).transpose(0, 3, 1, 2).astype(np.float32)


def _mean_magnitude(flow: np.ndarray, where: np.ndarray | None = None) -> float | None:
    magnitude = np.hypot(flow[:, 0].astype(np.float32), flow[:, 1].astype(np.float32))
    if where is not None:
        if not where.any():
            return None
        magnitude = magnitude[:, where]
    return round(float(magnitude.mean()), 5)


def compute_clip(job: ClipJob, params: PreprocessParams) -> cache.CacheEntry:
    """Flow ``(T-1, 2, size, size)`` float16, aligned frames ``(T, size, size)`` uint8 and QC
    record of a planned clip (no cache involved)."""
    if job.synth is not None:
        from medn.data.synth import render_clip

        frames = render_clip(job.record, params.size, params.num_frames, job.synth.seed)
        expected = (params.num_frames, params.size, params.size)
        if frames.shape != expected or frames.dtype != np.uint8:
            raise ValueError(f"render_clip gave {frames.dtype} {frames.shape}, expected uint8 "
                             f"{expected} for {job.record.key}")
        flow = clip_flow(frames, job.frame_numbers, params.flow)
        qc = {"face_box": None, "interocular_px": None, "outside_share": 0.0, "margin": None,
              "flow_face": _mean_magnitude(flow), "flow_outside": None}
        return cache.CacheEntry(flow.astype(np.float16), frames, np.asarray(job.frame_numbers), qc)
    grays = read_clip(job.paths)
    try:
        fit = fit_alignment(grays[0], params.size)
    except NoFaceError as err:
        raise NoFaceError(f"{err} ({job.paths[0]})") from None
    frames = np.stack([warp_face(g, fit.matrix, params.size) for g in grays])
    outside = outside_mask(grays[0].shape, fit.matrix, params.size)
    flow = clip_flow(frames, job.frame_numbers, params.flow)
    # No texture exists outside the source image: whatever TV-L1 reads there is not motion.
    flow[:, :, outside] = 0.0
    qc = {"face_box": [int(v) for v in fit.box],
          "interocular_px": round(fit.interocular_px, 2),
          "outside_share": round(float(outside.mean()), 5), "margin": round(fit.margin, 4),
          "crop_basis": fit.basis,
          "flow_face": _mean_magnitude(flow, ~outside),
          "flow_outside": _mean_magnitude(flow, outside)}
    return cache.CacheEntry(flow.astype(np.float16), frames, np.asarray(job.frame_numbers), qc)


def compute_flow(job: ClipJob, params: PreprocessParams) -> np.ndarray:
    """The flow ``(T-1, 2, size, size)`` float16 of a planned clip (no cache involved)."""
    return compute_clip(job, params).flow


def run_job(job: ClipJob, params: PreprocessParams, cache_dir: Path) -> ClipOutcome:
    """Compute one clip and store it in the cache; failures come back as a ``failed`` outcome."""
    try:
        entry = compute_clip(job, params)
    except (FrameError, NoFaceError) as err:
        return ClipOutcome(job.record, "failed", job.key, reason=str(err))
    except Exception as err:  # recorded with its type; the other clips go on
        return ClipOutcome(job.record, "failed", job.key,
                           reason=f"{type(err).__name__}: {err}")
    cache.store_entry(cache_dir, job.record.dataset, job.key, entry)
    return ClipOutcome(job.record, "computed", job.key, entry.flow, job.frame_numbers,
                       frames=entry.frames, qc=entry.qc)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would oversubscribe


def default_workers() -> int:
    """The default number of worker processes: every core (``os.cpu_count()``)."""
    return os.cpu_count() or 1


def preprocess_clips(records: Sequence[ClipRecord], params: PreprocessParams, cache_dir: Path,
                     data_root: Path | None = None, synth: SynthSource | None = None,
                     workers: int | None = None,
                     progress: Callable[[int, int], None] | None = None) -> list[ClipOutcome]:
    """Each record's flow from the cache or computed (and cached), in the order of ``records``.

    ``workers`` processes compute the missing clips (default: every core; 1 = in this process).
    ``progress(done, total)`` is called as clips finish. Raises ``cache.CacheEntryError`` for a
    cache entry that is not what its name says (swapped, edited, wrong shape).
    """
    workers = default_workers() if workers is None else workers
    cache_dir = Path(cache_dir).resolve()  # workers must find it whatever their cwd
    data_root = None if data_root is None else Path(data_root).resolve()
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    total = len(records)
    outcomes: list[ClipOutcome | None] = [None] * total
    todo: list[tuple[int, ClipJob]] = []
    done = 0
    for index, record in enumerate(records):
        try:
            job = plan_clip(record, params, data_root, synth)
        except FrameError as err:
            outcomes[index] = ClipOutcome(record, "failed", reason=str(err))
        else:
            hit = cache.load_entry(cache_dir, record.dataset, job.key, params.shapes())
            if hit is None:
                todo.append((index, job))
                continue
            outcomes[index] = ClipOutcome(record, "cached", job.key, hit.flow,
                                          tuple(int(n) for n in hit.frame_numbers),
                                          frames=hit.frames, qc=hit.qc)
        done += 1
        if progress:
            progress(done, total)
    if todo:
        results = _compute(todo, params, cache_dir, workers)
        try:
            for index, outcome in results:
                outcomes[index] = outcome
                done += 1
                if progress:
                    progress(done, total)
        finally:
            # An interrupt raised here (SIGTERM's handler, in ``progress``) must stop the pool
            # now: left suspended, the generator kept every queued clip for the exit-time join.
            results.close()
    return [o for o in outcomes if o is not None]


def _compute(todo: list[tuple[int, ClipJob]], params: PreprocessParams, cache_dir: Path,
             workers: int):
    if workers == 1 or len(todo) == 1:
        previous = cv2.getNumThreads()
        cv2.setNumThreads(1)  # the same arithmetic as in worker processes
        try:
            for index, job in todo:
                yield index, run_job(job, params, cache_dir)
        finally:
            cv2.setNumThreads(previous)
        return
    # forkserver, not fork: the caller may hold threads (torch, Ray, MLflow). Scripts that call
    # this must guard their entry point with ``if __name__ == "__main__":``.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["medn.data.preprocess"])
    # A few clips in flight per worker, finished ones handed over by done-callbacks: never
    # ``wait()`` over thousands of futures, which takes their locks one by one, so that a
    # SIGTERM landing in it left some held and the pool's thread (and the exit) hung for ever.
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context,
                             initializer=_init_worker) as pool:
        jobs = iter(todo)
        in_flight: dict[Future[ClipOutcome], int] = {}
        finished: queue.SimpleQueue[Future[ClipOutcome]] = queue.SimpleQueue()

        def submit_next() -> None:
            item = next(jobs, None)
            if item is not None:
                future = pool.submit(run_job, item[1], params, cache_dir)
                in_flight[future] = item[0]
                future.add_done_callback(finished.put)

        try:
            for _ in range(2 * workers):
                submit_next()
            while in_flight:
                try:
                    future = finished.get(timeout=0.5)  # the timeout lets signals in
                except queue.Empty:
                    continue
                index = in_flight.pop(future)
                submit_next()
                yield index, future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
