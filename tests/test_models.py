"""The MEDN network and its parts: shapes, gradients, LED filter, SEVit windows, config errors."""

from __future__ import annotations

import math

import pytest
import torch

from medn.config import ConfigError, MednConfig, load_config
from medn.losses import medn_loss
from medn.models import (
    MEDN,
    SEVit,
    SparseVideoViT,
    VideoViT,
    backbone_names,
    build_model,
    count_parameters,
    create_backbone,
    validate_model_config,
)
from medn.models.cofm import CoFM
from medn.models.led import LEDFilter

NUM_CLASSES, NUM_AUS, BATCH = 3, 5, 4


def smoke_cfg(*overrides: str) -> MednConfig:
    return load_config(profile="smoke", overrides=list(overrides))


def inputs(cfg: MednConfig, batch: int = BATCH, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.data.frames - 1, cfg.data.size
    flows = torch.randn(batch, t, 2, s, s, generator=g)
    apex = torch.randint(0, t, (batch,), generator=g)
    labels = torch.arange(batch) % NUM_CLASSES
    aus = (torch.rand(batch, NUM_AUS, generator=g) > 0.5).float()
    return flows, apex, labels, aus


def built(cfg: MednConfig, seed: int = 0) -> MEDN:
    torch.manual_seed(seed)
    return build_model(cfg, num_classes=NUM_CLASSES, num_aus=NUM_AUS)


def test_backbones_are_registered_by_name():
    assert set(backbone_names()) >= {"led", "resnet18", "resnet34", "vit_b16"}
    with pytest.raises(ValueError, match="unknown backbone 'vgg'.*allowed: led"):
        create_backbone("vgg", smoke_cfg())


@pytest.mark.parametrize("name", ["led", "resnet18", "resnet34", "vit_b16"])
def test_every_backbone_gives_f_m_of_width_d(name):
    cfg = smoke_cfg(f"model.motion.backbone={name}")
    torch.manual_seed(0)
    backbone = create_backbone(name, cfg)
    flows, apex, _, _ = inputs(cfg)
    out = backbone(flows, apex)
    assert out.shape == (BATCH, cfg.model.dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet18", "vit_b16"])
def test_single_flow_backbones_read_only_the_apex_flow(name):
    cfg = smoke_cfg(f"model.motion.backbone={name}")
    torch.manual_seed(0)
    backbone = create_backbone(name, cfg).eval()
    flows, _, _, _ = inputs(cfg)
    apex = torch.tensor([0, 1, 2, 3])
    changed = flows.clone()
    changed[:, 5] += 10.0  # a frame that is no clip's apex
    other = flows.clone()
    other[0, 0] += 10.0    # clip 0's apex
    with torch.no_grad():
        base = backbone(flows, apex)
        assert torch.equal(backbone(changed, apex), base)
        moved = backbone(other, apex)
    assert not torch.allclose(moved[0], base[0])
    assert torch.equal(moved[1:], base[1:])


@pytest.mark.parametrize(("backbone", "fusion"), [
    ("led", "cofm"), ("led", "weighted_sum"), ("resnet18", "cofm"), ("resnet34", "cofm"),
    ("vit_b16", "cofm"),
])
def test_medn_shapes_and_every_parameter_gets_a_gradient(backbone, fusion):
    cfg = smoke_cfg(f"model.motion.backbone={backbone}", f"model.fusion.kind={fusion}")
    model = built(cfg)
    flows, apex, labels, aus = inputs(cfg)
    out = model(flows, apex)
    assert out.logits.shape == (BATCH, NUM_CLASSES)
    assert out.au_logits.shape == (BATCH, NUM_AUS)
    assert out.f_m.shape == out.f_e.shape == (BATCH, cfg.model.dim)
    medn_loss(out, labels, aus, cfg.loss).total.backward()
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert missing == []


def test_motion_and_other_parameters_partition_the_model():
    model = built(smoke_cfg())
    motion = {id(p) for p in model.motion_parameters()}
    other = {id(p) for p in model.other_parameters()}
    assert motion.isdisjoint(other)
    assert motion | other == {id(p) for p in model.parameters()}
    assert {id(p) for p in model.au_head.parameters()} <= motion
    assert {id(p) for p in model.emotion.parameters()} <= other
    counts = count_parameters(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())


def test_half_precision_flows_are_accepted_and_bf16_autocast_runs():
    cfg = smoke_cfg()
    model = built(cfg)
    flows, apex, labels, aus = inputs(cfg)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = model(flows.half(), apex)
        parts = medn_loss(out, labels, aus, cfg.loss)
    assert parts.total.dtype == torch.float32
    parts.total.backward()
    assert torch.isfinite(parts.total)


def test_same_seed_gives_identical_outputs_and_updates():
    cfg = smoke_cfg()
    flows, apex, labels, aus = inputs(cfg)
    results = []
    for _ in range(2):
        model = built(cfg, seed=7)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        torch.manual_seed(1)  # dropout masks
        for _ in range(2):
            opt.zero_grad()
            medn_loss(model(flows, apex), labels, aus, cfg.loss).total.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            results.append(model(flows, apex).logits)
    assert torch.equal(results[0], results[1])
    other = built(cfg, seed=8).eval()
    with torch.no_grad():
        assert not torch.equal(other(flows, apex).logits, results[0])


# --- LED ------------------------------------------------------------------------------------

def test_led_filter_matrix_matches_hand_computed_3x3():
    # alpha = 10, r1 = 0.4, r2 = 0.05 (the initial values); row = input frame, column = output.
    w = LEDFilter().matrix(3)
    expected = torch.tensor([
        [10 * 0.35, 10 * 0.6 - 10 * 0.95, 10 * 0.36 - 10 * 0.9025],
        [0.0, 10 * 0.35, 10 * 0.6 * 0.4 - 10 * 0.95 * 0.05],
        [0.0, 0.0, 10 * 0.35],
    ])
    torch.testing.assert_close(w, expected, rtol=1e-5, atol=1e-5)


def test_led_filter_output_matches_hand_computed_values():
    led = LEDFilter(denominator="abs")
    x = torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1, 1)
    out = led(x).flatten()
    # frame 1: (1*-3.5 + -2*3.5) / (1*3.5 + 2*3.5 + 1)
    # frame 2: (1*-5.425 + -2*1.925 + 3*3.5) / (5.425 + 2*1.925 + 3*3.5 + 1)
    expected = torch.tensor([1.0, -10.5 / 11.5, (-5.425 - 3.85 + 10.5) / (5.425 + 3.85 + 10.5 + 1)])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_led_parameters_are_logs_and_learnable():
    led = LEDFilter()
    assert math.isclose(led.log_alpha.exp().item(), 10.0, rel_tol=1e-6)
    assert math.isclose(led.log_r1.exp().item(), 0.4, rel_tol=1e-6)
    assert math.isclose(led.log_r2.exp().item(), 0.05, rel_tol=1e-6)
    led(torch.randn(2, 4, 2, 3, 3)).sum().backward()
    assert all(p.grad is not None and p.grad.abs() > 0 for p in led.parameters())


# --- SEVit ----------------------------------------------------------------------------------

def sevit_kwargs(cfg: MednConfig) -> dict:
    e = cfg.model.emotion
    return dict(frames=cfg.data.frames - 1, size=cfg.data.size, patch=e.patch_size,
                dim=cfg.model.dim, depth=e.depth, heads=e.heads, mlp_ratio=e.mlp_ratio,
                out_dim=cfg.model.dim)


def test_sevit_with_rate_1_equals_the_plain_vit_path():
    cfg = smoke_cfg("model.emotion.depth=2")
    torch.manual_seed(0)
    sevit = SEVit(rates=[1], **sevit_kwargs(cfg))
    plain = VideoViT(**sevit_kwargs(cfg))
    plain.load_state_dict(sevit.branches[0].state_dict())
    flows, _, _, _ = inputs(cfg)
    torch.testing.assert_close(sevit(flows), sevit.gamma[0] * plain(flows), rtol=1e-6, atol=1e-6)
    assert sevit.gamma.tolist() == [1.0]


def test_sevit_attends_each_window_on_its_own():
    cfg = smoke_cfg()  # 32 / 4 = an 8x8 grid
    torch.manual_seed(0)
    branch = SparseVideoViT(rate=2, **sevit_kwargs(cfg))
    tokens = torch.randn(2, cfg.data.frames - 1, 64, cfg.model.dim)
    out = branch.attend(tokens)
    grid = tokens.view(2, -1, 8, 8, cfg.model.dim)
    out_grid = out.view(2, -1, 8, 8, cfg.model.dim)
    for wy in range(2):
        for wx in range(2):
            window = grid[:, :, 4 * wy:4 * wy + 4, 4 * wx:4 * wx + 4]
            alone = branch.blocks(window.reshape(2, -1, cfg.model.dim)).view_as(window)
            torch.testing.assert_close(out_grid[:, :, 4 * wy:4 * wy + 4, 4 * wx:4 * wx + 4],
                                       alone, rtol=1e-5, atol=1e-5)


def test_sevit_has_one_branch_per_rate_and_gamma_starts_at_1_over_k():
    cfg = smoke_cfg("model.emotion.sparsity_rates=[1,1,2,2,4,4,8,8]")
    model = built(cfg)
    assert [b.rate for b in model.emotion.branches] == [1, 1, 2, 2, 4, 4, 8, 8]
    torch.testing.assert_close(model.emotion.gamma.detach(), torch.full((8,), 1 / 8))
    flows, apex, _, _ = inputs(cfg, batch=2)
    assert model(flows, apex).f_e.shape == (2, cfg.model.dim)


# --- CoFM -----------------------------------------------------------------------------------

def test_cofm_weights_are_normalised_and_shapes_kept():
    torch.manual_seed(0)
    cofm = CoFM(dim=16, tokens=4, heads=2)
    perp_m, perp_e = torch.randn(3, 16), torch.randn(3, 16)
    new_m, new_e = cofm.collaborate(perp_m, perp_e)
    w_m, w_e = cofm.weights(new_m, new_e)
    torch.testing.assert_close(w_m + w_e, torch.ones(3, 1))
    torch.testing.assert_close(cofm(perp_m, perp_e), w_m * new_m + w_e * new_e)


def test_cofm_residual_adds_the_orthogonal_features_back():
    torch.manual_seed(0)
    with_res = CoFM(dim=16, tokens=4, heads=2, residual=True)
    bare = CoFM(dim=16, tokens=4, heads=2, residual=False)
    bare.load_state_dict(with_res.state_dict())
    perp_m, perp_e = torch.randn(3, 16), torch.randn(3, 16)
    res_m, res_e = with_res.collaborate(perp_m, perp_e)
    bare_m, bare_e = bare.collaborate(perp_m, perp_e)
    torch.testing.assert_close(res_m, perp_m + bare_m)
    torch.testing.assert_close(res_e, perp_e + bare_e)


def test_paper_silent_choices_can_be_switched_off():
    cfg = smoke_cfg("model.fusion.residual=false", "model.head_norm=false")
    model = built(cfg)
    assert isinstance(model.head_norm, torch.nn.Identity)
    assert model.fusion.residual is False
    flows, apex, labels, aus = inputs(cfg)
    medn_loss(model(flows, apex), labels, aus, cfg.loss).total.backward()
    assert all(p.grad is not None for p in model.parameters())


# --- configuration errors -------------------------------------------------------------------

def test_bad_sparsity_rate_is_a_config_error_naming_the_field():
    cfg = load_config(overrides=["model.emotion.sparsity_rates=[3]"])  # quick: 48 / 6 = 8
    with pytest.raises(ConfigError) as err:
        validate_model_config(cfg)
    message = str(err.value)
    assert "model.emotion.sparsity_rates: rate 3 does not divide the 8x8 token grid" in message
    assert "(data.size 48 / patch_size 6); allowed: 1, 2, 4, 8" in message
    with pytest.raises(ConfigError):
        build_model(cfg, num_classes=3, num_aus=4)


@pytest.mark.parametrize(("override", "field"), [
    ("model.emotion.patch_size=7", "model.emotion.patch_size: 7 does not divide data.size 48"),
    ("model.emotion.heads=3", "model.emotion.heads: 3 heads do not divide model.dim 32"),
    ("model.fusion.tokens=5", "model.fusion.tokens: 5 tokens do not divide model.dim 32"),
    ("model.fusion.heads=3", "model.fusion.heads: 3 heads do not divide the token width"),
    # quick: LED on flows without the zero frame
    ("data.frames=4", "data.frames: the led backbone needs at least 5 frames"),
])
def test_other_bad_sizes_are_config_errors(override, field):
    with pytest.raises(ConfigError, match="invalid model configuration") as err:
        validate_model_config(load_config(overrides=[override]))
    assert field in str(err.value)


def test_vit_patch_is_checked_only_for_the_vit_backbone():
    with pytest.raises(ConfigError, match="model.motion.vit_patch: unknown key for backbone 'led'"):
        load_config(overrides=["model.motion.vit_patch=7"])
    with pytest.raises(ConfigError, match="model.motion.vit_patch: 7 does not divide"):
        validate_model_config(load_config(overrides=["model.motion.vit_patch=7",
                                                     "model.motion.backbone=vit_b16"]))


@pytest.mark.parametrize("profile", ["smoke", "quick", "quick-paper", "stable", "paper"])
def test_profiles_are_valid_model_configurations(profile):
    validate_model_config(load_config(profile=profile))


def test_build_model_needs_classes_and_aus():
    with pytest.raises(ConfigError, match="num_aus"):
        build_model(smoke_cfg(), num_classes=3, num_aus=0)
    with pytest.raises(ConfigError, match="num_classes"):
        build_model(smoke_cfg(), num_classes=1, num_aus=3)


# --- input and feature norms, SEVit pooling (paper-silent choices) --------------------------

def test_clip_rms_gives_every_clip_the_target_rms_whatever_its_amplitude():
    from medn.models.medn import normalize_flows
    flows = torch.randn(3, 4, 2, 8, 8) * torch.tensor([0.05, 1.0, 7.0]).view(3, 1, 1, 1, 1)
    out = normalize_flows(flows, "clip_rms", scale=0.5)
    rms = out.pow(2).mean(dim=(1, 2, 3, 4)).sqrt()
    torch.testing.assert_close(rms, torch.full((3,), 0.5), rtol=1e-4, atol=1e-5)
    # each clip on its own: the first clip's output does not depend on the others
    torch.testing.assert_close(normalize_flows(flows[:1], "clip_rms", scale=0.5), out[:1])
    torch.testing.assert_close(normalize_flows(flows, "fixed", scale=3.0), flows * 3.0)
    assert normalize_flows(flows, "none") is flows
    with pytest.raises(ValueError, match="model.input_norm.*allowed: none, clip_rms, fixed"):
        normalize_flows(flows, "zscore")


def test_model_input_norm_makes_the_model_blind_to_a_clip_amplitude():
    cfg = smoke_cfg("model.input_norm=clip_rms", "model.input_scale=0.3")
    model = built(cfg).eval()
    flows, apex, _, _ = inputs(cfg)
    torch.testing.assert_close(model(flows * 5, apex).logits, model(flows, apex).logits,
                               rtol=1e-4, atol=1e-5)
    plain = built(smoke_cfg("model.input_norm=none")).eval()
    assert not torch.allclose(plain(flows * 5, apex).logits, plain(flows, apex).logits)


def test_layer_feature_norm_keeps_f_m_and_every_f_k_at_norm_sqrt_d():
    cfg = smoke_cfg("model.feature_norm=layer", "model.emotion.sparsity_rates=[1,2]")
    model = built(cfg)
    flows, apex, _, _ = inputs(cfg)
    d = cfg.model.dim
    out = model(flows * 100, apex)
    torch.testing.assert_close(out.f_m.norm(dim=1), torch.full((BATCH,), math.sqrt(d)),
                               rtol=1e-3, atol=1e-3)
    # F_k: at most sqrt(D) (LayerNorm's eps shrinks features whose variance is below ~1e-5)
    per_branch = model.emotion.branch_features(flows * 100)
    assert (per_branch.norm(dim=2) <= math.sqrt(d) + 1e-4).all()
    for branch in model.emotion.branches:
        big = branch.out_norm(torch.randn(BATCH, d) * 1000)
        torch.testing.assert_close(big.norm(dim=1), torch.full((BATCH,), math.sqrt(d)),
                                   rtol=1e-4, atol=1e-4)
    assert not any(p for p in model.motion_norm.parameters())      # no learnable gain/bias
    off = built(smoke_cfg("model.feature_norm=none"))
    assert isinstance(off.motion_norm, torch.nn.Identity)
    assert isinstance(off.emotion.branches[0].out_norm, torch.nn.Identity)


def test_time_pooling_keeps_the_order_of_frames():
    cfg = smoke_cfg("model.emotion.pool=time")
    kwargs = sevit_kwargs(cfg)
    torch.manual_seed(0)
    timed = VideoViT(pool="time", **kwargs)
    assert timed.head.in_features == kwargs["frames"] * kwargs["dim"]
    flows, _, _, _ = inputs(cfg, batch=2)
    # zero the temporal position embedding: then only the pooled layout can tell frame order
    with torch.no_grad():
        timed.pos_temporal.zero_()
    reversed_flows = flows.flip(1)
    assert not torch.allclose(timed(flows), timed(reversed_flows), atol=1e-5)
    torch.manual_seed(0)
    mean = VideoViT(pool="mean", **kwargs)
    with torch.no_grad():
        mean.pos_temporal.zero_()
    torch.testing.assert_close(mean(flows), mean(reversed_flows), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="model.emotion.pool.*allowed: mean, time"):
        VideoViT(pool="max", **kwargs)


# --- SEVit: both readings of eq. 2 -----------------------------------------------------------

def test_strided_groups_take_every_s_th_token_and_attend_on_their_own():
    cfg = smoke_cfg()  # an 8x8 grid
    torch.manual_seed(0)
    branch = SparseVideoViT(rate=2, grouping="strided", **sevit_kwargs(cfg))
    tokens = torch.randn(2, cfg.data.frames - 1, 64, cfg.model.dim)
    out_grid = branch.attend(tokens).view(2, -1, 8, 8, cfg.model.dim)
    grid = tokens.view(2, -1, 8, 8, cfg.model.dim)
    for oy in range(2):
        for ox in range(2):
            group = grid[:, :, oy::2, ox::2]             # spans the whole face
            alone = branch.blocks(group.reshape(2, -1, cfg.model.dim)).view_as(group)
            torch.testing.assert_close(out_grid[:, :, oy::2, ox::2], alone,
                                       rtol=1e-5, atol=1e-5)


def test_both_groupings_equal_the_plain_vit_at_rate_1_and_differ_above():
    cfg = smoke_cfg("model.emotion.depth=2")
    flows, _, _, _ = inputs(cfg)
    torch.manual_seed(0)
    plain = VideoViT(**sevit_kwargs(cfg))
    outputs = {}
    for grouping in ("contiguous", "strided"):
        for rate in (1, 2):
            branch = SparseVideoViT(rate=rate, grouping=grouping, **sevit_kwargs(cfg))
            branch.load_state_dict(plain.state_dict())
            outputs[grouping, rate] = branch(flows)
    torch.testing.assert_close(outputs["strided", 1], plain(flows), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(outputs["contiguous", 1], plain(flows), rtol=1e-6, atol=1e-6)
    tokens = torch.randn(2, cfg.data.frames - 1, 64, cfg.model.dim)
    strided = SparseVideoViT(rate=2, grouping="strided", **sevit_kwargs(cfg))
    contiguous = SparseVideoViT(rate=2, grouping="contiguous", **sevit_kwargs(cfg))
    contiguous.load_state_dict(strided.state_dict())
    # ViT init (std 0.02) keeps attention small; float rounding is ~1e-7
    assert (strided.attend(tokens) - contiguous.attend(tokens)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="model.emotion.grouping.*allowed: contiguous, strided"):
        SparseVideoViT(rate=2, grouping="random", **sevit_kwargs(cfg))


def test_grouping_reaches_every_sevit_branch_from_the_config():
    model = built(smoke_cfg("model.emotion.grouping=strided", "model.emotion.sparsity_rates=[1,2]"))
    assert [b.grouping for b in model.emotion.branches] == ["strided", "strided"]


# --- LED as its authors built it ---------------------------------------------------------------

def test_led_has_dropout3d_after_each_batch_norm_and_dropout_in_its_mlp():
    cfg = smoke_cfg("model.motion.led_dropout3d=0.3", "model.motion.led_head_dropout=0.4")
    backbone = create_backbone("led", cfg)
    layers = list(backbone.features)
    bn = [i for i, m in enumerate(layers) if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(bn) == 2
    assert all(isinstance(layers[i + 1], torch.nn.Dropout3d) and layers[i + 1].p == 0.3
               for i in bn)
    drops = [m for m in backbone.head if isinstance(m, torch.nn.Dropout)]
    assert [d.p for d in drops] == [0.4]
    assert load_config(profile="paper").model.motion.led_dropout3d == 0.5


def test_led_on_flows_sees_every_flow_including_the_first():
    cfg = smoke_cfg("model.motion.led_input=flow")
    torch.manual_seed(0)
    backbone = create_backbone("led", cfg).eval()
    flows, apex, _, _ = inputs(cfg)
    seq = backbone.sequence(flows)
    assert seq.shape[1] == flows.shape[1] + 1
    validate_model_config(smoke_cfg("model.motion.led_input=flow", "data.frames=4"))
    with pytest.raises(ConfigError, match="needs at least 4 frames"):
        validate_model_config(smoke_cfg("model.motion.led_input=flow", "data.frames=3"))
    assert torch.equal(seq[:, 0], torch.zeros_like(seq[:, 0]))
    with torch.no_grad():
        base = backbone(flows, apex)
        for t in (0, flows.shape[1] - 1):
            changed = flows.clone()
            changed[:, t] += 1.0
            assert not torch.allclose(backbone(changed, apex), base), t


def test_led_on_flows_without_the_zero_frame_takes_the_first_flow_as_reference():
    cfg = smoke_cfg("model.motion.led_input=flow", "model.motion.led_zero_frame=false")
    torch.manual_seed(0)
    backbone = create_backbone("led", cfg).eval()
    flows, _, _, _ = inputs(cfg)
    seq = backbone.sequence(flows)
    assert torch.equal(seq, flows)
    # the filter passes its first input through and the network drops that copy: flow 0 then
    # enters only through W[0, j] of the later frames, as the original's onset frame does
    filtered = backbone.led(seq)
    assert torch.equal(filtered[:, 0], seq[:, 0])
    with pytest.raises(ConfigError, match="needs at least 5 frames"):
        validate_model_config(smoke_cfg("model.motion.led_zero_frame=false", "data.frames=4"))


def test_led_on_frames_reads_one_grayscale_channel_and_medn_needs_the_frames():
    cfg = smoke_cfg("model.motion.led_input=frames")
    assert cfg.model.motion.uses_frames
    model = built(cfg).eval()
    assert model.uses_frames and model.motion.features[0].in_channels == 1
    flows, apex, _, _ = inputs(cfg)
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (BATCH, cfg.data.frames, cfg.data.size, cfg.data.size),
                           generator=g, dtype=torch.uint8)
    with pytest.raises(ValueError, match="led_input=frames.*none were given"):
        model(flows, apex)
    with torch.no_grad():
        out = model(flows, apex, frames=frames)
        other = model(flows, apex, frames=frames.flip(1))
    assert out.f_m.shape == (BATCH, cfg.model.dim) and torch.isfinite(out.f_m).all()
    assert not torch.allclose(out.f_m, other.f_m)      # F_m comes from the frames
    torch.testing.assert_close(out.f_e, other.f_e)     # F_e from the flows only
    assert out.f_fusion is not None and out.f_fusion.shape == (BATCH, cfg.model.dim)


def test_led_signed_normaliser_is_the_original_and_equals_abs_on_frames():
    x = torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1, 1)
    signed = LEDFilter(denominator="signed")(x).flatten()
    # frame 1: (1*-3.5 + -2*3.5) / (1*3.5 - 2*3.5 + 1): x|W| + 1, as in the original code
    torch.testing.assert_close(signed[1], torch.tensor(-10.5 / (3.5 - 7.0 + 1)))
    frames = torch.rand(2, 5, 1, 4, 4) * 255
    torch.testing.assert_close(LEDFilter(denominator="signed")(frames),
                               LEDFilter(denominator="abs")(frames))


def test_a_backbone_without_a_config_class_cannot_register():
    from medn.models.registry import register_backbone

    with pytest.raises(TypeError, match="no config class"):
        @register_backbone("nobody")
        class Nobody(torch.nn.Module):
            @classmethod
            def from_config(cls, cfg):
                return cls()


def test_resnets_use_the_standard_width_in_the_paper_profile():
    cfg = load_config(profile="paper", overrides=["model.motion.backbone=resnet18"])
    backbone = create_backbone("resnet18", cfg)
    assert backbone.net.stem[0].out_channels == 64


# --- cost --------------------------------------------------------------------------------------

def test_model_cost_counts_parameters_and_flops_and_leaves_the_rng_alone():
    from medn.models import flops_per_clip, model_cost

    cfg = smoke_cfg()
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    cost = model_cost(cfg, num_classes=NUM_CLASSES, num_aus=NUM_AUS)
    assert torch.equal(torch.rand(3), expected_next)
    model = built(cfg)
    assert cost.parameters == count_parameters(model)["total"]
    assert cost.flops_per_clip == flops_per_clip(model, cfg) > 0
    assert cost.as_metrics() == {"params": float(cost.parameters),
                                 "flops_per_clip": float(cost.flops_per_clip)}
    # attention is counted: doubling the SEVit branches costs more than 1.5x
    doubled = model_cost(smoke_cfg("model.emotion.sparsity_rates=[1,1,2,2,4,4,8,8]"),
                         num_classes=NUM_CLASSES, num_aus=NUM_AUS)
    assert doubled.flops_per_clip > 1.5 * cost.flops_per_clip


def test_flops_count_the_attention_of_a_plain_vit():
    from medn.models.cost import flops_per_clip
    cfg = smoke_cfg("model.emotion.sparsity_rates=[1]")
    model = built(cfg)
    tokens = (cfg.data.frames - 1) * (cfg.data.size // cfg.model.emotion.patch_size) ** 2
    # QK^T and AV of one block: 2 * 2 * tokens^2 * dim FLOPs
    attention = 4 * tokens * tokens * cfg.model.dim
    no_attention = built(smoke_cfg("model.emotion.sparsity_rates=[8]"))
    assert flops_per_clip(model, cfg) - flops_per_clip(no_attention, cfg) > 0.9 * attention
