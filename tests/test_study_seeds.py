"""Seeds: ``--seeds N`` trains each variant N times, one parent run per seed; a re-run with
more seeds trains only the new seeds' folds; the report shows mean ± std and the paired
comparison with the reference variant."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.execution.runner import StudyInputError, run_study
from orchestrator.report import study_table
from orchestrator.studies import find_study
from orchestrator.studies.options import StudyOptions, StudyOptionsError
from orchestrator.studies.spec import parse_spec

SPEC = {
    "name": "seed-check",
    "description": "two variants, several seeds",
    "tasks": [3],
    "reference": "B",
    "base": {"optim.epochs": 1},
    "variants": [{"name": "a", "label": "A", "set": {"loss.lambda_orth": 0.0}},
                 {"name": "b", "label": "B", "set": {"loss.lambda_orth": 1.0}}],
}


def _options(tmp_path: Path, cache: Path, seeds: int) -> StudyOptions:
    return StudyOptions(profile="smoke", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                        cache_dir=cache, seeds=seeds)


def test_seeds_are_parent_runs_and_resume_per_unit(tmp_path: Path, smoke_cache: Path) -> None:
    spec = parse_spec(SPEC, "seed-check.yaml")
    first = run_study(spec, _options(tmp_path, smoke_cache, 2), show_progress=False,
                      executor="local")
    assert first.complete and first.trained_folds == 2 * 2 * 4
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("seed-check/synth-3class")
    parents = client.search_runs([exp.experiment_id], "tags.`medn.role` = 'parent'")
    seeds = sorted((p.data.tags["medn.variant"], p.data.tags["medn.seed"],
                    p.data.params["seed"]) for p in parents)
    assert seeds == [("a", "0", "0"), ("a", "1", "1"), ("b", "0", "0"), ("b", "1", "1")]
    assert {p.data.tags["medn.seeds"] for p in parents} == {"2"}
    # a fold run carries its seed too
    folds = client.search_runs([exp.experiment_id], "tags.`medn.role` = 'fold'")
    assert {f.data.tags.get("medn.seed") for f in folds} == {"0", "1"}

    # three seeds now: only the third seed's folds are trained, the others resume as done
    second = run_study(spec, _options(tmp_path, smoke_cache, 3), show_progress=False,
                       executor="local")
    assert second.complete and second.trained_folds == 2 * 4
    df = study_table(f"sqlite:///{tmp_path / 'mlflow.db'}", "seed-check", spec=spec)
    rows = df.set_index("variant")
    assert list(rows["seeds"]) == [3, 3] and list(rows["status"]) == ["complete"] * 2
    pooled = sorted(p.data.metrics["uf1"] for p in client.search_runs(
        [exp.experiment_id], "tags.`medn.role` = 'parent' and tags.`medn.variant` = 'a'"))
    assert len(pooled) == 3
    assert rows.loc["a", "uf1_mean"] == pytest.approx(sum(pooled) / 3)
    assert rows.loc["a", "folds_done"] == 12 and rows.loc["a", "folds_total"] == 12
    assert rows.loc["b", "uf1_diff"] == 0.0                       # the reference
    assert rows.loc["a", "ci_low"] <= rows.loc["a", "uf1_diff"] <= rows.loc["a", "ci_high"]
    assert 0.0 <= rows.loc["a", "p_value"] <= 1.0


def test_seeds_flag_is_checked() -> None:
    with pytest.raises(StudyOptionsError, match="--seeds"):
        StudyOptions(seeds=0)
    tune = find_study("tune", check_model=False)
    with pytest.raises(StudyInputError, match="--seeds 3: a search trains one seed"):
        run_study(tune, StudyOptions(seeds=3), show_progress=False)
