"""dlib detection + alignment + TV-L1 flow on a real face with a known injected micro-motion."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from helpers_astronaut import (
    PEAK_PX,
    SIGMA_PX,
    casme2_record,
    moving_face,
    write_casme2_clip,
    write_frames,
)

from medn.data.face import (
    CROP_MARGIN,
    detect_faces,
    fit_alignment,
    landmark_model_path,
    landmarks,
    largest_face,
)
from medn.data.flow import sequence_flow, tvl1_flow
from medn.data.preprocess import PreprocessParams, aligned_frames, preprocess_clips

SIZE = 96


def _area(box: tuple[int, int, int, int]) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def test_landmark_model_is_found_without_pkg_resources() -> None:
    path = landmark_model_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat"
    assert path.stat().st_size > 50_000_000


def test_largest_of_two_face_like_regions_is_the_face(tmp_path: Path) -> None:
    # As a jpg (the datasets' format) dlib reports the face and a face-like patch on the suit.
    path = write_frames(tmp_path, ["first.jpg"], moving_face().frames[:1])[0]
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    boxes = detect_faces(gray, upsample=1)
    assert len(boxes) == 2
    face = largest_face(gray)
    assert face == max(boxes, key=_area)
    # The face is in the upper part of the picture (the suit patch's top is below y = 300).
    assert face[3] < 250 and all(b[1] > 300 for b in boxes if b != face)


def test_alignment_levels_the_eyes_and_frames_the_landmarks_with_the_margin() -> None:
    gray = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY)
    fit = fit_alignment(gray, SIZE)
    pts = landmarks(gray, largest_face(gray))
    mapped = pts @ fit.matrix[:, :2].T + fit.matrix[:, 2]
    eyes = np.stack([mapped[36:42].mean(0), mapped[42:48].mean(0)])
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6 and eyes[0, 0] < eyes[1, 0]
    # A full frame has room around the face: the whole margin is used, nothing lies outside.
    assert fit.margin == CROP_MARGIN and fit.outside_share < 1e-4
    low, high = mapped.min(0), mapped.max(0)
    side = max(high - low)
    assert side == pytest.approx(SIZE / (1 + 2 * CROP_MARGIN), rel=1e-6)
    assert (low >= SIZE * CROP_MARGIN / (1 + 2 * CROP_MARGIN) - 1e-6).all()
    assert (high <= SIZE - SIZE * CROP_MARGIN / (1 + 2 * CROP_MARGIN) + 1e-6).all()
    assert fit.interocular_px == pytest.approx(
        np.hypot(*(pts[42:48].mean(0) - pts[36:42].mean(0))))


def test_no_face_in_a_blank_frame() -> None:
    from medn.data.face import NoFaceError

    with pytest.raises(NoFaceError, match="no face"):
        largest_face(np.full((240, 320), 128, np.uint8))


def test_tvl1_sign_convention() -> None:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur((rng.random((64, 64)) * 255).astype(np.uint8), (5, 5), 1.5)
    moved = np.roll(base, 1, axis=1)  # content moves right by 1 px
    flow = tvl1_flow(base, moved)
    assert flow.shape == (64, 64, 2)
    assert 0.7 < flow[16:48, 16:48, 0].mean() < 1.3
    assert abs(flow[16:48, 16:48, 1].mean()) < 0.2


def _check_motion(flows: np.ndarray, matrix: np.ndarray) -> None:
    """The last flow frame moves the mouth corner in the injected direction, and only there."""
    face = moving_face()
    corner = matrix[:, :2] @ face.corner + matrix[:, 2]
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    dist = np.hypot(xx - corner[0], yy - corner[1])
    region = dist < 1.5 * SIGMA_PX * scale
    elsewhere = dist > 4 * SIGMA_PX * scale
    last = flows[-1].astype(np.float32)
    mean = np.array([last[0][region].mean(), last[1][region].mean()])
    # Direction: within 25 degrees of the injected one; size: a fair share of the peak.
    cosine = mean @ face.direction / np.linalg.norm(mean)
    assert cosine > np.cos(np.radians(25)), (mean, face.direction)
    assert np.linalg.norm(mean) > 0.25 * PEAK_PX * scale
    magnitude = np.hypot(last[0], last[1])
    assert magnitude[region].mean() > 10 * magnitude[elsewhere].mean()
    # The motion grows over the clip (onset -> last frame).
    growth = [np.hypot(f[0][region], f[1][region]).mean() for f in flows.astype(np.float32)]
    assert growth[-1] > growth[0] * 2


def test_pipeline_on_frames_directly(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, [f"f{i}.jpg" for i in range(8)])
    frames = aligned_frames(paths, SIZE)
    assert frames.shape == (8, SIZE, SIZE) and frames.dtype == np.uint8
    flows = sequence_flow(frames)
    assert flows.shape == (7, 2, SIZE, SIZE)
    matrix = fit_alignment(cv2.imread(str(paths[0]), cv2.IMREAD_GRAYSCALE), SIZE).matrix
    _check_motion(flows, matrix)


def test_pipeline_through_the_casme2_folder_layout(tmp_path: Path) -> None:
    record = casme2_record(onset=40)
    paths = write_casme2_clip(tmp_path / "CASME2", record)
    outcomes = preprocess_clips([record], PreprocessParams(size=SIZE, num_frames=8),
                                tmp_path / "cache", data_root=tmp_path / "CASME2", workers=1)
    (outcome,) = outcomes
    assert outcome.status == "computed", outcome.reason
    assert outcome.flow.shape == (7, 2, SIZE, SIZE) and outcome.flow.dtype == np.float16
    assert outcome.frame_numbers == tuple(range(40, 48))
    matrix = fit_alignment(cv2.imread(str(paths[0]), cv2.IMREAD_GRAYSCALE), SIZE).matrix
    _check_motion(outcome.flow, matrix)
