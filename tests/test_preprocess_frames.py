"""Locating a clip's frames in the three datasets' layouts, and sampling T of them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from medn.data.frames import (
    FrameError,
    anchor_apex,
    clip_folder,
    frame_number,
    list_frames,
    sample_clip_frames,
    sample_positions,
    subject_folder,
)
from medn.data.records import ClipRecord


def _record(dataset: str, subject: str, video: str, onset: int, offset: int,
            clip: str | None = None, apex: int | None = None) -> ClipRecord:
    return ClipRecord(dataset=dataset, subject=subject, clip=clip or video, video=video,
                      emotion="others", aus=frozenset(), onset=onset, apex=apex, offset=offset,
                      row=7)


def _touch_jpgs(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tiny = np.zeros((4, 4), np.uint8)
    for name in names:
        assert cv2.imwrite(str(folder / name), tiny)


def test_casme2_layout(tmp_path: Path) -> None:
    rec = _record("casme2", "01", "EP02_01f", 46, 86)
    _touch_jpgs(tmp_path / "sub01" / "EP02_01f", [f"img{n}.jpg" for n in range(40, 90)])
    sampled = sample_clip_frames(rec, tmp_path, 8)
    assert sampled.numbers == (46, 52, 57, 63, 69, 75, 80, 86)
    assert sampled.paths[0] == tmp_path / "sub01" / "EP02_01f" / "img46.jpg"
    assert all(p.is_file() for p in sampled.paths)


def test_samm_layout_five_digit_frames(tmp_path: Path) -> None:
    rec = _record("samm", "006", "006_1_2", 5562, 5632)
    _touch_jpgs(tmp_path / "006" / "006_1_2", [f"006_{n:05d}.jpg" for n in range(5550, 5640)])
    sampled = sample_clip_frames(rec, tmp_path, 8)
    assert sampled.numbers[0] == 5562 and sampled.numbers[-1] == 5632
    assert sampled.paths[0].name == "006_05562.jpg"
    assert clip_folder(rec, tmp_path) == tmp_path / "006" / "006_1_2"


def test_casme3_layout_color_folder_and_several_clips_per_video(tmp_path: Path) -> None:
    _touch_jpgs(tmp_path / "spNO.1" / "e" / "color", [f"{n}.jpg" for n in range(50, 110)])
    first = _record("casme3a", "spNO.1", "e", 62, 96, clip="e_62")
    second = _record("casme3a", "spNO.1", "e", 96, 106, clip="e_96")
    a = sample_clip_frames(first, tmp_path, 8)
    b = sample_clip_frames(second, tmp_path, 8)
    assert a.paths[0] == tmp_path / "spNO.1" / "e" / "color" / "62.jpg"
    assert a.numbers[-1] == 96 and b.numbers[0] == 96 and b.numbers[-1] == 106


def test_subject_folder_names() -> None:
    assert subject_folder("casme2", "01") == "sub01"
    assert subject_folder("casme2", "7") == "sub07"
    assert subject_folder("samm", "006") == "006"
    assert subject_folder("casme3a", "spNO.1") == "spNO.1"


def test_frame_number_is_the_last_digits_of_the_stem() -> None:
    assert frame_number(Path("img46.jpg")) == 46
    assert frame_number(Path("006_05562.jpg")) == 5562
    assert frame_number(Path("355.jpg")) == 355
    assert frame_number(Path("thumbs.jpg")) is None


def test_sampling_rounds_halves_up_and_keeps_the_ends() -> None:
    # 10 frames, 8 wanted: linspace(0, 9, 8) = 0, 1.29, 2.57, 3.86, 5.14, 6.43, 7.71, 9
    assert sample_positions(10, 8) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert sample_positions(8, 8) == list(range(8))
    # 3 frames, 2 wanted -> ends; 5 frames, 3 wanted -> linspace 0, 2, 4
    assert sample_positions(3, 2) == [0, 2]
    assert sample_positions(5, 3) == [0, 2, 4]
    for count in range(8, 60):
        picks = sample_positions(count, 8)
        assert len(set(picks)) == 8 and picks[0] == 0 and picks[-1] == count - 1


def test_short_clips_repeat_frames_in_time_order(tmp_path: Path) -> None:
    # CAS(ME)^3 spNO.10/f spans frames 278-280: 3 frames for T = 8.
    assert sample_positions(3, 8) == [0, 0, 1, 1, 1, 1, 2, 2]
    for count in range(2, 8):
        picks = sample_positions(count, 8)
        assert sorted(picks) == picks and set(picks) == set(range(count))
    rec = _record("casme3a", "spNO.10", "f", 278, 280, clip="f_278", apex=279)
    _touch_jpgs(tmp_path / "spNO.10" / "f" / "color", [f"{n}.jpg" for n in range(270, 290)])
    sampled = sample_clip_frames(rec, tmp_path, 8)
    assert sampled.numbers == (278, 278, 279, 279, 279, 279, 280, 280)
    with pytest.raises(FrameError, match="too few frames: 1 between onset and offset"):
        sample_positions(1, 8)


def test_apex_frame_is_sampled_itself(tmp_path: Path) -> None:
    _touch_jpgs(tmp_path / "sub01" / "EP02_01f", [f"img{n}.jpg" for n in range(40, 90)])
    plain = sample_clip_frames(_record("casme2", "01", "EP02_01f", 46, 86), tmp_path, 8)
    assert plain.numbers == (46, 52, 57, 63, 69, 75, 80, 86)
    # CASME II EP02_01f: apex 59 lies between the sampled 57 and 63; 57 is replaced by it.
    anchored = sample_clip_frames(_record("casme2", "01", "EP02_01f", 46, 86, apex=59),
                                  tmp_path, 8)
    assert anchored.numbers == (46, 52, 59, 63, 69, 75, 80, 86)
    assert anchored.paths[2].name == "img59.jpg"
    # apex = onset, an apex already sampled, or one not on disk: unchanged
    assert anchor_apex([46, 52, 57], 46, set(range(40, 90))) == [46, 52, 57]
    assert anchor_apex([46, 52, 57], 52, set(range(40, 90))) == [46, 52, 57]
    assert anchor_apex([46, 52, 57], 50, {46, 52, 57}) == [46, 52, 57]
    # next to the onset, the first frame after it is replaced (ties go to the earlier)
    assert anchor_apex([10, 20, 30], 11, set(range(10, 31))) == [10, 11, 30]
    assert anchor_apex([10, 20, 30], 25, set(range(10, 31))) == [10, 25, 30]
    for apex in range(47, 86):
        picks = anchor_apex(list(plain.numbers), apex, set(range(40, 90)))
        assert apex in picks and picks == sorted(set(picks)) and len(picks) == 8


@pytest.mark.parametrize(("subject", "video"), [
    ("01", "../../outside"), ("01", "/etc"), ("..", "EP01"), ("01", "a/../../b"), ("01", ".."),
])
def test_sheet_names_cannot_leave_the_data_root(tmp_path: Path, subject: str,
                                                video: str) -> None:
    root = tmp_path / "data"
    _touch_jpgs(tmp_path / "outside", [f"img{n}.jpg" for n in range(1, 20)])
    root.mkdir()
    rec = _record("samm", subject, video, 1, 18)
    with pytest.raises(FrameError, match=r"sheet row 7: .* is not a plain folder name; frame "
                                         r"folders must lie inside --data-root"):
        sample_clip_frames(rec, root, 8)


def test_gaps_are_skipped_but_onset_and_offset_must_exist(tmp_path: Path) -> None:
    folder = tmp_path / "sub03" / "EP09"
    _touch_jpgs(folder, [f"img{n}.jpg" for n in range(1, 31) if n % 3])  # every 3rd missing
    ok = sample_clip_frames(_record("casme2", "03", "EP09", 1, 29), tmp_path, 8)
    assert all(n % 3 for n in ok.numbers)
    with pytest.raises(FrameError, match=r"missing frame: offset frame 30 not found in .*EP09"):
        sample_clip_frames(_record("casme2", "03", "EP09", 1, 30), tmp_path, 8)


def test_missing_folder_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match=r"missing folder .*sub04.*EP01"):
        sample_clip_frames(_record("casme2", "04", "EP01", 1, 20), tmp_path, 8)


def test_duplicate_frame_numbers_are_an_error(tmp_path: Path) -> None:
    _touch_jpgs(tmp_path, ["img5.jpg", "img05.jpg"])
    (tmp_path / "notes.txt").write_text("not a frame")
    with pytest.raises(FrameError, match="frame 5 appears twice"):
        list_frames(tmp_path)
