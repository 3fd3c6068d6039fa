"""Frames as the releases ship them: tight (face-filling) crops and full frames of a real face
with a known motion, and replica trees of the real sheets in every release form."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_astronaut import PEAK_PX, SIGMA_PX, casme2_record, moving_face, write_frames

from medn.data.annotations import load_annotations
from medn.data.dataset import apex_index
from medn.data.face import fit_alignment, landmarks, largest_face, outside_mask
from medn.data.preprocess import PreprocessParams, preprocess_clips
from medn.data.records import ClipRecord
from medn.data.synth.replica import RELEASES, build_replica_tree, video_frames

SIZE = 64
PARAMS = PreprocessParams(size=SIZE, num_frames=8)
SHEETS = {"casme2": "CASME2-coding-20140508.xlsx", "samm": "SAMM_Micro_FACS_Codes_v2.xlsx",
          "casme3a": "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"}


def _landmark_box() -> tuple[int, int, int, int]:
    gray = cv2.cvtColor(moving_face().frames[0], cv2.COLOR_RGB2GRAY)
    points = landmarks(gray, largest_face(gray))
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return int(x0), int(y0), int(np.ceil(x1)), int(np.ceil(y1))


def _motion_at_corner(flow: np.ndarray, matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Mean last-frame flow around the moved mouth corner, in crop px."""
    face = moving_face()
    corner = matrix[:, :2] @ (face.corner - offset) + matrix[:, 2]
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    region = np.hypot(xx - corner[0], yy - corner[1]) < 1.5 * SIGMA_PX * scale
    last = flow[-1].astype(np.float32)
    return np.array([last[0][region].mean(), last[1][region].mean()]), scale


def _assert_moves_as_injected(outcome, path: Path, offset: np.ndarray) -> None:
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    matrix = fit_alignment(gray, SIZE).matrix
    mean, scale = _motion_at_corner(outcome.flow, matrix, offset)
    cosine = mean @ moving_face().direction / np.linalg.norm(mean)
    assert cosine > np.cos(np.radians(30)), mean
    assert np.linalg.norm(mean) > 0.25 * PEAK_PX * scale


def _tight_frames(box: tuple[int, int, int, int]) -> tuple[np.ndarray, ...]:
    left, top, right, bottom = box
    return tuple(np.ascontiguousarray(f[top:bottom, left:right]) for f in moving_face().frames)


def test_face_filling_crop_stays_inside_and_keeps_the_motion(tmp_path: Path) -> None:
    # As CASME II's cropped release: the frame is the face, jaw to jaw, brows to chin.
    x0, y0, x1, y1 = _landmark_box()
    box = (x0, y0 - 10, x1, y1)
    record = casme2_record("01", "EP02_01f", onset=46)
    folder = tmp_path / "Cropped" / "sub01" / "EP02_01f"
    paths = write_frames(folder, [f"reg_img{n}.jpg" for n in range(46, 54)], _tight_frames(box))
    (outcome,) = preprocess_clips([record], PARAMS, tmp_path / "c",
                                  data_root=tmp_path / "Cropped", workers=1)
    assert outcome.status == "computed", outcome.reason
    assert outcome.qc["outside_share"] <= 0.10
    assert outcome.qc["face_box"] is not None and outcome.qc["interocular_px"] > 20
    _assert_moves_as_injected(outcome, paths[0], np.array([box[0], box[1]]))


def test_a_crop_running_off_the_image_carries_no_flow_there(tmp_path: Path) -> None:
    # Cut through the brows: the crop must run off the top; nothing is invented there.
    x0, y0, x1, y1 = _landmark_box()
    gray = cv2.cvtColor(moving_face().frames[0], cv2.COLOR_RGB2GRAY)
    brows = landmarks(gray, largest_face(gray))[17:27, 1].mean()
    box = (x0 - 15, int(brows) + 2, x1 + 15, y1 + 10)
    record = casme2_record("02", "EP01_01", onset=10)
    folder = tmp_path / "root" / "sub02" / "EP01_01"
    paths = write_frames(folder, [f"reg_img{n}.jpg" for n in range(10, 18)], _tight_frames(box))
    (outcome,) = preprocess_clips([record], PARAMS, tmp_path / "c", data_root=tmp_path / "root",
                                  workers=1)
    assert outcome.status == "computed", outcome.reason
    qc = outcome.qc
    assert qc["outside_share"] > 0.01
    assert qc["flow_outside"] == 0.0 and qc["flow_face"] > 0.0
    gray = cv2.imread(str(paths[0]), cv2.IMREAD_GRAYSCALE)
    matrix = fit_alignment(gray, SIZE).matrix
    outside = outside_mask(gray.shape, matrix, SIZE)
    assert outside.mean() == pytest.approx(qc["outside_share"], abs=1e-5)
    assert not outcome.flow[:, :, outside].any()
    # Pixels wholly off the image are black: no texture copied from the border.
    wholly = cv2.warpAffine(np.full(gray.shape, 255, np.uint8), matrix, (SIZE, SIZE),
                            flags=cv2.INTER_LINEAR, borderValue=0) == 0
    assert wholly.any() and (outcome.frames[:, wholly] == 0).all()
    # The black region is a band along the crop's top edge, not a repeated border stripe.
    assert outside[0].mean() > 0.9 and not outside[-1].any()


