"""The paper's main-results tables (III and IV), assembled from every experiment of a study.

A main-results study runs once per dataset (each with its own ``--dataset``, ``--annotations``
and ``--data-root``) and per task, so its results live in several MLflow experiments
``<study>/<dataset>-<task>class``. ``main_results_table`` finds them all and builds the paper's
table: the other methods' published numbers as labelled reference rows (not trained here),
MEDN's published row, and ours (pooled LOSO UF1/UAR of the newest parent run of each variant,
only when complete). ``render`` prints it as a rich table, markdown or CSV.

- Table III (spec ``paper: table3``): one row per method, columns CASME II, SAMM and their
  Average (UF1, UAR); our Average only when both datasets are complete. A dataset that is not
  in the paper's table (e.g. ``synth``) gets its own columns and a note.
- Table IV (``paper: table4``): one block per task (3, 4, 7 classes and any other task found),
  one row per method and, for ours, per dataset.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import pandas as pd

from orchestrator.paper_numbers import (
    MAIN_RESULTS_PAPERS,
    PAPER_DATASET,
    PAPER_DATASET_LABEL,
    PAPER_TITLES,
    TABLE3_AVERAGE,
    TABLE3_DATASETS,
    TABLE3_MEDN,
    TABLE3_OTHERS,
    TABLE4,
    TABLE4_OTHERS,
)

if TYPE_CHECKING:
    from rich.table import Table

    from orchestrator.studies.spec import StudySpec

KIND_REFERENCE = "published"
KIND_PAPER = "paper"
KIND_OURS = "ours"
_MARKS = ("per column (per task in Table IV), among the rows on the table's own datasets, "
          "ours included")
MARKS_NOTE_MD = f"**bold**: best, _italic_: second best {_MARKS}"
MARKS_NOTE_RICH = f"highlighted: best, underlined: second best {_MARKS}"
DATASET_LABELS: dict[str, str] = {**TABLE3_DATASETS, PAPER_DATASET: PAPER_DATASET_LABEL,
                                  "synth": "synth"}


class MainResultsError(ValueError):
    """A study that is not a main-results study (the message says which are)."""


def is_main_results(spec: StudySpec | None) -> bool:
    """Whether ``spec`` reproduces Table III or IV (its report is the assembled table)."""
    return spec is not None and spec.paper in MAIN_RESULTS_PAPERS


def study_experiments(client: Any, study: str) -> dict[tuple[str, int], Any]:
    """Every active MLflow experiment of ``study``, keyed by (dataset, task), parsed from the
    name ``<study>/<dataset>-<task>class``."""
    pattern = re.compile(rf"^{re.escape(study)}/(?P<dataset>.+)-(?P<task>\d+)class$")
    found: dict[tuple[str, int], Any] = {}
    token = None
    while True:
        page = client.search_experiments(filter_string=f"name LIKE '{study}/%'",
                                         max_results=1000, page_token=token)
        for exp in page:
            match = pattern.match(exp.name)
            if match:
                found[(match["dataset"], int(match["task"]))] = exp
        token = page.token
        if not token:
            return found


def _ours(tracking_uri: str, spec: StudySpec, dataset: str, task: int,
          profile: str | None = None) -> list[dict[str, Any]]:
    """Our rows on one dataset and task: one per variant, from the report's per-experiment
    table (newest parent of each variant; scores only when every fold finished)."""
    from orchestrator.report import ReportError, study_table

    try:
        df = study_table(tracking_uri, spec.name, dataset, task, spec=spec, profile=profile)
    except ReportError:
        if profile is None:
            raise
        return []  # no run of that profile on this dataset: its cells stay empty
    rows = []
    for _, r in df.iterrows():
        total = "?" if pd.isna(r["folds_total"]) else str(r["folds_total"])
        rows.append({"label": str(r["label"]), "variant": str(r["variant"]),
                     "uf1": float(r["uf1"]), "uar": float(r["uar"]),
                     "status": str(r["status"]), "folds": f"{r['folds_done']}/{total}",
                     # the seeds of a variant share its profile and switches
                     "profile": str(r["profile"]), "deviations": str(r["deviations"]),
                     "epochs": str(r["epochs"]), "where": f"{_dataset_label(dataset)} "
                                                          f"{task}-class"})
    return rows


def _setting_notes(cells: list[dict[str, Any]]) -> list[str]:
    """The report's notes on our rows' non-paper switches and assumed epochs."""
    from orchestrator.report import setting_notes

    if not cells:
        return []
    return setting_notes(pd.DataFrame(
        {"label": [f"{c['label']} on {c['where']}" for c in cells],
         "status": [c["status"] for c in cells],
         "deviations": [c["deviations"] for c in cells],
         "epochs": [c["epochs"] for c in cells]}))


def _ours_name(label: str, profiles: set[str]) -> str:
    known = sorted(p for p in profiles if p)
    return f"{label} (ours, profile {', '.join(known)})" if known else f"{label} (ours)"


def _dataset_label(dataset: str) -> str:
    return DATASET_LABELS.get(dataset, dataset)


def _run_hint(spec: StudySpec) -> str:
    datasets = list(TABLE3_DATASETS) if spec.paper == "table3" else [PAPER_DATASET]
    return "; ".join(f"medn study {spec.name} --profile paper --dataset {d} --annotations SHEET "
                     f"--data-root FRAMES" for d in datasets)


def _table3(tracking_uri: str, client: Any, spec: StudySpec,
            experiments: dict[tuple[str, int], Any], profile: str | None) -> pd.DataFrame:
    paper_sets = list(TABLE3_DATASETS)
    found = sorted({d for d, t in experiments if t == 3})
    datasets = paper_sets + [d for d in found if d not in paper_sets]
    columns = ["method", "kind", "apex", *(f"{d}_{m}" for d in [*datasets, TABLE3_AVERAGE]
                                           for m in ("uf1", "uar")), "status"]
    rows: list[dict[str, Any]] = []

    def published(ref: Any, kind: str) -> dict[str, Any]:
        row: dict[str, Any] = {"method": ref.method, "kind": kind,
                               "apex": "yes" if ref.apex else "no", "status": ""}
        for key in [*datasets, TABLE3_AVERAGE]:
            uf1, uar = ref.scores.get(key, (None, None))
            row[f"{key}_uf1"] = math.nan if uf1 is None else uf1
            row[f"{key}_uar"] = math.nan if uar is None else uar
        return row

    rows += [published(ref, KIND_REFERENCE) for ref in TABLE3_OTHERS]
    rows.append(published(TABLE3_MEDN, KIND_PAPER))
    notes = [f"{KIND_REFERENCE} rows and the paper's MEDN row: {PAPER_TITLES['table3']} as "
             "printed (not trained here); '-' where the paper prints none",
             "ours: pooled LOSO scores of the newest parent run of each variant, shown only "
             "when every fold finished; Average = mean of CASME II and SAMM, as the paper's"]
    per_dataset = {d: _ours(tracking_uri, spec, d, 3, profile) for d in found}
    for variant in spec.variants_for(3):
        cells = {d: next((r for r in per_dataset[d] if r["variant"] == variant.name), None)
                 for d in found}
        profiles = {c["profile"] for c in cells.values() if c}
        row = {"method": _ours_name(variant.label, profiles), "kind": KIND_OURS, "apex": "no"}
        status = []
        for d in datasets:
            cell = cells.get(d)
            row[f"{d}_uf1"] = cell["uf1"] if cell else math.nan
            row[f"{d}_uar"] = cell["uar"] if cell else math.nan
            status.append(f"{d} {cell['status']} {cell['folds']}" if cell
                          else f"{d} not run")
        for m in ("uf1", "uar"):
            pair = [row[f"{d}_{m}"] for d in paper_sets]
            row[f"{TABLE3_AVERAGE}_{m}"] = (sum(pair) / 2 if not any(map(math.isnan, pair))
                                            else math.nan)
        row["status"] = "; ".join(status)
        rows.append(row)
        if len(profiles) > 1:
            notes.append(f"{variant.label}: the datasets ran on different profiles "
                         f"({', '.join(sorted(profiles))})")
    others = [d for d in found if d not in paper_sets]
    if others:
        notes.append(f"{', '.join(others)}: not a dataset of Table III (its columns have no "
                     "published numbers); compare trends, not values")
    elsewhere = sorted(exp.name for (_, task), exp in experiments.items() if task != 3)
    if elsewhere:
        notes.append(f"not in Table III (3 classes only): {', '.join(elsewhere)}; see "
                     f"`medn report {spec.name} --dataset D --task N`")
    notes += _setting_notes([c for rows_of in per_dataset.values() for c in rows_of])
    missing = [d for d in paper_sets if d not in found]
    if missing:
        notes.append(f"no runs on {', '.join(_dataset_label(d) for d in missing)} yet, so "
                     f"our Average is empty; run: {_run_hint(spec)}")
    df = pd.DataFrame(rows, columns=columns)
    df.attrs.update(paper="table3", datasets=datasets, notes=notes,
                    title=f"{spec.name}: {PAPER_TITLES['table3']}, CASME II and SAMM, "
                          "3 classes (UF1 / UAR)")
    return df


def _table4(tracking_uri: str, client: Any, spec: StudySpec,
            experiments: dict[tuple[str, int], Any], profile: str | None) -> pd.DataFrame:
    tasks = sorted(set(spec.tasks) | {t for _, t in experiments} | set(TABLE4))
    columns = ["classes", "method", "kind", "dataset", "uf1", "uar", "status"]
    rows: list[dict[str, Any]] = []
    notes = [f"{KIND_REFERENCE} rows and the paper's MEDN rows: {PAPER_TITLES['table4']} "
             f"({PAPER_DATASET_LABEL} Part A) as printed (not trained here)",
             "ours: pooled LOSO scores of the newest parent run of each variant, shown only "
             "when every fold finished"]
    ours: list[dict[str, Any]] = []
    for task in tasks:
        rows += [{"classes": task, "method": method, "kind": KIND_REFERENCE,
                  "dataset": PAPER_DATASET, "uf1": uf1, "uar": uar, "status": ""}
                 for method, classes, uf1, uar in TABLE4_OTHERS if classes == task]
        if task in TABLE4:
            uf1, uar = TABLE4[task]
            rows.append({"classes": task, "method": "MEDN (paper)", "kind": KIND_PAPER,
                         "dataset": PAPER_DATASET, "uf1": uf1, "uar": uar, "status": ""})
        else:
            notes.append(f"{task} classes: not in Table IV (no published numbers)")
        datasets = sorted(d for d, t in experiments if t == task)
        for dataset in datasets:
            for cell in _ours(tracking_uri, spec, dataset, task, profile):
                ours.append(cell)
                rows.append({"classes": task, "kind": KIND_OURS, "dataset": dataset,
                             "method": _ours_name(cell["label"], {cell["profile"]}),
                             "uf1": cell["uf1"], "uar": cell["uar"],
                             "status": f"{cell['status']} {cell['folds']}"})
        if not datasets and task in spec.tasks:
            rows.append({"classes": task, "method": "MEDN (ours)", "kind": KIND_OURS,
                         "dataset": "", "uf1": math.nan, "uar": math.nan,
                         "status": "not run"})
    notes += _setting_notes(ours)
    others = sorted({d for d, _ in experiments if d != PAPER_DATASET})
    if others:
        notes.append(f"{', '.join(others)}: not Table IV's dataset ({PAPER_DATASET_LABEL}); "
                     "compare trends, not values")
    if not any(d == PAPER_DATASET for d, _ in experiments):
        notes.append(f"no runs on {PAPER_DATASET_LABEL} yet; run: {_run_hint(spec)}")
    df = pd.DataFrame(rows, columns=columns)
    df.attrs.update(paper="table4", notes=notes,
                    title=f"{spec.name}: {PAPER_TITLES['table4']}, {PAPER_DATASET_LABEL} "
                          "Part A (UF1 / UAR)")
    return df


def main_results_table(tracking_uri: str, spec: StudySpec,
                       profile: str | None = None) -> pd.DataFrame:
    """Table III or IV (by ``spec.paper``) with the published rows and ours, from every
    experiment of ``spec`` in the store at ``tracking_uri``.

    Table III columns: method, kind (``published`` / ``paper`` / ``ours``), apex, then
    ``<dataset>_uf1``/``_uar`` per dataset and ``average_uf1``/``_uar``, status. Table IV:
    classes, method, kind, dataset, uf1, uar, status. ``df.attrs`` holds the title, the notes
    and which table it is. Experiments that do not exist yet leave our cells empty (the notes
    say how to run them); this is not an error. ``profile``: our rows from runs of that
    profile only.
    """
    from mlflow import MlflowClient

    if not is_main_results(spec):
        raise MainResultsError(f"study {spec.name!r} reproduces "
                               f"{PAPER_TITLES.get(spec.paper or '', 'no paper table')}, not "
                               "Table III or IV")
    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = study_experiments(client, spec.name)
    build = _table3 if spec.paper == "table3" else _table4
    return build(tracking_uri, client, spec, experiments, profile)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def ranks(df: pd.DataFrame) -> dict[tuple[int, str], int]:
    """The paper's marks: (row position, column) -> 1 for the best value of a score column,
    2 for the second best (ties share a rank), among the rows on the table's own datasets
    (Table IV: per task, CAS(ME)^3 rows only); a column with fewer than two values gets none."""
    if df.attrs.get("paper") == "table3":
        columns = [c for c in df.columns if c.endswith(("_uf1", "_uar"))]
        groups = [list(range(len(df)))]
    else:
        columns = ["uf1", "uar"]
        positions = pd.Series(range(len(df)), index=df.index)
        on_paper = df["dataset"] == PAPER_DATASET
        groups = [list(positions[on_paper & (df["classes"] == task)])
                  for task in dict.fromkeys(df["classes"])]
    marks: dict[tuple[int, str], int] = {}
    for column in columns:
        for group in groups:
            values = {i: float(df[column].iloc[i]) for i in group}
            values = {i: v for i, v in values.items() if math.isfinite(v)}
            if len(values) < 2:
                continue
            top = sorted(set(values.values()), reverse=True)[:2]
            for i, v in values.items():
                if v in top:
                    marks[(i, column)] = top.index(v) + 1
    return marks


def _keys(df: pd.DataFrame) -> list[str]:
    """The columns of ``df`` shown, in display order."""
    if df.attrs.get("paper") == "table3":
        datasets = [*df.attrs["datasets"], TABLE3_AVERAGE]
        return ["method", "apex", *(f"{d}_{m}" for d in datasets for m in ("uf1", "uar")),
                "status"]
    return ["classes", "method", "dataset", "uf1", "uar", "status"]


def _display(df: pd.DataFrame) -> tuple[list[str], list[list[str]], list[str]]:
    """Headers, rows of text and each row's kind."""
    keys = _keys(df)
    if df.attrs.get("paper") == "table3":
        datasets = [*df.attrs["datasets"], TABLE3_AVERAGE]
        headers = ["method", "apex frame",
                   *(f"{_dataset_label(d) if d != TABLE3_AVERAGE else 'Average'} {m}"
                     for d in datasets for m in ("UF1", "UAR")), "status"]
    else:
        headers = ["classes", "method", "dataset", "UF1", "UAR", "status"]
    rows = [[_fmt(r[k]) if k != "dataset" else _dataset_label(str(r[k])) for k in keys]
            for _, r in df.iterrows()]
    return headers, rows, list(df["kind"])


