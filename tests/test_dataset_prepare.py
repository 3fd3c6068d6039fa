"""``prepare_dataset``: synth smoke end to end, a real-layout dataset, the AU and apex rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers_astronaut import casme2_record, write_casme2_clip

from medn.config import load_config
from medn.data.dataset import (
    PreparationError,
    apex_index,
    prepare_clips,
    prepare_dataset,
    select_aus,
)
from medn.data.records import ClipRecord


def test_smoke_dataset_shapes_and_types(smoke_dataset) -> None:
    ds = smoke_dataset
    cfg = load_config(profile="smoke").data
    n = len(ds)
    assert n > 0 and ds.name == "synth" and ds.task == 3
    assert ds.flows.shape == (n, cfg.frames - 1, 2, cfg.size, cfg.size)
    assert ds.flows.dtype == torch.float16 and torch.isfinite(ds.flows).all()
    assert ds.flows.abs().amax() > 0.1  # motion was found
    assert ds.labels.dtype == torch.int64 and 0 <= ds.labels.min() <= ds.labels.max() < 3
    assert ds.classes == ("negative", "positive", "surprise")
    assert ds.num_aus >= 1 and ds.aus.shape == (n, ds.num_aus) and ds.aus.dtype == torch.float32
    assert set(ds.aus.unique().tolist()) <= {0.0, 1.0}
    assert ((ds.apex >= 0) & (ds.apex < cfg.frames - 1)).all()
    assert len(set(ds.clips)) == n and len(ds.loso_folds()) == len(set(ds.subjects))


def test_warm_cache_recomputes_nothing_and_gives_the_same_dataset(smoke_dataset,
                                                                  smoke_cache: Path) -> None:
    cfg = load_config(profile="smoke", overrides=[f"data.cache_dir={smoke_cache}"]).data
    prep = prepare_clips(cfg, workers=1)
    assert prep.count("cached") == len(prep.outcomes) == len(smoke_dataset)
    again = prepare_dataset(cfg, workers=1)
    assert again.digest == smoke_dataset.digest
    assert torch.equal(again.flows, smoke_dataset.flows)
    assert torch.equal(again.labels, smoke_dataset.labels)


def test_digest_changes_with_the_protocol(smoke_dataset, smoke_cache: Path) -> None:
    cfg = load_config(profile="smoke", overrides=[f"data.cache_dir={smoke_cache}",
                                                  "data.task=4"]).data
    four = prepare_dataset(cfg, workers=1)
    assert four.classes == ("negative", "positive", "surprise", "others")
    assert four.digest != smoke_dataset.digest


def test_select_aus_threshold_and_cap() -> None:
    sets = [frozenset({4, 12}), frozenset({4}), frozenset({4, 7}), frozenset({12})]
    assert select_aus(sets, 2) == (4, 12)
    assert select_aus(sets, 3) == (4,)
    assert select_aus(sets, 10) == (4,)  # capped: the most frequent AU always stays
    assert select_aus([frozenset(), frozenset()], 1) == ()


def _rec(apex: int | None) -> ClipRecord:
    return ClipRecord("casme2", "01", "c", "c", "happiness", frozenset(), 10, apex, 24)


def test_apex_maps_to_the_nearest_sampled_frame_after_the_first() -> None:
    numbers = (10, 12, 14, 16, 18, 20, 22, 24)
    flow = np.zeros((7, 2, 4, 4), np.float16)
    assert apex_index(_rec(17), numbers, flow) == 2   # 16 is nearest (tie 16/18: the earlier)
    assert apex_index(_rec(19), numbers, flow) == 3   # 18 (tie 18/20: the earlier)
    assert apex_index(_rec(10), numbers, flow) == 0   # onset itself -> first flow frame
    assert apex_index(_rec(24), numbers, flow) == 6


def test_apex_without_annotation_is_the_largest_motion() -> None:
    flow = np.zeros((7, 2, 4, 4), np.float16)
    flow[4, 1] = 2.0
    flow[5, 0] = 1.0
    assert apex_index(_rec(None), (10, 12, 14, 16, 18, 20, 22, 24), flow) == 4


def _casme2_sheet(path: Path, records: list[ClipRecord]) -> Path:
    rows = [{"Subject": int(r.subject), "Filename": r.video, "OnsetFrame": r.onset,
             "ApexFrame": r.apex, "OffsetFrame": r.offset,
             "Action Units": "+".join(str(au.number) for au in sorted(r.aus)),
             "Estimated Emotion": r.emotion} for r in records]
    pd.DataFrame(rows).to_excel(path, index=False)
    return path


@pytest.fixture()
def casme2_copy(tmp_path: Path):
    """A two-clip CASME II copy (frames + sheet) whose sheet also lists a clip with no frames."""
    root = tmp_path / "CASME2_RAW_selected"
    good = [casme2_record("01", "EP01_01", onset=10, emotion="happiness", aus=(12,)),
            casme2_record("02", "EP03_02", onset=1, emotion="disgust", aus=(4, 12))]
    for record in good:
        write_casme2_clip(root, record)
    missing = casme2_record("03", "EP09_05", onset=5, emotion="surprise", aus=(1, 2))
    sheet = _casme2_sheet(tmp_path / "CASME2-coding.xlsx", [*good, missing])
    cfg = load_config(profile="quick", overrides=[
        "data.dataset=casme2", f"data.annotations={sheet}", f"data.data_root={root}",
        f"data.cache_dir={tmp_path / 'cache'}", "data.size=48", "data.au_min_count=2"]).data
    return cfg


def test_a_partial_dataset_is_refused_unless_allowed(casme2_copy) -> None:
    with pytest.raises(PreparationError) as err:
        prepare_dataset(casme2_copy, workers=1)
    message = str(err.value)
    assert "1 of 3 casme2 clips could not be prepared" in message
    assert "03/EP09_05" in message and "missing folder" in message
    assert "allow_missing" in message
    ds = prepare_dataset(casme2_copy, workers=1, allow_missing=True)
    assert ds.clips == ("01/EP01_01", "02/EP03_02") and ds.subjects == ("01", "02")
    assert ds.classes == ("negative", "positive", "surprise")
    assert ds.labels.tolist() == [1, 0]
    assert ds.au_names == ("AU12",)       # AU4 is in one clip only (< au_min_count = 2)
    assert ds.aus.tolist() == [[1.0], [1.0]]
    assert ds.apex.tolist() == [3, 3]     # apex = onset + 4 -> the 4th sampled frame after onset
    assert ds.flows.shape == (2, 7, 2, 48, 48)
    # What was left out, and why, stays with the dataset; the error carried the same list.
    assert [m.as_dict() for m in ds.missing] == [m.as_dict() for m in err.value.failed]
    (missing,) = ds.missing
    assert missing.clip == "03/EP09_05" and missing.row == 4
    assert missing.reason.startswith("missing folder")
    # The aligned frames the flows come from, and one QC record per kept clip.
    assert ds.frames.shape == (2, 8, 48, 48) and ds.frames.dtype == torch.uint8
    assert [q["clip"] for q in ds.qc] == list(ds.clips)
    assert all(q["outside_share"] == 0.0 and q["flow_face"] > 0 for q in ds.qc)
    from medn.data.qc import qc_table_csv

    lines = qc_table_csv(ds).splitlines()
    assert lines[0].startswith("clip,row,status,face_box,interocular_px,outside_share")
    assert len(lines) == 4 and lines[3].startswith("03/EP09_05,4,failed,")


def test_real_dataset_needs_its_sheet_and_frames(tmp_path: Path) -> None:
    cfg = load_config(overrides=["data.dataset=samm", f"data.cache_dir={tmp_path}"]).data
    with pytest.raises(PreparationError, match="--annotations"):
        prepare_dataset(cfg)