@pytest.mark.parametrize(("form", "folder", "name"), [
    ("casme2-raw", "sub01/EP02_01f", "img{n}.jpg"),
    ("samm-full", "006/006_1_2", "006_{n:05d}.jpg"),
    ("casme3a-color", "spNO.1/a/color", "{n}.jpg"),
])
def test_full_frames_of_each_release(tmp_path: Path, form: str, folder: str, name: str) -> None:
    release = RELEASES[form]
    width, height = release.size
    frames = []
    for frame in moving_face().frames:  # the 512 x 512 astronaut placed on the release frame
        canvas = np.full((height, width, 3), 100, np.uint8)
        rows = min(height, 512)
        canvas[:rows, 100:612] = frame[:rows]
        frames.append(canvas if release.colour else
                      np.repeat(cv2.cvtColor(canvas, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2))
    subject, video = folder.split("/")[:2]
    record = ClipRecord(dataset=release.dataset, subject=subject.removeprefix("sub"),
                        clip=video, video=video, emotion="others", aus=frozenset(), onset=355,
                        apex=359, offset=362, row=2)
    paths = write_frames(tmp_path / folder, [name.format(n=n) for n in range(355, 363)],
                         tuple(frames))
    assert cv2.imread(str(paths[0])).shape == (height, width, 3)
    (outcome,) = preprocess_clips([record], PARAMS, tmp_path / "c", data_root=tmp_path,
                                  workers=1)
    assert outcome.status == "computed", outcome.reason
    assert outcome.qc["outside_share"] == 0.0 and outcome.qc["flow_outside"] is None
    _assert_moves_as_injected(outcome, paths[0], np.array([-100, 0]))
    # The apex flow (ResNet/ViT input) is onset -> the annotated apex frame itself.
    assert outcome.frame_numbers[apex_index(record, outcome.frame_numbers, outcome.flow) + 1] \
        == 359


@pytest.fixture(scope="module")
def sheets(shared_annotations: Path) -> dict[str, list[ClipRecord]]:
    return {ds: load_annotations(ds, shared_annotations / name).records
            for ds, name in SHEETS.items()}


REPLICA_CLIPS = {
    "casme2-raw": ["24/EP10_01f", "01/EP04_03"],
    "casme2-cropped": ["24/EP10_01f"],
    "samm-full": ["010/010_4_1"],
    "samm-cropped": ["010/010_4_1"],
    # one video with two clips (278-280, 280-285), both shorter than T = 8, and one more
    "casme3a-color": ["spNO.10/f_278", "spNO.10/f_280", "spNO.10/d_162"],
}


@pytest.mark.parametrize("form", sorted(REPLICA_CLIPS))
def test_replica_tree_of_real_sheet_clips(tmp_path: Path, sheets, form: str) -> None:
    release = RELEASES[form]
    by_key = {r.key: r for r in sheets[release.dataset]}
    records = [by_key[key] for key in REPLICA_CLIPS[form]]
    written = build_replica_tree(records, tmp_path / form, form)
    by_video: dict[tuple[str, str], list[ClipRecord]] = {}
    for record in records:
        by_video.setdefault((record.subject, record.video), []).append(record)
    assert written == sum(len(video_frames(clips)) for clips in by_video.values())
    first = records[0]
    expected = {"casme2-raw": f"sub{first.subject}/{first.video}/img{first.onset}.jpg",
                "casme2-cropped": f"sub{first.subject}/{first.video}/reg_img{first.onset}.jpg",
                "samm-full": f"{first.subject}/{first.video}/{first.subject}_{first.onset:05d}.jpg",
                "samm-cropped":
                    f"{first.subject}/{first.video}/{first.subject}_{first.onset:05d}.jpg",
                "casme3a-color": f"{first.subject}/{first.video}/color/{first.onset}.jpg"}[form]
    image = cv2.imread(str(tmp_path / form / expected), cv2.IMREAD_UNCHANGED)
    if release.size is not None:
        assert image.shape[:2] == (release.size[1], release.size[0])
    assert (image.ndim == 3) == release.colour
    assert build_replica_tree(records, tmp_path / form, form) == 0  # nothing rewritten
    outcomes = preprocess_clips(records, PARAMS, tmp_path / "c", data_root=tmp_path / form,
                                workers=1)
    assert [o.reason for o in outcomes if o.status == "failed"] == []
    for record, outcome in zip(records, outcomes, strict=True):
        assert outcome.qc["outside_share"] <= 0.10
        assert outcome.frame_numbers[0] == record.onset
        assert outcome.frame_numbers[-1] == record.offset
        assert record.apex in outcome.frame_numbers
