"""The built-in synthetic micro-expression dataset ``synth``.

Procedurally rendered, pre-aligned face clips whose emotion is NOT a function of their AU set: most
clips share their exact AU set with clips of another emotion and differ only in temporal dynamics
(the phenomenon of the MEDN paper, Table II). The generative rules are in ``docs/synth.md``.

``generate_records`` makes the labels (fast); ``render_clip`` renders one clip's frames.
"""

from medn.data.synth.catalogue import AU_SPECS, EMOTIONS, SIGNATURES
from medn.data.synth.dynamics import ClipDynamics, clip_dynamics
from medn.data.synth.face import FaceIdentity, render_face, subject_identity
from medn.data.synth.generate import (
    DEFAULT_HARD_SHARE,
    SYNTH_PROFILES,
    SynthProfile,
    emotion_counts,
    generate_records,
    hard_sample_mask,
    hard_sample_share,
)
from medn.data.synth.render import displacement_fields, frame_numbers, render_clip

# Bump when a change alters rendered frames or labels: it enters the preprocessing cache key.
GENERATOR_VERSION = "synth-1"

__all__ = [
    "AU_SPECS", "DEFAULT_HARD_SHARE", "EMOTIONS", "GENERATOR_VERSION", "SIGNATURES",
    "SYNTH_PROFILES", "ClipDynamics", "FaceIdentity", "SynthProfile", "clip_dynamics",
    "displacement_fields", "emotion_counts", "frame_numbers", "generate_records",
    "hard_sample_mask", "hard_sample_share", "render_clip", "render_face", "subject_identity",
]
