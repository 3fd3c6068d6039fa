"""The one validated configuration of a MEDN training: data, model, loss, optimiser, profile.

Where to change things:
- a loss weight: ``LossConfig`` (``loss.lambda_au``, ``loss.lambda_orth``) or ``--set``;
- a size the paper does not give (embedding width, depth, heads, patch size): ``ModelConfig``;
- a motion backbone's own settings: its config class (``LEDConfig``, ``ResNetConfig``,
  ``ViTConfig``), chosen by ``model.motion.backbone`` (a pydantic discriminated union);
- what a profile means: ``PROFILES`` (and each backbone's ``profile_values``) below;
- which settings are not the paper's: ``SWITCHES`` and ``deviations(cfg)``.

The defaults of every class are the ``paper`` profile: what the paper states, plus our
documented choices where it is silent (docs/model.md). A configuration is built as: the
profile's values, then a YAML file, then ``key=value`` overrides (``load_config``). Unknown
keys, bad values and non-finite numbers are errors naming the field.
"""

from __future__ import annotations

import copy
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DatasetName = Literal["synth", "casme2", "samm", "casme3a"]
ProfileName = Literal["smoke", "quick", "quick-paper", "stable", "paper"]


# Upper bounds of the integer sizes a user sets: far above any setting of the paper or of a
# profile (300 epochs, batch 128, 144 px, T = 8, ViT-B widths), low enough that a typo
# (``epochs: 3000000``) is an error naming the field, never a run that trains for ever or
# asks for terabytes.
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 65_536
MAX_FRAMES = 1024
MAX_SIZE = 2048
MAX_WIDTH = 16_384  # channels, hidden and token widths
MAX_DEPTH = 256  # blocks, heads
MAX_SEED = 2**32 - 1  # NumPy's legacy seed range; torch takes it too
MAX_SYNTH_SUBJECTS = 1000  # the full synth profile has 94 subjects


class _Strict(BaseModel):
    # allow_inf_nan=False: ``--set optim.lr=.inf`` is an error naming the field, not a run
    # that logs loss 1.8e308 and reports itself complete
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class DataConfig(_Strict):
    """Which data, which label protocol, and how clips are preprocessed."""

    dataset: DatasetName = "synth"
    task: Literal[3, 4, 5, 7] = 3
    annotations: Path | None = None
    data_root: Path | None = None
    frames: int = Field(8, ge=2, le=MAX_FRAMES,
                        description="T: frames sampled uniformly from onset to offset")
    size: int = Field(144, ge=16, le=MAX_SIZE,
                      description="H = W of the aligned face crop and its flow")
    cache_dir: Path = Path(".medn_cache")
    synth_profile: Literal["smoke", "quick", "full"] = "quick"
    synth_subjects: int | None = Field(None, ge=2, le=MAX_SYNTH_SUBJECTS)
    synth_seed: int = Field(0, ge=0, le=MAX_SEED)
    synth_hard_share: float = Field(
        0.85, ge=0.0, le=1.0,
        description="synth: share of clips whose exact AU set also occurs with another emotion")
    au_min_count: int = Field(
        10, ge=1, le=1_000_000,
        description="an AU enters the AU head when at least this many clips show it")


# ---------------------------------------------------------------------------------------------
# Motion backbones: one config class each, discriminated by ``backbone``.
# ---------------------------------------------------------------------------------------------

class BackboneConfig(_Strict):
    """What every motion-backbone configuration has: its registry name ``backbone``.

    A subclass narrows ``backbone`` to its name(s) with a ``Literal`` and may give
    ``profile_values`` (its fields' values per profile, e.g. smaller widths for ``quick``) and
    ``problems`` (checks that need the rest of the configuration). Subclasses defined in this
    module join the ``model.motion`` union automatically (``backbone_config_classes``).
    """

    backbone: str
    profile_values: ClassVar[dict[str, dict[str, Any]]] = {}

    @property
    def uses_frames(self) -> bool:
        """Whether the backbone reads the aligned frames rather than the flows."""
        return False

    def problems(self, cfg: MednConfig) -> list[str]:
        """Reasons this backbone cannot be built with ``cfg`` (one line each, naming the field)."""
        del cfg
        return []


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


