"""Study specs: one YAML file per study, validated by pydantic, expanded into variants.

A spec names a base configuration (merged over the ``--profile``), then either ``variants``
(an explicit list, a grid, or one-dimensional sweeps whose union is trained once per distinct
point) or a ``search`` space (Bayesian search, study ``tune``). See ``docs/studies.md``.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from medn.config import (
    ConfigError,
    MednConfig,
    build_config,
    deep_merge,
    dotted_to_tree,
    flatten_tree,
    read_yaml_file,
    section_models,
)

PaperRef = Literal["table3", "table4", "table5", "table6", "table7", "fig6"]
MetricName = Literal["uf1", "uar", "accuracy"]
STUDY_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,=+\-\[\]]*$")
RESERVED_STUDY_NAMES = {"list", "show"}
MAX_VARIANTS = 1000  # per study; a bigger grid is almost surely a mistake (and would not fit)
MAX_TRIALS = 10_000  # a search's budget: TPE's gains flatten out long before
MAX_SEEDS = 100  # per variant: mean ± std over seeds is stable long before 100
# (task, variant, seed) units of one run, each a parent run with its LOSO folds: every variant
# of the largest study on every task, once. Checked on the counts, before anything expands.
MAX_UNITS = 4 * MAX_VARIANTS
MAX_SPEC_BYTES = 256 * 1024
# Set by the study command's flags, never by a spec (the options would silently win).
RESERVED_KEYS = {"profile": "--profile", "data.dataset": "--dataset", "data.task": "--task",
                 "data.annotations": "--annotations", "data.data_root": "--data-root"}


class StudySpecError(ValueError):
    """A study spec that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Variant:
    """One configuration of a study: its name (MLflow tag ``medn.variant``), the label the paper
    prints (``"No.3"``, ``"[1,2,4]"``), and its overrides as flat dotted keys."""

    name: str
    label: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def tree(self) -> dict[str, Any]:
        """The overrides as one nested configuration tree."""
        return dotted_to_tree(self.overrides)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExplicitVariant(_Strict):
    """A named variant with its ``set`` of dotted overrides."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    label: str | None = None
    set_: dict[str, Any] = Field(default_factory=dict, alias="set")

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not VARIANT_NAME.match(name):
            raise ValueError(f"{name!r} is not a usable variant name (letters, digits and "
                             "_ . , = + - [ ]; starting with a letter or digit)")
        return name


class GridVariants(_Strict):
    """Every combination of the listed values: ``{grid: {optim.lr: [1e-3, 1e-4]}}``."""

    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(min_length=1)


class Sweep(_Strict):
    """One one-dimensional sweep: ``vary`` takes each of ``values`` with ``fixed`` held."""

    vary: str
    values: list[Any] = Field(min_length=1)
    fixed: dict[str, Any] = Field(default_factory=dict)


class SweepVariants(_Strict):
    """The union of one-dimensional sweeps; a point shared by two sweeps is trained once."""

    sweeps: list[Sweep] = Field(min_length=1)


class SearchParam(_Strict):
    """One dimension of a search space: a float/int range (``log`` for log scale) or choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("a categorical parameter takes 'choices' only")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
            if self.low >= self.high:
                raise ValueError(f"low ({self.low}) must be below high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError(f"a log-scale range needs low > 0 (got {self.low})")
            if self.choices is not None:
                raise ValueError(f"a {self.type} parameter takes low/high, not 'choices'")
        return self


class SearchSpec(_Strict):
    """A Bayesian search: the space, the trial budget, Optuna's sampler and pruner.

    Each trial is one configuration; its LOSO folds are reported one by one as steps so that
    ``pruner: wilcoxon`` (Optuna's WilcoxonPruner, made for k-fold scores) stops a configuration
    that is significantly worse than the best one so far on the same folds.
    """

    space: dict[str, SearchParam] = Field(min_length=1)
    trials: int = Field(20, ge=1, le=MAX_TRIALS)
    sampler: Literal["tpe"] = "tpe"
    startup_trials: int = Field(5, ge=0, description="random trials before TPE takes over")
    pruner: Literal["wilcoxon", "none"] = "wilcoxon"
    p_threshold: float = Field(0.1, gt=0.0, lt=1.0)
    pruner_startup_steps: int = Field(2, ge=0)
    seed: int = 0
    parallel_trials: int = Field(2, ge=1, le=MAX_TRIALS,
                                 description="configurations trained at once (TPE with "
                                 "constant_liar keeps them apart), each with a few folds in flight")

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Draw one configuration from an ``optuna.Trial``, as flat dotted overrides."""
        params: dict[str, Any] = {}
        for key, param in self.space.items():
            if param.type == "float":
                params[key] = trial.suggest_float(key, param.low, param.high, log=param.log)
            elif param.type == "int":
                params[key] = trial.suggest_int(key, int(param.low), int(param.high),
                                                log=param.log)
            else:
                # Optuna's choices must be scalars: lists (sparsity sets) travel as JSON text.
                encoded = [json.dumps(c, separators=(",", ":")) for c in param.choices or []]
                params[key] = json.loads(trial.suggest_categorical(key, encoded))
        return params

    def make_sampler(self) -> Any:
        """Optuna's TPE sampler, seeded from the spec."""
        import optuna

        # constant_liar: trials still running count as poor ones, so k trials drawn at once
        # do not all land on the same point
        return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.startup_trials,
                                          constant_liar=True)

    def make_pruner(self) -> Any:
        """Optuna's WilcoxonPruner (fold scores as steps), or a pruner that never prunes."""
        import optuna

        if self.pruner == "wilcoxon":
            with warnings.catch_warnings():  # "experimental since 3.6": a known, chosen API
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.pruners.WilcoxonPruner(p_threshold=self.p_threshold,
                                                     n_startup_steps=self.pruner_startup_steps)
        return optuna.pruners.NopPruner()


