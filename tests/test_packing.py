"""Packed training (medn.packing.train_folds): every fold of a pack is its unpacked run.

Tolerances: ``vmap`` runs other kernels than the unbatched model (batched matmuls, grouped
convolutions), which round differently in the last float32 bits (one forward: 1e-7). AdamW then
amplifies that rounding where a gradient is nearly zero (its update is lr * m / sqrt(v), about
lr * sign(g) in the first steps whatever |g|), so after 2-3 epochs the held-out scores of the
tiny, barely trained test model differ by up to 5e-4 (measured) while the per-epoch losses and
metrics agree to 1.5e-5. We assert 1e-4 on the history, 2e-3 on scores and 1e-2 on the
(unit-scale) features; a real difference is far larger: flipping ONE training clip's AU labels
moves the history of these folds by 8e-3..4e-2 (measured), a wrong batch or a shared BatchNorm
statistic more.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from train_helpers import random_dataset, tiny_config

from medn.data.prepared import PreparedDataset
from medn.packing import _SAMPLE_WEIGHTS, PackError, _mask_batch_norms, train_folds
from medn.train import FEATURE_NAMES, HISTORY_KEYS, train_fold

HISTORY_ATOL = 1e-4
SCORE_ATOL = 2e-3
FEATURE_ATOL = 1e-2  # the features are layer-normed, of size ~1: 1 % (measured up to 3e-3)
# every dropout of MEDN off: the exactness tests compare fold by fold
NO_DROPOUT = ("model.dropout=0", "model.motion.led_dropout3d=0", "model.motion.led_head_dropout=0")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def subset(data: PreparedDataset, keep: list[int]) -> PreparedDataset:
    """``data`` restricted to the clips ``keep`` (subjects then hold different numbers)."""
    idx = torch.as_tensor(keep)
    return dataclasses.replace(
        data, flows=data.flows[idx], labels=data.labels[idx], aus=data.aus[idx],
        apex=data.apex[idx], subjects=tuple(data.subjects[i] for i in keep),
        clips=tuple(data.clips[i] for i in keep), digest=data.digest + "-subset",
        frames=None if data.frames is None else data.frames[idx])


def uneven_dataset(cfg) -> PreparedDataset:
    """4 subjects with 8, 5, 8 and 3 clips: the folds' training sets differ in size, so their
    batches differ in size and number (padding, folds sitting out a step)."""
    data = random_dataset(cfg, subjects=4, clips_per_subject=8, seed=2)
    drop = {8, 9, 10, 24, 25, 26, 27, 28}
    return subset(data, [i for i in range(len(data)) if i not in drop])


def assert_close(mine: np.ndarray, theirs: np.ndarray, atol: float, what: str) -> None:
    """Equal shapes and NaN positions, finite entries within ``atol``."""
    assert mine.shape == theirs.shape, what
    assert np.array_equal(np.isnan(mine), np.isnan(theirs)), what
    finite = ~np.isnan(mine)
    assert not finite.any() or np.abs(mine[finite] - theirs[finite]).max() <= atol, what


def assert_same_fold(packed, unpacked) -> None:
    assert packed.subject == unpacked.subject
    assert packed.clips == unpacked.clips
    assert np.array_equal(packed.y_true, unpacked.y_true)
    assert_close(packed.scores, unpacked.scores, SCORE_ATOL, "scores")
    assert_close(packed.au_scores, unpacked.au_scores, SCORE_ATOL, "au_scores")
    assert len(packed.history) == len(unpacked.history)
    for mine, theirs in zip(packed.history, unpacked.history, strict=True):
        assert tuple(mine) == tuple(theirs) == HISTORY_KEYS
        for key in HISTORY_KEYS:
            assert abs(mine[key] - theirs[key]) <= HISTORY_ATOL, key
    assert set(packed.features) == set(unpacked.features) == set(FEATURE_NAMES)
    for name in packed.features:
        assert_close(packed.features[name], unpacked.features[name], FEATURE_ATOL, name)


def test_a_pack_of_one_is_train_fold():
    cfg = tiny_config("optim.epochs=2", "optim.batch_size=5", *NO_DROPOUT)
    data = random_dataset(cfg, subjects=3, clips_per_subject=6)
    (packed,) = train_folds(cfg, data, ["s02"])
    assert_same_fold(packed, train_fold(cfg, data, "s02"))
    assert packed.device == "cpu" and packed.seconds > 0


def test_every_fold_of_an_uneven_pack_is_its_unpacked_run():
    # balanced sampling, three lr groups, and schedules that change within the run: the motion
    # group decays after epoch 1, LED's filter group is cut after epoch 2
    cfg = tiny_config("optim.epochs=3", "optim.batch_size=4", "optim.sampling=balanced",
                      "optim.motion_lr_step=1", "model.motion.led_filter_lr=0.05",
                      "model.motion.led_filter_lr_epoch=2", *NO_DROPOUT)
    data = uneven_dataset(cfg)
    subjects = data.subject_ids
    seen: list[tuple[str, int]] = []
    packed = train_folds(cfg, data, subjects, on_epoch=lambda s, e, m: seen.append((s, e)))
    assert [r.subject for r in packed] == subjects
    assert sorted(seen) == sorted((s, e) for s in subjects for e in (1, 2, 3))
    for result in packed:
        assert_same_fold(result, train_fold(cfg, data, result.subject))


def test_folds_of_a_pack_are_independent():
    # a fold's result does not depend on which folds share its pack
    cfg = tiny_config("optim.epochs=2", "optim.batch_size=4", *NO_DROPOUT)
    data = uneven_dataset(cfg)
    alone = train_folds(cfg, data, ["s04"])[0]
    together = train_folds(cfg, data, ["s01", "s04", "s02"])[1]
    assert_same_fold(together, alone)


def test_standardized_flows_are_per_fold():
    cfg = tiny_config("optim.epochs=1", "optim.batch_size=4", "optim.standardize_flows=true",
                      *NO_DROPOUT)
    data = uneven_dataset(cfg)
    for result in train_folds(cfg, data, ["s02", "s04"]):
        assert_same_fold(result, train_fold(cfg, data, result.subject))


def test_with_dropout_a_pack_is_seeded_and_its_folds_draw_their_own_masks():
    cfg = tiny_config("optim.epochs=2", "model.dropout=0.5")
    data = random_dataset(cfg, subjects=3, clips_per_subject=6)
    first = train_folds(cfg, data, ["s01", "s02", "s03"])
    again = train_folds(cfg, data, ["s01", "s02", "s03"])
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.scores, b.scores) and a.history == b.history
        assert set(a.features) == set(FEATURE_NAMES)
        assert all(v.shape == (len(a.clips), cfg.model.dim) for v in a.features.values())
    # s01's own run without dropout differs: the masks did act
    plain = train_folds(tiny_config("optim.epochs=2", "model.dropout=0"), data, ["s01"])[0]
    assert not np.allclose(plain.scores, first[0].scores, atol=1e-4)


def test_a_failing_fold_keeps_its_pack_mates_results():
    # s04's clips carry inf flows: a fold that trains on them fails (non-finite loss); s04's
    # own fold never trains on them and finishes exactly as alone (its held-out predictions
    # of inf clips are NaN, alone as packed: its training losses are what is compared)
    cfg = tiny_config("optim.epochs=2", "optim.batch_size=4", *NO_DROPOUT)
    data = random_dataset(cfg, subjects=4, clips_per_subject=5)
    flows = data.flows.clone()
    flows[[i for i, s in enumerate(data.subjects) if s == "s04"]] = float("inf")
    bad = dataclasses.replace(data, flows=flows)
    with pytest.raises(PackError) as caught:
        train_folds(cfg, bad, ["s01", "s04"])
    err = caught.value
    assert list(err.errors) == ["s01"]
    assert "non-finite training loss" in str(err.errors["s01"])
    assert [r.subject for r in err.results] == ["s04"]
    survivor = err.results[0]
    assert all(np.isfinite(e["train/loss"]) for e in survivor.history)
    assert_same_fold(survivor, train_fold(cfg, bad, "s04"))


def test_bad_subject_lists_are_clear_errors():
    cfg = tiny_config()
    data = random_dataset(cfg, subjects=3, clips_per_subject=4)
    with pytest.raises(ValueError, match="no subjects"):
        train_folds(cfg, data, [])
    with pytest.raises(ValueError, match="repeat"):
        train_folds(cfg, data, ["s01", "s01"])
    with pytest.raises(KeyError, match="nobody"):
        train_folds(cfg, data, ["s01", "nobody"])


def test_masked_batch_norm_uses_only_the_real_rows():
    torch.manual_seed(0)
    native = torch.nn.BatchNorm3d(4)
    masked = torch.nn.BatchNorm3d(4)
    _mask_batch_norms(masked)
    x = torch.randn(6, 4, 2, 3, 3)
    weights = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    expected = native(x[:4])
    token = _SAMPLE_WEIGHTS.set(weights)
    try:
        got = masked(torch.cat([x[:4], 100 * torch.randn(2, 4, 2, 3, 3)]))
    finally:
        _SAMPLE_WEIGHTS.reset(token)
    torch.testing.assert_close(got[:4], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked.running_mean, native.running_mean)
    torch.testing.assert_close(masked.running_var, native.running_var)
    assert int(masked.num_batches_tracked) == 1


def test_train_folds_is_exposed_by_medn_train():
    import medn.train

    assert medn.train.train_folds(tiny_config("optim.epochs=1"), random_dataset(
        tiny_config(), subjects=2, clips_per_subject=3), ["s01"])[0].subject == "s01"


def test_training_in_packs_gives_the_same_folds_and_keeps_results_past_a_failure():
    from medn.packing import CPU_PACK_LIMIT, max_pack_size, train_in_packs

    cfg = tiny_config("optim.epochs=1", "optim.batch_size=4", *NO_DROPOUT)
    data = random_dataset(cfg, subjects=4, clips_per_subject=5)
    flows = data.flows.clone()
    flows[[i for i, s in enumerate(data.subjects) if s == "s04"]] = float("inf")
    bad = dataclasses.replace(data, flows=flows)
    with pytest.raises(PackError) as caught:
        train_in_packs(cfg, bad, ["s04", "s01", "s02"], pack_size=2)
    # packs [s04, s01] and [s02]: s01 and s02 train on s04's inf clips and fail
    assert sorted(caught.value.errors) == ["s01", "s02"]
    assert [r.subject for r in caught.value.results] == ["s04"]
    assert_same_fold(caught.value.results[0], train_fold(cfg, bad, "s04"))
    with pytest.raises(ValueError, match="at least 1"):
        train_in_packs(cfg, data, ["s01"], pack_size=0)
    assert max_pack_size(cfg, data, torch.device("cpu")) == CPU_PACK_LIMIT