class LEDConfig(BackboneConfig):
    """LED (Learnable Eulerian Dynamics, ref. [42]) as its authors built it (tvaranka/meb,
    ``experiments/benchmarks/LED.ipynb``): the learnable Eulerian filter, two 3D conv layers each
    followed by BN and Dropout3d, an MLP with dropout. The paper's default motion branch."""

    backbone: Literal["led"] = "led"
    width: int = Field(32, ge=1, le=MAX_WIDTH,
                       description="channels of the first 3D conv (the second has "
                       "twice as many); 32 and 64 in the original")
    led_input: Literal["frames", "flow"] = Field(
        "frames", description="what LED filters: 'frames' = the T aligned grayscale frames, as "
        "the original LED and the paper's §V-B3 ('when using LED, we follow the original paper "
        "and take the micro-expression video sequence as input directly'); 'flow' = the T-1 "
        "flows of Fig. 3, with a zero-motion frame (the onset against itself) prepended so "
        "that all T-1 flows reach the 3D convs")
    led_zero_frame: bool = Field(
        True, description="led_input=flow: prepend a zero-motion frame (the onset against "
        "itself), so that all T-1 flows reach the 3D convs (the filter passes its first input "
        "through and the network drops that copy); false = the flows as they are: flow 0 is "
        "then the reference, whose own copy is dropped and which enters the later frames only "
        "through the filter")
    led_denominator: Literal["signed", "abs"] = Field(
        "signed", description="the filter's normaliser: 'signed' = x|W| + 1 as in the original "
        "(exact for frames, x >= 0); 'abs' = |x||W| + 1 (never 0 on signed flow; a stabiliser)")
    led_grid: int = Field(
        4, ge=1, le=MAX_DEPTH,
        description="the 3D-conv map is average-pooled to this GxG grid before the "
        "MLP (the original flattened a 9x9 map of 64x64 input; pooling keeps 144x144 sane)")
    led_drop_first: bool = Field(
        True, description="drop the first (unfiltered, passed-through) frame before the 3D "
        "convs, as the original LED does")
    led_dropout3d: float = Field(
        0.5, ge=0.0, lt=1.0, description="Dropout3d after each batch norm of the conv stack "
        "(0.5 in the original)")
    led_head_dropout: float = Field(
        0.5, ge=0.0, lt=1.0, description="dropout between the MLP's layers (0.5 in the original)")
    led_hidden: int = Field(256, ge=1, le=MAX_WIDTH,
                            description="the MLP's hidden width (256 in the original)")
    led_filter_lr: float | None = Field(
        0.1, gt=0.0, le=1.0, description="learning rate of the filter's (alpha, r1, r2), their "
        "own optimiser group (0.1 in the original); null = part of the motion group")
    led_filter_lr_epoch: int = Field(
        50, ge=1, le=MAX_EPOCHS,
        description="the filter group's lr is multiplied by led_filter_lr_decay once, "
        "after this many epochs (50 in the original)")
    led_filter_lr_decay: float = Field(0.1, gt=0.0, le=1.0)

    profile_values: ClassVar[dict[str, dict[str, Any]]] = {
        "stable": {"led_denominator": "abs"},
        # quick keeps the LED the synth quick run was tuned and measured with (on the flows, no
        # zero frame, |x||W| + 1, no Dropout3d, dropout 0.1, the filter in the motion group):
        # measured on synth quick, pooled UF1 0.42 with it, 0.19 with the original's values and
        # the zero frame, 0.26 with the zero frame alone, 0.24 with the values alone
        # (docs/model.md). smoke keeps the original's values (it only has to run).
        "quick": {"width": 8, "led_hidden": 64, "led_denominator": "abs", "led_input": "flow",
                  "led_zero_frame": False, "led_dropout3d": 0.0, "led_head_dropout": 0.1,
                  "led_filter_lr": None},
        "quick-paper": {"width": 8, "led_hidden": 64},
        "smoke": {"width": 4, "led_hidden": 32, "led_denominator": "abs", "led_input": "flow"},
    }

    @property
    def uses_frames(self) -> bool:
        """True when LED filters the aligned frames (``led_input: frames``)."""
        return self.led_input == "frames"

    def min_frames(self) -> int:
        """The fewest T (sampled frames) the conv stack accepts: LED filters T frames (or the
        T-1 flows, behind a zero frame unless ``led_zero_frame`` is off), drops the first if
        ``led_drop_first``, and conv t=2 then pool t=2 need at least 3 left."""
        missing = int(self.led_input == "flow" and not self.led_zero_frame)
        return 3 + int(self.led_drop_first) + missing

    def problems(self, cfg: MednConfig) -> list[str]:
        """T must leave the 3D convs at least one time step."""
        need = self.min_frames()
        if cfg.data.frames < need:
            return [f"data.frames: the led backbone needs at least {need} frames, "
                    f"got {cfg.data.frames}"]
        return []


