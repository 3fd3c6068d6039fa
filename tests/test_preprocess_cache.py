"""The preprocessing cache (hits, misses, invalidation, atomic entries) and failure recording."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers_astronaut import casme2_record, moving_face, write_casme2_clip, write_frames

from medn.data import cache
from medn.data.flow import FlowParams
from medn.data.preprocess import PreprocessParams, preprocess_clips

PARAMS = PreprocessParams(size=48, num_frames=8)


@pytest.fixture()
def two_clips(tmp_path: Path):
    root = tmp_path / "CASME2"
    records = [casme2_record("01", "EP01_01", onset=10), casme2_record("02", "EP03_02", onset=1)]
    for record in records:
        write_casme2_clip(root, record)
    return root, records


def _statuses(outcomes) -> list[str]:
    return [o.status for o in outcomes]


def test_second_run_recomputes_nothing(tmp_path: Path, two_clips) -> None:
    root, records = two_clips
    calls: list[tuple[int, int]] = []
    first = preprocess_clips(records, PARAMS, tmp_path / "c", data_root=root, workers=1,
                             progress=lambda done, total: calls.append((done, total)))
    assert _statuses(first) == ["computed", "computed"]
    assert calls[-1] == (2, 2)
    second = preprocess_clips(records, PARAMS, tmp_path / "c", data_root=root, workers=1)
    assert _statuses(second) == ["cached", "cached"]
    for a, b in zip(first, second, strict=True):
        assert a.key == b.key and a.frame_numbers == b.frame_numbers
        np.testing.assert_array_equal(a.flow, b.flow)
    entries = sorted((tmp_path / "c" / "casme2").rglob("*.npz"))
    assert len(entries) == 2 and not list((tmp_path / "c").rglob("*.tmp"))


@pytest.mark.parametrize("changed", [
    PreprocessParams(size=40, num_frames=8),
    PreprocessParams(size=48, num_frames=7),
    replace(PARAMS, flow=FlowParams(warps=4)),
])
def test_any_parameter_change_is_a_miss(tmp_path: Path, two_clips, changed) -> None:
    root, records = two_clips
    preprocess_clips(records[:1], PARAMS, tmp_path / "c", data_root=root, workers=1)
    again = preprocess_clips(records[:1], changed, tmp_path / "c", data_root=root, workers=1)
    assert _statuses(again) == ["computed"]
    assert again[0].flow.shape == (changed.num_frames - 1, 2, changed.size, changed.size)


def test_key_follows_frame_content_not_file_times(tmp_path: Path, two_clips) -> None:
    root, records = two_clips
    first = preprocess_clips(records[:1], PARAMS, tmp_path / "c", data_root=root, workers=1)
    frame = root / "sub01" / "EP01_01" / "img13.jpg"
    os.utime(frame, (1_000_000, 1_000_000))  # touched: same bytes -> still a hit
    assert _statuses(preprocess_clips(records[:1], PARAMS, tmp_path / "c", data_root=root,
                                      workers=1)) == ["cached"]
    # Different bytes in one sampled frame -> a new key.
    write_frames(frame.parent, ["img13.jpg"], [np.ascontiguousarray(moving_face().frames[0])])
    changed = preprocess_clips(records[:1], PARAMS, tmp_path / "c", data_root=root, workers=1)
    assert _statuses(changed) == ["computed"] and changed[0].key != first[0].key


def test_a_corrupt_entry_is_a_miss_and_is_rewritten(tmp_path: Path, two_clips) -> None:
    root, records = two_clips
    (first,) = preprocess_clips(records[:1], PARAMS, tmp_path / "c", data_root=root, workers=1)
    path = cache.entry_path(tmp_path / "c", "casme2", first.key)
    path.write_bytes(path.read_bytes()[:100])  # as if a foreign process truncated it
    assert cache.load_entry(tmp_path / "c", "casme2", first.key) is None
    (again,) = preprocess_clips(records[:1], PARAMS, tmp_path / "c", data_root=root, workers=1)
    assert again.status == "computed"
    np.testing.assert_array_equal(again.flow, first.flow)
    assert cache.load_entry(tmp_path / "c", "casme2", first.key) is not None


def test_store_is_atomic_when_writing_fails(tmp_path: Path, monkeypatch) -> None:
    flow = np.zeros((7, 2, 8, 8), np.float16)

    def broken_savez(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    entry = cache.CacheEntry(flow, np.zeros((8, 8, 8), np.uint8), np.arange(8), {})
    with pytest.raises(OSError, match="disk full"):
        cache.store_entry(tmp_path, "synth", "ab" * 32, entry)
    assert list(tmp_path.rglob("*")) == [tmp_path / "synth", tmp_path / "synth" / "ab"]


def test_failures_are_recorded_and_the_rest_goes_on(tmp_path: Path, two_clips) -> None:
    root, records = two_clips
    good = records[0]
    missing_folder = casme2_record("03", "EP05_01", onset=1, row=5)
    unreadable = casme2_record("04", "EP06_01", onset=1, row=6)
    write_casme2_clip(root, unreadable)
    (root / "sub04" / "EP06_01" / "img4.jpg").write_bytes(b"not a jpeg")
    no_face = casme2_record("05", "EP07_01", onset=1, row=7)
    blank = tuple(np.full((120, 160, 3), 90, np.uint8) for _ in range(8))
    write_frames(root / "sub05" / "EP07_01", [f"img{n}.jpg" for n in range(1, 9)], blank)
    escaping = replace(casme2_record("01", "EP01_01", onset=10, row=8), video="../../outside")
    outcomes = preprocess_clips([missing_folder, good, unreadable, no_face, escaping], PARAMS,
                                tmp_path / "c", data_root=root, workers=1)
    assert _statuses(outcomes) == ["failed", "computed", "failed", "failed", "failed"]
    reasons = [o.reason for o in outcomes]
    assert "missing folder" in reasons[0] and "sub03" in reasons[0]
    assert reasons[2].startswith("unreadable frame") and "img4.jpg" in reasons[2]
    assert reasons[3].startswith("no face found in the first frame") and "img1.jpg" in reasons[3]
    assert reasons[4] == ("sheet row 8: video/filename '../../outside' is not a plain folder "
                          "name; frame folders must lie inside --data-root")
    assert [o.record for o in outcomes] == [missing_folder, good, unreadable, no_face, escaping]


def test_parallel_workers_give_the_same_flows(tmp_path: Path, two_clips) -> None:
    root, records = two_clips
    serial = preprocess_clips(records, PARAMS, tmp_path / "serial", data_root=root, workers=1)
    parallel = preprocess_clips(records, PARAMS, tmp_path / "parallel", data_root=root,
                                workers=2)
    assert _statuses(parallel) == ["computed", "computed"]
    for a, b in zip(serial, parallel, strict=True):
        assert a.record == b.record and a.key == b.key
        np.testing.assert_array_equal(a.flow, b.flow)


def test_real_clips_need_a_data_root(two_clips, tmp_path: Path) -> None:
    _root, records = two_clips
    with pytest.raises(ValueError, match="--data-root"):
        preprocess_clips(records, PARAMS, tmp_path / "c", data_root=None, workers=1)


def test_swapped_entries_are_detected_naming_the_file(tmp_path: Path, two_clips) -> None:
    root, records = two_clips
    first, second = preprocess_clips(records, PARAMS, tmp_path / "c", data_root=root, workers=1)
    a = cache.entry_path(tmp_path / "c", "casme2", first.key)
    b = cache.entry_path(tmp_path / "c", "casme2", second.key)
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    with pytest.raises(cache.CacheEntryError, match=rf"cache entry {a}.*swapped"):
        preprocess_clips(records, PARAMS, tmp_path / "c", data_root=root, workers=1)


def test_wrong_shape_and_edited_entries_fail_naming_the_file(tmp_path: Path, two_clips) -> None:
    root, records = two_clips
    (first,) = preprocess_clips(records[:1], PARAMS, tmp_path / "c", data_root=root, workers=1)
    path = cache.entry_path(tmp_path / "c", "casme2", first.key)
    entry = cache.load_entry(tmp_path / "c", "casme2", first.key, PARAMS.shapes())
    assert entry is not None and entry.frames.shape == (8, 48, 48)
    # A consistent entry (own key, valid digest) of the wrong shape: rejected by shape.
    small = cache.CacheEntry(entry.flow[:, :, :40, :40], entry.frames, entry.frame_numbers,
                             entry.qc)
    cache.store_entry(tmp_path / "c", "casme2", first.key, small)
    with pytest.raises(cache.CacheEntryError,
                       match=rf"cache entry {path}: flow has shape \(7, 2, 40, 40\), expected "
                             r"\(7, 2, 48, 48\)"):
        preprocess_clips(records[:1], PARAMS, tmp_path / "c", data_root=root, workers=1)
    # Same shapes, one value changed, digest left alone: rejected by content.
    flow = entry.flow.copy()
    flow[0, 0, 0, 0] += 1
    cache.store_entry(tmp_path / "c", "casme2", first.key, entry)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["flow"] = flow
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(cache.CacheEntryError, match=rf"cache entry {path}: its content does "
                                                     "not match its digest"):
        cache.load_entry(tmp_path / "c", "casme2", first.key, PARAMS.shapes())


def test_a_frame_symlinked_outside_the_data_root_is_refused(tmp_path: Path, two_clips) -> None:
    root, records = two_clips
    outside = tmp_path / "elsewhere.jpg"
    frame = root / "sub01" / "EP01_01" / "img12.jpg"
    outside.write_bytes(frame.read_bytes())
    frame.unlink()
    frame.symlink_to(outside)
    (outcome,) = preprocess_clips(records[:1], PARAMS, tmp_path / "c", data_root=root,
                                  workers=1)
    assert outcome.status == "failed"
    assert "outside --data-root" in outcome.reason and "img12.jpg" in outcome.reason


def test_a_short_clip_repeats_frames_and_their_flows(tmp_path: Path) -> None:
    root = tmp_path / "CASME2"
    record = replace(casme2_record("01", "EP01_01", onset=10), apex=11, offset=12)
    write_frames(root / "sub01" / "EP01_01", [f"img{n}.jpg" for n in (10, 11, 12)],
                 moving_face().frames[:3])
    (outcome,) = preprocess_clips([record], PARAMS, tmp_path / "c", data_root=root, workers=1)
    assert outcome.status == "computed", outcome.reason
    assert outcome.frame_numbers == (10, 10, 11, 11, 11, 11, 12, 12)
    assert outcome.flow.shape == (7, 2, 48, 48) and outcome.frames.shape == (8, 48, 48)
    np.testing.assert_array_equal(outcome.frames[0], outcome.frames[1])
    assert np.abs(outcome.flow[0].astype(np.float32)).max() < 0.05  # onset vs itself
    for same in ((1, 2, 3, 4), (5, 6)):
        for index in same[1:]:
            np.testing.assert_array_equal(outcome.flow[same[0]], outcome.flow[index])
    assert outcome.qc["flow_face"] > 0
