"""The options of one run: the flags of ``medn study NAME`` and ``medn train``, declared once.

``StudyOptions`` is a pydantic model; each field carries a ``Flag`` that says how it appears on
the command line (name, help, which commands take it). ``orchestrator.cli.options`` builds the
Typer options of both commands from these fields, and every check lives here, in the model, so
the CLI and Python callers (``run_study``) get the same validation and the same messages. A
message always names the flag: ``--task 6: expected 3, 4, 5 or 7``.

To add a flag: add a field with a ``Flag`` in its ``Annotated`` metadata (and a validator if
pydantic's constraints do not say enough). Nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medn.config import ConfigError, DatasetName, ProfileName, flatten_tree, parse_override
from orchestrator.studies.spec import MAX_SEEDS, MAX_TRIALS, MAX_UNITS

TASKS = (3, 4, 5, 7)
DATASETS: tuple[str, ...] = get_args(DatasetName)
PROFILES: tuple[str, ...] = get_args(ProfileName)
STUDY, TRAIN = "study", "train"
BOTH = (STUDY, TRAIN)

# Configuration keys a flag owns: ``--set`` may not set them, or the run would train one thing
# and name its experiment and report after another.
FLAG_OWNED_KEYS: dict[str, str] = {
    "profile": "--profile", "data.dataset": "--dataset", "data.task": "--task",
    "data.annotations": "--annotations", "data.data_root": "--data-root"}
# torch's threads of ``medn train``: far above any machine's cores, far below what breaks torch
# (100000 threads crashed inside it); oversubscribing a few times is the user's choice.
MAX_THREADS = 1024


def flag_owned_key(key: str, value: Any, source: str) -> str | None:
    """Why dotted ``key`` may not be set by ``source`` (``"--set"``, ``"the --config file"``):
    the flag that owns it, with the flag to use instead; None when ``source`` may set it.
    One rule for ``--set`` and ``--config``: otherwise the run would train one thing and name
    its experiment and report after another."""
    owner = next((flag for k, flag in FLAG_OWNED_KEYS.items()
                  if key == k or key.startswith(k + ".")), None)
    if owner is None:
        return None
    return f"{key} is set by {owner}, not by {source} (use {owner} {value})"


class StudyOptionsError(ValueError):
    """A run option with a bad value; the message names the flag and what was expected."""


@dataclass(frozen=True)
class Flag:
    """How a field of ``StudyOptions`` appears on the command line.

    ``cli_type`` is the type Typer parses (the model then validates it); ``commands`` the
    commands that take the flag; ``show_default`` the default as the help shows it (the CLI
    passes only the flags a user gave, so the model's defaults apply to the rest).
    """

    name: str
    help: str
    cli_type: Any
    commands: tuple[str, ...] = BOTH
    show_default: str | bool = False
    hidden_unless_search: bool = False


class StudyOptions(BaseModel):
    """How to run a study (or ``medn train``'s one-variant study): data, tasks, resources,
    tracking. ``tasks`` are the label protocols, one MLflow experiment each.

    ``gpus_per_trial=None`` means *auto*: 0 where the Ray cluster has no GPU, else 1.
    ``address=None``: a local Ray unless ``RAY_ADDRESS`` is set. ``tracking_uri=None``:
    ``MLFLOW_TRACKING_URI``, else the project's sqlite store.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    dataset: Annotated[DatasetName, Flag(
        "--dataset", "synth (generated, no files needed), casme2, samm or casme3a", str,
        show_default="synth")] = "synth"
    annotations: Annotated[Path | None, Flag(
        "--annotations", "the dataset's annotation sheet (real datasets)", Path | None)] = None
    data_root: Annotated[Path | None, Flag(
        "--data-root", "the dataset's frames folder (real datasets)", Path | None)] = None
    tasks: Annotated[list[int], Flag(
        "--task", "label protocol: 3, 4, 5 or 7 classes; repeatable, one MLflow experiment each",
        list[int] | None, show_default="the study's tasks; 3 for train"),
        Field(min_length=1)] = [3]
    profile: Annotated[ProfileName, Flag(
        "--profile", "the configuration profile: " + ", ".join(PROFILES), str,
        show_default="quick")] = "quick"
    sets: Annotated[list[str], Flag(
        "--set", "KEY=VALUE configuration override for every variant, e.g. --set "
        "loss.lambda_au=0.5; repeatable", list[str] | None)] = []
    tracking_uri: Annotated[str | None, Flag(
        "--tracking-uri", "MLflow store", str | None,
        show_default="$MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db")] = None
    cache_dir: Annotated[Path | None, Flag(
        "--cache-dir", "preprocessing cache", Path | None, show_default=".medn_cache")] = None
    fresh: Annotated[bool, Flag(
        "--fresh", "start new parent runs beside the old ones instead of resuming", bool)
    ] = False
    allow_missing: Annotated[bool, Flag(
        "--allow-missing", "train without the clips that could not be prepared (they are "
        "listed, and the MLflow runs are tagged medn.missing_clips)", bool)] = False
    # Ray Tune (medn study)
    address: Annotated[str | None, Flag(
        "--address", "an existing Ray cluster", str | None, commands=(STUDY,),
        show_default="$RAY_ADDRESS, else a local Ray")] = None
    gpus_per_trial: Annotated[float | None, Flag(
        "--gpus-per-trial", "GPUs per (variant, fold) trial, e.g. 0.25 packs four folds on "
        "one GPU", float | None, commands=(STUDY,),
        show_default="1 when the cluster has GPUs, else 0"), Field(ge=0)] = None
    cpus_per_trial: Annotated[float, Flag(
        "--cpus-per-trial", "CPUs per trial", float | None, commands=(STUDY,), show_default="1"),
        Field(gt=0)] = 1.0
    max_concurrent: Annotated[int | None, Flag(
        "--max-concurrent", "most trials running at once", int | None, commands=(STUDY,),
        show_default="as many as resources allow"), Field(ge=1)] = None
    max_failures: Annotated[int, Flag(
        "--max-failures", "retries of a failed fold before it counts as failed", int | None,
        commands=(STUDY,), show_default="2"), Field(ge=0, le=100)] = 2
    pack: Annotated[str, Flag(
        "--pack", "folds of one variant trained together as ONE stacked model: a number, or "
        "auto (on a GPU: enough folds to keep every trial slot busy, in parts that fit the GPU; "
        "on CPU: one fold, packing does not pay there); 1 = one fold at a time, unpacked",
        str | None, commands=BOTH,
        show_default="auto")] = "auto"
    trials: Annotated[int | None, Flag(
        "--trials", "trial budget of the search", int | None, commands=(STUDY,),
        show_default="the spec's", hidden_unless_search=True), Field(ge=1, le=MAX_TRIALS)
    ] = None
    seeds: Annotated[int | None, Flag(
        "--seeds", "training seeds per variant (the configuration's seed, +1, ...): each seed is "
        "its own parent run; reports show mean ± std over seeds", int | None, commands=(STUDY,),
        show_default="the spec's seeds, else 1"), Field(ge=1, le=MAX_SEEDS)] = None
    # medn train
    variant: Annotated[str | None, Flag(
        "--variant", "the name of this configuration (the parent run's name)", str | None,
        commands=(TRAIN,), show_default="default")] = None
    experiment: Annotated[str | None, Flag(
        "--experiment", "MLflow experiment", str | None, commands=(TRAIN,),
        show_default="train/<dataset>-<task>class")] = None
    folds: Annotated[list[str] | None, Flag(
        "--fold", "train only this held-out subject (repeatable); pooled metrics need every fold",
        list[str] | None, commands=(TRAIN,))] = None
    threads: Annotated[int | None, Flag(
        "--threads", "CPU threads for torch (the small smoke/quick models run fastest on one); "
        f"at most {MAX_THREADS}", int | None, commands=(TRAIN,),
        show_default="1 for smoke and quick, all cores for paper"),
        Field(ge=1, le=MAX_THREADS)] = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise StudyOptionsError(describe_errors(err)) from None

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, tasks: list[int]) -> list[int]:
        bad = [t for t in tasks if t not in TASKS]
        if bad:
            raise ValueError(f"expected 3, 4, 5 or 7 (got {', '.join(map(str, bad))})")
        if len(set(tasks)) != len(tasks):
            raise ValueError("a task is given twice")
        return list(tasks)

    @field_validator("pack")
    @classmethod
    def _pack(cls, pack: str) -> str:
        text = str(pack).strip().lower()
        if text != "auto" and not (text.isdigit() and int(text) >= 1):
            raise ValueError("expected a positive number of folds or 'auto'")
        return text

    @field_validator("sets")
    @classmethod
    def _sets(cls, sets: list[str]) -> list[str]:
        for item in sets:
            try:
                tree = parse_override(item)
            except ConfigError as err:
                raise ValueError(str(err).removeprefix(f"--set {item!r}: ")) from None
            for key in flatten_tree(tree):
                problem = flag_owned_key(key, item.split("=", 1)[1], "--set")
                if problem is not None:
                    raise ValueError(problem)
        return list(sets)

    @model_validator(mode="after")
    def _real_data_needs_files(self) -> StudyOptions:
        if self.dataset != "synth":
            missing = [flag for flag, value in (("--annotations", self.annotations),
                                                ("--data-root", self.data_root))
                       if value is None]
            if missing:
                raise ValueError(f"--dataset {self.dataset} needs {' and '.join(missing)} (the "
                                 "annotation sheet and the folder of the frames)")
        if self.annotations is not None and not self.annotations.is_file():
            raise ValueError(f"--annotations {self.annotations}: "
                             + ("is a folder; expected the sheet file in it"
                                if self.annotations.is_dir() else "no such file"))
        if self.data_root is not None:
            if not self.data_root.is_dir():
                raise ValueError(f"--data-root {self.data_root}: no such folder")
            if not any(self.data_root.iterdir()):
                raise ValueError(f"--data-root {self.data_root}: the folder is empty (expected "
                                 f"the {self.dataset} frames in their release layout; see "
                                 "docs/data.md)")
        return self

    def check_study_size(self, spec: Any) -> None:
        """Refuse a run of ``spec`` (a ``StudySpec``) with more (task, variant, seed) units
        than ``MAX_UNITS``, naming the flag or spec field that asks for them; checked on the
        counts alone, before any variant is expanded or any parent run opened."""
        seeds = self.seeds if self.seeds is not None else spec.seeds
        variants = spec.variant_count() if spec.search is None else 1
        units = len(self.tasks) * variants * seeds
        if units <= MAX_UNITS:
            return
        where = (f"--seeds {self.seeds}" if self.seeds is not None
                 else f"--task {' '.join(map(str, self.tasks))} (the spec's seeds: {seeds})")
        raise StudyOptionsError(
            f"{where}: {len(self.tasks)} task(s) x {variants} variant(s) x {seeds} seed(s) = "
            f"{units} trainings of a variant, more than the {MAX_UNITS} one run may have; "
            "use fewer --seeds or --task values, or split the study")

    def data_tree(self, task: int) -> dict[str, Any]:
        """The ``data`` section these options set for ``task`` (merged over the study's base)."""
        data: dict[str, Any] = {"dataset": self.dataset, "task": task}
        if self.annotations is not None:
            data["annotations"] = str(self.annotations)
        if self.data_root is not None:
            data["data_root"] = str(self.data_root)
        if self.cache_dir is not None:
            data["cache_dir"] = str(self.cache_dir)
        return {"data": data}

    def resolve_gpus_per_trial(self, cluster_gpus: float) -> float:
        """GPUs each (variant, fold) trial asks Ray for, given the GPUs the cluster has."""
        if self.gpus_per_trial is not None:
            if self.gpus_per_trial > 0 and cluster_gpus <= 0:
                raise StudyOptionsError(
                    f"--gpus-per-trial {self.gpus_per_trial}: the Ray cluster has no GPU; "
                    "use --gpus-per-trial 0")
            return float(self.gpus_per_trial)
        return 1.0 if cluster_gpus > 0 else 0.0


