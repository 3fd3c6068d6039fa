"""``medn data validate``: read an annotation sheet, apply a label protocol, report the counts and
every repaired or excluded row (a rich table, or one JSON object with ``--json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from medn.data.annotations import (
    AnnotationError,
    AnnotationTable,
    allowed_tasks,
    apply_protocol,
    load_annotations,
    table_from_records,
    validation_report,
)
from orchestrator.cli.data_options import DATASETS

SYNTH_PROFILES = ("smoke", "quick", "full")


def input_error(flag: str, message: str) -> typer.Exit:
    """Print ``error: FLAG: message`` on stderr (unwrapped, so paths stay whole) and return the
    exit (code 2) to raise."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    console.print(Text.assemble(("error: ", "bold red"), f"{flag}: {message}"))
    return typer.Exit(2)


def load_table(dataset: str, annotations: Path | None, profile: str, subjects: int | None,
               seed: int) -> AnnotationTable:
    """The checked annotation table of ``dataset``: a real sheet, or the synth generator's records.

    Raises ``typer.Exit(2)`` after printing an error naming the flag for a missing or bad input.
    """
    if dataset == "synth":
        if annotations is not None:
            raise input_error("--annotations", "synth has no annotation sheet; leave "
                              "--annotations out (use --profile/--subjects/--seed)")
        if profile not in SYNTH_PROFILES:
            raise input_error("--profile", f"expected one of {', '.join(SYNTH_PROFILES)}, "
                                           f"got {profile!r}")
        from medn.data.synth import generate_records

        try:
            records = generate_records(profile=profile, subjects=subjects, seed=seed)
        except ValueError as err:
            raise input_error("--subjects", str(err)) from None
        return table_from_records("synth", records)
    if annotations is None:
        raise input_error("--annotations", f"{dataset} needs its annotation sheet (.xlsx): "
                                           "pass --annotations FILE")
    try:
        return load_annotations(dataset, annotations)
    except AnnotationError as err:
        raise input_error("--annotations", str(err)) from None


def _issue_table(title: str, issues: list[dict[str, Any]], style: str) -> Table:
    table = Table(title=title, title_style=style, show_lines=False)
    for name, justify in (("row", "right"), ("subject", "left"), ("filename", "left"),
                          ("reason", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    for issue in issues:
        table.add_row(str(issue.get("row", "")), Text(str(issue["subject"])),
                      Text(str(issue["filename"])), Text(str(issue["reason"])))
    return table


def print_hard_samples(console: Console, hard: dict[str, Any]) -> None:
    """The Table II line: hard samples under medn's rule, the paper's figure beside it."""
    share = f" ({hard['share']:.1%})" if hard["share"] is not None else ""
    line = (f"hard samples (paper Table II): {hard['hard']} of {hard['total']}{share}; "
            f"rule: {hard['rule_text']}")
    paper = hard["paper"]
    if paper is not None:
        line += (f"; paper: {paper['hard']} of {paper['total']} "
                 f"({paper['hard'] / paper['total']:.1%})")
    others = ", ".join(f"{name} {count}" for name, count in hard["other_rules"].items())
    console.print(Text(line))
    note = " (none reproduces the paper; see docs/annotations.md)" if paper else ""
    console.print(Text(f"  other rules: {others}{note}"))


def print_report(console: Console, report: dict[str, Any], source: str) -> None:
    """Print the report as rich tables: per-class counts, then every repair and exclusion."""
    console.print(Text(f"source: {source}"))
    counts = Table(title=f"{report['dataset']} {report['task']}-class")
    counts.add_column("class")
    counts.add_column("clips", justify="right")
    for name, count in report["classes"].items():
        counts.add_row(name, str(count))
    counts.add_section()
    counts.add_row("[bold]total[/bold]", f"[bold]{report['total']}[/bold]")
    counts.add_row("subjects", str(report["subjects"]))
    console.print(counts)
    print_hard_samples(console, report["hard_samples"])
    if report["repaired"]:
        console.print(_issue_table(f"{len(report['repaired'])} rows kept with a repair or note",
                                   report["repaired"], "yellow"))
    else:
        console.print("no row needed a repair")
    if report["excluded"]:
        console.print(_issue_table(f"{len(report['excluded'])} rows excluded",
                                   report["excluded"], "red"))
    else:
        console.print("no row excluded")


def register(app: typer.Typer) -> None:
    """Add ``validate`` to the ``medn data`` group."""

    @app.command("validate")
    def validate(
        dataset: Annotated[str, typer.Option(help="casme2, samm, casme3a or synth")] = "synth",
        annotations: Annotated[Path | None, typer.Option(
            help="the dataset's official annotation sheet (.xlsx); required except for synth")
                               ] = None,
        task: Annotated[int, typer.Option(
            help="label protocol: 3 (all), 4 (casme3a, synth), 5 (casme2, samm), "
                 "7 (casme3a, synth)")] = 3,
        as_json: Annotated[bool, typer.Option(
            "--json", help="print one JSON object on stdout instead of tables")] = False,
        profile: Annotated[str, typer.Option(help="synth only: smoke, quick or full")
                           ] = "quick",
        subjects: Annotated[int | None, typer.Option(
            help="synth only: number of subjects (default: the profile's)")] = None,
        seed: Annotated[int, typer.Option(help="synth only: generator seed")] = 0,
    ) -> None:
        """Check every row of an annotation sheet and count the clips of a label protocol.

        Lists every repaired row and every excluded row with its reason; exits 2 on a bad file.
        """
        if dataset not in DATASETS:
            raise input_error("--dataset", f"expected one of {', '.join(DATASETS)}, "
                                           f"got {dataset!r}")
        tasks = allowed_tasks(dataset)
        if task not in tasks:
            raise input_error("--task", f"task {task} does not exist for {dataset}; allowed: "
                                        f"{', '.join(map(str, tasks))}")
        table = load_table(dataset, annotations, profile, subjects, seed)
        labelled = apply_protocol(table.records, dataset, task)
        report = validation_report(dataset, task, table, labelled)
        if as_json:
            typer.echo(json.dumps(report, ensure_ascii=False))
        else:
            source = str(annotations) if annotations is not None else (
                f"generator profile {profile}, seed {seed}")
            print_report(Console(), report, source)
        if report["total"] == 0:  # a sheet nothing can be trained from is not a valid one
            where = (f"--annotations {annotations}" if annotations is not None
                     else f"--dataset {dataset}")
            excluded = len(report["excluded"])
            raise input_error(where, f"no usable clip for task {task} ({excluded} rows "
                                     "excluded, each listed with its reason)")
