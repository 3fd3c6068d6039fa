"""``medn train``'s one configuration as a one-variant study, so that train and study share
one execution path (``orchestrator.execution.runner.run_study``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medn.config import ConfigError, flatten_tree, load_yaml
from orchestrator.studies.options import flag_owned_key
from orchestrator.studies.spec import StudySpec, StudySpecError

TRAIN_STUDY = "train"


def train_spec(variant: str = "default", config_file: Path | None = None
               ) -> tuple[StudySpec, dict[str, Any]]:
    """The study ``train`` with one variant named ``variant`` whose base is ``config_file``.

    The file may not set the keys a flag owns (``profile``, ``data.dataset``, ``data.task``,
    ...): the same rule as ``--set``, so a file's ``profile: paper`` is never silently beaten by
    the default ``--profile``. Returns the spec and an empty dict (the options the file sets:
    none, kept for callers merging it under the flags).
    """
    try:
        tree = load_yaml(config_file) if config_file is not None else {}
    except ConfigError as err:
        raise StudySpecError(f"--config {err}") from None
    flat = flatten_tree(tree)
    problems = [p for key, value in flat.items()
                if (p := flag_owned_key(key, value, "a --config file")) is not None]
    if problems:
        raise StudySpecError(f"--config {config_file}: " + "; ".join(problems))
    from_file: dict[str, Any] = {}
    raw = {"name": TRAIN_STUDY, "description": "medn train: one configuration",
           "base": flat, "variants": [{"name": variant}]}
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        where = f"--variant {variant!r}" if "variants" in problems else str(config_file)
        raise StudySpecError(f"{where}: {problems}") from None
    return spec, from_file