class ResNetConfig(BackboneConfig):
    """ResNet-18/34 over the onset->apex flow (Table VII); standard width 64."""

    backbone: Literal["resnet18", "resnet34"] = "resnet18"
    width: int = Field(64, ge=1, le=MAX_WIDTH,
                       description="base channel width (64 in the standard ResNet)")

    profile_values: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"width": 8}, "quick-paper": {"width": 8}, "smoke": {"width": 4},
    }


class ViTConfig(BackboneConfig):
    """ViT-B/16 over the onset->apex flow (Table VII)."""

    backbone: Literal["vit_b16"] = "vit_b16"
    vit_dim: int = Field(768, ge=8, le=MAX_WIDTH, description="token width (768 in ViT-B/16)")
    vit_depth: int = Field(12, ge=1, le=MAX_DEPTH, description="blocks (12 in ViT-B/16)")
    vit_heads: int = Field(12, ge=1, le=MAX_DEPTH, description="heads (12 in ViT-B/16)")
    vit_patch: int = Field(16, ge=1, le=MAX_SIZE, description="patch size (16 in ViT-B/16)")

    profile_values: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {"vit_dim": 48, "vit_depth": 2, "vit_heads": 2, "vit_patch": 12},
        "quick-paper": {"vit_dim": 48, "vit_depth": 2, "vit_heads": 2, "vit_patch": 12},
        "smoke": {"vit_dim": 16, "vit_depth": 1, "vit_heads": 2, "vit_patch": 8},
    }

    def problems(self, cfg: MednConfig) -> list[str]:
        """The patch must tile the crop, the heads must divide the width."""
        out = []
        if cfg.data.size % self.vit_patch:
            out.append(f"model.motion.vit_patch: {self.vit_patch} does not divide data.size "
                       f"{cfg.data.size}; allowed: {_divisors(cfg.data.size)}")
        if self.vit_dim % self.vit_heads:
            out.append(f"model.motion.vit_heads: {self.vit_heads} heads do not divide "
                       f"model.motion.vit_dim {self.vit_dim}; allowed: {_divisors(self.vit_dim)}")
        return out


def backbone_config_classes() -> dict[str, type[BackboneConfig]]:
    """Every backbone name -> its config class (the subclasses of ``BackboneConfig``)."""
    out: dict[str, type[BackboneConfig]] = {}
    for cls in BackboneConfig.__subclasses__():
        for name in get_args(cls.model_fields["backbone"].annotation):
            if name in out:
                raise TypeError(f"backbone {name!r} has two config classes: "
                                f"{out[name].__name__} and {cls.__name__}")
            out[name] = cls
    return out


MotionConfig = Annotated[
    Union[tuple(dict.fromkeys(backbone_config_classes().values()))],  # noqa: UP007
    Field(discriminator="backbone"),
]


