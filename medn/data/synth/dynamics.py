"""A synthetic clip's motion: which bumps move, how far at apex, and when (onset -> apex -> offset).

Everything here is a deterministic function of the record (its emotion, AU set, onset/apex/offset
and ``extra["synth_seed"]``), so the labels alone determine the clip up to sensor noise.

The apex is the same for every emotion: every bump reaches its full amplitude exactly at the
annotated apex, and amplitudes are drawn independently of the emotion. Emotions differ only in
how the motion gets there and leaves: apex time, hold, rise curvature, residual at offset, which
side starts later, whether the upper or the lower face starts first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medn.data.records import ClipRecord
from medn.data.synth.catalogue import (
    AU_AMPLITUDE_PX,
    AU_SPECS,
    SIGNATURES,
)
from medn.data.synth.seeding import stable_rng


@dataclass(frozen=True)
class Component:
    """One displacement bump of a clip: its AU, side (``L``/``R``/``M``), anchor and amplitude."""

    au: int
    side: str
    anchor: str
    direction: tuple[float, float]  # canonical, already mirrored for the side
    radius: float
    amplitude_px: float  # peak displacement at apex, pixels at 144 px
    start: float  # clip time (0 = onset, 1 = offset) at which it starts to move


@dataclass(frozen=True)
class ClipDynamics:
    """The motion plan of one clip (times are fractions of onset..offset)."""

    apex: float
    hold: float
    rise_power: float
    residual: float
    components: tuple[Component, ...]

    def activation(self, times: np.ndarray) -> np.ndarray:
        """Activation ``(len(times), n_components)`` in [0, 1] of each bump at each clip time."""
        t = np.asarray(times, dtype=np.float64)[:, None]
        start = np.array([c.start for c in self.components])[None, :]
        rise_len = np.maximum(self.apex - start, 1e-6)
        rise = np.clip((t - start) / rise_len, 0.0, 1.0) ** self.rise_power
        plateau_end = min(self.apex + self.hold, 1.0)
        fall_len = max(1.0 - plateau_end, 1e-6)
        fall = np.clip((t - plateau_end) / fall_len, 0.0, 1.0)
        fall = 0.5 - 0.5 * np.cos(np.pi * fall)  # smooth return
        decayed = 1.0 - (1.0 - self.residual) * fall
        return np.where(t < self.apex, rise, decayed)


def synth_seed_of(record: ClipRecord) -> int:
    """The generator seed a synthetic record was made with (``extra["synth_seed"]``, default 0)."""
    raw = record.extra.get("synth_seed", "0")
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"record {record.key}: extra['synth_seed'] must be an integer, "
                         f"got {raw!r}") from None


def apex_fraction(record: ClipRecord) -> float:
    """Where the annotated apex lies between onset (0) and offset (1)."""
    if record.apex is None:
        raise ValueError(f"synthetic record {record.key} has no apex frame")
    if not record.onset < record.apex < record.offset:
        raise ValueError(f"synthetic record {record.key}: expected onset < apex < offset, got "
                         f"{record.onset}, {record.apex}, {record.offset}")
    return (record.apex - record.onset) / (record.offset - record.onset)


def clip_dynamics(record: ClipRecord) -> ClipDynamics:
    """The deterministic motion plan of ``record`` (its emotion's signature, jittered per clip)."""
    if record.emotion not in SIGNATURES:
        raise ValueError(f"synthetic record {record.key}: emotion {record.emotion!r} is not one "
                         f"of {', '.join(SIGNATURES)}")
    unknown = sorted(au.number for au in record.aus if au.number not in AU_SPECS)
    if unknown:
        raise ValueError(f"synthetic record {record.key}: AUs {unknown} cannot be rendered; "
                         f"the generator renders AUs {sorted(AU_SPECS)}")
    sig = SIGNATURES[record.emotion]
    rng = stable_rng("dynamics", synth_seed_of(record), record.key)
    apex = apex_fraction(record)
    hold = float(np.clip(sig.hold + rng.normal(0, 0.03), 0.0, 1.0 - apex))
    rise_power = float(sig.rise_power * np.exp(rng.normal(0, 0.1)))
    residual = float(np.clip(sig.residual + rng.normal(0, 0.04), 0.0, 0.8))
    side_lag = float(np.clip(sig.side_lag_frac + rng.normal(0, 0.06), 0.0, 0.8))
    order_lag = float(np.clip(sig.order_frac + rng.normal(0, 0.06), 0.0, 0.8))

    components: list[Component] = []
    for number in sorted(au.number for au in record.aus):
        spec = AU_SPECS[number]
        amplitude = float(rng.uniform(*AU_AMPLITUDE_PX))
        late_half = (sig.order == "upper" and not spec.upper) or (sig.order == "lower"
                                                                  and spec.upper)
        base = order_lag if late_half else 0.0
        for comp in spec.components:
            sides = ("L", "R") if comp.bilateral else ("M",)
            for side in sides:
                # Per side a little amplitude scatter (not emotion-related).
                amp = amplitude * float(rng.uniform(0.9, 1.1))
                lag = base + (side_lag if side == sig.side_lag else 0.0)
                lag = min(lag, 0.85)
                dx, dy = comp.direction
                # Side L is the image right (x > 0.5): directions are given for that copy.
                direction = (-dx, dy) if side == "R" else (dx, dy)
                components.append(Component(number, side, comp.anchor, direction, comp.radius,
                                            amp, lag * apex))
    return ClipDynamics(apex, hold, rise_power, residual, tuple(components))
