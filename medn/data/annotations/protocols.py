"""Label protocols: which clips a task keeps and the class name of each.

* 3-class composite (MEGC2019 CDE): negative, positive (happiness), surprise; others excluded.
  Negative is per dataset as in MEGC2019: CASME II disgust + repression (its 7 sadness and 2 fear
  clips are not in the composite list); SAMM anger, contempt, disgust, fear, sadness; CAS(ME)^3
  (and synth) disgust, fear, anger, sadness.
* 4-class (CAS(ME)^3, synth): the 3 classes + others.
* 5-class (TSFmicro Table 1): CASME II happiness, disgust, repression, surprise, others;
  SAMM happiness, anger, contempt, surprise, others.
* 7-class (CAS(ME)^3, synth): the original labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medn.data.records import ClipRecord, RowIssue

THREE_CLASSES = ("negative", "positive", "surprise")
FOUR_CLASSES = (*THREE_CLASSES, "others")
SEVEN_CLASSES = ("happiness", "disgust", "surprise", "fear", "anger", "sadness", "others")
_CASME3_NEGATIVE = ("disgust", "fear", "anger", "sadness")


@dataclass(frozen=True)
class Protocol:
    """One (dataset, task) protocol: the classes in fixed order and the fine label -> class map."""

    dataset: str
    task: int
    classes: tuple[str, ...]
    mapping: dict[str, str]
    name: str

    def class_of(self, emotion: str) -> str | None:
        """The protocol class of a fine emotion label, or None if the protocol excludes it."""
        return self.mapping.get(emotion)


def _composite(negative: tuple[str, ...], others: bool) -> dict[str, str]:
    mapping = {emotion: "negative" for emotion in negative}
    mapping.update(happiness="positive", surprise="surprise")
    if others:
        mapping["others"] = "others"
    return mapping


def _identity(labels: tuple[str, ...]) -> dict[str, str]:
    return {label: label for label in labels}


_CASME2_5 = ("happiness", "disgust", "repression", "surprise", "others")
_SAMM_5 = ("happiness", "anger", "contempt", "surprise", "others")

PROTOCOLS: dict[tuple[str, int], Protocol] = {}
for _ds, _neg in (("casme2", ("disgust", "repression")),
                  ("samm", ("anger", "contempt", "disgust", "fear", "sadness")),
                  ("casme3a", _CASME3_NEGATIVE), ("synth", _CASME3_NEGATIVE)):
    PROTOCOLS[(_ds, 3)] = Protocol(_ds, 3, THREE_CLASSES, _composite(_neg, False),
                                   "3-class composite (MEGC2019)")
for _ds in ("casme3a", "synth"):
    PROTOCOLS[(_ds, 4)] = Protocol(_ds, 4, FOUR_CLASSES,
                                   _composite(_CASME3_NEGATIVE, True),
                                   "4-class (3-class composite + others)")
    PROTOCOLS[(_ds, 7)] = Protocol(_ds, 7, SEVEN_CLASSES, _identity(SEVEN_CLASSES),
                                   "7-class (CAS(ME)^3 original labels)")
PROTOCOLS[("casme2", 5)] = Protocol("casme2", 5, _CASME2_5, _identity(_CASME2_5),
                                    "5-class (TSFmicro Table 1)")
PROTOCOLS[("samm", 5)] = Protocol("samm", 5, _SAMM_5, _identity(_SAMM_5),
                                  "5-class (TSFmicro Table 1)")


def allowed_tasks(dataset: str) -> tuple[int, ...]:
    """The tasks defined for ``dataset`` (e.g. (3, 5) for casme2); ValueError if it is unknown."""
    tasks = tuple(sorted(task for ds, task in PROTOCOLS if ds == dataset))
    if not tasks:
        known = sorted({ds for ds, _ in PROTOCOLS})
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {known}")
    return tasks


def get_protocol(dataset: str, task: int) -> Protocol:
    """The protocol of (``dataset``, ``task``); ValueError naming the allowed tasks otherwise."""
    tasks = allowed_tasks(dataset)
    if (dataset, task) not in PROTOCOLS:
        raise ValueError(f"task {task} does not exist for dataset {dataset!r}; allowed tasks: "
                         f"{', '.join(map(str, tasks))}")
    return PROTOCOLS[(dataset, task)]


@dataclass(frozen=True)
class LabelledClips:
    """The clips a protocol keeps (sheet order), the class name of each, and what it left out."""

    records: list[ClipRecord]
    labels: list[str]
    classes: tuple[str, ...]
    excluded: list[RowIssue] = field(default_factory=list)
    dataset: str = ""
    task: int = 0

    @property
    def label_indices(self) -> list[int]:
        """Each kept clip's class as an index into ``classes``."""
        return [self.classes.index(label) for label in self.labels]

    def counts(self) -> dict[str, int]:
        """Clips per class, in class order (zero counts included)."""
        return {name: self.labels.count(name) for name in self.classes}

    @property
    def subjects(self) -> list[str]:
        """The distinct subjects of the kept clips, in first-seen order."""
        return list(dict.fromkeys(record.subject for record in self.records))


def apply_protocol(records: list[ClipRecord], dataset: str, task: int) -> LabelledClips:
    """Keep the clips of ``records`` that the (``dataset``, ``task``) protocol labels.

    Every clip left out is listed in ``excluded`` with the reason (e.g. "emotion 'others' is not in
    the 3-class protocol"). ValueError naming the allowed tasks for a task the dataset lacks.
    """
    protocol = get_protocol(dataset, task)
    kept: list[ClipRecord] = []
    labels: list[str] = []
    excluded: list[RowIssue] = []
    for record in records:
        label = protocol.class_of(record.emotion)
        if label is None:
            excluded.append(RowIssue(
                subject=record.subject, filename=record.video, row=record.row,
                reason=f"emotion {record.emotion!r} is not in the {protocol.name} protocol of "
                       f"{dataset}"))
            continue
        kept.append(record)
        labels.append(label)
    return LabelledClips(records=kept, labels=labels, classes=protocol.classes, excluded=excluded,
                         dataset=dataset, task=task)
