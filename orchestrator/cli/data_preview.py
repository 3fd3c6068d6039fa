"""``medn data preview``: PNG contact sheets of aligned frames and flow, to check alignment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from medn.config import ConfigError
from orchestrator.cli.data_options import (
    AnnotationsOption,
    CacheDirOption,
    DataRootOption,
    DatasetOption,
    FramesOption,
    ProfileOption,
    SeedOption,
    SetOption,
    SizeOption,
    SubjectsOption,
    SynthProfileOption,
    TaskOption,
    WorkersOption,
    build_data_config,
)
from orchestrator.cli.data_prepare import run_with_progress


def register(app: typer.Typer) -> None:
    """Add ``preview`` to the ``medn data`` group."""

    @app.command("preview")
    def preview(
        dataset: DatasetOption = "synth",
        annotations: AnnotationsOption = None,
        data_root: DataRootOption = None,
        clips: Annotated[int, typer.Option(
            min=1, help="how many clips to show (outliers first, then spread evenly)")] = 12,
        out: Annotated[Path, typer.Option(help="folder the PNG files are written to")
                       ] = Path("medn_preview"),
        task: TaskOption = None,
        workers: WorkersOption = None,
        size: SizeOption = None,
        frames: FramesOption = None,
        cache_dir: CacheDirOption = None,
        profile: ProfileOption = "quick",
        synth_profile: SynthProfileOption = None,
        subjects: SubjectsOption = None,
        seed: SeedOption = None,
        set_: SetOption = None,
    ) -> None:
        """Write PNG contact sheets: per clip its aligned frames and its flow magnitude.

        Clips come from the preprocessing cache (computed first where missing, as
        `medn data prepare` does). QC outliers are shown first.
        """
        from medn.data.dataset import PreparationError, prepare_clips
        from medn.data.preview import CLIPS_PER_SHEET, choose_clips, write_contact_sheets
        from medn.data.qc import outliers, qc_rows

        console = Console()
        errors = Console(stderr=True)
        try:
            data_cfg = build_data_config(dataset, annotations, data_root, task, size, frames,
                                         cache_dir, profile, synth_profile, subjects, seed, set_)
            prep = run_with_progress(console, f"preparing {dataset}", lambda progress:
                                     prepare_clips(data_cfg, workers=workers, progress=progress),
                                     transient=True)
        except (ConfigError, PreparationError, ValueError, FileNotFoundError) as err:
            errors.print(f"[red]error:[/red] {err}")
            raise typer.Exit(2) from None
        flagged = [clip for clip, _why in outliers(qc_rows(prep))]
        chosen = choose_clips(prep.outcomes, clips, flagged)
        if not chosen:
            errors.print(f"[red]error:[/red] no {dataset} clip could be prepared "
                         f"({prep.count('failed')} failed; see `medn data prepare`)")
            raise typer.Exit(2)
        labels = {r.key: label for r, label in zip(prep.records, prep.labels, strict=True)}
        try:
            paths = write_contact_sheets(chosen, out, f"{dataset}_task{data_cfg.task}", labels)
        except OSError as err:
            errors.print(f"[red]error:[/red] cannot write to --out {out}: "
                         f"{err.strerror or err}")
            raise typer.Exit(2) from None
        console.print(f"{len(chosen)} clips ({CLIPS_PER_SHEET} per sheet"
                      f"{f', {len(flagged)} QC outliers first' if flagged else ''}) in "
                      f"{len(paths)} PNG files:")
        for path in paths:
            console.print(f"  {path}")
        if prep.failed:
            console.print(f"{len(prep.failed)} clips failed and are not shown "
                          "(`medn data prepare` lists them).")
