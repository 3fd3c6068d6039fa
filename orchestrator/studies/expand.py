"""Expanding a study spec into its variants, and a variant into its validated configuration."""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any

from medn.config import ConfigError, MednConfig, deep_merge, load_config
from orchestrator.studies.spec import (
    GridVariants,
    StudySpec,
    StudySpecError,
    SweepVariants,
    Variant,
)

if TYPE_CHECKING:
    from orchestrator.studies.options import StudyOptions


def format_value(value: Any) -> str:
    """A value as it appears in a generated variant name: ``0.4``, ``1.0``, ``[1,2,4]``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(round(value, 10))
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _canonical(value: Any) -> str:
    """A key for duplicate detection: 1 and 1.0 and 1.00000000001 are the same point."""
    def norm(v: Any) -> Any:
        if isinstance(v, bool):
            return v
        if isinstance(v, int | float):
            return round(float(v), 10)
        if isinstance(v, list | tuple):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in sorted(v.items())}
        return v

    return json.dumps(norm(value), sort_keys=True)


def _short_names(keys: list[str]) -> dict[str, str]:
    """The last part of each dotted key, or the whole key where two last parts collide."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=True)}


def _named(points: list[dict[str, Any]], keys: list[str]) -> list[Variant]:
    short = _short_names(keys)
    variants = []
    for point in points:
        name = ",".join(f"{short[k]}={format_value(point[k])}" for k in keys if k in point)
        ordered = {k: point[k] for k in keys if k in point}
        variants.append(Variant(name=name, label=name, overrides=ordered))
    return variants


def _dedupe(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    unique = []
    for point in points:
        key = _canonical(point)
        if key not in seen:
            seen.add(key)
            unique.append(point)
    return unique


def expand_variants(spec: StudySpec) -> list[Variant]:
    """The variants of ``spec`` in table order.

    - a list: as written (label defaults to the name);
    - a grid: every combination, the first key varying slowest;
    - sweeps: each sweep's points in order, a point already produced by an earlier sweep
      skipped (lambda-grid: 11 + 11 points share (1.0, 1.0), so 21 variants);
    - a search: no variants (they are drawn trial by trial).
    """
    variants = spec.variants
    if variants is None:
        return []
    if isinstance(variants, GridVariants):
        keys = list(variants.grid)
        points = [dict(zip(keys, combo, strict=True))
                  for combo in itertools.product(*variants.grid.values())]
        return _named(_dedupe(points), keys)
    if isinstance(variants, SweepVariants):
        keys: list[str] = []
        points = []
        for sweep in variants.sweeps:
            for key in [sweep.vary, *sweep.fixed]:
                if key not in keys:
                    keys.append(key)
            points += [{**sweep.fixed, sweep.vary: value} for value in sweep.values]
        return _named(_dedupe(points), keys)
    return [Variant(name=v.name, label=v.label or v.name, overrides=dict(v.set_))
            for v in variants]


def sweep_curves(spec: StudySpec) -> list[tuple[str, list[tuple[Any, str]]]]:
    """For a sweeps spec, each sweep as ``(varied key, [(value, variant name), ...])``: the
    curves of Fig. 6 (the shared point appears on both curves). Empty for other specs."""
    if not isinstance(spec.variants, SweepVariants):
        return []
    by_point = {_canonical(v.overrides): v.name for v in expand_variants(spec)}
    curves = []
    for sweep in spec.variants.sweeps:
        curve = [(value, by_point[_canonical({**sweep.fixed, sweep.vary: value})])
                 for value in sweep.values]
        curves.append((sweep.vary, curve))
    return curves


def variant_config(spec: StudySpec, variant: Variant, options: StudyOptions,
                   task: int | None = None) -> MednConfig:
    """The full configuration of ``variant`` for ``task`` (default: the options' first task).

    Built as: profile (``options.profile``) < the spec's ``base`` < the variant's overrides <
    the data the options name < ``--set`` items; then checked by the model's own validation
    (``medn.models.validate_model_config``) so that a bad variant fails before any training.
    """
    task = options.tasks[0] if task is None else task
    base = deep_merge(deep_merge(spec.base, variant.tree()), options.data_tree(task))
    where = f"study {spec.name!r}, variant {variant.name!r} ({variant.label}), task {task}"
    try:
        config = load_config(profile=options.profile, base=base,
                             overrides=list(options.sets) or None)
    except ConfigError as err:
        raise StudySpecError(f"{where}: {err}") from None
    _validate_model(config, where)
    return config


def _validate_model(config: MednConfig, where: str) -> None:
    try:
        from medn.models import validate_model_config
    except ImportError:  # the model package predates its validator: pydantic checks only
        return
    try:
        validate_model_config(config)
    except (ConfigError, ValueError) as err:
        raise StudySpecError(f"{where}: {err}") from None


def study_configs(spec: StudySpec, options: StudyOptions,
                  task: int) -> list[tuple[Variant, MednConfig]]:
    """Every variant of ``spec`` with its validated configuration for ``task``.

    All variants are checked before returning; the error lists every bad one.
    """
    results: list[tuple[Variant, MednConfig]] = []
    problems: list[str] = []
    for variant in spec.variants_for(task):
        try:
            results.append((variant, variant_config(spec, variant, options, task)))
        except StudySpecError as err:
            problems.append(str(err))
    if problems:
        raise StudySpecError("\n".join(problems))
    return results
