"""The one validated configuration of a MEDN training: data, model, loss, optimiser, profile.

Where to change things:
- a loss weight: ``LossConfig`` (``loss.lambda_au``, ``loss.lambda_orth``) or ``--set``;
- a size the paper does not give (embedding width, depth, heads, patch size): ``ModelConfig``;
- what a profile means: ``PROFILES`` below.

A configuration is built as: the profile's defaults, then a YAML file, then ``key=value``
overrides (``load_config``). Unknown keys and bad values are errors naming the field.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DatasetName = Literal["synth", "casme2", "samm", "casme3a"]
ProfileName = Literal["smoke", "quick", "paper"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Which data, which label protocol, and how clips are preprocessed."""

    dataset: DatasetName = "synth"
    task: Literal[3, 4, 5, 7] = 3
    annotations: Path | None = None
    data_root: Path | None = None
    frames: int = Field(8, ge=2, description="T: frames sampled uniformly from onset to offset")
    size: int = Field(144, ge=16, description="H = W of the aligned face crop and its flow")
    cache_dir: Path = Path(".medn_cache")
    synth_profile: Literal["smoke", "quick", "full"] = "quick"
    synth_subjects: int | None = Field(None, ge=2)
    synth_seed: int = 0
    synth_hard_share: float = Field(
        0.85, ge=0.0, le=1.0,
        description="synth: share of clips whose exact AU set also occurs with another emotion")
    au_min_count: int = Field(
        10, ge=1, description="an AU enters the AU head when at least this many clips show it")


class MotionConfig(_Strict):
    """The motion branch, supervised by AU detection (paper §III-A, Table VII)."""

    backbone: Literal["led", "resnet18", "resnet34", "vit_b16"] = "led"
    width: int = Field(32, ge=4, description="base channel width of the conv backbones")
    vit_dim: int = Field(768, ge=8, description="token width of vit_b16 (768 in ViT-B/16)")
    vit_depth: int = Field(12, ge=1, description="blocks of vit_b16 (12 in ViT-B/16)")
    vit_heads: int = Field(12, ge=1, description="heads of vit_b16 (12 in ViT-B/16)")
    vit_patch: int = Field(16, ge=1, description="patch size of vit_b16 (16 in ViT-B/16)")
    led_grid: int = Field(
        4, ge=1, description="led: the 3D-conv map is average-pooled to this GxG grid before the "
        "MLP (the original LED flattened a 9x9 map of 64x64 input; pooling keeps 144x144 sane)")
    led_drop_first: bool = Field(
        True, description="led: drop the first (unfiltered, passed-through) frame before the "
        "3D convs, as the original LED does")


class EmotionConfig(_Strict):
    """The emotion branch SEVit (eq. 2-4)."""

    sparsity_rates: list[int] = Field(default_factory=lambda: [1, 2, 4, 8], min_length=1)
    patch_size: int = Field(9, ge=1, description="spatial patch size; 144/9 = a 16x16 token grid")
    depth: int = Field(2, ge=1, description="transformer blocks per sparsity branch")
    heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(2.0, gt=0)
    pool: Literal["mean", "time"] = Field(
        "mean", description="how a branch's tokens become F_k (the paper does not say): 'time' "
        "averages each frame's tokens and maps the T' frame vectors, concatenated, to D (the "
        "time course is kept); 'mean' averages all tokens")

    @field_validator("sparsity_rates")
    @classmethod
    def _positive(cls, rates: list[int]) -> list[int]:
        bad = [r for r in rates if r < 1]
        if bad:
            raise ValueError(f"sparsity rates must be positive integers, got {bad}")
        return rates


class FusionConfig(_Strict):
    """How F_m and F_e are fused: CoFM (eq. 9-14) or the weighted sum of ablation No.3."""

    kind: Literal["cofm", "weighted_sum"] = "cofm"
    tokens: int = Field(4, ge=1, description="CoFM views each D-vector as this many tokens")
    heads: int = Field(2, ge=1)
    residual: bool = Field(
        True, description="CoFM: F'_m = F_perp_m + MHA(F_perp_m, F_col,m) (likewise e), the usual "
        "transformer residual; the paper does not say (false = the bare MHA output)")


class ModelConfig(_Strict):
    """MEDN's sizes and parts. ``dim`` is D, the width of F_m, F_e and F_fusion."""

    dim: int = Field(128, ge=4)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    input_norm: Literal["none", "clip_rms", "fixed"] = Field(
        "none", description="how MEDN scales its input flows (the paper does not say): "
        "'clip_rms' scales each clip so that its own flows have root-mean-square "
        "model.input_scale (no other clip is looked at), 'fixed' multiplies every flow by "
        "model.input_scale, 'none' leaves them as computed (see docs/model.md for measurements)")
    input_scale: float = Field(
        1.0, gt=0.0, description="the target RMS of 'clip_rms', the factor of 'fixed'")
    feature_norm: Literal["none", "layer"] = Field(
        "layer", description="a LayerNorm without learnable gain or bias at the end of the motion "
        "branch (F_m, before the AU head) and of every SEVit branch (F_k); the paper does not say. "
        "It keeps |F| at sqrt(D): without it the AU and orthogonal losses inflate |F_m| and |F_e| "
        "and the classification gradient through eq. 5 (F / |F|) shrinks with 1 / |F|")
    head_norm: bool = Field(
        True, description="LayerNorm on F_fusion before dropout + the linear classifier (the "
        "paper does not describe its classifier; F_perp has norm <= 1, so without a norm the "
        "logits start tiny and learn slowly)")
    motion: MotionConfig = Field(default_factory=MotionConfig)
    emotion: EmotionConfig = Field(default_factory=EmotionConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)


