"""Tables III and IV assembled from several experiments of a real sqlite MLflow store, and the
published numbers they print."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
from train_helpers import fake_result, random_dataset, tiny_config
from typer.testing import CliRunner

from orchestrator.main_results import (
    KIND_OURS,
    KIND_PAPER,
    KIND_REFERENCE,
    MainResultsError,
    main_results_table,
    render,
)
from orchestrator.paper_numbers import (
    PAPER_TITLES,
    TABLE3,
    TABLE3_AVERAGE,
    TABLE3_MEDN,
    TABLE3_OTHERS,
    TABLE4,
    TABLE4_OTHERS,
)
from orchestrator.studies import find_study
from orchestrator.tracking import RunTreeWriter

PAPER = Path(__file__).resolve().parents[2] / "shared" / "papers" / "000_5bc75bb27bcddfe7.txt"


def _trained_parent(uri: str, root: Path, experiment: str, data, *,
                    folds: int | None = None) -> dict[str, float] | None:
    """A parent run of variant ``medn`` (profile smoke) with fold runs (all, or the first
    ``folds``), pooled by the real writer."""
    cfg = tiny_config()
    writer = RunTreeWriter(uri, experiment, spool_dir=root / "spool")
    study = experiment.split("/")[0]
    parent = writer.parent_run("medn", cfg, data, {"medn.study": study})
    subjects = data.subject_ids if folds is None else data.subject_ids[:folds]
    for i, subject in enumerate(subjects):
        writer.log_fold(parent, fake_result(data, subject, seed=i), {})
    return writer.finalize_parent(parent, data)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Table III's study on CASME II (complete) and SAMM (one fold missing, then complete in a
    second store state), Table IV's on CAS(ME)^3 3-class and synth 4-class."""
    root = tmp_path_factory.mktemp("main_results")
    uri = f"sqlite:///{root}/mlflow.db"
    data = random_dataset(tiny_config(), subjects=3, clips_per_subject=6)
    pooled = {
        "casme2": _trained_parent(uri, root, "main-results/casme2-3class", data),
        "samm": _trained_parent(uri, root, "main-results/samm-3class", data, folds=2),
        "casme3a": _trained_parent(uri, root, "main-results-casme3/casme3a-3class", data),
        "synth4": _trained_parent(uri, root, "main-results-casme3/synth-4class",
                                  random_dataset(tiny_config(), classes=4, seed=1)),
    }
    return {"uri": uri, "root": root, "data": data, "pooled": pooled}


def test_table3_published_rows_are_the_paper_text() -> None:
    text = PAPER.read_text()
    block = text[text.index("TABLE III:"):text.index("TABLE IV:")]
    for ref in [*TABLE3_OTHERS, TABLE3_MEDN]:
        name = ref.method.split(" (")[0]
        line = next(ln for ln in block.splitlines() if ln.startswith(name + "(")
                    or (name == "MEDN" and ln.startswith("MEDN(ours)")))
        printed = re.findall(r"\d\.\d{4}|(?<=\s)-(?=\s|$)", line.split("]", 1)[-1]
                             if name != "MEDN" else line)
        ours = [v for key in ("casme2", "samm", TABLE3_AVERAGE) for v in ref.scores[key]]
        assert [None if p == "-" else float(p) for p in printed] == ours, ref.method
        assert ("\\surd" in line) == ref.apex, ref.method
    assert TABLE3 == {"casme2": (0.9118, 0.8912), "samm": (0.8835, 0.8679),
                      "average": (0.8977, 0.8796)}


def test_table3_average_column_is_the_mean_except_two_printed_slips() -> None:
    off = []
    for ref in [*TABLE3_OTHERS, TABLE3_MEDN]:
        for m in (0, 1):
            a, b, avg = (ref.scores[k][m] for k in ("casme2", "samm", TABLE3_AVERAGE))
            if None not in (a, b, avg) and abs((a + b) / 2 - avg) > 0.0001:
                off.append(ref.method)
    assert off == ["STSTNet (2019) [26]", "AUGCN (2021) [17]"]


def test_table4_published_rows_are_the_paper_text() -> None:
    text = PAPER.read_text()
    block = text[text.index("TABLE IV:"):text.index("All experiments in this study")]
    printed = re.findall(r"^(\S+)\(\d{4}\)\[\d+\] (\d) (\d\.\d{4}) (\d\.\d{4})$", block, re.M)
    others = [(m.split(" (")[0], c, u, r) for m, c, u, r in TABLE4_OTHERS]
    assert [(n, int(c), float(u), float(r)) for n, c, u, r in printed] == others
    medn = re.findall(r"^MEDN\(ours\) (\d) (\d\.\d{4}) (\d\.\d{4})$", block, re.M)
    assert {int(c): (float(u), float(r)) for c, u, r in medn} == TABLE4