class EmotionConfig(_Strict):
    """The emotion branch SEVit (eq. 2-4)."""

    sparsity_rates: list[int] = Field(default_factory=lambda: [1, 2, 4, 8], min_length=1)
    grouping: Literal["contiguous", "strided"] = Field(
        "contiguous", description="how eq. 2 groups the G x G token grid into s^2 sub-tensors: "
        "'contiguous' = s x s blocks of neighbouring tokens (the text: 'divide the features "
        "sequentially into s^2 non-overlapping sub-tensors'); 'strided' = tokens s apart, each "
        "group spanning the whole face (the grouping of SparseViT, ref. [40], which the text "
        "cites). Both equal the plain ViT at s = 1")
    patch_size: int = Field(9, ge=1, le=MAX_SIZE,
                            description="spatial patch size; 144/9 = a 16x16 token grid")
    depth: int = Field(2, ge=1, le=MAX_DEPTH, description="transformer blocks per sparsity branch")
    heads: int = Field(4, ge=1, le=MAX_DEPTH)
    mlp_ratio: float = Field(2.0, gt=0, le=64.0)
    pool: Literal["mean", "time"] = Field(
        "mean", description="how a branch's tokens become F_k (the paper does not say): 'time' "
        "averages each frame's tokens and maps the T' frame vectors, concatenated, to D (the "
        "time course is kept); 'mean' averages all tokens")

    @field_validator("sparsity_rates")
    @classmethod
    def _positive(cls, rates: list[int]) -> list[int]:
        bad = [r for r in rates if not 1 <= r <= MAX_SIZE]
        if bad:
            raise ValueError(f"sparsity rates must be positive integers up to {MAX_SIZE}, "
                             f"got {bad}")
        return rates


class FusionConfig(_Strict):
    """How F_m and F_e are fused: CoFM (eq. 9-14) or the weighted sum of ablation No.3."""

    kind: Literal["cofm", "weighted_sum"] = "cofm"
    tokens: int = Field(4, ge=1, le=MAX_WIDTH,
                        description="CoFM views each D-vector as this many tokens")
    heads: int = Field(2, ge=1, le=MAX_DEPTH)
    residual: bool = Field(
        False, description="CoFM: F'_m = F_perp_m + MHA(F_perp_m, F_col,m) (likewise e), the usual "
        "transformer residual (a stabiliser; eq. 14's F' is the bare MHA output)")


class ModelConfig(_Strict):
    """MEDN's sizes and parts. ``dim`` is D, the width of F_m, F_e and F_fusion."""

    dim: int = Field(128, ge=4, le=MAX_WIDTH)
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="before the classifier")
    input_norm: Literal["none", "clip_rms", "fixed"] = Field(
        "none", description="how MEDN scales its input flows (the paper does not say): "
        "'clip_rms' scales each clip so that its own flows have root-mean-square "
        "model.input_scale (no other clip is looked at), 'fixed' multiplies every flow by "
        "model.input_scale, 'none' leaves them as computed (see docs/model.md for measurements)")
    input_scale: float = Field(
        1.0, gt=0.0, le=1e6, description="the target RMS of 'clip_rms', the factor of 'fixed'")
    feature_norm: Literal["none", "layer"] = Field(
        "none", description="'layer': a LayerNorm without learnable gain or bias at the end of "
        "the motion branch (F_m, before the AU head) and of every SEVit branch (F_k), a "
        "stabiliser the paper does not have. It keeps |F| at sqrt(D): without it the AU and "
        "orthogonal losses inflate |F_m| and |F_e| and the classification gradient through "
        "eq. 5 (F / |F|) shrinks with 1 / |F|")
    head_norm: bool = Field(
        False, description="LayerNorm on F_fusion before dropout + the linear classifier, a "
        "stabiliser (F_perp has norm <= 1, so without a norm the logits start tiny)")
    motion: MotionConfig = Field(default_factory=LEDConfig)
    emotion: EmotionConfig = Field(default_factory=EmotionConfig)
    fusion: FusionConfig = Field(default_factory=FusionConfig)


class LossConfig(_Strict):
    """L_total = L_cls + lambda_au * L_au + lambda_orth * L_orth (eq. 16)."""

    lambda_au: float = Field(1.0, ge=0.0, le=1000.0)
    lambda_orth: float = Field(1.0, ge=0.0, le=1000.0)
    focal_gamma: float = Field(2.0, ge=0.0, le=10.0)
    orth_eps: float = Field(1e-6, gt=0.0, le=1.0)
    orth_form: Literal["paper", "cosine"] = Field(
        "paper", description="eq. 8: 'paper' = D <F_perp_m, F_perp_e>^2 as printed, which is "
        "D alpha^2 (1 - alpha^2)^2 for alpha = cos(F_m, F_e) (zero for collinear features too); "
        "'cosine' = D alpha^2 (zero only for orthogonal features)")


