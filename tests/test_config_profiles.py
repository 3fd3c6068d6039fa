"""Profiles, the paper's switches, deviations(), per-backbone config classes, finite numbers."""

from __future__ import annotations

import pytest

from medn.config import (
    PROFILES,
    STABILISERS,
    SWITCHES,
    ConfigError,
    LEDConfig,
    ResNetConfig,
    ViTConfig,
    backbone_config_classes,
    deviations,
    flatten_tree,
    load_config,
    paper_value,
)

STABILISER_DEVIATIONS = ["model.feature_norm=layer", "model.head_norm=true",
                         "model.fusion.residual=true", "optim.sampling=balanced",
                         "model.motion.led_denominator=abs"]


def test_paper_profile_is_the_paper_and_uses_no_switch():
    cfg = load_config(profile="paper")
    assert deviations(cfg) == []
    m = cfg.model
    assert (m.feature_norm, m.head_norm, m.fusion.residual) == ("none", False, False)
    assert (cfg.optim.sampling, cfg.optim.standardize_flows, m.input_norm) == (
        "shuffle", False, "none")
    assert isinstance(m.motion, LEDConfig)
    assert (m.motion.led_input, m.motion.led_denominator) == ("frames", "signed")
    assert (m.motion.led_dropout3d, m.motion.led_head_dropout, m.motion.led_filter_lr) == (
        0.5, 0.5, 0.1)
    assert (m.motion.led_filter_lr_epoch, m.motion.led_filter_lr_decay) == (50, 0.1)
    assert (m.emotion.grouping, cfg.loss.orth_form) == ("contiguous", "paper")
    # what the paper states (§IV-B, §IV-D)
    assert (cfg.data.frames, cfg.data.size) == (8, 144)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.batch_size) == (1e-4, 1e-3, 128)
    assert (cfg.optim.motion_lr_step, cfg.optim.motion_lr_decay, cfg.loss.focal_gamma) == (
        100, 0.1, 2.0)
    # 300 epochs is ours, and says so
    epochs = type(cfg.optim).model_fields["epochs"]
    assert cfg.optim.epochs == 300 and "assumption" in epochs.description


def test_stable_is_the_paper_plus_exactly_the_stabilisers():
    assert deviations(load_config(profile="stable")) == STABILISER_DEVIATIONS
    paper = flatten_tree(load_config(profile="paper").model_dump(mode="json"))
    stable = flatten_tree(load_config(profile="stable").model_dump(mode="json"))
    changed = {k for k in paper if paper[k] != stable[k]} - {"profile"}
    assert changed == {d.split("=")[0] for d in STABILISER_DEVIATIONS}
    assert set(flatten_tree(STABILISERS)) <= changed


def test_quick_keeps_the_stabilisers_and_quick_paper_only_drops_the_switches():
    quick, quick_paper = load_config(profile="quick"), load_config(profile="quick-paper")
    assert deviations(quick) == [
        *STABILISER_DEVIATIONS, "model.motion.led_input=flow", "model.motion.led_zero_frame=false",
        "model.motion.led_dropout3d=0.0", "model.motion.led_head_dropout=0.1",
        "model.motion.led_filter_lr=null"]
    assert deviations(quick_paper) == []
    a = flatten_tree(quick.model_dump(mode="json"))
    b = flatten_tree(quick_paper.model_dump(mode="json"))
    differ = {k for k in a if a[k] != b[k]} - {"profile"}
    assert differ <= {s.key for s in SWITCHES}
    assert quick.model.dim == quick_paper.model.dim == 32


def test_every_switch_is_a_key_of_the_paper_configuration():
    for switch in SWITCHES:
        assert switch.what and switch.paper
        paper_value(switch.key, backbone="led")  # raises KeyError if the key does not exist


def test_a_changed_switch_is_listed_and_a_size_is_not():
    cfg = load_config(profile="paper", overrides=["model.emotion.grouping=strided",
                                                  "loss.orth_form=cosine", "optim.lr=3e-4",
                                                  "model.dim=64"])
    assert deviations(cfg) == ["model.emotion.grouping=strided", "loss.orth_form=cosine"]
    cfg = load_config(profile="paper", overrides=["model.motion.led_filter_lr=null"])
    assert deviations(cfg) == ["model.motion.led_filter_lr=null"]


