"""``medn data synth``: generate the synthetic dataset, prepare it (render + TV-L1 flow + cache)
through the common pipeline, and print its counts, subjects, hard-sample share and cache folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from medn.config import DataConfig
from medn.data.annotations.protocols import get_protocol
from medn.data.synth import (
    DEFAULT_HARD_SHARE,
    SYNTH_PROFILES,
    emotion_counts,
    generate_records,
    hard_sample_share,
)

# Worker processes: far above any machine's cores; 100000 would fork until the machine fails.
MAX_WORKERS = 1024


def _error(flag: str, message: str) -> typer.Exit:
    Console(stderr=True, soft_wrap=True, highlight=False).print(
        Text.assemble(("error: ", "bold red"), f"{flag}: {message}"))
    return typer.Exit(2)


def _data_config(profile: str, subjects: int | None, seed: int, size: int | None, task: int,
                 frames: int | None, hard_share: float, cache_dir: Path) -> DataConfig:
    """The data configuration of the command's flags; ``typer.Exit(2)`` naming the bad flag."""
    if profile not in SYNTH_PROFILES:
        raise _error("--profile", f"expected one of {', '.join(SYNTH_PROFILES)}, got {profile!r}")
    prof = SYNTH_PROFILES[profile]
    flags = {"synth_subjects": "--subjects", "synth_seed": "--seed", "size": "--size",
             "task": "--task", "frames": "--frames", "synth_hard_share": "--hard-share",
             "cache_dir": "--cache-dir"}
    try:
        get_protocol("synth", task)
    except ValueError as err:
        raise _error("--task", str(err)) from None
    try:
        return DataConfig(dataset="synth", task=task, synth_profile=profile,
                          synth_subjects=subjects, synth_seed=seed,
                          size=prof.size if size is None else size,
                          frames=prof.frames if frames is None else frames,
                          synth_hard_share=hard_share, cache_dir=cache_dir)
    except ValidationError as err:
        item = err.errors()[0]
        field = str(item["loc"][0]) if item["loc"] else ""
        raise _error(flags.get(field, field), f"{item['msg']} (got {item.get('input')!r})"
                     ) from None


def synth_summary(data_cfg: DataConfig, prepared: Any | None = None) -> dict[str, Any]:
    """The dataset's summary as a JSON-ready dict; ``prepared`` (a ``PreparedDataset``) adds the
    per-class counts of the task and the number of prepared clips."""
    records = generate_records(data_cfg.synth_profile, data_cfg.synth_subjects,
                               data_cfg.synth_seed, hard_share=data_cfg.synth_hard_share)
    protocol = get_protocol("synth", data_cfg.task)
    summary: dict[str, Any] = {
        "dataset": "synth", "profile": data_cfg.synth_profile, "seed": data_cfg.synth_seed,
        "task": data_cfg.task, "size": data_cfg.size, "frames": data_cfg.frames,
        "total": len(records), "subjects": len({r.subject for r in records}),
        "emotions": emotion_counts(records),
        "hard_share_configured": data_cfg.synth_hard_share,
        "hard_share": round(hard_sample_share(records), 4),
        "hard_share_task": round(
            hard_sample_share(records, lambda r: protocol.class_of(r.emotion)), 4),
        "cache_dir": str(Path(data_cfg.cache_dir).resolve()),
    }
    if prepared is not None:
        labels = prepared.labels.tolist()
        summary["prepared"] = len(prepared)
        summary["classes"] = {name: labels.count(i) for i, name in enumerate(prepared.classes)}
        summary["au_names"] = list(prepared.au_names)
        summary["digest"] = prepared.digest
    return summary


def _clips_table(title: str, column: str, counts: dict[str, int]) -> Table:
    table = Table(title=title)
    table.add_column(column)
    table.add_column("clips", justify="right")
    for name, count in counts.items():
        table.add_row(name, str(count))
    return table


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    """Print the summary as rich tables."""
    console.print(_clips_table(f"synth ({summary['profile']}, seed {summary['seed']}): "
                               f"{summary['total']} clips, {summary['subjects']} subjects",
                               "emotion", summary["emotions"]))
    if "classes" in summary:
        console.print(_clips_table(
            f"{summary['task']}-class protocol: {summary['prepared']} clips prepared "
            f"({summary['size']} px, T={summary['frames']})", "class", summary["classes"]))
        console.print(f"AUs learnt: {', '.join(summary['au_names'])}")
    console.print(f"hard samples (exact AU set shared with another emotion): "
                  f"{summary['hard_share']:.1%} of all clips (configured "
                  f"{summary['hard_share_configured']:.0%}), {summary['hard_share_task']:.1%} "
                  f"under the {summary['task']}-class protocol")
    console.print(Text(f"cache: {summary['cache_dir']}"))


def register(app: typer.Typer) -> None:
    """Add ``synth`` to the ``medn data`` group."""

    @app.command("synth")
    def synth(
        profile: Annotated[str, typer.Option(help="dataset size: smoke, quick or full")
                           ] = "quick",
        subjects: Annotated[int | None, typer.Option(
            help="number of subjects (default: the profile's)")] = None,
        seed: Annotated[int, typer.Option(help="generator seed")] = 0,
        size: Annotated[int | None, typer.Option(
            help="frame / flow size in px (default: smoke 32, quick 48, full 144)")] = None,
        task: Annotated[int, typer.Option(help="label protocol: 3, 4 or 7 classes")] = 3,
        frames: Annotated[int | None, typer.Option(help="T, frames per clip (default 8)")
                          ] = None,
        hard_share: Annotated[float, typer.Option(
            help="share of clips whose exact AU set also occurs with another emotion")
                              ] = DEFAULT_HARD_SHARE,
        cache_dir: Annotated[Path, typer.Option(help="preprocessing cache folder")
                             ] = Path(".medn_cache"),
        workers: Annotated[int | None, typer.Option(
            help=f"worker processes, 1 to {MAX_WORKERS} (default: every core)")] = None,
        as_json: Annotated[bool, typer.Option(
            "--json", help="print one JSON object on stdout instead of tables")] = False,
    ) -> None:
        """Generate the synthetic micro-expression dataset and prepare it (render, TV-L1 flow,
        cache); print per-emotion counts, subjects, the hard-sample share and the cache folder."""
        if workers is not None and not 1 <= workers <= MAX_WORKERS:
            raise _error("--workers", f"expected 1 to {MAX_WORKERS} worker processes, "
                         f"got {workers}")
        data_cfg = _data_config(profile, subjects, seed, size, task, frames, hard_share,
                                cache_dir)
        from medn.data.dataset import PreparationError, prepare_dataset

        # Progress goes to stderr so that --json leaves stdout one JSON object.
        status = Console(stderr=True)
        from orchestrator.cli.data_prepare import run_with_progress

        try:
            prepared = run_with_progress(
                status, f"preparing synth ({profile})", lambda progress:
                prepare_dataset(data_cfg, workers=workers, progress=progress),
                transient=as_json)
        except (PreparationError, ValueError) as err:
            status.print(Text.assemble(("error: ", "bold red"), str(err)))
            raise typer.Exit(1) from None
        summary = synth_summary(data_cfg, prepared)
        if as_json:
            typer.echo(json.dumps(summary))
        else:
            print_summary(Console(soft_wrap=True), summary)