class OptimConfig(_Strict):
    """AdamW and the motion branch's step decay (paper §IV-D)."""

    lr: float = Field(1e-4, gt=0.0, le=1.0)
    weight_decay: float = Field(1e-3, ge=0.0, le=1.0)
    batch_size: int = Field(128, ge=1, le=MAX_BATCH_SIZE)
    epochs: int = Field(300, ge=1, le=MAX_EPOCHS,
                        description="300 is OUR assumption: the paper gives no "
                        "number of epochs (it decays the motion lr 'every 100 epochs')")
    motion_lr_step: int = Field(100, ge=1, le=MAX_EPOCHS,
                                description="epochs between motion-branch lr decays")
    motion_lr_decay: float = Field(0.1, gt=0.0, le=1.0)
    sampling: Literal["shuffle", "balanced"] = Field(
        "shuffle", description="how an epoch's training clips are drawn: 'shuffle' = each once; "
        "'balanced' = with replacement, each class about equally often (a stabiliser: the "
        "paper's loss, eq. 15, has no class weights and it does not say how it sampled)")
    standardize_flows: bool = Field(
        False, description="divide every fold's flows by the standard deviation of its TRAINING "
        "clips' flows (one scalar per fold; the held-out subject is not looked at)")


class MednConfig(_Strict):
    """A whole training configuration."""

    profile: ProfileName = "quick"
    seed: int = Field(0, ge=0, le=MAX_SEED)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)

    def flat(self) -> dict[str, Any]:
        """Every resolved parameter as ``{"model.emotion.depth": 2, ...}`` (for MLflow params)."""
        return flatten_tree(self.model_dump(mode="json"))


# ---------------------------------------------------------------------------------------------
# Profiles. The class defaults above ARE the paper profile; the others change only what they
# list (nested dicts; a backbone's own values are in its ``profile_values``).
# ---------------------------------------------------------------------------------------------

# The stabilisers added so that MEDN learns on small data (synth): each is a switch that the
# paper profile leaves off. ``stable`` = paper + these.
STABILISERS: dict[str, Any] = {
    "model": {"feature_norm": "layer", "head_norm": True, "fusion": {"residual": True}},
    "optim": {"sampling": "balanced"},
}

_QUICK_SIZES: dict[str, Any] = {
    "data": {"size": 48, "synth_profile": "quick"},
    "model": {"dim": 32, "emotion": {"patch_size": 6, "depth": 1, "heads": 2}},
    # Measured on synth quick (78 clips, 8 subjects, 3 classes 51/7/20), one CPU thread:
    # ~7.5 s per fold; full MEDN pooled UF1 ~0.39-0.40 (majority class: 0.26; docs/model.md).
    "optim": {"lr": 4e-3, "batch_size": 8, "epochs": 12},
}

_SMOKE_SIZES: dict[str, Any] = {
    "data": {"size": 32, "synth_profile": "smoke"},
    "model": {"dim": 16, "emotion": {"patch_size": 4, "depth": 1, "heads": 2},
              "fusion": {"tokens": 2}},
    "optim": {"lr": 1e-3, "batch_size": 16, "epochs": 2, "sampling": "shuffle"},
}