def test_table3_assembles_both_datasets_and_the_average(store: dict) -> None:
    df = main_results_table(store["uri"], find_study("main-results"))
    assert list(df["kind"]) == [KIND_REFERENCE] * 15 + [KIND_PAPER, KIND_OURS]
    paper = df[df["kind"] == KIND_PAPER].iloc[0]
    assert (paper["casme2_uf1"], paper["samm_uar"], paper["average_uf1"]) == (
        0.9118, 0.8679, 0.8977)
    micron = df[df["method"].str.startswith("Micron-BERT")].iloc[0]
    assert micron["casme2_uf1"] == 0.9034 and math.isnan(micron["samm_uf1"])
    ours = df[df["kind"] == KIND_OURS].iloc[0]
    assert ours["method"] == "MEDN (ours, profile smoke)"
    assert ours["casme2_uf1"] == pytest.approx(store["pooled"]["casme2"]["uf1"])
    assert ours["casme2_uar"] == pytest.approx(store["pooled"]["casme2"]["uar"])
    # SAMM is missing a fold: no SAMM numbers, so no Average either, and the status says why
    assert store["pooled"]["samm"] is None
    assert math.isnan(ours["samm_uf1"]) and math.isnan(ours["average_uf1"])
    assert "casme2 complete 3/3" in ours["status"] and "samm incomplete 2/3" in ours["status"]
    markdown = render(df, "markdown")
    assert "| CASME II UF1 |" in markdown and "Average UAR" in markdown
    assert ("MEDN (paper) | no | 0.9118 | 0.8912 | **0.8835** | **0.8679** | **0.8977** | "
            "0.8796 |") in markdown
    assert "not trained here" in markdown


def test_table3_average_once_both_datasets_are_complete(store: dict, tmp_path: Path) -> None:
    data = store["data"]
    writer = RunTreeWriter(store["uri"], "main-results/samm-3class",
                           spool_dir=store["root"] / "spool")
    parent = writer.parent_run("medn", tiny_config(), data, {"medn.study": "main-results"})
    writer.log_fold(parent, fake_result(data, data.subject_ids[2], seed=2), {})
    samm = writer.finalize_parent(parent, data)
    _trained_parent(store["uri"], store["root"], "main-results/casme2-4class",
                    random_dataset(tiny_config(), classes=4, seed=2))
    df = main_results_table(store["uri"], find_study("main-results"))
    assert ("not in Table III (3 classes only): main-results/casme2-4class"
            in " ".join(df.attrs["notes"]))                  # never dropped silently
    ours = df[df["kind"] == KIND_OURS].iloc[0]
    casme2 = store["pooled"]["casme2"]
    assert ours["samm_uf1"] == pytest.approx(samm["uf1"])
    assert ours["average_uf1"] == pytest.approx((casme2["uf1"] + samm["uf1"]) / 2)
    assert ours["average_uar"] == pytest.approx((casme2["uar"] + samm["uar"]) / 2)
    csv = pd.read_csv(__import__("io").StringIO(render(df, "csv")))
    assert csv.loc[csv["kind"] == KIND_OURS, "average_uf1"].iloc[0] == pytest.approx(
        ours["average_uf1"], abs=1e-5)


def test_table4_blocks_per_task_with_published_rows_and_ours(store: dict) -> None:
    df = main_results_table(store["uri"], find_study("main-results-casme3"))
    assert sorted(set(df["classes"])) == [3, 4, 7]
    three = df[df["classes"] == 3]
    assert list(three["kind"]) == [KIND_REFERENCE] * 4 + [KIND_PAPER, KIND_OURS]
    assert three[three["kind"] == KIND_PAPER]["uf1"].iloc[0] == 0.7568
    ours3 = three[three["kind"] == KIND_OURS].iloc[0]
    assert ours3["dataset"] == "casme3a"
    assert ours3["uf1"] == pytest.approx(store["pooled"]["casme3a"]["uf1"])
    four = df[(df["classes"] == 4) & (df["kind"] == KIND_OURS)].iloc[0]
    assert four["dataset"] == "synth"
    assert four["uar"] == pytest.approx(store["pooled"]["synth4"]["uar"])
    seven = df[df["classes"] == 7]
    assert list(seven["kind"]) == [KIND_REFERENCE] * 2 + [KIND_PAPER, KIND_OURS]
    assert seven.iloc[-1]["status"] == "not run" and math.isnan(seven.iloc[-1]["uf1"])
    notes = " ".join(df.attrs["notes"])
    assert "synth: not Table IV's dataset" in notes
    # our rows say which settings are not the paper's (smoke keeps its stabilisers)
    from medn.config import deviations

    switches = ", ".join(deviations(tiny_config()))
    assert f"non-paper switches (every row): {switches}" in df.attrs["notes"], notes