class LossConfig(_Strict):
    """L_total = L_cls + lambda_au * L_au + lambda_orth * L_orth (eq. 16)."""

    lambda_au: float = Field(1.0, ge=0.0)
    lambda_orth: float = Field(1.0, ge=0.0)
    focal_gamma: float = Field(2.0, ge=0.0)
    orth_eps: float = Field(1e-6, gt=0.0)


class OptimConfig(_Strict):
    """AdamW and the motion branch's step decay (paper §IV-D)."""

    lr: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(1e-3, ge=0.0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(300, ge=1)
    motion_lr_step: int = Field(100, ge=1, description="epochs between motion-branch lr decays")
    motion_lr_decay: float = Field(0.1, gt=0.0, le=1.0)
    sampling: Literal["shuffle", "balanced"] = Field(
        "shuffle", description="how an epoch's training clips are drawn: 'shuffle' = each once; "
        "'balanced' = with replacement, each class about equally often (the paper's data are "
        "imbalanced and its loss, eq. 15, has no class weights; it does not say how it sampled)")
    standardize_flows: bool = Field(
        False, description="divide every fold's flows by the standard deviation of its TRAINING "
        "clips' flows (one scalar per fold; the held-out subject is not looked at)")


class MednConfig(_Strict):
    """A whole training configuration."""

    profile: ProfileName = "quick"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)

    def flat(self) -> dict[str, Any]:
        """Every resolved parameter as ``{"model.emotion.depth": 2, ...}`` (for MLflow params)."""
        return flatten_tree(self.model_dump(mode="json"))


# What each profile changes from the paper defaults above. ``paper`` changes nothing.
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {
        "data": {"size": 48, "synth_profile": "quick"},
        "model": {
            "dim": 32,
            "motion": {"width": 8, "vit_dim": 48, "vit_depth": 2, "vit_heads": 2,
                       "vit_patch": 12},
            "emotion": {"patch_size": 6, "depth": 1, "heads": 2},
        },
        # Measured on synth quick (78 clips, 8 subjects, 3 classes 51/7/20), one CPU thread:
        # ~7.5 s per fold; full MEDN pooled UF1 ~0.39-0.40 (majority class: 0.26; docs/model.md).
        "optim": {"lr": 4e-3, "batch_size": 8, "epochs": 12, "sampling": "balanced"},
    },
    "smoke": {
        "data": {"size": 32, "synth_profile": "smoke"},
        "model": {
            "dim": 16,
            "motion": {"width": 4, "vit_dim": 16, "vit_depth": 1, "vit_heads": 2,
                       "vit_patch": 8},
            "emotion": {"patch_size": 4, "depth": 1, "heads": 2},
            "fusion": {"tokens": 2},
        },
        "optim": {"lr": 1e-3, "batch_size": 16, "epochs": 2},
    },
}


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the field and what was expected."""


def flatten_tree(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (the inverse of ``dotted_to_tree``); an empty
    dict stays a value, so nothing is dropped."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten_tree(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``update`` merged in, nested dicts merged key by key."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def dotted_to_tree(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a.c": 2}`` -> ``{"a": {"b": 1, "c": 2}}``."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def parse_override(text: str) -> dict[str, Any]:
    """``"loss.lambda_au=0.5"`` -> ``{"loss": {"lambda_au": 0.5}}``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. loss.lambda_au=0.5")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: the key must be dotted field names, e.g. optim.lr")
    value = yaml.safe_load(raw) if raw.strip() else ""
    return dotted_to_tree({key: value})


def overrides_to_tree(overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    """``--set`` strings, or a flat ``{"a.b": v}`` dict, as one nested dict."""
    tree: dict[str, Any] = {}
    if not overrides:
        return tree
    items = (overrides if isinstance(overrides, list)
             else [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip()}"
                   .removesuffix("\n...") for k, v in overrides.items()])
    for text in items:
        tree = deep_merge(tree, parse_override(text))
    return tree


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in err.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {field}: unknown key")
        else:
            lines.append(f"  {field}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def build_config(tree: dict[str, Any], source: str = "configuration") -> MednConfig:
    """Apply the profile named in ``tree`` (default ``quick``) under ``tree``, then validate."""
    profile = tree.get("profile", "quick")
    if profile not in PROFILES:
        raise ConfigError(f"profile: unknown profile {profile!r}; "
                          f"allowed: {', '.join(PROFILES)}")
    merged = deep_merge(PROFILES[profile], tree)
    merged["profile"] = profile
    try:
        return MednConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (``yaml.safe_load``), with a clear error naming the file."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of configuration keys at the top level")
    return data


def load_config(profile: str | None = None, config_file: Path | None = None,
                overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> MednConfig:
    """The configuration from a profile, an optional base tree, a YAML file and ``--set`` items.

    Later sources win: profile < ``base`` < YAML file < overrides. ``profile`` given here wins
    over one named in the file.
    """
    tree: dict[str, Any] = deep_merge({}, base or {})
    source = "defaults"
    if config_file is not None:
        tree = deep_merge(tree, load_yaml(config_file))
        source = str(config_file)
    tree = deep_merge(tree, overrides_to_tree(overrides))
    if profile is not None:
        tree["profile"] = profile
    if overrides:
        source += " + --set " + " ".join(overrides)
    return build_config(tree, source)
