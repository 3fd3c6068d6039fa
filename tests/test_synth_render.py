"""Rendering of synthetic clips: shapes, determinism, motion amplitude and place, and the
temporal-signature property (the sequence tells the emotion of hard clips; the apex does not)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medn.data.flow import tvl1_flow
from medn.data.records import ActionUnit
from medn.data.synth import (
    EMOTIONS,
    displacement_fields,
    frame_numbers,
    generate_records,
    hard_sample_mask,
    render_clip,
)


@pytest.fixture(scope="module")
def quick_records():
    return generate_records("quick", seed=0)


def _apex_index(record, num_frames: int = 8) -> int:
    numbers = frame_numbers(record, num_frames)
    assert record.apex in numbers.tolist(), "the default T = 8 frames include the apex"
    return int(np.flatnonzero(numbers == record.apex)[0])


def _single_au(records, number: int):
    return next(r for r in records if r.au_numbers == frozenset({number}))


@pytest.mark.parametrize("size", [32, 48, 144])
def test_shape_and_dtype(quick_records, size: int) -> None:
    frames = render_clip(quick_records[0], size, 8)
    assert frames.shape == (8, size, size) and frames.dtype == np.uint8
    assert 40 < frames.mean() < 220 and frames.std() > 10, "a face, not a flat image"
    assert render_clip(quick_records[1], size, 5).shape == (5, size, size)


def test_deterministic_from_seed_and_record(quick_records) -> None:
    record = quick_records[4]
    first = render_clip(record, 48, 8, seed=1)
    assert np.array_equal(first, render_clip(record, 48, 8, seed=1))
    assert not np.array_equal(first, render_clip(record, 48, 8, seed=2))
    assert not np.array_equal(first, render_clip(quick_records[5], 48, 8, seed=1))


def test_each_subject_has_its_own_face(quick_records) -> None:
    by_subject: dict[str, list] = {}
    for record in quick_records:
        by_subject.setdefault(record.subject, []).append(record)
    (a1, a2), (b1, _) = by_subject["s01"][:2], by_subject["s02"][:2]
    onset = {r.key: render_clip(r, 48, 8, noise=False)[0] for r in (a1, a2, b1)}
    # Clips are pre-aligned: the noise-free onset frame is the subject's neutral face.
    assert np.array_equal(onset[a1.key], onset[a2.key])
    assert np.abs(onset[a1.key].astype(float) - onset[b1.key]).mean() > 5


def test_injected_apex_motion_is_micro_expression_sized(quick_records) -> None:
    for record in quick_records[:40]:
        apex = _apex_index(record)
        fields = displacement_fields(record, 144, 8)
        peak = np.hypot(fields[apex, 0], fields[apex, 1]).max()
        assert 0.5 - 1e-3 <= peak <= 3.0 + 1e-3, (record.key, peak)
        assert np.abs(fields[0]).max() == 0.0, "no motion at onset"
        # Amplitudes are given at 144 px and scale with the size.
        small = displacement_fields(record, 48, 8)
        assert np.hypot(small[apex, 0], small[apex, 1]).max() == pytest.approx(peak * 48 / 144,
                                                                               rel=0.05)


@pytest.mark.parametrize("au", [12, 4, 17])
def test_measured_flow_recovers_the_injected_motion(quick_records, au: int) -> None:
    """TV-L1 between the rendered onset and apex frames (144 px, no noise) finds a motion of the
    injected size and direction in the AU's region, and none far from it."""
    record = _single_au(quick_records, au)
    apex = _apex_index(record)
    injected = displacement_fields(record, 144, 8)[apex]
    magnitude = np.hypot(injected[0], injected[1])
    frames = render_clip(record, 144, 8, noise=False)
    flow = tvl1_flow(frames[0], frames[apex])
    measured = np.hypot(flow[..., 0], flow[..., 1])
    region = magnitude > 0.5 * magnitude.max()
    far = magnitude < 1e-3
    assert 0.5 <= np.median(measured[region]) <= 3.0
    assert np.median(measured[region]) == pytest.approx(np.median(magnitude[region]), rel=0.4)
    cosine = ((flow[..., 0] * injected[0] + flow[..., 1] * injected[1])[region]
              / (measured[region] * magnitude[region] + 1e-9))
    assert np.median(cosine) > 0.9
    assert np.median(measured[far]) < 0.05