def _variants_kind(raw: Any) -> str | None:
    if isinstance(raw, list):
        return "list"
    if isinstance(raw, GridVariants | SweepVariants):
        return "grid" if isinstance(raw, GridVariants) else "sweeps"
    if isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in ("grid", "sweeps"):
        return next(iter(raw))
    return None


VariantsField = Annotated[
    Annotated[list[ExplicitVariant], Tag("list")]
    | Annotated[GridVariants, Tag("grid")]
    | Annotated[SweepVariants, Tag("sweeps")],
    Discriminator(
        _variants_kind,
        custom_error_type="variants_kind",
        custom_error_message="expected a list of {name, label, set} variants, or a mapping "
                             "with exactly one key: 'grid' or 'sweeps'",
    ),
]


def trial_variant(number: int, params: dict[str, Any]) -> Variant:
    """The variant of search trial ``number`` with the drawn ``params``."""
    return Variant(name=f"trial-{number:04d}", label=f"trial {number}", overrides=dict(params))


class StudySpec(_Strict):
    """One study: what it reproduces, the base configuration, and its variants or search."""

    name: str
    description: str = ""
    paper: PaperRef | None = None
    base: dict[str, Any] = Field(default_factory=dict)
    variants: VariantsField | None = None
    search: SearchSpec | None = None
    tasks: list[Literal[3, 4, 5, 7]] = Field(default_factory=lambda: [3], min_length=1)
    metric: MetricName = "uf1"
    reference: str | None = Field(
        None, description="the variant (name or label) every other one is compared with in "
                          "reports (paired difference, bootstrap interval, Wilcoxon p-value)")
    seeds: int = Field(1, ge=1, le=MAX_SEEDS,
                       description="training seeds per variant (--seeds overrides)")
    side_by_side: str | None = Field(
        None, description="a configuration key every variant sets: reports add a table with "
                          "one row per label and one column group per value of the key (Table "
                          "VI under both readings of eq. 2: model.emotion.grouping)")

    _source: Path | None = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not STUDY_NAME.match(name):
            raise ValueError(f"{name!r}: a study name is lower-case letters, digits, '-' and "
                             "'_' (it becomes a command: medn study NAME)")
        if name in RESERVED_STUDY_NAMES:
            raise ValueError(f"{name!r} is a `medn study` command; choose another name")
        return name

    @field_validator("base")
    @classmethod
    def _expand_base(cls, base: dict[str, Any]) -> dict[str, Any]:
        return expand_dotted(base)

    @model_validator(mode="after")
    def _one_kind(self) -> StudySpec:
        if (self.variants is None) == (self.search is None):
            raise ValueError("give exactly one of 'variants' (a list, a grid or sweeps) and "
                             "'search' (a search space)")
        count = self.variant_count()
        if count > MAX_VARIANTS:  # checked before anything expands or validates them
            raise ValueError(f"variants: {self._count_text()} = {count} variants, more than "
                             f"the {MAX_VARIANTS} a study may have; split it into several "
                             "studies or use a search")
        units = count * len(self.tasks) * self.seeds
        if self.search is None and units > MAX_UNITS:
            raise ValueError(f"seeds: {len(self.tasks)} task(s) x {count} variant(s) x "
                             f"{self.seeds} seed(s) = {units} trainings of a variant, more "
                             f"than the {MAX_UNITS} one run may have; lower seeds or tasks, "
                             "or split the study")
        if isinstance(self.variants, list):
            if not self.variants:
                raise ValueError("variants: the list is empty")
            seen: set[str] = set()
            for v in self.variants:
                if v.name in seen:
                    raise ValueError(f"variants: the name {v.name!r} is used twice")
                seen.add(v.name)
        if self.reference is not None:
            if self.search is not None:
                raise ValueError("reference: a search has no fixed variants to compare with")
            variants = self.variants_for()
            known = {v.name for v in variants} | {v.label for v in variants}
            if self.reference not in known:
                raise ValueError(f"reference: {self.reference!r} is not a variant (known: "
                                 f"{', '.join(v.name for v in variants)})")
        if self.side_by_side is not None:
            self._check_side_by_side(self.side_by_side)
        return self

    def _check_side_by_side(self, key: str) -> None:
        if self.search is not None:
            raise ValueError("side_by_side: a search has no fixed variants to lay out")
        cells: dict[tuple[str, str], str] = {}
        for variant in self.variants_for():
            if key not in variant.overrides:
                raise ValueError(f"side_by_side: variant {variant.name!r} does not set {key!r}; "
                                 "every variant must, to have a column")
            cell = (variant.label, str(variant.overrides[key]))
            if cell in cells:
                raise ValueError(f"side_by_side: variants {cells[cell]!r} and {variant.name!r} "
                                 f"share label {cell[0]!r} and {key}={cell[1]}; one cell each")
            cells[cell] = variant.name

    def side_by_side_values(self) -> dict[str, str]:
        """Variant name -> its value of the ``side_by_side`` key (empty without one)."""
        if self.side_by_side is None:
            return {}
        return {v.name: str(v.overrides[self.side_by_side]) for v in self.variants_for()}

    def reference_variant(self) -> str | None:
        """The NAME of the reference variant (``reference`` may give its label), or None."""
        if self.reference is None:
            return None
        for variant in self.variants_for():
            if self.reference in (variant.name, variant.label):
                return variant.name
        return None

    def variant_count(self) -> int:
        """How many variants the spec writes out, before duplicates are merged (no expansion:
        a grid's count is the product of its value counts)."""
        if isinstance(self.variants, GridVariants):
            return math.prod(len(values) for values in self.variants.grid.values())
        if isinstance(self.variants, SweepVariants):
            return sum(len(sweep.values) for sweep in self.variants.sweeps)
        return len(self.variants or [])

    def _count_text(self) -> str:
        if isinstance(self.variants, GridVariants):
            return "grid " + " x ".join(str(len(v)) for v in self.variants.grid.values())
        if isinstance(self.variants, SweepVariants):
            return "sweeps " + " + ".join(str(len(s.values)) for s in self.variants.sweeps)
        return "the list"

    @property
    def source(self) -> Path | None:
        """The YAML file this spec was read from (None when built in code)."""
        return self._source

    @property
    def kind(self) -> Literal["list", "grid", "sweeps", "search"]:
        """How the variants are given."""
        if self.search is not None:
            return "search"
        if isinstance(self.variants, GridVariants):
            return "grid"
        if isinstance(self.variants, SweepVariants):
            return "sweeps"
        return "list"

    def variants_for(self, task: int | None = None) -> list[Variant]:
        """The study's variants in table order (the same for every task; empty for a search,
        whose variants are drawn trial by trial with ``search.suggest``)."""
        del task  # the variants do not depend on the task; accepted for callers looping tasks
        from orchestrator.studies.expand import expand_variants

        return expand_variants(self)


