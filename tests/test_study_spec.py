"""Study specs: the shipped YAML files, variant expansion, validation errors, discovery, CLI."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.studies import (
    StudyOptions,
    StudyOptionsError,
    StudySpecError,
    discover_studies,
    find_study,
    load_spec,
    study_configs,
    sweep_curves,
    variant_config,
)
from orchestrator.studies.discover import builtin_studies_dir

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"ablation-components": 5, "sparsity-rates": 14, "backbones": 4, "lambda-grid": 21}


def write_spec(folder: Path, name: str, body: str) -> Path:
    """A spec file ``folder/studies/<name>.yaml`` with ``body`` (dedented)."""
    path = folder / "studies" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


# -- the shipped specs ----------------------------------------------------------------------------
def test_shipped_specs_live_in_the_repo_studies_folder() -> None:
    assert builtin_studies_dir() == REPO / "studies"
    names = {p.stem for p in (REPO / "studies").glob("*.yaml")}
    assert {*SHIPPED, "tune"} <= names


@pytest.mark.parametrize(("name", "count"), sorted(SHIPPED.items()))
def test_shipped_spec_expands_to_the_papers_variant_count(name: str, count: int) -> None:
    spec = load_spec(REPO / "studies" / f"{name}.yaml", check_model=True)
    variants = spec.variants_for()
    assert len(variants) == count
    assert len({v.name for v in variants}) == count
    assert len({str(sorted(v.overrides.items())) for v in variants}) == count


def test_ablation_rows_match_table_v() -> None:
    spec = find_study("ablation-components", cwd=REPO)
    rows = {v.label: v.overrides for v in spec.variants_for()}
    assert spec.paper == "table5"
    assert rows["No.1"]["model.emotion.sparsity_rates"] == [1]
    assert rows["No.2"]["model.emotion.sparsity_rates"] == [4]
    assert rows["No.3"]["model.fusion.kind"] == "weighted_sum"
    assert rows["No.3"]["model.emotion.sparsity_rates"] == [1, 2, 4, 8]
    assert rows["No.4"]["loss.lambda_orth"] == 0.0
    assert rows["No.4"]["model.fusion.kind"] == "cofm"
    assert rows["No.5"] == {"model.emotion.sparsity_rates": [1, 2, 4, 8],
                            "loss.lambda_orth": 1.0, "model.fusion.kind": "cofm"}


def test_sparsity_and_backbone_rows_match_tables_vi_vii() -> None:
    variants = find_study("sparsity-rates", cwd=REPO).variants_for()
    rates = [v.overrides["model.emotion.sparsity_rates"] for v in variants]
    table_vi = [[1], [2], [4], [8], [1, 2, 4], [1, 2, 4, 8], [1, 1, 2, 2, 4, 4, 8, 8]]
    assert rates == table_vi * 2  # Table VI under each reading of eq. 2
    assert [v.overrides["model.emotion.grouping"] for v in variants] == (
        ["contiguous"] * 7 + ["strided"] * 7)
    backbones = [v.overrides["model.motion.backbone"]
                 for v in find_study("backbones", cwd=REPO).variants_for()]
    assert backbones == ["resnet18", "resnet34", "vit_b16", "led"]


def test_lambda_grid_is_two_sweeps_sharing_one_point() -> None:
    spec = find_study("lambda-grid", cwd=REPO)
    variants = spec.variants_for(task=7)
    names = [v.name for v in variants]
    assert "lambda_au=0.4,lambda_orth=1.0" in names
    assert "lambda_au=1.0,lambda_orth=1.6" in names
    assert names.count("lambda_au=1.0,lambda_orth=1.0") == 1
    points = {(v.overrides["loss.lambda_au"], v.overrides["loss.lambda_orth"]) for v in variants}
    grid = [round(0.2 * i, 1) for i in range(11)]
    assert points == {(x, 1.0) for x in grid} | {(1.0, y) for y in grid}
    curves = sweep_curves(spec)
    assert [key for key, _ in curves] == ["loss.lambda_au", "loss.lambda_orth"]
    assert all(len(points) == 11 for _, points in curves)
    shared = "lambda_au=1.0,lambda_orth=1.0"
    assert all(shared in [name for _, name in points] for _, points in curves)


def test_every_shipped_variant_builds_a_valid_config_on_every_profile() -> None:
    for name in SHIPPED:
        spec = find_study(name, cwd=REPO)
        for profile in ("smoke", "quick", "paper"):
            options = StudyOptions(profile=profile, tasks=[3, 7])
            configs = study_configs(spec, options, task=7)
            assert len(configs) == SHIPPED[name]
            for variant, cfg in configs:
                assert cfg.profile == profile
                assert cfg.data.task == 7
                for key, value in variant.overrides.items():
                    node = cfg
                    for part in key.split("."):
                        node = getattr(node, part)
                    assert node == value, (name, variant.name, key)


def test_variant_config_layers_profile_base_variant_data_and_sets(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "layers", """\
        name: layers
        base: {optim.epochs: 3, loss: {lambda_au: 0.5}, model.dim: 24}
        variants:
          - {name: a, set: {loss.lambda_au: 0.7}}
          - {name: b}
        """)
    spec = load_spec(path)
    a, b = spec.variants_for()
    options = StudyOptions(profile="smoke", tasks=[4], sets=["optim.epochs=5"],
                           cache_dir=tmp_path / "cache")
    cfg_a = variant_config(spec, a, options)
    cfg_b = variant_config(spec, b, options)
    assert cfg_a.loss.lambda_au == 0.7 and cfg_b.loss.lambda_au == 0.5   # variant over base
    assert cfg_a.model.dim == 24                                          # base over profile
    assert cfg_a.model.emotion.patch_size == 4                            # the smoke profile
    assert cfg_a.optim.epochs == 5                                        # --set wins
    assert cfg_a.data.task == 4 and cfg_a.data.cache_dir == tmp_path / "cache"
    with pytest.raises(StudySpecError, match=r"variant 'a'.*optim\.lr"):
        variant_config(spec, a, StudyOptions(sets=["optim.lr=-1"]))


def test_model_problems_are_caught_before_training(tmp_path: Path) -> None:
    path = write_spec(tmp_path, "heads", """\
        name: heads
        variants:
          - {name: ok}
          - {name: odd-heads, set: {model.emotion.heads: 5}}
        """)
    with pytest.raises(StudySpecError, match=r"heads\.yaml.*\n.*'odd-heads'.*\n.*"
                                             r"model\.emotion\.heads"):
        load_spec(path, check_model=True)
    spec = load_spec(path)  # the schema alone accepts it
    with pytest.raises(StudySpecError, match=r"(?s)odd-heads.*model\.emotion\.heads: 5 heads"):
        study_configs(spec, StudyOptions(), task=3)


def test_tune_search_draws_from_its_space() -> None:
    import optuna

    spec = find_study("tune", cwd=REPO)
    assert spec.kind == "search" and spec.variants_for() == []
    search = spec.search
    assert search is not None and search.trials >= 1
    study = optuna.create_study(direction="maximize", sampler=search.make_sampler(),
                                pruner=search.make_pruner())
    assert isinstance(study.pruner, optuna.pruners.WilcoxonPruner)
    allowed = search.space["model.emotion.sparsity_rates"].choices
    for _ in range(6):
        params = search.suggest(study.ask())
        assert 1e-5 <= params["optim.lr"] <= 1e-2
        assert 0.0 <= params["loss.lambda_au"] <= 2.0
        assert params["model.emotion.sparsity_rates"] in allowed
        assert isinstance(params["model.emotion.sparsity_rates"], list)


# -- validation errors name the file and the field --------------------------------------------
@pytest.mark.parametrize(("body", "expected"), [
    ("name: bad\ncolour: red\nvariants: [{name: a}]\n", r"colour: unknown key"),
    ("name: bad\nvariants:\n  - {name: a, lable: x}\n", r"variants\[0\] \(a\)\.lable: unknown key"),
    ("name: bad\nvariants:\n  - {name: a}\n  - {name: b, set: {model.emotoin.depth: 2}}\n",
     r"variants\[1\] \(b\)\.set\.model\.emotoin\.depth: unknown key \(no field 'emotoin'"),
    ("name: bad\nvariants:\n  - {name: a, set: {optim.lr: -1}}\n",
     r"variant 'a'.*\n.*optim\.lr: Input should be greater than 0"),
    ("name: bad\nvariants:\n  - {name: a, set: {model.emotion.sparsity_rates: [0, 2]}}\n",
     r"variant 'a'.*\n.*model\.emotion\.sparsity_rates: .*positive"),
    ("name: bad\nvariants:\n  - {name: a, set: {model.emotion.sparsity_rates: [3]}}\n",
     r"variant 'a'.*\n.*model\.emotion\.sparsity_rates: rate 3 does not divide"),
    ("name: bad\nvariants:\n  - {name: a, set: {data.task: 4}}\n",
     r"data\.task: set by the command's --task flag"),
    ("name: bad\nvariants: {grd: {optim.lr: [1]}}\n", r"variants: expected a list .* 'grid'"),
    ("name: bad\n", r"exactly one of 'variants'"),
    ("name: bad\nvariants: [{name: a}]\nsearch: {space: {optim.lr: {type: float, low: 1, "
     "high: 2}}}\n", r"exactly one of 'variants'"),
    ("name: bad\nsearch:\n  space: {model.emotion.sparsity_rates: {type: categorical}}\n",
     r"search\.space\.model\.emotion\.sparsity_rates: .*needs a non-empty 'choices'"),
    ("name: bad\nvariants: [{name: a}, {name: a}]\n", r"the name 'a' is used twice"),
    ("name: bad\ntasks: [6]\nvariants: [{name: a}]\n", r"tasks\[0\]: Input should be 3, 4, 5 or 7"),
    ("name: other\nvariants: [{name: a}]\n", r"name: 'other' must match the file name"),
    ("name: bad\nvariants:\n  grid: {model.motion: [1]}\n", r"names a whole section"),
    ("name: bad\nvariants: [{name: a}\n", r"not valid YAML"),
    ("name: bad\nvariants:\n  - {name: a, set: {optim.lr: 0.01, optim.lr: 0.02}}\n",
     r"the key 'optim\.lr' is given twice \(first on line 3\)"),
    ("name: bad\nseeds: 2\nseeds: 3\nvariants: [{name: a}]\n",
     r"the key 'seeds' is given twice \(first on line 2\)"),
])
def test_invalid_spec_error_names_file_and_field(tmp_path: Path, body: str,
                                                 expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(StudySpecError) as err:
        load_spec(path, check_model=True)
    assert str(err.value).startswith(str(path))
    assert __import__("re").search(expected, str(err.value)), str(err.value)


def test_study_options_reject_bad_flags() -> None:
    for kwargs, flag in [({"tasks": [6]}, "--task"), ({"dataset": "casme"}, "--dataset"),
                         ({"profile": "fast"}, "--profile"), ({"gpus_per_trial": -1}, "--gpus"),
                         ({"max_failures": -1}, "--max-failures"), ({"tasks": []}, "--task"),
                         ({"max_concurrent": 0}, "--max-concurrent")]:
        with pytest.raises(StudyOptionsError, match=flag):
            StudyOptions(**kwargs)
    assert StudyOptions().resolve_gpus_per_trial(0) == 0.0
    assert StudyOptions().resolve_gpus_per_trial(2) == 1.0
    assert StudyOptions(gpus_per_trial=0.25).resolve_gpus_per_trial(1) == 0.25
    with pytest.raises(StudyOptionsError, match="no GPU"):
        StudyOptions(gpus_per_trial=0.5).resolve_gpus_per_trial(0)


# -- discovery and the CLI ------------------------------------------------------------------------
@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a user's own study, a broken one and an override of a shipped
    one."""
    write_spec(tmp_path, "my-lr", """\
        name: my-lr
        description: my learning-rate grid
        variants:
          grid: {optim.lr: [0.001, 0.01], loss.lambda_au: [0.5]}
        """)
    write_spec(tmp_path, "broken", """\
        name: broken
        variants:
          - {name: a, set: {model.emotion.sparsity_rates: [0]}}
        """)
    write_spec(tmp_path, "backbones", """\
        name: backbones
        description: only two backbones
        variants:
          - {name: led, set: {model.motion.backbone: led}}
          - {name: resnet18, set: {model.motion.backbone: resnet18}}
        """)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_discovery_merges_shipped_and_local_studies(user_dir: Path) -> None:
    entries = discover_studies()
    assert {*SHIPPED, "tune", "my-lr", "broken"} <= set(entries)
    assert entries["ablation-components"].origin == "builtin"
    assert entries["backbones"].origin == "local"
    assert len(entries["backbones"].spec.variants_for()) == 2
    assert [v.name for v in entries["my-lr"].spec.variants_for()] == [
        "lr=0.001,lambda_au=0.5", "lr=0.01,lambda_au=0.5"]
    broken = entries["broken"]
    assert not broken.valid and "model.emotion.sparsity_rates" in broken.error
    with pytest.raises(StudySpecError, match=r"broken\.yaml.*\n.*variant 'a'"):
        find_study("broken")
    with pytest.raises(StudySpecError, match=r"no study named 'nope' \(known: .*ablation"):
        find_study("nope")


