"""A study's table, re-read from MLflow: one row per variant, the paper's numbers beside it.

``study_table`` reads the parent runs of the experiment ``<study>/<dataset>-<task>class`` (the
newest parent of each variant, so a ``--fresh`` re-run replaces the old rows); ``render`` prints
it as a rich table, markdown or CSV; ``write_summary`` stores it in the experiment's one
``summary`` run (CSV, markdown and a PNG plot), updated in place on every re-run.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from orchestrator.paper_numbers import (
    PAPER_DATASET_LABEL,
    dataset_note,
    paper_note,
    paper_value,
)
from orchestrator.stats import ALPHA, mean_std, paired_comparison
from orchestrator.studies.expand import sweep_curves
from orchestrator.studies.spec import StudySpec, experiment_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient
    from rich.table import Table

ReportFormat = Literal["table", "markdown", "csv"]
FORMATS: tuple[str, ...] = ("table", "markdown", "csv")
PAPER_UF1 = f"paper UF1 ({PAPER_DATASET_LABEL})"
PAPER_UAR = f"paper UAR ({PAPER_DATASET_LABEL})"
METRICS = ("uf1", "uar", "accuracy")
SUMMARY_RUN_NAME = "summary"
TAG_SUMMARY = "medn.summary"
STATUS_COMPLETE = "complete"
STATUS_INCOMPLETE = "incomplete"
STATUS_NOT_STARTED = "not started"
STATUS_PRUNED = "pruned"
TAG_SEED = "medn.seed"
TAG_SEEDS = "medn.seeds"
TAG_INCOMPLETE = "medn.incomplete"
COMPARISON_COLUMNS = ("uf1_diff", "ci_low", "ci_high", "p_value")
COMPARISON_HEADERS = ("Δ UF1 [95 % CI]", "p")
# cells that may break at their space in a narrow terminal ("0.41 ± 0.02", "[-0.1, +0.2]")
WRAPPABLE = {"UF1", "UAR", "status", *COMPARISON_HEADERS}


class ReportError(ValueError):
    """A report that cannot be made (no such experiment, bad format); the message says why."""


def _client_for(writer_or_client: Any, tracking_uri: str) -> tuple[MlflowClient, Callable]:
    """An MlflowClient and a call wrapper: the writer's retrying ``call`` when given a writer."""
    from mlflow import MlflowClient

    if writer_or_client is None:
        from orchestrator.tracking import open_client

        client = open_client(tracking_uri)  # a new sqlite store: created under its lock
    elif isinstance(writer_or_client, MlflowClient):
        client = writer_or_client
    else:  # a RunTreeWriter: its store client retries every call itself
        client = writer_or_client.store_client()

    def direct(fn: Callable, *args: Any, what: str = "", **kwargs: Any) -> Any:
        del what
        return fn(*args, **kwargs)

    return client, direct


