"""Dotted keys to nested trees: one helper for ``--set`` and study specs."""

from __future__ import annotations

import pytest

from medn.config import ConfigError, dotted_to_tree, flatten_tree, parse_override
from orchestrator.studies.spec import expand_dotted


def test_dotted_to_tree_nests_and_merges_siblings() -> None:
    assert dotted_to_tree({"optim.lr": 0.1, "optim.epochs": 3, "seed": 1}) == {
        "optim": {"lr": 0.1, "epochs": 3}, "seed": 1}


def test_parse_override_reads_yaml_values_into_a_tree() -> None:
    assert parse_override("loss.lambda_au=0.5") == {"loss": {"lambda_au": 0.5}}
    assert parse_override("data.aus=[1, 2]") == {"data": {"aus": [1, 2]}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("loss.lambda_au")
    with pytest.raises(ConfigError, match="dotted field names"):
        parse_override("loss..x=1")


def test_spec_trees_use_the_same_helper() -> None:
    assert expand_dotted({"optim.lr": 1, "loss": {"lambda_au": 0}}) == {
        "optim": {"lr": 1}, "loss": {"lambda_au": 0}}


def test_flatten_tree_is_the_inverse_and_keeps_empty_sections() -> None:
    tree = {"optim": {"lr": 0.1, "epochs": 3}, "seed": 1}
    assert flatten_tree(tree) == {"optim.lr": 0.1, "optim.epochs": 3, "seed": 1}
    assert dotted_to_tree(flatten_tree(tree)) == tree
    assert flatten_tree({"optim": {}}) == {"optim": {}}  # reported by the spec checks, not lost