def to_markdown(df: pd.DataFrame) -> str:
    """The assembled table as GitHub markdown, with its title and notes."""
    headers, rows, _ = _display(df)
    keys = _keys(df)
    for (i, column), rank in ranks(df).items():
        j = keys.index(column)
        rows[i][j] = f"**{rows[i][j]}**" if rank == 1 else f"_{rows[i][j]}_"

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    text = {"method", "apex frame", "dataset", "status"}
    out = [f"**{df.attrs.get('title', '')}**", "", line(headers),
           "|" + "|".join("---" if h in text else "---:" for h in headers) + "|"]
    out += [line(r) for r in rows]
    out += [""] + [f"> {note}" for note in [*df.attrs.get("notes", []), MARKS_NOTE_MD]]
    return "\n".join(out).rstrip() + "\n"


def to_rich(df: pd.DataFrame) -> Table:
    """The assembled table as a rich ``Table``: published rows dim, ours bold, a rule between
    blocks (the kinds of Table III, the tasks of Table IV)."""
    from rich.markup import escape
    from rich.table import Table

    headers, rows, kinds = _display(df)
    notes = list(df.attrs.get("notes", []))
    if df.attrs.get("paper") == "table3":
        # Table III is wide already: our rows' status (per dataset) goes under the table.
        notes += [f"{row[0]}: {row[-1]}" for row, kind in zip(rows, kinds, strict=True)
                  if kind == KIND_OURS]
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    notes.append(MARKS_NOTE_RICH)
    table = Table(title=df.attrs.get("title"), caption="\n".join(notes),
                  caption_justify="left", show_edge=False, collapse_padding=True)
    for index, header in enumerate(headers):
        text = header in ("method", "dataset", "status", "apex frame")
        widest = max([len(header)] + [len(row[index]) for row in rows])
        # Numbers and method names never fold; the wide header pairs go on two lines.
        table.add_column(header.replace(" UF1", "\nUF1").replace(" UAR", "\nUAR")
                         .replace("apex frame", "apex"),
                         justify="left" if text else "right", overflow="fold",
                         no_wrap=not text,
                         min_width=widest if header == "method" else None)
    styles = {KIND_REFERENCE: "dim", KIND_PAPER: "italic", KIND_OURS: "bold"}
    block = [str(c) for c in df["classes"]] if "classes" in df.columns else kinds
    keys, marks = _keys(df), ranks(df)
    for i, row in enumerate(rows):
        if i and block[i] != block[i - 1]:
            table.add_section()
        cells = []
        for key, cell in zip(keys, row, strict=False):
            rank = marks.get((i, key))
            style = {1: "bold reverse", 2: "underline"}.get(rank or 0)
            cells.append(f"[{style}]{escape(cell)}[/]" if style else escape(cell))
        table.add_row(*cells, style=styles.get(kinds[i]))
    return table


def render(df: pd.DataFrame, fmt: str = "table") -> Any:
    """``df`` (from ``main_results_table``) as a rich Table, markdown text or CSV text."""
    if fmt == "table":
        return to_rich(df)
    if fmt == "markdown":
        return to_markdown(df)
    if fmt == "csv":
        return df.to_csv(index=False, float_format="%.6g")
    raise MainResultsError(f"--format {fmt!r}: expected one of table, markdown, csv")


def main_results_spec(study: str) -> StudySpec | None:
    """The spec of ``study`` if it is a main-results study (Table III or IV), else None: the
    report command assembles those across datasets and tasks instead of one experiment."""
    from orchestrator.studies.discover import study_entry

    entry = study_entry(study)
    spec = entry.spec if entry is not None else None
    return spec if is_main_results(spec) else None
