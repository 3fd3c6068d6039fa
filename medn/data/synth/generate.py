"""The synthetic dataset's labels: subjects, emotions, AU sets, onset/apex/offset (no rendering).

Rules (see docs/synth.md):
- emotions follow CAS(ME)^3 Part A's shares (largest-remainder allocation, every emotion at least
  once when there are 7 clips or more), shuffled over subjects;
- exactly ``round(hard_share * N)`` clips are *hard*: their AU set is drawn from one pool with the
  same weights for every emotion, then repaired until every such set occurs with at least two
  emotions; the other clips draw from their emotion's exclusive sets (never hard);
- each clip lasts 7k frames (k in 2..4) and its apex lies on a seventh of it, at the emotion's
  signature time (jittered by one seventh for 15% of clips).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from medn.data.records import ActionUnit, ClipRecord
from medn.data.synth.catalogue import (
    COMPOSITE_CLASS,
    DURATION_STEPS,
    EMOTION_SHARES,
    EMOTIONS,
    EXCLUSIVE_AU_SETS,
    SHARED_AU_SETS,
    SIGNATURES,
)

DEFAULT_HARD_SHARE = 0.85  # near the paper's Table II (CAS(ME)^3: 85% to 91% of clips)


@dataclass(frozen=True)
class SynthProfile:
    """A size of the synthetic dataset: subjects, clips per subject (on average), frames T, and
    the frame size ``medn data synth`` renders at by default (training takes it from its config)."""

    subjects: int
    clips_per_subject: float
    frames: int = 8
    size: int = 144
    hard_share: float = DEFAULT_HARD_SHARE


SYNTH_PROFILES: dict[str, SynthProfile] = {
    "smoke": SynthProfile(subjects=4, clips_per_subject=6, size=32),
    "quick": SynthProfile(subjects=8, clips_per_subject=12, size=48),
    "full": SynthProfile(subjects=94, clips_per_subject=860 / 94, size=144),
}


def _allocate(total: int, weights: Sequence[float], minimum: int) -> np.ndarray:
    """Integer counts summing to ``total``, proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, dtype=np.float64)
    base = np.full(len(w), minimum if total >= minimum * len(w) else 0, dtype=np.int64)
    rest = total - base.sum()
    exact = w / w.sum() * rest
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: rest - counts.sum()]] += 1
    return base + counts


def _subject_counts(rng: np.random.Generator, subjects: int, total: int) -> np.ndarray:
    """Clips per subject: uneven like real datasets, at least one each, summing to ``total``."""
    weights = rng.uniform(0.6, 1.4, subjects)
    return _allocate(total, weights, minimum=1)


def _pick_hard(rng: np.random.Generator, emotions: list[str], hard_share: float) -> np.ndarray:
    n = len(emotions)
    n_hard = int(round(hard_share * n))
    if n_hard == 1:  # a lone clip cannot share its AU set with another emotion
        n_hard = 2 if n >= 2 else 0
    hard = np.zeros(n, dtype=bool)
    if n_hard == 0:
        return hard
    order = rng.permutation(n)
    hard[order[:n_hard]] = True
    chosen = {emotions[i] for i in np.flatnonzero(hard)}
    if len(chosen) < 2:  # swap in a clip of another emotion
        other = [i for i in order[n_hard:] if emotions[i] not in chosen]
        if not other:
            raise ValueError("the synthetic dataset needs clips of at least two emotions to make "
                             "hard samples; use more subjects or clips")
        hard[order[0]] = False
        hard[other[0]] = True
    return hard


def _repair_step(rng: np.random.Generator, sets: dict[int, tuple[int, ...]],
                 labels: dict[int, str | None]) -> bool:
    """Move one hard clip whose AU set no other label (``None``: no requirement) shares to a set
    that another label already shows; False when there is nothing left to repair."""
    groups: dict[tuple[int, ...], set[str]] = defaultdict(set)
    for i, s in sets.items():
        if labels[i] is not None:
            groups[s].add(labels[i])
    for i, s in sets.items():
        if labels[i] is None or groups[s] - {labels[i]}:
            continue
        candidates = [t for t, ls in groups.items() if ls - {labels[i]}]
        if not candidates:
            continue  # no other label among the hard clips: cannot be repaired at this level
        shared = [t for t in candidates if len(groups[t]) >= 2]  # prefer sets already shared
        options = shared or candidates
        p = np.array([SHARED_AU_SETS[t] for t in options])
        sets[i] = options[rng.choice(len(options), p=p / p.sum())]
        return True
    return False


