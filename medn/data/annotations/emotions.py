"""Emotion spellings of the sheets, normalised to one fine label per emotion."""

from __future__ import annotations

import re

# Spellings seen in the sheets (and obvious variants) -> the normalised fine label.
EMOTION_ALIASES: dict[str, str] = {
    "happy": "happiness",
    "happiness": "happiness",
    "sad": "sadness",
    "sadness": "sadness",
    "other": "others",
    "others": "others",
    "angry": "anger",
    "anger": "anger",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "surprise": "surprise",
    "surprised": "surprise",
    "contempt": "contempt",
    "repression": "repression",
}

# The fine labels each dataset's sheet may hold (synth uses the CAS(ME)^3 seven).
DATASET_EMOTIONS: dict[str, tuple[str, ...]] = {
    "casme2": ("happiness", "disgust", "repression", "surprise", "sadness", "fear", "others"),
    "samm": ("anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise", "others"),
    "casme3a": ("happiness", "disgust", "surprise", "fear", "anger", "sadness", "others"),
    "synth": ("happiness", "disgust", "surprise", "fear", "anger", "sadness", "others"),
}


def normalise_emotion(value: object) -> str:
    """Lower-case, trim and de-alias an emotion cell: ``' Happy '`` -> ``'happiness'``,
    ``'Other'``/``'Others'`` -> ``'others'``. Unknown words are returned lower-cased, trimmed;
    an empty cell gives ``''``."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    text = re.sub(r"\s+", " ", str(value)).strip().lower()
    return EMOTION_ALIASES.get(text, text)