def _search_all(client: MlflowClient, call: Callable, experiment_id: str,
                filter_string: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = call(client.search_runs, [experiment_id], filter_string, max_results=1000,
                    order_by=["attributes.start_time DESC"], page_token=token,
                    what="search runs")
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _experiment(client: MlflowClient, call: Callable, study: str, dataset: str,
                task: int, tracking_uri: str) -> Any:
    name = experiment_name(study, dataset, task)
    exp = call(client.get_experiment_by_name, name, what="get experiment")
    if exp is None or exp.lifecycle_stage == "deleted":
        others = [e.name for e in call(client.search_experiments, what="list experiments")
                  if e.name.startswith(f"{study}/")]
        hint = (f" This study has: {', '.join(sorted(others))}." if others
                else f" Run `medn study {study}` first.")
        raise ReportError(f"no MLflow experiment {name!r} in {tracking_uri}.{hint}")
    return exp


def _seed_of(run: Any) -> int:
    """The training seed of a parent run: tag ``medn.seed``, else the logged ``seed`` param."""
    text = run.data.tags.get(TAG_SEED) or run.data.params.get("seed") or "0"
    try:
        return int(text)
    except ValueError:
        return 0


def _seed_row(run: Any, done: dict[str, set[str]]) -> dict[str, Any]:
    """One parent run (one seed of a variant): its pooled metrics if complete, its folds."""
    tags, metrics = run.data.tags, run.data.metrics
    total = int(tags["medn.folds"]) if tags.get("medn.folds", "").isdigit() else None
    n_done = len(done.get(run.info.run_id, ()))
    complete = ("uf1" in metrics and TAG_INCOMPLETE not in tags
                and (total is None or n_done >= total))
    pruned = tags.get("medn.pruned", "").lower() == "true"
    expected = tags.get(TAG_SEEDS, "")  # how many seeds the study run that made it asked for
    return {"run": run, "complete": complete, "pruned": pruned, "folds_done": n_done,
            "folds_total": total, "expected_seeds": int(expected) if expected.isdigit() else 1,
            **{m: metrics.get(m, math.nan) for m in METRICS}}


def _setting_of(run: Any) -> dict[str, str]:
    """What a parent run says about its setting: profile, non-paper switches, epochs."""
    from orchestrator.tracking.tags import TAG_DEVIATIONS, TAG_PROFILE

    tags, params = run.data.tags, run.data.params
    return {"profile": tags.get(TAG_PROFILE, ""),
            # runs made before the tag existed say nothing, rather than "none"
            "deviations": tags.get(TAG_DEVIATIONS, "unknown (not recorded)"),
            "epochs": params.get("optim.epochs", "")}


def setting_notes(df: pd.DataFrame) -> list[str]:
    """Notes that say which rows use settings the paper does not state: its non-paper
    switches (grouped by the rows that share them) and the assumed 300 epochs."""
    notes = []
    started = df[df["status"] != STATUS_NOT_STARTED]
    # rows are named by label, or by variant where labels repeat (one paper row, two readings)
    names = (started["label"] if started["label"].is_unique or "variant" not in started
             else started["variant"])
    groups: dict[str, list[str]] = {}
    for name, (_, row) in zip(names, started.iterrows(), strict=True):
        groups.setdefault(str(row["deviations"]), []).append(str(name))
    for deviations, labels in groups.items():
        who = "every row" if len(groups) == 1 else ", ".join(dict.fromkeys(labels))
        if deviations == "none":
            notes.append(f"non-paper switches ({who}): none, only the paper's settings")
        else:
            notes.append(f"non-paper switches ({who}): {deviations}")
    if (started["epochs"] == "300").any():
        notes.append("300 epochs is our assumption: the paper gives no number of epochs (it "
                     "decays the motion branch's learning rate every 100)")
    return notes


def _variant_row(name: str, label: str, seeds: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A variant's row: mean ± std over its seeds, complete only when every seed is."""
    row: dict[str, Any] = {"label": label, "variant": name}
    if not seeds:
        row.update({m: math.nan for m in METRICS})
        row.update({f"{m}_{s}": math.nan for m in METRICS for s in ("mean", "std")})
        row.update(seeds=0, folds_done=0, folds_total=None, status=STATUS_NOT_STARTED,
                   run_id="", profile="", deviations="", epochs="")
        return row
    ordered = [seeds[s] for s in sorted(seeds)]
    expected = max(r["expected_seeds"] for r in ordered)
    complete = all(r["complete"] for r in ordered) and len(ordered) >= expected
    for m in METRICS:
        mean, std = mean_std([r[m] for r in ordered]) if complete else (math.nan, math.nan)
        row.update({m: mean, f"{m}_mean": mean, f"{m}_std": std})
    totals = [r["folds_total"] for r in ordered]
    if any(r["pruned"] for r in ordered):
        status = STATUS_PRUNED
    else:
        status = STATUS_COMPLETE if complete else STATUS_INCOMPLETE
    # a seed the study asked for but never started still counts its folds as missing
    missing_seeds = max(0, expected - len(ordered))
    folds_total = None if None in totals else sum(totals) + totals[0] * missing_seeds
    row.update(seeds=len(ordered), folds_done=sum(r["folds_done"] for r in ordered),
               folds_total=folds_total, status=status,
               run_id=",".join(r["run"].info.run_id for r in ordered),
               **_setting_of(ordered[0]["run"]))
    row["_seed_runs"] = {s: seeds[s]["run"].info.run_id for s in sorted(seeds)}
    return row


def _table(client: MlflowClient, call: Callable, tracking_uri: str, study: str,
           dataset: str, task: int, spec: StudySpec | None, *,
           parent_ids: Collection[str] | None = None,
           profile: str | None = None) -> pd.DataFrame:
    from orchestrator.tracking.tags import TAG_PROFILE

    exp = _experiment(client, call, study, dataset, task, tracking_uri)
    every_parent = _search_all(client, call, exp.experiment_id, "tags.`medn.role` = 'parent'")
    # a study run reports its own parents; `medn report --profile P` the newest of profile P;
    # else the newest of each variant, whichever profile made it (a note says when they mix)
    parents = [r for r in every_parent
               if (parent_ids is None or r.info.run_id in parent_ids)
               and (profile is None or r.data.tags.get(TAG_PROFILE) == profile)]
    if profile is not None and not parents:
        made = sorted({r.data.tags.get(TAG_PROFILE, "?") for r in every_parent})
        raise ReportError(f"--profile {profile}: no run of {exp.name} used it (its runs used: "
                          f"{', '.join(made) or 'none'})")
    children = _search_all(client, call, exp.experiment_id,
                           "tags.`medn.role` = 'fold' and attributes.status = 'FINISHED'")
    done: dict[str, set[str]] = {}
    for run in children:
        parent_id = run.data.tags.get("mlflow.parentRunId")
        fold = run.data.tags.get("medn.fold")
        if parent_id and fold is not None:
            done.setdefault(parent_id, set()).add(fold)
    # newest parent of each (variant, seed): a --fresh re-run replaces the old one
    newest: dict[str, dict[int, dict[str, Any]]] = {}
    labels_seen: dict[str, str] = {}
    for run in parents:  # newest first: the first seen per (variant, seed) wins
        name = run.data.tags.get("medn.variant", run.info.run_name)
        labels_seen.setdefault(name, run.data.tags.get("medn.label") or name)
        newest.setdefault(name, {}).setdefault(_seed_of(run), _seed_row(run, done))

    labels: dict[str, str] = {}
    order: list[str] = []
    if spec is not None:
        for variant in spec.variants_for(task):
            labels[variant.name] = variant.label
            order.append(variant.name)
    order += sorted(name for name in newest if name not in labels)
    rows = [_variant_row(name, labels.get(name) or labels_seen.get(name) or name,
                         newest.get(name, {})) for name in order]
    seed_runs = {row["variant"]: row.pop("_seed_runs", {}) for row in rows}
    df = pd.DataFrame(rows, columns=[
        "label", "variant", *METRICS, "uf1_mean", "uf1_std", "uar_mean", "uar_std",
        "accuracy_mean", "accuracy_std", "seeds", "folds_done", "folds_total", "status",
        "run_id", "profile", "deviations", "epochs"])
    df["folds_total"] = df["folds_total"].astype("Int64")
    side = spec.side_by_side if spec is not None else None
    if side is not None:  # the value of the laid-out key, a column of the CSV too
        df[side] = df["variant"].map(spec.side_by_side_values())
    reference = spec.reference_variant() if spec is not None else None
    _add_comparisons(df, client, call, reference, seed_runs)
    from orchestrator.cost import add_cost_columns, cost_notes  # params, FLOPs, seconds

    add_cost_columns(df, {run.info.run_id: run.data.metrics for run in parents})

    paper = spec.paper if spec is not None else None
    notes = []
    if paper in ("table5", "table6", "table7"):
        values = [paper_value(paper, label, task) for label in df["label"]]
        df[PAPER_UF1] = [v.uf1 if v else math.nan for v in values]
        df[PAPER_UAR] = [v.uar if v else math.nan for v in values]
    note = paper_note(paper, task)
    if note:
        notes.append(note)
    if dataset_note(paper, dataset):
        notes.append(dataset_note(paper, dataset))
    if df.attrs.get("comparison_problem"):
        notes.append(df.attrs.pop("comparison_problem"))
    if reference is not None:
        ref_label = df.set_index("variant")["label"].get(reference, reference)
        if (df["label"] == ref_label).sum() > 1:  # a label of two rows: name the variant
            ref_label = reference
        notes.append(f"Δ UF1: pooled UF1 minus {ref_label}'s (the reference), mean over the "
                     "seeds both have; [95 % bootstrap interval over subjects]; p: Wilcoxon "
                     "signed-rank over subjects of the per-fold UF1 difference; n.s.: not "
                     f"significant (p ≥ {ALPHA} or the interval contains 0)")
    if bool((df["seeds"].fillna(0) > 1).any()):  # no rows: max() is NaN
        notes.append("UF1 / UAR / accuracy: mean ± standard deviation over seeds "
                     "(each seed's score pooled over all folds)")
    notes += cost_notes(df)
    notes += setting_notes(df)
    if parent_ids is None and profile is None:
        made = sorted({r.data.tags.get(TAG_PROFILE, "?") for r in every_parent})
        if len(made) > 1:
            shown = ", ".join(dict.fromkeys(p for p in df["profile"] if p))
            notes.append(f"this experiment holds runs of several profiles ({', '.join(made)}); "
                         f"each row is its variant's newest run (profile {shown}); choose "
                         "one with --profile")
    if profile is not None:
        notes.append(f"only runs of profile {profile}")
    df.attrs.update(study=study, dataset=dataset, task=task, experiment=exp.name,
                    experiment_id=exp.experiment_id, notes=notes, reference=reference,
                    side_by_side=side)
    return df


def side_by_side_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]] | None:
    """The study's ``side_by_side`` view (None without one): one row per label, for each value
    of the key its UF1 and UAR (mean ± std over seeds where there are several; '-' unless
    complete), then the paper's columns (e.g. Table VI beside both readings of eq. 2)."""
    key = df.attrs.get("side_by_side")
    if not key or key not in df.columns:
        return None
    several = bool((df["seeds"].fillna(0) > 1).any())
    values = list(dict.fromkeys(str(v) for v in df[key]))
    paper_cols = [c for c in (PAPER_UF1, PAPER_UAR) if c in df.columns]
    columns = ["label", *(f"{m} ({v})" for v in values for m in ("UF1", "UAR")), *paper_cols]
    rows = []
    for label, group in df.groupby("label", sort=False):
        by_value = {str(r[key]): r for _, r in group.iterrows()}
        cells = [str(label)]
        for value in values:
            row = by_value.get(value)
            cells += ([_score(row, m, several) for m in ("uf1", "uar")] if row is not None
                      else ["-", "-"])
        cells += [_fmt(group.iloc[0][c]) for c in paper_cols]
        rows.append(cells)
    return columns, rows