def expand_dotted(tree: dict[str, Any]) -> dict[str, Any]:
    """A tree whose keys may be dotted (``{"optim.lr": 1, "loss": {"lambda_au": 0}}``) as a
    plain nested tree."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            value = expand_dotted(value)
        out = deep_merge(out, dotted_to_tree({str(key): value}))
    return out


def config_key_problem(key: str) -> str | None:
    """Why ``key`` is not a settable dotted field of ``MednConfig`` (None when it is)."""
    if key in RESERVED_KEYS:
        return f"set by the command's {RESERVED_KEYS[key]} flag, not by a study spec"
    # a section may be a union (model.motion: one config class per backbone): a key is
    # settable if any member has it; the variant's own check names the backbone
    models: list[type[BaseModel]] = [MednConfig]
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = {name: f for m in models for name, f in m.model_fields.items()}
        if part not in fields:
            where = ".".join(parts[:i]) or "the configuration"
            return f"unknown key (no field {part!r} in {where}; known: {', '.join(fields)})"
        members = section_models(fields[part].annotation)
        is_section = bool(members)
        if i < len(parts) - 1 and not is_section:
            return f"{'.'.join(parts[: i + 1])} is a value, not a section"
        if i == len(parts) - 1 and is_section:
            return "names a whole section; give its fields as dotted keys"
        if is_section:
            models = members
    return None


def _location(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    """A pydantic error location as the user wrote it, with the variant's name when known."""
    parts: list[str] = []
    node: Any = raw
    for item in loc:
        if item in ("list", "grid", "sweeps") and not isinstance(node, dict):
            continue  # the tag of the variants union; the YAML has no such level
        if isinstance(item, int):
            name = (node[item].get("name") if isinstance(node, list) and 0 <= item < len(node)
                    and isinstance(node[item], dict) else None)
            text = f"[{item}]" + (f" ({name})" if name else "")
            if parts:
                parts[-1] += text
            else:
                parts.append(text)
        else:
            parts.append(str(item))
        try:
            node = node[item]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts) or "(top level)"