def test_one_studys_entry_reads_only_its_own_file(user_dir: Path) -> None:
    from orchestrator.studies.discover import _load_cached, study_entry

    (user_dir / "studies" / "unreadable.yaml").write_bytes(b"name: \xff\xfe\n")
    _load_cached.cache_clear()
    entry = study_entry("backbones")
    assert entry is not None and entry.origin == "local" and entry.spec is not None
    assert _load_cached.cache_info().misses == 1  # neither "broken" nor "unreadable" was read
    assert study_entry("nope") is None
    bad = study_entry("unreadable")
    assert bad is not None and not bad.valid and "unreadable.yaml" in bad.error


def _cli():
    import typer

    from orchestrator.cli.study_cmd import build_study_app

    app = typer.Typer()
    app.add_typer(build_study_app(), name="study")
    return app


def test_cli_list_shows_studies_and_invalid_ones(user_dir: Path) -> None:
    result = CliRunner().invoke(_cli(), ["study", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("ablation-components", "lambda-grid", "sparsity-rates", "tune", "my-lr"):
        assert name in result.output
    assert "Table V " in result.output and "Fig. 6" in result.output
    assert "invalid" in result.output
    assert "broken.yaml" in result.output and "model.emotion.sparsity_rates" in result.output


def test_cli_show_prints_variants_with_overrides(user_dir: Path) -> None:
    result = CliRunner().invoke(_cli(), ["study", "show", "ablation-components"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "5 variants" in result.output
    for text in ("No.1", "No.5", "weighted_sum", "[1,2,4,8]", "loss.lambda_orth"):
        assert text in result.output
    tune = CliRunner().invoke(_cli(), ["study", "show", "tune"], env={"COLUMNS": "200"})
    assert tune.exit_code == 0 and "search space" in tune.output and "optim.lr" in tune.output
    missing = CliRunner().invoke(_cli(), ["study", "show", "nope"])
    assert missing.exit_code == 2 and "no study named 'nope'" in missing.output


def test_cli_study_command_rejects_bad_input_before_running(user_dir: Path) -> None:
    runner = CliRunner()
    broken = runner.invoke(_cli(), ["study", "broken"])
    assert broken.exit_code == 2 and "broken.yaml" in broken.output
    bad_task = runner.invoke(_cli(), ["study", "my-lr", "--task", "6"])
    assert bad_task.exit_code == 2 and "--task" in bad_task.output
    trials = runner.invoke(_cli(), ["study", "ablation-components", "--trials", "3"])
    assert trials.exit_code == 2 and "not a search" in trials.output
    help_text = runner.invoke(_cli(), ["study", "lambda-grid", "--help"],
                              env={"COLUMNS": "200"}).output
    for flag in ("--dataset", "--annotations", "--data-root", "--task", "--profile",
                 "--address", "--tracking-uri", "--gpus-per-trial", "--cpus-per-trial",
                 "--max-concurrent", "--max-failures", "--fresh", "--set", "--allow-missing",
                 "--cache-dir"):
        assert flag in help_text
