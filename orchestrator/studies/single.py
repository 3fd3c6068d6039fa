"""``medn train``'s one configuration as a one-variant study, so that train and study share
one execution path (``orchestrator.execution.runner.run_study``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from medn.config import flatten_tree, load_yaml
from orchestrator.studies.options import FLAG_OWNED_KEYS
from orchestrator.studies.spec import StudySpec, StudySpecError

TRAIN_STUDY = "train"
# A flag-owned key of a --config file, as the StudyOptions field it fills when no flag is given.
_OPTION_OF_KEY = {"profile": "profile", "data.dataset": "dataset", "data.task": "tasks",
                  "data.annotations": "annotations", "data.data_root": "data_root"}


def train_spec(variant: str = "default", config_file: Path | None = None
               ) -> tuple[StudySpec, dict[str, Any]]:
    """The study ``train`` with one variant named ``variant`` whose base is ``config_file``.

    Returns the spec and the options the file sets through flag-owned keys (``profile``,
    ``data.dataset``, ``data.task``, ...) for the caller to use where no flag was given: a flag
    wins over the file, the file over the defaults.
    """
    tree = load_yaml(config_file) if config_file is not None else {}
    flat = flatten_tree(tree)
    from_file: dict[str, Any] = {}
    for key in FLAG_OWNED_KEYS:
        if key in flat:
            value = flat.pop(key)
            from_file[_OPTION_OF_KEY[key]] = [value] if key == "data.task" else value
    raw = {"name": TRAIN_STUDY, "description": "medn train: one configuration",
           "base": flat, "variants": [{"name": variant}]}
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        where = f"--variant {variant!r}" if "variants" in problems else str(config_file)
        raise StudySpecError(f"{where}: {problems}") from None
    return spec, from_file