def test_no_runs_yet_still_prints_the_published_table(tmp_path: Path) -> None:
    df = main_results_table(f"sqlite:///{tmp_path}/empty.db", find_study("main-results"))
    assert (df["kind"] == KIND_REFERENCE).sum() == 15
    assert df[df["kind"] == KIND_OURS]["status"].iloc[0] == "casme2 not run; samm not run"
    assert "medn study main-results --profile paper --dataset casme2" in " ".join(
        df.attrs["notes"])


def test_other_studies_are_refused(store: dict) -> None:
    with pytest.raises(MainResultsError, match="Table V, not Table III or IV"):
        main_results_table(store["uri"], find_study("ablation-components"))


def test_study_list_names_the_tables() -> None:
    from orchestrator.cli.app import app

    result = CliRunner().invoke(app, ["study", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line for line in result.output.splitlines()
            if line.startswith("│ main-results")}
    assert PAPER_TITLES["table3"] in rows["main-results"]
    assert PAPER_TITLES["table4"] in rows["main-results-casme3"]


def test_medn_report_prints_the_assembled_table(store: dict) -> None:
    from orchestrator.cli.app import app

    result = CliRunner().invoke(app, ["report", "main-results-casme3", "--format", "markdown",
                                      "--tracking-uri", store["uri"]])
    assert result.exit_code == 0, result.output
    assert "Table IV" in result.output
    assert ("| 4 | Lite-Point-GCN (2025) [56] | CAS(ME)^3 | _0.4764_ | _0.5366_ |"
            in result.output)
    assert "MEDN (ours, profile smoke) | synth |" in result.output


def test_dataset_flag_asks_for_one_experiment(store: dict) -> None:
    from orchestrator.cli.app import app

    result = CliRunner().invoke(app, ["report", "main-results", "--dataset", "casme2",
                                      "--format", "csv", "--tracking-uri", store["uri"]])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(__import__("io").StringIO(result.output))
    assert list(rows["variant"]) == ["medn"] and rows["status"][0] == "complete"
    assert rows["uf1"][0] == pytest.approx(store["pooled"]["casme2"]["uf1"], abs=1e-5)


def test_best_and_second_best_marks_as_in_the_paper(store: dict) -> None:
    from orchestrator.main_results import ranks

    t3 = main_results_table(store["uri"], find_study("main-results"))
    marks = ranks(t3)
    row = {m: i for i, m in enumerate(t3["method"])}
    # the paper's text: on SAMM MEDN beats the second best (GAMDSS UF1, MERASTC UAR)
    assert marks[(row["MEDN (paper)"], "samm_uf1")] == 1
    assert marks[(row["GAMDSS (2026) [28]"], "samm_uf1")] == 2
    assert marks[(row["MERASTC (2021) [12]"], "samm_uar")] == 2
    assert marks[(row["MER-CLIP (2025) [29]"], "casme2_uf1")] == 1
    assert sum(1 for (_, c), r in marks.items() if c == "casme2_uf1" and r == 1) == 1
    t4 = main_results_table(store["uri"], find_study("main-results-casme3"))
    marks4 = ranks(t4)
    three = {m: i for i, m in enumerate(t4["method"]) if t4["classes"].iloc[i] == 3}
    assert marks4[(three["MEDN (paper)"], "uf1")] == 1
    assert marks4[(three["Lite-Point-GCN (2025) [56]"], "uar")] == 1
    assert marks4[(three["MEDN (paper)"], "uar")] == 2
    synth = [i for i in range(len(t4)) if t4["dataset"].iloc[i] == "synth"]
    assert synth and not any(i in synth for i, _ in marks4)      # other datasets: no marks
    assert "| 3 | MEDN (paper) | CAS(ME)^3 | **0.7568** | _0.7294_ |" in render(t4, "markdown")


def test_summary_run_holds_the_assembled_table(store: dict, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from orchestrator.report import write_summary

    spec = find_study("main-results-casme3")
    run_id = write_summary(None, store["uri"], spec, "casme3a", 3)
    client = MlflowClient(store["uri"])
    names = {a.path for a in client.list_artifacts(run_id, "summary")}
    assert {"summary/main_results.md", "summary/main_results.csv", "summary/table.md"} <= names
    text = Path(client.download_artifacts(run_id, "summary/main_results.md",
                                          str(tmp_path))).read_text()
    assert text == render(main_results_table(store["uri"], spec), "markdown")
    assert "Table IV" in text and "| 7 | MEDN (paper) | CAS(ME)^3 |" in text
