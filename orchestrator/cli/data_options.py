"""The options ``medn data prepare`` and ``medn data preview`` share, declared once, and the
data configuration they build from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer

from medn.config import DataConfig, DatasetName, load_config

DATASETS: tuple[str, ...] = get_args(DatasetName)

DatasetOption = Annotated[str, typer.Option(help="synth, casme2, samm or casme3a")]
AnnotationsOption = Annotated[Path | None, typer.Option(
    help="the dataset's annotation sheet (.xlsx); not for synth")]
DataRootOption = Annotated[Path | None, typer.Option(
    help="the folder holding the subjects' frame folders (see docs/data.md)")]
TaskOption = Annotated[int | None, typer.Option(help="label protocol: 3, 4, 5 or 7 classes")]
WorkersOption = Annotated[int | None, typer.Option(
    min=1, help="worker processes for clips not yet cached (default: every core)")]
SizeOption = Annotated[int | None, typer.Option(help="face crop / flow size in px")]
FramesOption = Annotated[int | None, typer.Option(help="T, frames sampled per clip")]
CacheDirOption = Annotated[Path | None, typer.Option(help="preprocessing cache folder")]
ProfileOption = Annotated[str, typer.Option(
    help="configuration profile whose data settings are used (smoke, quick, paper)")]
SynthProfileOption = Annotated[str | None, typer.Option(help="synth only: smoke, quick or full")]
SubjectsOption = Annotated[int | None, typer.Option(help="synth only: number of subjects")]
SeedOption = Annotated[int | None, typer.Option(help="synth only: generator seed")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", help="KEY=VALUE configuration override, e.g. data.au_min_count=5")]


def build_data_config(dataset: str, annotations: Path | None, data_root: Path | None,
                      task: int | None, size: int | None, frames: int | None,
                      cache_dir: Path | None, profile: str, synth_profile: str | None,
                      subjects: int | None, seed: int | None,
                      overrides: list[str] | None) -> DataConfig:
    """The data configuration of ``profile`` (+ ``--set``) with the command's flags applied.

    Raises ``ValueError`` naming ``--dataset`` for an unknown dataset, ``ConfigError`` for a
    bad override or value.
    """
    if dataset not in DATASETS:
        raise ValueError(f"--dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    flags = {"dataset": dataset, "annotations": annotations, "data_root": data_root,
             "task": task, "size": size, "frames": frames, "cache_dir": cache_dir,
             "synth_profile": synth_profile, "synth_subjects": subjects, "synth_seed": seed}
    base = {"data": {k: (str(v) if isinstance(v, Path) else v)
                     for k, v in flags.items() if v is not None}}
    cfg = load_config(profile=profile, overrides=overrides, base=base)
    # Flags win over --set for the fields they name.
    for key, value in flags.items():
        if value is not None:
            setattr(cfg.data, key, value)
    return cfg.data