def test_led_keys_are_not_listed_for_another_backbone():
    cfg = load_config(profile="quick", overrides=["model.motion.backbone=resnet18"])
    assert deviations(cfg) == STABILISER_DEVIATIONS[:4]


def test_each_backbone_has_its_own_config_class_and_profile_sizes():
    classes = backbone_config_classes()
    assert classes == {"led": LEDConfig, "resnet18": ResNetConfig, "resnet34": ResNetConfig,
                       "vit_b16": ViTConfig}
    paper = load_config(profile="paper", overrides=["model.motion.backbone=resnet34"])
    assert isinstance(paper.model.motion, ResNetConfig)
    assert paper.model.motion.width == 64          # Table VII: the standard ResNet width
    assert load_config(profile="paper").model.motion.width == 32   # LED's own
    quick = load_config(profile="quick", overrides=["model.motion.backbone=vit_b16"])
    assert (quick.model.motion.vit_dim, quick.model.motion.vit_patch) == (48, 12)
    # the user's value wins over the profile's
    wider = load_config(profile="quick", overrides=["model.motion.width=16"])
    assert wider.model.motion.width == 16


def test_the_registered_models_and_the_config_classes_name_the_same_backbones():
    from medn.models import backbone_names
    assert set(backbone_names()) == set(backbone_config_classes())


@pytest.mark.parametrize(("override", "message"), [
    ("model.motion.vit_dim=64", "model.motion.vit_dim: unknown key for backbone 'led'"),
    ("model.motion.backbone=vgg", "model.motion.backbone: unknown backbone 'vgg'; allowed: led, "
                                  "resnet18, resnet34, vit_b16"),
    ("model.motion.led_input=video", "model.motion.led_input: Input should be 'frames' or 'flow'"),
    ("model.emotion.grouping=random", "model.emotion.grouping: Input should be 'contiguous' or "
                                      "'strided'"),
    ("loss.orth_form=l1", "loss.orth_form: Input should be 'paper' or 'cosine'"),
])
def test_backbone_and_switch_errors_name_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert message in str(err.value)


@pytest.mark.parametrize("field", ["optim.lr", "loss.lambda_au", "loss.lambda_orth",
                                   "loss.focal_gamma", "optim.weight_decay",
                                   "model.input_scale", "model.motion.led_filter_lr",
                                   "data.synth_hard_share"])
@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_errors_naming_the_field(field, value):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[f"{field}={value}"])
    text = str(err.value)
    assert f"{field}: " in text
    assert "finite" in text or "greater" in text or "less" in text


@pytest.mark.parametrize(("override", "message"), [
    ("optim.lr=1e308", "optim.lr: Input should be less than or equal to 1"),
    ("optim.lr=1.0e308", "optim.lr: Input should be less than or equal to 1"),
    ("optim.lr=2", "optim.lr: Input should be less than or equal to 1"),
    ("loss.lambda_au=1.0e6", "loss.lambda_au: Input should be less than or equal to 1000"),
])
def test_absurd_numbers_are_errors_naming_the_field(override, message):
    with pytest.raises(ConfigError, match="invalid configuration") as err:
        load_config(overrides=[override])
    assert message in str(err.value)


def test_every_profile_builds_for_every_backbone():
    for profile in PROFILES:
        for backbone in backbone_config_classes():
            cfg = load_config(profile=profile, overrides=[f"model.motion.backbone={backbone}"])
            assert cfg.profile == profile and cfg.model.motion.backbone == backbone


def test_study_specs_may_name_the_keys_of_any_backbone():
    from orchestrator.studies.spec import config_key_problem

    assert config_key_problem("model.motion.backbone") is None
    assert config_key_problem("model.motion.vit_dim") is None       # a ViTConfig key
    assert config_key_problem("model.motion.led_input") is None     # an LEDConfig key
    assert "unknown key" in config_key_problem("model.motion.vit_dimm")
    assert "whole section" in config_key_problem("model.motion")