def _merged(*trees: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tree in trees:
        out = deep_merge(out, tree)
    return out


PROFILES: dict[str, dict[str, Any]] = {}  # filled below, once deep_merge is defined


@dataclass(frozen=True)
class Switch:
    """A setting on which a configuration may depart from the paper: its dotted ``key``, what
    it does when changed, and what the paper says (for ``docs/model.md`` and reports)."""

    key: str
    what: str
    paper: str


SWITCHES: tuple[Switch, ...] = (
    Switch("model.feature_norm", "LayerNorm (no gain/bias) ending the motion branch and every "
           "SEVit branch", "none: F_m and F_k go straight into eq. 5"),
    Switch("model.head_norm", "LayerNorm on F_fusion before the classifier",
           "none: 'The fused feature F_fusion for final classification prediction'"),
    Switch("model.fusion.residual", "F' = F_perp + MHA(...) in CoFM",
           "eq. 14 fuses the MHA outputs F'_m, F'_e; no residual is described"),
    Switch("optim.sampling", "class-balanced sampling with replacement",
           "not described; focal loss (eq. 15) 'to alleviate the severe sample imbalance'"),
    Switch("optim.standardize_flows", "flows divided by the training clips' std",
           "not described"),
    Switch("model.input_norm", "per-clip or fixed rescaling of the flows", "not described"),
    Switch("model.motion.led_denominator", "LED normaliser |x||W| + 1 instead of x|W| + 1",
           "LED as in ref. [42], whose code divides by x|W| + 1"),
    Switch("model.motion.led_input", "LED on the flow sequence instead of the frames",
           "§V-B3: 'when using LED, we follow the original paper and take the micro-expression "
           "video sequence as input directly' (Fig. 3 draws flow)"),
    Switch("model.motion.led_zero_frame", "LED on flows without the zero-motion frame: the "
           "first flow is the filter's reference, its own copy dropped before the convs",
           "not described (LED's original input is frames, whose first is the onset)"),
    Switch("model.motion.led_dropout3d", "Dropout3d rate after LED's batch norms",
           "LED as in ref. [42]: Dropout3d(0.5)"),
    Switch("model.motion.led_head_dropout", "dropout rate in LED's MLP",
           "LED as in ref. [42]: dropout 0.5"),
    Switch("model.motion.led_filter_lr", "learning rate of LED's (alpha, r1, r2)",
           "LED as in ref. [42]: their own group, lr 0.1, x0.1 at epoch 50"),
    Switch("model.emotion.grouping", "SEVit groups tokens s apart (SparseViT) instead of in "
           "contiguous windows",
           "eq. 2: 'divide the features sequentially into s^2 non-overlapping sub-tensors' "
           "N_i of size T x H/s x W/s"),
    Switch("loss.orth_form", "L_orth = D alpha^2 instead of eq. 8 as printed",
           "eq. 8: L_orth = D <F_perp_m, F_perp_e>^2"),
)


def _lookup(tree: dict[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def paper_value(key: str, backbone: str | None = None) -> Any:
    """The value of dotted ``key`` in the ``paper`` profile (for ``backbone``'s motion keys)."""
    tree = {"profile": "paper"}
    if backbone is not None:
        tree["model"] = {"motion": {"backbone": backbone}}
    found, value = _lookup(build_config(tree).model_dump(mode="json"), key)
    if not found:
        raise KeyError(f"{key}: not a key of the paper profile's configuration")
    return value


def deviations(cfg: MednConfig) -> list[str]:
    """The non-paper switches ``cfg`` uses, as ``"key=value"`` in ``SWITCHES`` order (empty for
    the paper profile). Sizes (widths, epochs, lr) are not listed: they are in the params."""
    ours = cfg.model_dump(mode="json")
    paper = build_config({"profile": "paper", "model": {
        "motion": {"backbone": cfg.model.motion.backbone}}}).model_dump(mode="json")
    out = []
    for switch in SWITCHES:
        found, value = _lookup(ours, switch.key)
        if found and value != _lookup(paper, switch.key)[1]:
            out.append(f"{switch.key}={_format(value)}")
    return out


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return str(value)


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


PROFILES.update({
    "paper": {},
    "stable": _merged(STABILISERS),
    "quick": _merged(STABILISERS, _QUICK_SIZES),
    # the paper's switches at quick's sizes: quick and quick-paper differ only by the switches
    "quick-paper": _merged(_QUICK_SIZES),
    "smoke": _merged(STABILISERS, _SMOKE_SIZES),
})


# The profiles whose models are small enough that one CPU thread is fastest (a quick fold costs
# ~7x more CPU time on two threads than on one): for executors choosing torch's thread count.
SMALL_PROFILES: tuple[str, ...] = ("smoke", "quick", "quick-paper")


def section_models(annotation: Any) -> list[type[BaseModel]]:
    """The configuration classes a field's annotation holds: ``[DataConfig]`` for a section,
    every backbone class for the ``model.motion`` union, ``[]`` for a value."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) is Annotated:
        return section_models(get_args(annotation)[0])
    members = [a for a in get_args(annotation)
               if isinstance(a, type) and issubclass(a, BaseModel)]
    return members if get_origin(annotation) is Union and members else []


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
    backbones = backbone_config_classes()
    for item in err.errors():
        loc = list(item["loc"])
        backbone = None
        # the motion union puts the backbone's tag into the location: model.motion.led.width
        if loc[:2] == ["model", "motion"] and len(loc) > 2 and loc[2] in backbones:
            backbone = str(loc.pop(2))
        field = ".".join(str(p) for p in loc) or "(top level)"
        if item["type"] == "extra_forbidden":
            hint = ""
            if backbone is not None:
                known = [k for k in backbones[backbone].model_fields if k != "backbone"]
                hint = f" for backbone {backbone!r} (its keys: {', '.join(known)})"
            lines.append(f"  {field}: unknown key{hint}")
        elif item["type"] in ("union_tag_invalid", "union_tag_not_found"):
            lines.append(f"  {field}.backbone: unknown backbone "
                         f"{item.get('ctx', {}).get('tag', '?')!r}; "
                         f"allowed: {', '.join(sorted(backbones))}")
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
    _apply_backbone_profile(merged, profile)
    try:
        return MednConfig.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def _apply_backbone_profile(tree: dict[str, Any], profile: str) -> None:
    """Put the chosen backbone's own ``profile_values`` under ``tree["model"]["motion"]`` (the
    user's keys win) and name the backbone (the union's discriminator; default ``led``)."""
    model = tree.get("model")
    if model is None:
        model = tree["model"] = {}
    if not isinstance(model, dict):
        return  # pydantic reports the bad section
    motion = model.get("motion")
    if motion is None:
        motion = model["motion"] = {}
    if not isinstance(motion, dict):
        return
    name = motion.setdefault("backbone", "led")
    cls = backbone_config_classes().get(name) if isinstance(name, str) else None
    if cls is not None:
        model["motion"] = deep_merge(cls.profile_values.get(profile, {}), motion)


MAX_CONFIG_BYTES = 1024 * 1024


class NoAliasLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing aliases (``*name``): nested aliases can make a small file
    stand for billions of values (a "billion laughs" document); and refusing a key given twice
    in one mapping, which would silently keep only its last value. For configurations and
    study specs."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose the next node; an alias is a ``ComposerError`` naming it and its place."""
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed here; write the "
                "values out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        """Construct a mapping; a key given twice is a ``ConstructorError`` naming both lines."""
        seen: dict[Any, Any] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"the key {key!r} is given twice (first on line "
                    f"{seen[key].start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep)


def read_yaml_file(path: Path, max_bytes: int, kind: str) -> Any:
    """The YAML document in ``path`` (``NoAliasLoader``), or a ``ConfigError`` ``"PATH: why"``:
    ``path`` must be a regular UTF-8 file of at most ``max_bytes`` (a folder, a FIFO or
    ``/dev/zero`` is an error, never a traceback or a hang). ``kind`` names what the file
    should be, e.g. ``"a YAML configuration file"``."""
    path = Path(path)
    try:
        info = path.stat()
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory; expected {kind}")
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file; expected {kind}")
        if info.st_size > max_bytes:
            raise ConfigError(f"{path}: {info.st_size} bytes; {kind} may have at most "
                              f"{max_bytes}")
        raw = path.read_bytes()[:max_bytes + 1]
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (a broken symlink?); expected {kind}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                          f"{err.start})") from None
    try:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None


def load_yaml(path: Path) -> dict[str, Any]:
    """A configuration mapping from ``path`` (``read_yaml_file``, at most
    ``MAX_CONFIG_BYTES``), with a clear error naming the file."""
    data = read_yaml_file(path, MAX_CONFIG_BYTES, "a YAML configuration file")
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
