"""train_fold: determinism, history, the motion branch's lr decay, FoldResult round trip."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from train_helpers import fake_result, random_dataset, tiny_config

from medn.config import ConfigError
from medn.models import build_model
from medn.train import (
    FEATURE_NAMES,
    HISTORY_KEYS,
    FoldResult,
    NonFiniteLossError,
    build_optimizer,
    epoch_order,
    motion_lr_factor,
    resolve_device,
    train_fold,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny test models train several times faster on one thread than on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cfg():
    return tiny_config("optim.epochs=2")


@pytest.fixture(scope="module")
def data(cfg):
    return random_dataset(cfg)


@pytest.fixture(scope="module")
def first_run(cfg, data):
    return train_fold(cfg, data, "s02")


def test_same_seed_gives_identical_results_on_cpu(cfg, data, first_run):
    again = train_fold(cfg, data, "s02")
    assert again.history == first_run.history
    assert np.array_equal(again.scores, first_run.scores)
    assert np.array_equal(again.au_scores, first_run.au_scores)
    assert np.array_equal(again.y_pred, first_run.y_pred)


def test_another_seed_gives_other_results(data, first_run):
    other = train_fold(tiny_config("optim.epochs=2", "seed=1"), data, "s02")
    assert not np.array_equal(other.scores, first_run.scores)


def test_result_covers_the_held_out_subject(data, first_run):
    idx = data.fold("s02").test_idx
    assert first_run.subject == "s02"
    assert first_run.clips == [data.clips[i] for i in idx]
    assert np.array_equal(first_run.y_true, data.labels[idx].numpy())
    assert first_run.scores.shape == (len(idx), data.num_classes)
    assert np.allclose(first_run.scores.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first_run.y_pred, first_run.scores.argmax(axis=1))
    assert first_run.au_scores.shape == (len(idx), data.num_aus)
    assert ((first_run.au_scores >= 0) & (first_run.au_scores <= 1)).all()
    assert first_run.device == "cpu" and first_run.seconds > 0


def test_history_has_one_entry_per_epoch_with_exact_keys(cfg, data):
    seen: list[tuple[int, dict[str, float]]] = []
    result = train_fold(tiny_config("optim.epochs=3"), data, "s01",
                        on_epoch=lambda epoch, m: seen.append((epoch, dict(m))))
    assert len(result.history) == 3
    for entry in result.history:
        assert tuple(entry) == HISTORY_KEYS
        assert all(isinstance(v, float) and np.isfinite(v) for v in entry.values())
        assert 0.0 <= entry["val/uf1"] <= 1.0 and 0.0 <= entry["val/uar"] <= 1.0
        assert entry["train/loss"] > 0
        assert 0.0 < entry["train/abs_cos"] <= 1.0
    assert [e for e, _ in seen] == [1, 2, 3]
    assert [m for _, m in seen] == result.history


def test_training_learns_a_strong_class_signal():
    # An easy separable set: 10 epochs must beat chance (1/3) clearly on the held-out subject.
    cfg = tiny_config("optim.epochs=10", "optim.lr=3e-3")
    data = random_dataset(cfg, subjects=3, clips_per_subject=8, seed=3)
    result = train_fold(cfg, data, "s03")
    assert result.history[-1]["train/loss_cls"] < result.history[0]["train/loss_cls"]
    assert (result.y_pred == result.y_true).mean() > 0.6


def test_motion_group_alone_decays_every_step_epochs(cfg, data):
    cfg = tiny_config("optim.lr=0.01", "optim.motion_lr_step=2", "optim.motion_lr_decay=0.1",
                      "model.motion.led_filter_lr=0.1", "model.motion.led_filter_lr_epoch=3")
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=data.num_classes, num_aus=data.num_aus)
    optimizer, scheduler = build_optimizer(model, cfg)
    motion_ids = {id(p) for p in model.motion_parameters()}
    filter_ids = {id(p) for p in model.motion.led.parameters()}
    assert len(filter_ids) == 3 and filter_ids <= motion_ids
    assert [g["name"] for g in optimizer.param_groups] == ["motion", "other", "filter"]
    group_ids = [{id(p) for p in g["params"]} for g in optimizer.param_groups]
    assert group_ids[0] == motion_ids - filter_ids
    assert group_ids[2] == filter_ids
    assert sum(len(g) for g in group_ids) == len(set().union(*group_ids))   # disjoint
    assert set().union(*group_ids) == {id(p) for p in model.parameters()}
    assert all(g["weight_decay"] == cfg.optim.weight_decay for g in optimizer.param_groups)
    assert isinstance(optimizer, torch.optim.AdamW)
    lrs = []
    for _ in range(5):
        lrs.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    motion, other, filt = ([epoch[i] for epoch in lrs] for i in range(3))
    assert motion == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001])
    assert other == pytest.approx([0.01] * 5)
    assert filt == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01])   # cut once, after 3 epochs
    assert motion_lr_factor(300, 100, 0.1) == pytest.approx(1e-3)


def test_filter_joins_the_motion_group_without_its_own_lr(data):
    cfg = tiny_config("model.motion.led_filter_lr=null")
    model = build_model(cfg, num_classes=data.num_classes, num_aus=data.num_aus)
    optimizer, _ = build_optimizer(model, cfg)
    assert [g["name"] for g in optimizer.param_groups] == ["motion", "other"]
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == {
        id(p) for p in model.motion_parameters()}
    resnet = tiny_config("model.motion.backbone=resnet18")
    model = build_model(resnet, num_classes=data.num_classes, num_aus=data.num_aus)
    assert [g["name"] for g in build_optimizer(model, resnet)[0].param_groups] == [
        "motion", "other"]


def test_led_filter_moves_at_its_own_learning_rate(data):
    # lr 1e-4 for the network (the paper's) but 0.1 for (alpha, r1, r2): the filter moves
    moved = {}
    for filter_lr in (None, 0.1):
        value = "null" if filter_lr is None else filter_lr
        cfg = tiny_config("optim.epochs=2", "optim.lr=1e-4", f"model.motion.led_filter_lr={value}")
        torch.manual_seed(0)
        model = build_model(cfg, num_classes=data.num_classes, num_aus=data.num_aus)
        before = model.motion.led.log_alpha.item()
        optimizer, _ = build_optimizer(model, cfg)
        flows, apex = data.flows[:8].float(), data.apex[:8]
        from medn.losses import medn_loss
        for _ in range(3):
            parts = medn_loss(model(flows, apex), data.labels[:8], data.aus[:8], cfg.loss)
            optimizer.zero_grad()
            parts.total.backward()
            optimizer.step()
        moved[filter_lr] = abs(model.motion.led.log_alpha.item() - before)
    assert moved[0.1] > 100 * moved[None]


def test_fold_result_round_trips_through_json(data):
    result = fake_result(data, "s03", seed=5)
    back = FoldResult.from_dict(json.loads(json.dumps(result.to_dict())))
    for name in ("y_true", "y_pred", "scores", "au_true", "au_scores"):
        original, restored = getattr(result, name), getattr(back, name)
        assert restored.dtype == original.dtype and np.array_equal(restored, original), name
    assert (back.subject, back.clips, back.history, back.seconds, back.device) == (
        result.subject, result.clips, result.history, result.seconds, result.device)


def test_fold_result_from_dict_names_missing_fields():
    with pytest.raises(ValueError, match="y_pred"):
        FoldResult.from_dict({"subject": "s1", "clips": [], "y_true": [], "scores": [],
                              "au_true": [], "au_scores": []})


def test_resolve_device():
    assert resolve_device(tiny_config("device=cpu")) == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(tiny_config("device=auto")).type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="device"):
            resolve_device(tiny_config("device=cuda"))


def test_bad_model_config_fails_before_training(data):
    cfg = tiny_config("model.emotion.sparsity_rates=[3]")
    with pytest.raises(ConfigError, match="sparsity_rates"):
        train_fold(cfg, data, "s01")


def test_unknown_subject_is_a_clear_error(cfg, data):
    with pytest.raises(KeyError, match="nobody"):
        train_fold(cfg, data, "nobody")


def test_standardized_flows_make_training_blind_to_the_flow_scale(data):
    # x8 is exact in float16/float32, so standardising must give bit-identical results.
    scaled = dataclasses.replace(data, flows=data.flows * 8)
    on = tiny_config("optim.epochs=1", "optim.standardize_flows=true")
    assert np.array_equal(train_fold(on, data, "s01").scores,
                          train_fold(on, scaled, "s01").scores)
    off = tiny_config("optim.epochs=1")
    assert not np.array_equal(train_fold(off, data, "s01").scores,
                              train_fold(off, scaled, "s01").scores)


def test_shuffle_sampling_draws_every_clip_once():
    labels = torch.tensor([0] * 9 + [1] * 3)
    order = epoch_order(labels, "shuffle", torch.Generator().manual_seed(0))
    assert sorted(order.tolist()) == list(range(12))


def test_balanced_sampling_sees_each_class_about_equally_often_and_is_seeded():
    labels = torch.tensor([0] * 45 + [1] * 5 + [2] * 10)
    draws = torch.cat([epoch_order(labels, "balanced", torch.Generator().manual_seed(s))
                       for s in range(20)])
    assert len(draws) == 20 * len(labels)
    share = torch.bincount(labels[draws], minlength=3).float() / len(draws)
    assert torch.all((share - 1 / 3).abs() < 0.05), share      # shuffle would give 0.75/0.08/0.17
    first = epoch_order(labels, "balanced", torch.Generator().manual_seed(7))
    again = epoch_order(labels, "balanced", torch.Generator().manual_seed(7))
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="optim.sampling.*allowed: shuffle, balanced"):
        epoch_order(labels, "stratified", torch.Generator())


def test_balanced_sampling_trains_deterministically(data):
    cfg = tiny_config("optim.epochs=2", "optim.sampling=balanced")
    first, again = train_fold(cfg, data, "s01"), train_fold(cfg, data, "s01")
    assert np.array_equal(first.scores, again.scores)
    assert first.history == again.history


def test_result_carries_the_held_out_features_and_they_round_trip(cfg, data, first_run):
    n = len(data.fold("s02").test_idx)
    assert tuple(first_run.features) == FEATURE_NAMES
    for name in FEATURE_NAMES:
        value = first_run.features[name]
        assert value.shape == (n, cfg.model.dim) and value.dtype == np.float32
        assert np.isfinite(value).all()
    # F_m is layer-normed (smoke keeps the stabilisers): |F_m| = sqrt(D)
    assert np.allclose(np.linalg.norm(first_run.features["f_m"], axis=1),
                       np.sqrt(cfg.model.dim), rtol=1e-3)
    payload = json.loads(json.dumps(first_run.to_dict()))
    assert set(payload["features"]["f_e"]) == {"dtype", "shape", "base64"}
    back = FoldResult.from_dict(payload)
    for name in FEATURE_NAMES:
        assert np.array_equal(back.features[name], first_run.features[name])
    payload["features"]["f_m"]["shape"] = [n + 1, cfg.model.dim]
    with pytest.raises(ValueError, match="features.f_m"):
        FoldResult.from_dict(payload)
    # results written before features existed still load
    del payload["features"]
    assert FoldResult.from_dict(payload).features == {}


def test_a_non_finite_loss_stops_the_fold_naming_the_epoch(cfg, data):
    flows = data.flows.clone()
    flows[data.fold("s02").train_idx[0]] = float("inf")   # e.g. a corrupt cache entry
    broken = dataclasses.replace(data, flows=flows)
    with pytest.raises(NonFiniteLossError, match=r"fold 's02': non-finite training loss at "
                                                 r"epoch 1 \(loss="):
        train_fold(cfg, broken, "s02")


def test_led_trains_on_the_frames_when_asked(data):
    cfg = tiny_config("optim.epochs=2", "model.motion.led_input=frames")
    with pytest.raises(ValueError, match="carries no aligned frames"):
        train_fold(cfg, data, "s01")
    g = torch.Generator().manual_seed(4)
    n, t, size = len(data), cfg.data.frames, cfg.data.size
    frames = torch.randint(0, 256, (n, t, size, size), generator=g, dtype=torch.uint8)
    with_frames = dataclasses.replace(data, frames=frames)
    first = train_fold(cfg, with_frames, "s01")
    assert np.array_equal(first.scores, train_fold(cfg, with_frames, "s01").scores)
    other = dataclasses.replace(data, frames=frames.flip(1))
    assert not np.array_equal(first.features["f_m"],
                              train_fold(cfg, other, "s01").features["f_m"])