@pytest.mark.parametrize("au", [1, 12, 24])
def test_onset_and_apex_differ_in_the_au_region_only(quick_records, au: int) -> None:
    record = _single_au(quick_records, au) if au != 1 else next(
        r for r in quick_records if 1 in r.au_numbers)
    apex = _apex_index(record)
    magnitude = np.hypot(*displacement_fields(record, 144, 8)[apex])
    region = magnitude > 0.3 * magnitude.max()
    far = magnitude < 1e-4
    assert region.sum() > 50 and far.sum() > 5000
    clean = render_clip(record, 144, 8, noise=False).astype(np.float32)
    diff = np.abs(clean[apex] - clean[0])
    assert diff[region].mean() > 2.0 and diff[far].max() <= 1.0
    noisy = render_clip(record, 144, 8, seed=0).astype(np.float32)  # sensor noise and flicker
    diff = np.abs(noisy[apex] - noisy[0])
    assert diff[region].mean() > 2.5 * diff[far].mean()


def test_render_rejects_what_it_cannot_draw(quick_records) -> None:
    record = quick_records[0]
    with pytest.raises(ValueError, match="emotion 'contempt'"):
        render_clip(type(record)(**{**record.__dict__, "emotion": "contempt"}), 48, 8)
    bad_aus = frozenset({ActionUnit(43)})
    with pytest.raises(ValueError, match=r"AUs \[43\] cannot be rendered"):
        render_clip(type(record)(**{**record.__dict__, "aus": bad_aus}), 48, 8)
    with pytest.raises(ValueError, match="size must be at least 16"):
        render_clip(record, 8, 8)


def _features(records, size: int = 32, num_frames: int = 8):
    """Per clip: (a) the time course of the frame-minus-onset images projected on the apex's,
    whole face and per half (left, right, upper, lower), normalised by the apex; (b) the apex's
    mean absolute change in a 4x4 grid of regions ("which AUs moved, how much")."""
    sequence, apex_only = [], []
    for record in records:
        frames = render_clip(record, size, num_frames, seed=0).astype(np.float32)
        diff = frames[1:] - frames[0]
        ai = _apex_index(record) - 1
        h = size // 2
        parts = []
        for sl in ((slice(None), slice(None)), (slice(None), slice(0, h)),
                   (slice(None), slice(h, None)), (slice(0, h), slice(None)),
                   (slice(h, None), slice(None))):
            part = diff[(slice(None), *sl)].reshape(num_frames - 1, -1)
            parts.append(part @ part[ai] / (part[ai] @ part[ai] + 1e-6))
        sequence.append(np.concatenate(parts))
        apex_only.append(np.abs(diff[ai]).reshape(4, size // 4, 4, size // 4).mean((1, 3)).ravel())
    return np.array(sequence), np.array(apex_only)


def test_hard_clips_are_told_apart_by_dynamics_not_by_the_apex() -> None:
    """The phenomenon the dataset exists for: on hard clips (same AU set as another emotion) a
    classifier on the temporal course of the motion is far above chance, one on the apex motion
    alone is near chance. Both are cross-validated across subjects."""
    records = generate_records("quick", subjects=16, seed=1)
    emotions = np.array([r.emotion for r in records])
    groups = np.array([r.subject for r in records])
    hard = hard_sample_mask(records)
    sequence, apex_only = _features(records)
    chance = 1 / len(EMOTIONS)
    scores = {}
    for name, x in (("sequence", sequence), ("apex", apex_only)):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        predicted = cross_val_predict(model, x, emotions, groups=groups, cv=GroupKFold(4))
        scores[name] = balanced_accuracy_score(emotions[hard], predicted[hard])
    assert scores["sequence"] > chance + 0.3, scores
    assert scores["apex"] < chance + 0.1, scores