def flags() -> dict[str, Flag]:
    """Each field of ``StudyOptions`` with its ``Flag``."""
    out = {}
    for name, info in StudyOptions.model_fields.items():
        flag = next((m for m in info.metadata if isinstance(m, Flag)), None)
        if flag is not None:
            out[name] = flag
    return out


def describe_errors(err: ValidationError) -> str:
    """pydantic's errors as ``--flag VALUE: what was expected`` lines."""
    names = flags()
    lines = []
    for item in err.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        flag = names[field].name if field in names else field or "options"
        message = _message(item)
        if field not in names:  # a check of several fields: the message names them
            lines.append(message)
            continue
        shown = _shown(item.get("input"))
        lines.append(f"{flag}{' ' + shown if shown else ''}: {message}")
    return "\n".join(dict.fromkeys(lines))


def _message(item: Any) -> str:
    ctx = item.get("ctx") or {}
    kind = item["type"]
    if kind == "literal_error":
        return "expected " + item["msg"].removeprefix("Input should be ")
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return f"expected a number {'>=' if kind == 'greater_than_equal' else '>'} {bound:g}"
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        return f"expected a number {'<=' if kind == 'less_than_equal' else '<'} {bound:g}"
    if kind == "too_short":
        return "give at least one"
    return item["msg"].removeprefix("Value error, ")


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)