def parse_spec(raw: Any, source: str | Path, check_model: bool = False) -> StudySpec:
    """Validate a spec mapping; every problem is reported as ``FILE: FIELD: what was expected``.

    Checks the schema, that every dotted key is a field of the configuration, and that every
    variant (merged over ``base`` on the default ``quick`` profile) is a valid configuration;
    with ``check_model`` also that the model can be built from it (imports torch: slower).
    """
    if not isinstance(raw, dict):
        raise StudySpecError(f"{source}: expected a mapping (name, description, base, "
                             "variants or search, ...) at the top level")
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as err:
        lines = [f"{source}: invalid study spec:"]
        for item in err.errors():
            where = _location(item["loc"], raw)
            if item["type"] == "extra_forbidden":
                lines.append(f"  {where}: unknown key")
            else:
                lines.append(f"  {where}: {item['msg']} (got {item.get('input')!r})")
        raise StudySpecError("\n".join(dict.fromkeys(lines))) from None
    if isinstance(source, Path):
        spec._source = source
    _check_keys(spec, source)
    _check_configs(spec, source, check_model)
    return spec


def _check_keys(spec: StudySpec, source: str | Path) -> None:
    problems: list[str] = []

    def check(where: str, keys: Any) -> None:
        for key in keys:
            problem = config_key_problem(key)
            if problem:
                problems.append(f"  {where}.{key}: {problem}")

    check("base", flatten_tree(spec.base))
    if isinstance(spec.variants, list):
        for i, v in enumerate(spec.variants):
            check(f"variants[{i}] ({v.name}).set", v.set_)
    elif isinstance(spec.variants, GridVariants):
        check("variants.grid", spec.variants.grid)
    elif isinstance(spec.variants, SweepVariants):
        for i, sweep in enumerate(spec.variants.sweeps):
            check(f"variants.sweeps[{i}].vary=", [sweep.vary])
            check(f"variants.sweeps[{i}].fixed", sweep.fixed)
    if spec.search is not None:
        check("search.space", spec.search.space)
    if problems:
        raise StudySpecError(f"{source}: invalid study spec:\n" + "\n".join(problems))


def _check_configs(spec: StudySpec, source: str | Path, check_model: bool) -> None:
    problems: list[str] = []
    validate = None
    if check_model:
        from medn.models import validate_model_config as validate
    try:
        build_config(deep_merge(spec.base, {"profile": "quick"}), "base")
    except ConfigError as err:
        problems.append(_indent(str(err).replace("invalid configuration (base):", "base:")))
    if not problems:
        for variant in spec.variants_for():
            try:
                config = build_config(deep_merge(deep_merge(spec.base, variant.tree()),
                                                 {"profile": "quick"}), variant.name)
                if validate is not None:
                    validate(config)
            except ConfigError as err:
                lines = str(err).splitlines()
                if lines and lines[0].startswith("invalid "):
                    lines = lines[1:]
                problems.append(f"  variant {variant.name!r} (label {variant.label}):")
                problems += ["    " + line.strip() for line in lines]
    if problems:
        raise StudySpecError(f"{source}: invalid study spec:\n" + "\n".join(problems))


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def load_spec(path: Path, check_model: bool = False) -> StudySpec:
    """Read and validate one study spec file (``yaml.safe_load``; see ``parse_spec``).

    The spec's ``name`` must equal the file's stem, since both name the study's command.
    """
    path = Path(path)
    raw = load_spec_yaml(path)
    spec = parse_spec(raw, path, check_model)
    if spec.name != path.stem:
        raise StudySpecError(f"{path}: name: {spec.name!r} must match the file name "
                             f"({path.stem!r}); rename one of them")
    return spec


def load_spec_yaml(path: Path) -> Any:
    """The YAML of a spec file: a regular file of at most ``MAX_SPEC_BYTES``, UTF-8, without
    aliases or repeated keys; every other case is a ``StudySpecError`` naming the file and the
    reason."""
    try:
        return read_yaml_file(path, MAX_SPEC_BYTES, "a study spec file")
    except ConfigError as err:
        raise StudySpecError(str(err)) from None


def experiment_name(study: str, dataset: str, task: int) -> str:
    """The MLflow experiment of one study, dataset and task: ``<study>/<dataset>-<task>class``."""
    return f"{study}/{dataset}-{task}class"
