"""The synthetic dataset's labels: schema, profiles, determinism, class balance, hard samples."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold

from medn.data.annotations.protocols import get_protocol
from medn.data.records import ActionUnit, ClipRecord
from medn.data.synth import (
    EMOTIONS,
    SYNTH_PROFILES,
    generate_records,
    hard_sample_mask,
    hard_sample_share,
)


def _record(subject: str, clip: str, emotion: str, aus: tuple[int, ...]) -> ClipRecord:
    return ClipRecord("synth", subject, clip, clip, emotion,
                      frozenset(ActionUnit(n) for n in aus), 10, 13, 24)


def test_records_follow_the_shared_schema() -> None:
    records = generate_records("quick", seed=3)
    assert all(r.dataset == "synth" for r in records)
    assert {r.emotion for r in records} == set(EMOTIONS)
    keys = [r.key for r in records]
    assert len(keys) == len(set(keys)), "clip ids must be unique per subject"
    for r in records:
        assert r.subject.startswith("s") and r.subject[1:].isdigit()
        assert r.video == r.clip
        assert isinstance(r.aus, frozenset) and r.aus
        assert all(isinstance(au, ActionUnit) for au in r.aus)
        assert r.apex is not None and r.onset < r.apex < r.offset
        assert (r.offset - r.onset) % 7 == 0, "clip length is a multiple of 7 frames"


@pytest.mark.parametrize("profile", ["smoke", "quick", "full"])
def test_profile_sizes(profile: str) -> None:
    prof = SYNTH_PROFILES[profile]
    records = generate_records(profile)
    subjects = Counter(r.subject for r in records)
    assert len(subjects) == prof.subjects
    assert len(records) == round(prof.subjects * prof.clips_per_subject)
    assert min(subjects.values()) >= 1


def test_sizes_are_as_documented() -> None:
    assert len(generate_records("smoke")) == 24
    assert len(generate_records("quick")) == 96
    full = generate_records("full")
    assert len(full) == 860 and len({r.subject for r in full}) == 94


def test_subjects_override_keeps_clips_per_subject() -> None:
    records = generate_records("quick", subjects=3)
    assert len({r.subject for r in records}) == 3
    assert len(records) == 36


def test_deterministic_from_seed() -> None:
    assert generate_records("quick", seed=5) == generate_records("quick", seed=5)
    assert generate_records("quick", seed=5) != generate_records("quick", seed=6)


def test_class_balance_is_like_casme3() -> None:
    counts = Counter(r.emotion for r in generate_records("full"))
    # CAS(ME)^3 Part A: disgust 250, surprise 187, others 161, fear 86, anger 64, sadness 57,
    # happiness 55; negatives (disgust, fear, anger, sadness) are most frequent.
    assert counts.most_common(1)[0][0] == "disgust"
    assert abs(counts["disgust"] - 250) <= 2 and abs(counts["happiness"] - 55) <= 2
    negative = sum(counts[e] for e in ("disgust", "fear", "anger", "sadness"))
    assert negative > counts["surprise"] + counts["happiness"] + counts["others"]
    smoke = Counter(r.emotion for r in generate_records("smoke"))
    assert set(smoke) == set(EMOTIONS), "every emotion occurs even in the smoke profile"


def test_hard_sample_share_on_a_known_example() -> None:
    records = [_record("a", "1", "disgust", (4,)), _record("a", "2", "fear", (4,)),
               _record("b", "1", "disgust", (4, 7)), _record("b", "2", "disgust", (4, 7)),
               _record("c", "1", "happiness", (12,)), _record("c", "2", "others", (12,))]
    assert hard_sample_mask(records).tolist() == [True, True, False, False, True, True]
    assert hard_sample_share(records) == pytest.approx(4 / 6)
    # Under the 3-class protocol disgust and fear are both negative, and others is excluded.
    three = get_protocol("synth", 3)
    mask = hard_sample_mask(records, lambda r: three.class_of(r.emotion))
    assert mask.tolist() == [False] * 6
    assert hard_sample_share([]) == 0.0


@pytest.mark.parametrize(("profile", "share"), [("smoke", 0.85), ("quick", 0.85),
                                                 ("full", 0.85), ("quick", 0.5),
                                                 ("quick", 0.0), ("quick", 1.0)])
def test_hard_share_is_the_configured_one(profile: str, share: float) -> None:
    for seed in (0, 1):
        records = generate_records(profile, seed=seed, hard_share=share)
        assert abs(hard_sample_share(records) - share) <= 1 / len(records) + 1e-9


def test_hard_share_holds_under_the_composite_protocols() -> None:
    records = generate_records("full")
    for task in (3, 4, 7):
        protocol = get_protocol("synth", task)
        share = hard_sample_share(records, lambda r, p=protocol: p.class_of(r.emotion))
        assert 0.8 <= share <= 0.92, (task, share)


def test_emotion_is_not_recoverable_from_the_au_set_on_hard_clips() -> None:
    """A majority vote by exact AU set, fitted on other subjects, is near chance on hard clips
    (and near perfect on easy ones): the AU set alone does not tell the emotion."""
    records = generate_records("full", seed=2)
    emotions = np.array([r.emotion for r in records])
    subjects = np.array([r.subject for r in records])
    hard = hard_sample_mask(records)
    predicted = np.empty(len(records), dtype=object)
    overall = Counter(emotions.tolist()).most_common(1)[0][0]
    for train, test in GroupKFold(n_splits=10).split(emotions, groups=subjects):
        votes: dict[frozenset, Counter] = defaultdict(Counter)
        for i in train:
            votes[records[i].aus][emotions[i]] += 1
        for i in test:
            vote = votes.get(records[i].aus)
            predicted[i] = vote.most_common(1)[0][0] if vote else overall
    chance = 1 / len(EMOTIONS)
    hard_uar = balanced_accuracy_score(emotions[hard], predicted[hard].astype(str))
    easy_uar = balanced_accuracy_score(emotions[~hard], predicted[~hard].astype(str))
    assert hard_uar < chance + 0.08, hard_uar
    assert easy_uar > 0.9, easy_uar


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="synth profile 'huge'"):
        generate_records("huge")
    with pytest.raises(ValueError, match="hard_share"):
        generate_records("smoke", hard_share=1.5)
    with pytest.raises(ValueError, match="subjects"):
        generate_records("smoke", subjects=0)
