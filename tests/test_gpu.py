"""Tests that need a CUDA GPU (marker ``gpu``): skipped, with the reason, where torch sees none.

Run them with ``pytest -m gpu tests/test_gpu.py`` or ``benchmarks/gpu_check.sh`` (which also
prints the GPU benchmark table). The last test (the CPU path of gpu_check) runs everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import random_dataset, tiny_config

from medn.config import load_config
from medn.losses import medn_loss
from medn.models import build_model
from medn.packing import train_folds
from medn.train import HISTORY_KEYS, train_fold

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "needs a CUDA GPU: torch.cuda.is_available() is False on this machine"
NO_DROPOUT = ("model.dropout=0", "model.motion.led_dropout3d=0", "model.motion.led_head_dropout=0")


def paper_config(*overrides: str):
    """The paper-size model (144 px, T = 8) on CUDA, few epochs, small batches."""
    return load_config(profile="paper", overrides=[
        "device=cuda", "optim.epochs=2", "optim.batch_size=8", *overrides])


def paper_dataset(cfg, subjects: int = 3, clips: int = 4):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_packing import synthetic_dataset

    return synthetic_dataset(cfg, subjects, clips)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_bf16_training_step_matches_fp32():
    cfg = paper_config(*NO_DROPOUT)
    data = paper_dataset(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3, num_aus=data.num_aus).cuda()
    idx = torch.arange(8)
    x, apex = data.flows[idx].float().cuda(), data.apex[idx].cuda()
    frames = data.frames[idx].cuda() if cfg.model.motion.uses_frames else None
    y, au = data.labels[idx].cuda(), data.aus[idx].cuda()

    def step(bf16: bool) -> tuple[float, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, apex, frames=frames)
        loss = medn_loss(out, y, au, cfg.loss).total
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return float(loss), grads

    loss32, grad32 = step(False)
    loss16, grad16 = step(True)
    assert loss16 == pytest.approx(loss32, rel=2e-2)
    cosine = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)
    assert cosine > 0.98, f"bf16 gradient direction differs from fp32 (cos {cosine:.4f})"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_paper_profile_fold_trains_on_cuda():
    cfg = paper_config()
    data = paper_dataset(cfg)
    result = train_fold(cfg, data, "s01")
    assert result.device.startswith("cuda")
    assert len(result.history) == 2 and tuple(result.history[0]) == HISTORY_KEYS
    assert all(np.isfinite(v) for e in result.history for v in e.values())
    assert np.allclose(result.scores.sum(axis=1), 1.0, atol=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_packed_training_on_cuda_matches_unpacked():
    # bf16 autocast rounds far more coarsely than the CPU's float32: the per-epoch training
    # losses of each fold must agree within 2 %
    cfg = paper_config(*NO_DROPOUT)
    data = paper_dataset(cfg, subjects=4, clips=3)
    packed = train_folds(cfg, data, data.subject_ids)
    for result in packed:
        alone = train_fold(cfg, data, result.subject)
        assert result.device.startswith("cuda")
        for mine, theirs in zip(result.history, alone.history, strict=True):
            assert mine["train/loss"] == pytest.approx(theirs["train/loss"], rel=2e-2)


def _host_to_device_copies(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if "HtoD" in e.name and "Memcpy" in e.name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_data_stays_on_the_device():
    # 12 optimizer steps per epoch: a per-batch transfer of the data would show >= 12 copies
    cfg = tiny_config("device=cuda", "optim.batch_size=2", "optim.epochs=1")
    data = random_dataset(cfg, subjects=3, clips_per_subject=12)
    one = _host_to_device_copies(lambda: train_folds(cfg, data, ["s01", "s02"]))
    two = _host_to_device_copies(lambda: train_folds(
        cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"epochs": 2})}),
        data, ["s01", "s02"]))
    per_epoch = two - one
    assert per_epoch <= 6, f"{per_epoch} host->device copies per epoch of 12 steps (packed)"
    # unpacked: the data moves once; a batch (12 training, 6 evaluation per epoch) sends only
    # its index tensor: one small copy each (data copied per batch would be 2 per batch)
    fold_one = _host_to_device_copies(lambda: train_fold(cfg, data, "s01"))
    fold_two = _host_to_device_copies(lambda: train_fold(
        cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"epochs": 2})}),
        data, "s01"))
    assert fold_two - fold_one <= 12 + 6 + 3, "more than one host->device copy per batch"


def _gpu_processes() -> set[str]:
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=10)
    return {line.strip() for line in out.stdout.splitlines() if line.strip()}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_fractional_gpu_study_runs_four_trials_on_one_gpu(tmp_path):
    if shutil.which("nvidia-smi") is None:
        pytest.skip("needs nvidia-smi (to count the processes on the GPU)")
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(len(_gpu_processes() - {str(os.getpid())}))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    cmd = [str(Path(sys.executable).with_name("medn")), "study", "ablation-components",
           "--profile", "smoke", "--set", "device=cuda", "--set", "optim.epochs=30",
           "--gpus-per-trial", "0.25", "--cpus-per-trial", "1",
           "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--cache-dir",
           str(tmp_path / "cache"), "--pack", "1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=480, cwd=tmp_path)
    finally:
        done.set()
        watcher.join()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert max(seen) == 4, f"most trial processes on the GPU at once: {max(seen)} (want 4)"


def test_gpu_check_cpu_path_runs(tmp_path):
    """gpu_check.sh without a GPU: the gpu tests skip with reasons and the benchmark's CPU
    smoke path prints its table (so the GPU script cannot rot where no GPU is)."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: gpu_check.sh runs its GPU path (run it directly)")
    env = {**os.environ, "MEDN_PYTHON": sys.executable, "GPU_CHECK_OUT": str(tmp_path),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "no CUDA GPU: CPU smoke path" in out
    assert "SKIPPED" in out and NO_CUDA in out
    table = out[out.index("profile     K"):]
    rows = [line.split() for line in table.splitlines()[1:4]]
    assert [r[:2] for r in rows] == [["smoke", "1"], ["smoke", "p1"], ["smoke", "2"]]
    assert all(float(r[3]) > 0 for r in rows)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
def test_auto_pack_size_fits_the_gpu():
    from medn.packing import max_pack_size, train_in_packs

    cfg = paper_config("optim.epochs=1", "optim.batch_size=16")
    data = paper_dataset(cfg, subjects=6, clips=6)
    whole = max_pack_size(cfg, data, torch.device("cuda"))
    quarter = max_pack_size(cfg, data, torch.device("cuda"), memory_fraction=0.25)
    assert whole >= quarter >= 1 and whole >= 4
    results = train_in_packs(cfg, data, data.subject_ids, pack_size=min(quarter, 6))
    assert [r.subject for r in results] == data.subject_ids
