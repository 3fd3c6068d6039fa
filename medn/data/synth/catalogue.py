"""The fixed tables of the synthetic generator: action units, emotions, AU-set pools, signatures.

Coordinates are *canonical*: fractions of the aligned face crop, x to the image right, y down.
Side ``"L"`` is the subject's left, which is the image's right (x > 0.5), as FACS codes it.
Amplitudes are pixels at 144 px (the paper's crop); the renderer scales them by ``size / 144``.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------------
# Action units
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AUComponent:
    """One local displacement bump of an AU.

    ``anchor`` names a landmark of the subject's face (``FaceIdentity.landmarks``); ``direction``
    is the motion direction for the image-right copy (mirrored in x for the image-left copy);
    ``radius`` is the Gaussian radius in canonical units; ``bilateral`` components exist once per
    side (``L``/``R``), the others once on the midline (side ``M``).
    """

    anchor: str
    direction: tuple[float, float]
    radius: float
    bilateral: bool = True


@dataclass(frozen=True)
class AUSpec:
    """An action unit the generator can render: its FACS name, bumps and face half."""

    number: int
    name: str
    components: tuple[AUComponent, ...]
    upper: bool  # upper face (brows, eyes, nose) vs lower face (mouth, chin)


AU_SPECS: dict[int, AUSpec] = {spec.number: spec for spec in (
    AUSpec(1, "inner brow raiser", (AUComponent("brow_inner", (0.0, -1.0), 0.055),), True),
    AUSpec(2, "outer brow raiser", (AUComponent("brow_outer", (0.2, -1.0), 0.055),), True),
    AUSpec(4, "brow lowerer", (AUComponent("brow_mid", (-0.6, 0.8), 0.065),), True),
    AUSpec(5, "upper lid raiser", (AUComponent("upper_lid", (0.0, -1.0), 0.035),), True),
    AUSpec(6, "cheek raiser", (AUComponent("cheek", (0.1, -1.0), 0.07),), True),
    AUSpec(7, "lid tightener", (AUComponent("lower_lid", (0.0, -1.0), 0.035),), True),
    AUSpec(9, "nose wrinkler", (AUComponent("nose_side", (-0.2, -1.0), 0.045),), True),
    AUSpec(12, "lip corner puller", (AUComponent("mouth_corner", (0.75, -0.66), 0.05),), False),
    AUSpec(14, "dimpler", (AUComponent("mouth_corner", (1.0, 0.0), 0.04),), False),
    AUSpec(15, "lip corner depressor", (AUComponent("mouth_corner", (0.15, 1.0), 0.05),), False),
    AUSpec(17, "chin raiser", (AUComponent("chin", (0.0, -1.0), 0.07, bilateral=False),), False),
    AUSpec(24, "lip pressor", (AUComponent("upper_lip", (0.0, 1.0), 0.04, bilateral=False),
                               AUComponent("lower_lip", (0.0, -1.0), 0.045, bilateral=False)),
           False),
)}

# Peak displacement of one AU at apex, pixels at 144 px, drawn uniformly per clip and AU; the
# whole apex field is then kept within [MIN_PEAK_PX, MAX_PEAK_PX].
AU_AMPLITUDE_PX: tuple[float, float] = (0.8, 2.6)
MIN_PEAK_PX = 0.5
MAX_PEAK_PX = 3.0

# ---------------------------------------------------------------------------------------------
# Emotions: CAS(ME)^3 Part A's seven labels and their shares (860 clips: disgust 250,
# surprise 187, others 161, fear 86, anger 64, sadness 57, happiness 55).
# ---------------------------------------------------------------------------------------------

EMOTIONS: tuple[str, ...] = ("happiness", "disgust", "surprise", "fear", "anger", "sadness",
                             "others")
EMOTION_SHARES: dict[str, float] = {
    "disgust": 250 / 860, "surprise": 187 / 860, "others": 161 / 860, "fear": 86 / 860,
    "anger": 64 / 860, "sadness": 57 / 860, "happiness": 55 / 860,
}
# The 3-class composite (MEGC2019) of each emotion; "others" is outside it.
COMPOSITE_CLASS: dict[str, str] = {"happiness": "positive", "surprise": "surprise",
                                   "disgust": "negative", "fear": "negative",
                                   "anger": "negative", "sadness": "negative"}

# ---------------------------------------------------------------------------------------------
# AU sets. Hard clips draw from SHARED_AU_SETS with the same weights whatever their emotion, so
# on them the AU set says nothing about the emotion. Easy clips draw from their emotion's
# EXCLUSIVE_AU_SETS, which no other emotion and no shared set uses.
# ---------------------------------------------------------------------------------------------

SHARED_AU_SETS: dict[tuple[int, ...], float] = {
    (4,): 0.20, (14,): 0.12, (1, 2): 0.10, (12,): 0.08, (24,): 0.07, (17,): 0.06, (9,): 0.06,
    (7,): 0.06, (4, 7): 0.06, (15,): 0.05, (14, 24): 0.05, (4, 9): 0.05, (1, 2, 4): 0.04,
}
EXCLUSIVE_AU_SETS: dict[str, tuple[tuple[int, ...], ...]] = {
    "happiness": ((6, 12), (6, 7, 12)),
    "disgust": ((4, 9, 17), (9, 15)),
    "surprise": ((1, 2, 5), (5,)),
    "fear": ((1, 2, 4, 5), (4, 5)),
    "anger": ((4, 7, 24), (4, 17, 24)),
    "sadness": ((1, 4, 15), (15, 17)),
    "others": ((1, 14), (7, 14)),
}

# ---------------------------------------------------------------------------------------------
# Temporal signatures: how each emotion unfolds from onset (t = 0) to offset (t = 1).
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemporalSignature:
    """The mean temporal dynamics of an emotion (per clip they are jittered slightly).

    ``apex_steps``: apex time in sevenths of the clip (the default T = 8 frames fall on sevenths,
    so the apex is always a sampled frame); ``hold``: plateau after the apex (fraction of the
    clip); ``rise_power``: the rise follows ``x ** rise_power`` (< 1 fast start, > 1 slow start);
    ``residual``: share of the apex motion still there at offset; ``side_lag``: the subject side
    (``"L"``/``"R"``) whose bumps start later, by ``side_lag_frac`` of the rise time;
    ``order``: ``"upper"`` = upper-face AUs start first (lower-face ones later by ``order_frac``
    of the rise), ``"lower"`` the reverse, ``None`` all together.
    """

    apex_steps: int
    hold: float
    rise_power: float
    residual: float
    side_lag: str | None = None
    side_lag_frac: float = 0.0
    order: str | None = None
    order_frac: float = 0.0


SIGNATURES: dict[str, TemporalSignature] = {
    "happiness": TemporalSignature(2, 1 / 7, 0.6, 0.0, order="lower", order_frac=0.6),
    "disgust": TemporalSignature(3, 2 / 7, 1.0, 0.35, side_lag="R", side_lag_frac=0.6,
                                 order="upper", order_frac=0.3),
    "surprise": TemporalSignature(1, 3 / 7, 1.0, 0.0),
    "fear": TemporalSignature(3, 0.0, 2.2, 0.0, side_lag="L", side_lag_frac=0.6,
                              order="upper", order_frac=0.5),
    "anger": TemporalSignature(4, 1 / 7, 1.0, 0.55, order="upper", order_frac=0.5),
    "sadness": TemporalSignature(5, 1 / 7, 0.6, 0.3, order="lower", order_frac=0.5),
    "others": TemporalSignature(2, 2 / 7, 1.6, 0.15, side_lag="L", side_lag_frac=0.3),
}
# The default clip length is a multiple of 7 frames, so that T = 8 frames hit the apex exactly.
DURATION_STEPS: tuple[int, ...] = (2, 3, 4)  # clip length = 7 * k frames (14-28 at 30 fps)