def _assign_hard_sets(rng: np.random.Generator, emotions: list[str],
                      hard_idx: np.ndarray) -> dict[int, tuple[int, ...]]:
    """AU sets for the hard clips, each occurring with at least two emotions.

    Every hard clip draws from the shared pool with the same weights; then, best effort, sets
    are repaired so they also span two 3-class composite classes where they can (so the 3-class
    protocol keeps about the same hard share); finally, strictly, so that every set occurs with
    at least two fine emotions.
    """
    pool = list(SHARED_AU_SETS)
    weights = np.array([SHARED_AU_SETS[s] for s in pool])
    weights = weights / weights.sum()
    sets = {int(i): pool[rng.choice(len(pool), p=weights)] for i in hard_idx}
    composite = {int(i): COMPOSITE_CLASS.get(emotions[i]) for i in hard_idx}
    fine = {int(i): emotions[i] for i in hard_idx}
    for _ in range(2 * len(sets)):  # bounded: moves at this level may undo each other
        if not _repair_step(rng, sets, composite):
            break
    while _repair_step(rng, sets, fine):  # each step repairs one clip for good
        pass
    return sets


def generate_records(profile: str = "quick", subjects: int | None = None, seed: int = 0,
                     hard_share: float | None = None) -> list[ClipRecord]:
    """The labels of the synthetic dataset (no rendering): deterministic from the arguments.

    ``profile`` is a key of ``SYNTH_PROFILES``; ``subjects`` overrides its subject count (clips
    per subject stay); ``hard_share`` (default the profile's, 0.85) is the share of clips whose
    exact AU set also occurs with another emotion.
    """
    if profile not in SYNTH_PROFILES:
        raise ValueError(f"synth profile {profile!r} is unknown; expected one of "
                         f"{', '.join(SYNTH_PROFILES)}")
    prof = SYNTH_PROFILES[profile]
    n_subjects = prof.subjects if subjects is None else subjects
    if n_subjects < 1:
        raise ValueError(f"subjects must be at least 1, got {n_subjects}")
    share = prof.hard_share if hard_share is None else hard_share
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"hard_share must be within [0, 1], got {share}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    total = max(int(round(n_subjects * prof.clips_per_subject)), n_subjects)
    per_subject = _subject_counts(rng, n_subjects, total)
    counts = _allocate(total, [EMOTION_SHARES[e] for e in EMOTIONS], minimum=1)
    emotions = [e for e, c in zip(EMOTIONS, counts, strict=True) for _ in range(c)]
    emotions = [emotions[i] for i in rng.permutation(total)]

    hard = _pick_hard(rng, emotions, share)
    au_sets: dict[int, tuple[int, ...]] = _assign_hard_sets(rng, emotions, np.flatnonzero(hard))
    for i in np.flatnonzero(~hard):
        options = EXCLUSIVE_AU_SETS[emotions[i]]
        au_sets[int(i)] = options[rng.integers(len(options))]

    width = len(str(n_subjects))
    records: list[ClipRecord] = []
    index = 0
    for s, count in enumerate(per_subject):
        subject = f"s{s + 1:0{max(width, 2)}d}"
        for c in range(count):
            emotion = emotions[index]
            steps = SIGNATURES[emotion].apex_steps
            if rng.random() < 0.15:
                steps = int(np.clip(steps + rng.choice([-1, 1]), 1, 5))
            k = int(rng.choice(DURATION_STEPS))
            onset = int(rng.integers(1, 400))
            clip = f"c{c + 1:02d}"
            records.append(ClipRecord(
                dataset="synth", subject=subject, clip=clip, video=clip, emotion=emotion,
                aus=frozenset(ActionUnit(n) for n in au_sets[index]), onset=onset,
                apex=onset + steps * k, offset=onset + 7 * k, row=index + 1,
                extra={"synth_seed": str(seed)}))
            index += 1
    return records


def hard_sample_mask(records: Sequence[ClipRecord],
                     label_of: Callable[[ClipRecord], str | None] | None = None) -> np.ndarray:
    """Which clips are *hard* (paper Table II): their exact AU set also occurs with another label.

    ``label_of`` maps a record to its class under a protocol (``None`` = excluded: never hard and
    not counted by others); the default is the fine emotion.
    """
    labels = [label_of(r) if label_of else r.emotion for r in records]
    by_set: dict[frozenset[ActionUnit], set[str]] = defaultdict(set)
    for record, label in zip(records, labels, strict=True):
        if label is not None:
            by_set[record.aus].add(label)
    return np.array([label is not None and len(by_set[r.aus]) >= 2
                     for r, label in zip(records, labels, strict=True)], dtype=bool)


def hard_sample_share(records: Sequence[ClipRecord],
                      label_of: Callable[[ClipRecord], str | None] | None = None) -> float:
    """The share of (non-excluded) clips that are hard; 0.0 for no clips."""
    labels = [label_of(r) if label_of else r.emotion for r in records]
    kept = sum(label is not None for label in labels)
    if kept == 0:
        return 0.0
    return float(hard_sample_mask(records, label_of).sum()) / kept


def emotion_counts(records: Sequence[ClipRecord]) -> dict[str, int]:
    """Clips per fine emotion, in the generator's emotion order (zeros included)."""
    counts = Counter(r.emotion for r in records)
    return {e: counts.get(e, 0) for e in EMOTIONS}