def _side_by_side_title(df: pd.DataFrame) -> str:
    return f"the same, one column group per {df.attrs.get('side_by_side')}"


def _predictions(client: MlflowClient, call: Callable, run_id: str
                 ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int] | None:
    """A complete parent run's ``predictions.csv`` as subject -> (y_true, y_pred), and C;
    None when the run has no readable ``predictions.csv``."""
    import os
    import tempfile
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="medn-report-") as tmp:
        try:
            path = call(client.download_artifacts, run_id, "predictions.csv", tmp,
                        what="download predictions.csv")
            frame = pd.read_csv(Path(path))
        except (MlflowException, OSError, pd.errors.ParserError):
            return None
    if not {"subject", "true", "predicted"} <= set(frame.columns):
        return None
    classes = [c.removeprefix("score_") for c in frame.columns if c.startswith("score_")]
    index = {name: i for i, name in enumerate(classes)}
    out = {}
    for subject, rows in frame.groupby(frame["subject"].astype(str), sort=True):
        out[str(subject)] = (rows["true"].astype(str).map(index).to_numpy(dtype=np.int64),
                             rows["predicted"].astype(str).map(index).to_numpy(dtype=np.int64))
    return out, len(classes)


def _add_comparisons(df: pd.DataFrame, client: MlflowClient, call: Callable,
                     reference: str | None, seed_runs: dict[str, dict[int, str]]) -> None:
    """Columns ``uf1_diff``, ``ci_low``, ``ci_high``, ``p_value``, ``significant``: each
    complete variant against the complete reference variant (``orchestrator.stats``)."""
    for column in COMPARISON_COLUMNS:
        df[column] = math.nan
    df["significant"] = pd.array([pd.NA] * len(df), dtype="boolean")
    if reference is None or reference not in set(df["variant"]):
        return
    if df.set_index("variant")["status"][reference] != STATUS_COMPLETE:
        return
    unreadable: list[str] = []

    def load(variant: str) -> tuple[dict[int, dict], int] | None:
        seeds, classes = {}, 0
        for seed, run_id in seed_runs[variant].items():
            loaded = _predictions(client, call, run_id)
            if loaded is None:
                unreadable.append(run_id)
                return None
            seeds[seed], classes = loaded
        return seeds, classes

    ref = load(reference)
    for i, row in df.iterrows():
        if ref is None or row["status"] != STATUS_COMPLETE:
            continue
        if row["variant"] == reference:
            df.loc[i, "uf1_diff"] = 0.0
            continue
        loaded = load(row["variant"])
        if loaded is None:
            continue
        try:
            result = paired_comparison(loaded[0], ref[0], ref[1])
        except ValueError:  # no seed or too few subjects in common: nothing to compare
            continue
        df.loc[i, ["uf1_diff", "ci_low", "ci_high", "p_value"]] = [
            result.diff, result.ci_low, result.ci_high, result.p_value]
        df.loc[i, "significant"] = result.significant
    if unreadable:
        df.attrs["comparison_problem"] = (
            "no paired comparison where a complete run lacks predictions.csv: "
            + ", ".join(unreadable))


def study_table(tracking_uri: str, study: str, dataset: str = "synth", task: int = 3,
                spec: StudySpec | None = None, *, profile: str | None = None,
                parent_ids: Collection[str] | None = None) -> pd.DataFrame:
    """One row per variant of ``study`` on ``dataset``/``task``, re-read from MLflow.

    Columns: label, variant, uf1, uar, accuracy (pooled over the LOSO folds; NaN unless the
    variant is complete), folds_done, folds_total, status (complete / incomplete / not started /
    pruned), run_id; plus the paper's UF1/UAR where the study reproduces Table V, VI or VII.
    ``spec`` (default: the discovered spec of that name, if any) gives the row order, labels
    and the paper reference. ``df.attrs`` holds the experiment name and notes. Each row is its
    variant's newest parent run: of ``profile`` if given, among ``parent_ids`` if given (a
    study run reports the runs it made or resumed).
    """
    from orchestrator.studies.discover import study_entry

    if spec is None:
        entry = study_entry(study)
        spec = entry.spec if entry is not None else None
    client, call = _client_for(None, tracking_uri)
    return _table(client, call, tracking_uri, study, dataset, task, spec, profile=profile,
                  parent_ids=parent_ids)


def _fmt(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _score(row: pd.Series, metric: str, several_seeds: bool) -> str:
    """``0.4100`` for one seed, ``0.4100 ± 0.0123`` (mean ± std over seeds) for several."""
    mean, std = row.get(f"{metric}_mean", row[metric]), row.get(f"{metric}_std", math.nan)
    if several_seeds and _finite(mean) and _finite(std):
        return f"{mean:.4f} ± {std:.4f}"
    return _fmt(mean)


def _comparison(row: pd.Series, reference: str | None) -> tuple[str, str]:
    """The "Δ UF1 [95 % CI]" and p-value cells of a row (``ref`` for the reference)."""
    if reference is not None and row["variant"] == reference and _finite(row.get("uf1_diff")):
        return "ref", ""
    diff = row.get("uf1_diff", math.nan)
    if not _finite(diff):
        return "-", ""
    interval = f"{diff:+.4f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]"
    p_value = row["p_value"]
    p_text = "<0.001" if p_value < 0.001 else f"{p_value:.3f}"
    significant = row.get("significant")
    if significant is pd.NA or not bool(significant):
        p_text += " n.s."
    return interval, p_text


def _display_rows(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    several = bool("seeds" in df.columns and (df["seeds"].fillna(0) > 1).any())
    reference = df.attrs.get("reference")
    columns = ["label", "variant", "UF1", "UAR", "accuracy", *(["seeds"] if several else []),
               "folds", "status", *(list(COMPARISON_HEADERS) if reference else [])]
    paper_cols = [c for c in (PAPER_UF1, PAPER_UAR) if c in df.columns]
    rows = []
    for _, r in df.iterrows():
        total = "?" if r["folds_total"] is pd.NA else str(r["folds_total"])
        # accuracy: the mean only (its std is in the CSV), to keep the table narrow
        rows.append([str(r["label"]), str(r["variant"]), _score(r, "uf1", several),
                     _score(r, "uar", several), _score(r, "accuracy", False),
                     *([str(r["seeds"])] if several else []),
                     f"{r['folds_done']}/{total}", str(r["status"]),
                     *(_comparison(r, reference) if reference else ()),
                     *(_fmt(r[c]) for c in paper_cols)])
    if rows and all(row[0] == row[1] for row in rows):  # e.g. lambda-grid: no separate labels
        return columns[1:] + paper_cols, [row[1:] for row in rows]
    return columns + paper_cols, rows


def _title(df: pd.DataFrame) -> str:
    attrs = df.attrs
    return (f"{attrs.get('study', '?')} on {attrs.get('dataset', '?')}, "
            f"{attrs.get('task', '?')}-class (MLflow experiment {attrs.get('experiment', '?')})")


def to_markdown(df: pd.DataFrame) -> str:
    """The table as GitHub markdown, with its title and notes."""
    columns, rows = _display_rows(df)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    numeric = {"UF1", "UAR", "accuracy", "seeds", *COMPARISON_HEADERS, PAPER_UF1, PAPER_UAR}
    out = [f"**{_title(df)}**", "", line(columns),
           "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|"]
    out += [line(r) for r in rows]
    out += [""] + [f"> {note}" for note in df.attrs.get("notes", [])]
    side = side_by_side_rows(df)
    if side is not None:
        side_columns, side_rows = side
        out += ["", f"**{_side_by_side_title(df)}**", "", line(side_columns),
                "|" + "|".join("---" if c == "label" else "---:" for c in side_columns) + "|"]
        out += [line(r) for r in side_rows]
    return "\n".join(out).rstrip() + "\n"


# Left out of the rich table in a narrow terminal (under NARROW columns): they are in the
# markdown and CSV forms, and the caption says which were left out.
NARROW = 110
OPTIONAL_COLUMNS = ("variant", "accuracy", "seeds", PAPER_UF1, PAPER_UAR)


class FittedTable:
    """A rich renderable: the report table built for the width it is printed at."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.df = df

    def __rich_console__(self, console: Any, options: Any) -> Any:
        yield to_rich(self.df, width=options.max_width)
        side = side_by_side_rows(self.df)
        if side is not None:
            from rich.markup import escape
            from rich.table import Table

            columns, rows = side
            table = Table(title=_side_by_side_title(self.df), show_edge=False,
                          collapse_padding=True)
            for column in columns:
                table.add_column(column.replace(" (", "\n(").replace("paper ", "paper\n"),
                                 justify="left" if column == "label" else "right",
                                 style="dim" if column.startswith("paper") else None)
            for row in rows:
                table.add_row(*(escape(cell.replace(" ± ", "\n± ")) for cell in row))
            yield ""
            yield table


def to_rich(df: pd.DataFrame, width: int | None = None) -> Table:
    """The table as a rich ``Table`` (notes in its caption); narrower than ``NARROW``
    columns, the optional columns are left out."""
    from rich.markup import escape
    from rich.table import Table

    columns, rows = _display_rows(df)
    notes = list(df.attrs.get("notes", []))
    if width is not None and width < NARROW:
        optional = list(OPTIONAL_COLUMNS)
        if "label" in columns:
            labels = [row[columns.index("label")] for row in rows]
            if len(set(labels)) < len(labels):
                # Labels repeat (one paper row run in two readings): only the variant names
                # tell the rows apart, so they stay and the labels go.
                optional = ["label" if c == "variant" else c for c in optional]
        dropped = [c for c in optional if c in columns and not (
            c == "variant" and "label" not in columns)]
        keep = [i for i, c in enumerate(columns) if c not in dropped]
        columns, rows = [columns[i] for i in keep], [[r[i] for i in keep] for r in rows]
        if dropped:
            notes.append(f"narrow terminal: {', '.join(c.split(' (')[0] for c in dropped)} "
                         "left out (see --format markdown or csv)")
    table = Table(title=_title(df), caption="\n".join(notes) or None, caption_justify="left",
                  show_edge=False, collapse_padding=True)
    for index, column in enumerate(columns):
        text = column in ("label", "variant")
        # Text columns fold rather than vanish when the terminal is narrow (80 columns when
        # output is piped): rich shrinks wrappable columns first, so give them a floor.
        widest = max([len(column)] + [len(row[index]) for row in rows])
        # the caption says whose numbers the paper columns are
        header = (column.split(" (")[0].replace("paper ", "paper\n")
                  .replace("accuracy", "acc."))
        table.add_column(header, justify="left" if text else "right",
                         style="dim" if column.startswith("paper") else None,
                         overflow="fold", no_wrap=not (text or column in WRAPPABLE),
                         min_width=min(widest, 12 if column == "variant" else 6) if text
                         else None)
    styles = {STATUS_COMPLETE: "green", STATUS_INCOMPLETE: "yellow", STATUS_PRUNED: "magenta"}
    at = columns.index("status")
    for row in rows:
        status = row[at]
        # mean and ± std, difference and interval: one above the other, so that the
        # columns stay narrow in an 80-column terminal
        cells = [escape(cell.replace(" ± ", "\n± ").replace(" [", "\n["))
                 for cell in row]
        cells[at] = f"[{styles[status]}]{status}[/]" if status in styles else cells[at]
        table.add_row(*cells)
    return table


def render(df: pd.DataFrame, fmt: str = "table") -> Any:
    """``df`` (from ``study_table``) as a rich Table (``table``), markdown text or CSV text."""
    if fmt == "table":
        return FittedTable(df)
    if fmt == "markdown":
        return to_markdown(df)
    if fmt == "csv":
        return df.to_csv(index=False, float_format="%.6g")
    raise ReportError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")


def summary_figure(df: pd.DataFrame, spec: StudySpec | None) -> Figure:
    """The study's plot: UF1/UAR per variant as bars (the paper's as markers), or for a sweeps
    study (lambda-grid) one curve panel per swept parameter, like the paper's Fig. 6."""
    from matplotlib.figure import Figure

    curves = sweep_curves(spec) if spec is not None else []
    by_name = df.set_index("variant")
    title = _title(df).split(" (MLflow")[0]
    if curves:
        figure = Figure(figsize=(5.0 * len(curves), 3.8), layout="constrained")
        axes = figure.subplots(1, len(curves), squeeze=False)[0]
        for ax, (key, points) in zip(axes, curves, strict=True):
            xs = [float(x) for x, _ in points]
            for metric, marker in (("uf1", "o-"), ("uar", "s--")):
                ys = [by_name[metric].get(name, math.nan) for _, name in points]
                errors = [_std(by_name, metric, name) for _, name in points]
                ax.errorbar(xs, ys, yerr=errors if any(errors) else None, fmt=marker,
                            capsize=3, label=metric.upper())
            fixed = ", ".join(f"{k.rsplit('.', 1)[-1]} = {v}" for k, v in
                              _fixed_of(spec, key).items())
            ax.set_xlabel(key.rsplit(".", 1)[-1] + (f"  ({fixed})" if fixed else ""))
            ax.set_ylim(0.0, 1.0)
            ax.grid(alpha=0.3)
            ax.legend()
        figure.suptitle(title, fontsize=10)
        return figure
    n = len(df)
    figure = Figure(figsize=(max(5.0, 0.9 * n + 2.0), 4.0), layout="constrained")
    ax = figure.add_subplot()
    xs = list(range(n))
    width = 0.38
    for metric, shift in (("uf1", -width / 2), ("uar", width / 2)):
        # error bars: the standard deviation over seeds (none for a single seed)
        errors = [_std(by_name, metric, name) for name in df["variant"]]
        ax.bar([x + shift for x in xs], df[metric].fillna(0.0), width,
               yerr=errors if any(errors) else None, capsize=3, label=metric.upper())
    if PAPER_UF1 in df.columns:
        ax.plot([x - width / 2 for x in xs], df[PAPER_UF1], "k_", markersize=14,
                markeredgewidth=2, label=f"paper UF1 ({PAPER_DATASET_LABEL})")
        ax.plot([x + width / 2 for x in xs], df[PAPER_UAR], "_", color="0.45", markersize=14,
                markeredgewidth=2, label=f"paper UAR ({PAPER_DATASET_LABEL})")
    ax.set_xticks(xs, [str(label) for label in df["label"]], rotation=30 if n > 6 else 0,
                  ha="right" if n > 6 else "center")
    ax.set_ylim(0.0, 1.0)
    several = bool((df["seeds"].fillna(0) > 1).any()) if "seeds" in df.columns else False
    ax.set_ylabel("pooled LOSO score" + (" (mean ± std over seeds)" if several else ""))
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return figure


def _std(by_name: pd.DataFrame, metric: str, name: str) -> float:
    """The standard deviation over seeds of ``metric`` for variant ``name`` (0 if unknown)."""
    column = f"{metric}_std"
    if column not in by_name.columns or name not in by_name.index:
        return 0.0
    value = by_name.at[name, column]
    return float(value) if _finite(value) else 0.0


def _fixed_of(spec: StudySpec | None, key: str) -> dict[str, Any]:
    from orchestrator.studies.spec import SweepVariants

    if spec is None or not isinstance(spec.variants, SweepVariants):
        return {}
    for sweep in spec.variants.sweeps:
        if sweep.vary == key:
            return sweep.fixed
    return {}


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def write_summary(writer_or_client: Any, tracking_uri: str, spec: StudySpec, dataset: str,
                  task: int, parent_ids: Collection[str] | None = None) -> str:
    """Create or update the study's ``summary`` run and return its id.

    The run (name ``summary``, tags ``medn.study``, ``medn.summary=true``, ``medn.dataset``,
    ``medn.task``) lives in the study's experiment and holds ``summary/table.csv``,
    ``summary/table.md`` and ``summary/plot.png``. Re-running a study updates the same run (its
    artifacts are overwritten, its end time moves) instead of adding another one.
    ``writer_or_client`` is the study's ``RunTreeWriter`` (its retrying client is used), an
    ``MlflowClient``, or None (a client on ``tracking_uri``). The run's description
    (``mlflow.note.content``) is the table in markdown. ``parent_ids``: the parent runs the
    table is made of (the study run's own), else each variant's newest.
    """
    import tempfile
    from pathlib import Path

    client, call = _client_for(writer_or_client, tracking_uri)
    df = _table(client, call, tracking_uri, spec.name, dataset, task, spec,
                parent_ids=parent_ids)
    exp_id = df.attrs["experiment_id"]
    existing = _search_all(client, call, exp_id, f"tags.`{TAG_SUMMARY}` = 'true'")
    tags = {"medn.study": spec.name, TAG_SUMMARY: "true", "medn.role": "summary",
            "medn.dataset": dataset, "medn.task": str(task)}
    if existing:
        run_id = existing[0].info.run_id
        call(client.update_run, run_id, status="RUNNING", what="reopen summary run")
    else:
        run = call(client.create_run, exp_id, tags=tags, run_name=SUMMARY_RUN_NAME,
                   what="create summary run")
        run_id = run.info.run_id
    complete = df[df["status"] == STATUS_COMPLETE]
    status_tags = {"medn.variants_complete": f"{len(complete)}/{len(df)}"}
    if len(complete):
        best = complete.loc[complete[spec.metric].idxmax()]
        status_tags.update({"medn.best_variant": str(best["variant"]),
                            f"medn.best_{spec.metric}": f"{best[spec.metric]:.4f}"})
    # the run's description in the MLflow UI: the study's table, as `medn report` prints it
    note = to_markdown(df)
    if len(note) > 7900:  # MLflow keeps tags up to 8000 characters; table.md holds it all
        note = note[:7800].rsplit("\n", 1)[0] + "\n\n(cut here: see summary/table.md)"
    status_tags["mlflow.note.content"] = note
    for key, value in status_tags.items():
        call(client.set_tag, run_id, key, value, what="tag summary run")
    with tempfile.TemporaryDirectory(prefix="medn-summary-") as tmp:
        folder = Path(tmp) / "summary"
        folder.mkdir()
        (folder / "table.csv").write_text(render(df, "csv"))
        (folder / "table.md").write_text(to_markdown(df))
        (folder / "plot.png").write_bytes(_png(summary_figure(df, spec)))
        # Fig. 6 (every task at once), the assembled Table III / IV
        from orchestrator.paper_figures import summary_extras

        for name, item in summary_extras(tracking_uri, spec, dataset).items():
            (folder / name).write_bytes(item.encode() if isinstance(item, str) else _png(item))
        call(client.log_artifacts, run_id, str(folder), "summary", what="log summary")
    call(client.set_terminated, run_id, "FINISHED", what="finish summary run")
    return run_id
