"""Packed vs unpacked LOSO training, side by side: fold throughput, operator calls, memory.

For each profile (``quick``; ``paper`` = the paper-size model, 144 px, T = 8) and each pack
size K (``1`` = today's unpacked ``train_fold``; ``p1`` = a pack of one; 2, 4, 8, ``all``),
the same folds of a synthetic dataset (random flows and frames of the profile's shapes, fixed
seed; nothing is prepared or downloaded) are trained for ``--epochs`` and measured:

- ``s/fold``, ``folds/h``: wall time per fold training (pack time / K), and its inverse;
  ``cpu-s/fold``: the process's CPU time per fold (on a shared machine the wall time depends
  on the other processes; with one thread the CPU time does not, much);
- ``ops/fold-step``: aten operator calls (``torch.profiler``, nested calls included: the
  device-independent proxy for kernel launches) of a whole ``--epochs`` training, divided by
  (optimizer steps x folds); evaluation and set-up are included on both sides;
- ``MB/fold``: peak memory per fold: CUDA ``max_memory_allocated``; on CPU the growth of the
  process's peak RSS over its size before training (each measurement then runs in its own
  process, ``--isolate``, the default on CPU);
- ``TFLOPS`` / ``MFU`` (``--flops``): training FLOPs (``torch.utils.flop_counter``, forward +
  backward of one batch, per clip) x clips trained per second; MFU against the device's
  dense bf16 peak looked up from its name (CUDA only).

``--compile`` also times the ``quick`` training step (forward, backward, AdamW step) with and
without ``torch.compile`` (inductor; CPU needs gcc), and checks that two seeded compiled runs
give identical losses. ``--cuda-graphs`` does the same with ``mode="reduce-overhead"`` (CUDA).

    .venv/bin/python benchmarks/bench_packing.py                     # quick + paper, CPU
    .venv/bin/python benchmarks/bench_packing.py --profiles quick --ks 1 p1 2 4 8 all
    .venv/bin/python benchmarks/bench_packing.py --smoke              # seconds: the CI path

The figures measured here are in docs/training.md ("Packed training").
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import resource
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch

# dense bf16 tensor-core peak (TFLOP/s) by device-name fragment, first match wins
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0), ("H100", 989.0), ("GH200", 989.0), ("A100", 312.0), ("A800", 312.0),
    ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0), ("A6000", 155.0),
    ("4090", 165.0), ("3090", 71.0), ("V100", 125.0), ("T4", 65.0),
)


def peak_tflops(device: torch.device) -> float | None:
    """The device's dense bf16 peak from its name, or None (CPU, unknown GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS if key in name), None)


@dataclass
class Setting:
    """One profile's benchmark shape."""

    profile: str
    subjects: int
    clips_per_subject: int
    batch_size: int
    epochs: int
    overrides: tuple[str, ...] = ()


@dataclass
class Measurement:
    """What one (profile, K) run measured."""

    profile: str
    k: str
    folds: int
    seconds_per_fold: float
    ops_per_fold_step: float | None
    mb_per_fold: float | None
    tflops: float | None = None
    mfu: float | None = None
    cpu_seconds_per_fold: float | None = None


def synthetic_dataset(cfg: Any, subjects: int, clips_per_subject: int, seed: int = 0):
    """Random flows, frames and labels of ``cfg``'s shapes (a fixed seed; nothing prepared)."""
    from medn.data.prepared import PreparedDataset

    gen = torch.Generator().manual_seed(seed)
    n = subjects * clips_per_subject
    t, size = cfg.data.frames, cfg.data.size
    labels = torch.arange(n) % 3
    flows = torch.randn(n, t - 1, 2, size, size, generator=gen) * 0.5
    flows += labels.view(n, 1, 1, 1, 1).float() * 0.3
    aus = (torch.rand(n, 5, generator=gen) < 0.4).float()
    return PreparedDataset(
        name="bench", task=3, classes=("a", "b", "c"),
        au_names=tuple(f"AU{i}" for i in range(5)), flows=flows.half(), labels=labels,
        aus=aus, apex=torch.randint(0, t - 1, (n,), generator=gen),
        subjects=tuple(f"s{i // clips_per_subject:02d}" for i in range(n)),
        clips=tuple(f"c{i}" for i in range(n)), digest=f"bench-{n}-{size}",
        frames=torch.randint(0, 255, (n, t, size, size), generator=gen, dtype=torch.uint8))


def config_of(setting: Setting, device: str):
    """The MednConfig of a setting."""
    from medn.config import load_config

    return load_config(profile=setting.profile, overrides=[
        f"device={device}", f"optim.batch_size={setting.batch_size}",
        f"optim.epochs={setting.epochs}", *setting.overrides])


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _train(cfg: Any, data: Any, subjects: list[str], k: str) -> None:
    from medn.packing import train_folds
    from medn.train import train_fold

    if k == "1":
        for subject in subjects:
            train_fold(cfg, data, subject)
    else:
        train_folds(cfg, data, subjects)


def _steps(cfg: Any, data: Any, subjects: list[str]) -> int:
    """Optimizer steps of one fold-training (the most batches per epoch x epochs)."""
    n = max(len(data.fold(s).train_idx) for s in subjects)
    return math.ceil(n / cfg.optim.batch_size) * cfg.optim.epochs


def measure(setting: Setting, k: str, device_name: str, threads: int, count_ops: bool,
            flops: bool) -> Measurement:
    """Train ``k`` folds (``1``: unpacked, one after the other) and measure them."""
    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    device = torch.device(device_name)
    cfg = config_of(setting, device_name)
    data = synthetic_dataset(cfg, setting.subjects, setting.clips_per_subject)
    all_subjects = data.subject_ids
    size = len(all_subjects) if k in ("all", "1") else int(k.removeprefix("p") or 1)
    subjects = all_subjects[:size] if k != "1" else all_subjects[:min(4, len(all_subjects))]
    _train(cfg, data, subjects[:1], "p1" if k != "1" else "1")  # warm-up (kernels, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    _train(cfg, data, subjects, k)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / len(subjects)
    cpu_seconds = (time.process_time() - cpu_started) / len(subjects)
    if device.type == "cuda":
        mb = torch.cuda.max_memory_allocated() / 2**20 / (1 if k == "1" else len(subjects))
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mb = max(0.0, peak - rss_before) / (1 if k == "1" else len(subjects))
    ops = None
    if count_ops:
        from torch.profiler import ProfilerActivity, profile

        one_epoch = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"epochs": 1})})
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            _train(one_epoch, data, subjects, k)
        calls = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))
        ops = calls / (_steps(one_epoch, data, subjects) * len(subjects))
    result = Measurement(setting.profile, k, len(subjects), seconds, ops, mb,
                         cpu_seconds_per_fold=cpu_seconds)
    if flops:
        per_clip = training_flops_per_clip(cfg, data, device)
        clips_per_s = (_steps(cfg, data, subjects[:1]) * cfg.optim.batch_size) / seconds
        result.tflops = per_clip * clips_per_s / 1e12
        peak = peak_tflops(device)
        result.mfu = result.tflops / peak if peak else None
    return result


def training_flops_per_clip(cfg: Any, data: Any, device: torch.device) -> float:
    """FLOPs of one training clip: forward + backward of one batch / batch size."""
    from torch.utils.flop_counter import FlopCounterMode

    from medn.losses import medn_loss
    from medn.models import build_model

    torch.manual_seed(0)
    model = build_model(cfg, num_classes=data.num_classes, num_aus=data.num_aus).to(device)
    b = min(cfg.optim.batch_size, len(data))
    idx = torch.arange(b)
    frames = data.frames[idx].to(device) if cfg.model.motion.uses_frames else None
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(data.flows[idx].float().to(device), data.apex[idx].to(device),
                        frames=frames)
        medn_loss(out, data.labels[idx].to(device), data.aus[idx].to(device),
                  cfg.loss).total.backward()
    return counter.get_total_flops() / b


def _child(args: tuple, queue: Any) -> None:
    try:
        queue.put(asdict(measure(*args)))
    except BaseException as err:  # noqa: BLE001 - shipped to the parent, which reports it
        queue.put({"error": f"{type(err).__name__}: {err}"})


def measure_isolated(*args: Any) -> Measurement:
    """``measure`` in a fresh process (so that its peak RSS is its own)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(args, queue))
    proc.start()
    out = queue.get()
    proc.join()
    if "error" in out:
        raise RuntimeError(out["error"])
    return Measurement(**out)


def compile_check(setting: Setting, device_name: str, threads: int, mode: str | None,
                  steps: int = 12) -> dict[str, Any]:
    """Seconds per training step of one unpacked fold's batch, eager vs ``torch.compile``,
    the compile time, and whether two seeded compiled runs give identical losses."""
    from medn.losses import medn_loss
    from medn.models import build_model
    from medn.train import build_optimizer

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    cfg = config_of(setting, device_name)
    data = synthetic_dataset(cfg, setting.subjects, setting.clips_per_subject)
    b = cfg.optim.batch_size
    x = data.flows[:b].float().to(device)
    apex, y, au = data.apex[:b].to(device), data.labels[:b].to(device), data.aus[:b].to(device)
    frames = data.frames[:b].to(device) if cfg.model.motion.uses_frames else None

    def run(compiled: bool) -> tuple[float, float, list[float]]:
        torch.manual_seed(0)
        model = build_model(cfg, num_classes=3, num_aus=5).to(device)
        optimizer, _ = build_optimizer(model, cfg)
        forward = torch.compile(model, mode=mode) if compiled else model
        losses, times = [], []
        for _ in range(steps):
            start = time.perf_counter()
            loss = medn_loss(forward(x, apex, frames=frames), y, au, cfg.loss).total
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return times[0], min(times[2:]), losses

    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    _, eager, eager_losses = run(False)
    first, compiled, losses = run(True)
    _, _, again = run(True)
    return {"eager_ms": eager * 1e3, "compiled_ms": compiled * 1e3, "first_step_s": first,
            "speedup": eager / compiled, "deterministic": losses == again,
            "max_loss_diff_vs_eager": max(abs(a - b) for a, b in zip(losses, eager_losses,
                                                                     strict=True))}


SETTINGS = {
    # synth-quick-like: 8 subjects x 10 clips at 48 px
    "quick": Setting("quick", subjects=8, clips_per_subject=10, batch_size=8, epochs=2),
    # paper-size model (144 px, T = 8); batch and clips small enough for a CPU
    "paper": Setting("paper", subjects=8, clips_per_subject=4, batch_size=8, epochs=1),
    # the CI path: seconds
    "smoke": Setting("smoke", subjects=3, clips_per_subject=4, batch_size=4, epochs=1),
    # gpu_check.sh: the paper-size model at a GPU's batch; 32 folds = "all"
    "paper-gpu": Setting("paper", subjects=32, clips_per_subject=6, batch_size=64, epochs=3),
}


def _fractional_child(setting: Setting, subjects: list[str], device_name: str,
                      queue: Any, go: Any) -> None:
    try:
        warnings.filterwarnings("ignore")
        torch.set_num_threads(1)
        from medn.train import train_fold

        cfg = config_of(setting, device_name)
        data = synthetic_dataset(cfg, setting.subjects, setting.clips_per_subject)
        train_fold(cfg, data, subjects[0])          # warm-up, as a reused Ray worker would be
        queue.put(("ready", None))
        go.wait()
        for subject in subjects:
            train_fold(cfg, data, subject)
        queue.put(("done", time.perf_counter()))
    except BaseException as err:  # noqa: BLE001 - shipped to the parent, which reports it
        queue.put(("error", f"{type(err).__name__}: {err}"))


def fractional_throughput(setting: Setting, device_name: str, processes: int = 4,
                          folds_each: int = 2) -> Measurement:
    """``processes`` worker processes share the device, each training ``folds_each`` unpacked
    folds (what a ``--gpus-per-trial 1/processes`` study runs, without Ray and MLflow)."""
    ctx = multiprocessing.get_context("spawn")
    cfg = config_of(setting, device_name)
    subjects = synthetic_dataset(cfg, setting.subjects, setting.clips_per_subject).subject_ids
    queue, go = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_fractional_child, args=(
        setting, subjects[i * folds_each:(i + 1) * folds_each], device_name, queue, go))
        for i in range(processes)]
    for proc in procs:
        proc.start()
    messages = [queue.get() for _ in procs]           # every worker warmed up
    errors = [m[1] for m in messages if m[0] == "error"]
    started = time.perf_counter()
    go.set()
    ends = [queue.get() for _ in range(len(procs) - len(errors))]
    for proc in procs:
        proc.join()
    errors += [m[1] for m in ends if m[0] == "error"]
    if errors:
        raise RuntimeError(errors[0])
    wall = max(m[1] for m in ends) - started
    return Measurement(setting.profile, f"{processes}x1", processes * folds_each,
                       wall / (processes * folds_each), None, None)


def print_table(rows: list[Measurement], device: str, threads: int) -> None:
    """One row per (profile, K), with ratios to the unpacked row of the same profile."""
    print(f"torch {torch.__version__}, device {device}, {threads} thread(s)")
    print(f"{'profile':8} {'K':>4} {'folds':>5} {'s/fold':>8} {'folds/h':>8} {'x unp.':>6} "
          f"{'cpu-s/fold':>10} {'x unp.':>6} {'ops/fold-step':>13} {'x unp.':>6} "
          f"{'MB/fold':>8} {'TFLOPS':>7} {'MFU':>6}")
    base: dict[str, Measurement] = {}
    for row in rows:
        if row.k == "1":
            base[row.profile] = row
        ref = base.get(row.profile)
        speed = f"{ref.seconds_per_fold / row.seconds_per_fold:6.2f}" if ref else "     -"
        ops = f"{row.ops_per_fold_step:13.0f}" if row.ops_per_fold_step else f"{'-':>13}"
        ops_ratio = (f"{row.ops_per_fold_step / ref.ops_per_fold_step:6.3f}"
                     if ref and ref.ops_per_fold_step and row.ops_per_fold_step else "     -")
        mem = f"{row.mb_per_fold:8.1f}" if row.mb_per_fold is not None else f"{'-':>8}"
        cpu = (f"{row.cpu_seconds_per_fold:10.2f}" if row.cpu_seconds_per_fold is not None
               else f"{'-':>10}")
        cpu_ratio = (f"{ref.cpu_seconds_per_fold / row.cpu_seconds_per_fold:6.2f}"
                     if ref and ref.cpu_seconds_per_fold and row.cpu_seconds_per_fold
                     else "     -")
        tf = f"{row.tflops:7.3f}" if row.tflops is not None else f"{'-':>7}"
        mfu = f"{row.mfu:6.1%}" if row.mfu is not None else f"{'-':>6}"
        label = "1" if row.k == "1" else row.k
        print(f"{row.profile:8} {label:>4} {row.folds:5d} {row.seconds_per_fold:8.2f} "
              f"{3600 / row.seconds_per_fold:8.0f} {speed} {cpu} {cpu_ratio} {ops} {ops_ratio} "
              f"{mem} {tf} {mfu}")
    shared = [r for r in rows if "x" in r.k]
    packed = [r for r in rows if r.k not in ("1", "p1") and "x" not in r.k]
    if shared and packed:
        best = min(packed, key=lambda r: r.seconds_per_fold)
        print(f"fold throughput, best pack (K={best.k}) vs {shared[0].k} processes sharing the "
              f"device: x{shared[0].seconds_per_fold / best.seconds_per_fold:.2f} (goal on a "
              "GPU: >= 4)")
    print("K=1: unpacked train_fold, one fold after the other; p1: a pack of one; NxM: N "
          "processes sharing the device (unpacked);\nx unp. = unpacked / packed time (>1: "
          "packed faster) and packed / unpacked ops; cpu-s: this process's CPU time (robust "
          "on a shared machine, 1 thread)")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", nargs="+", default=["quick", "paper"],
                        choices=sorted(SETTINGS))
    parser.add_argument("--ks", nargs="+", default=["1", "p1", "2", "4", "8", "all"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None, help="override every profile's")
    parser.add_argument("--subjects", type=int, default=None, help="override every profile's")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--no-ops", action="store_true", help="skip the profiler counts")
    parser.add_argument("--flops", action="store_true", help="TFLOPS and MFU columns")
    parser.add_argument("--isolate", choices=["auto", "yes", "no"], default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile on the quick step")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="torch.compile(mode='reduce-overhead') on the quick step (CUDA)")
    parser.add_argument("--smoke", action="store_true",
                        help="the CI path: smoke profile, K in 1 p1 2, seconds")
    parser.add_argument("--gpu-check", action="store_true",
                        help="gpu_check.sh's table: paper-size model, K in 1 8 16 32, FLOPs, "
                        "4 processes sharing the GPU, CUDA graphs")
    parser.add_argument("--fractional", type=int, default=0,
                        help="also run N processes sharing the device (unpacked folds)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if args.smoke:
        args.profiles, args.ks = ["smoke"], ["1", "p1", "2"]
    if args.gpu_check:
        args.profiles, args.ks, args.flops = ["paper-gpu"], ["1", "8", "16", "all"], True
        # CUDA graphs only (torch.compile's default mode was measured on CPU): compiling
        # takes minutes and gpu_check.sh must end within 8
        args.fractional, args.cuda_graphs = 4, args.device == "cuda"
    bad = [k for k in args.ks if k not in ("1", "all") and not k.removeprefix("p").isdigit()]
    if bad:
        print(f"error: --ks {' '.join(bad)}: expected 1, p1, a number or 'all'",
              file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: torch sees no CUDA device", file=sys.stderr)
        return 2
    isolate = args.isolate == "yes" or (args.isolate == "auto" and args.device == "cpu")
    rows: list[Measurement] = []
    for name in args.profiles:
        setting = SETTINGS[name]
        for field, value in (("epochs", args.epochs), ("subjects", args.subjects),
                             ("batch_size", args.batch_size)):
            if value is not None:
                setattr(setting, field, value)
        for k in args.ks:
            call = measure_isolated if isolate else measure
            try:
                rows.append(call(setting, k, args.device, args.threads, not args.no_ops,
                                 args.flops))
            except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
                if "out of memory" not in str(err).lower():
                    raise
                print(f"  {name} K={k}: out of memory, skipped", flush=True)
                torch.cuda.empty_cache() if args.device == "cuda" else None
                continue
            row = rows[-1]
            print(f"  {name} K={k}: {row.seconds_per_fold:.2f} s/fold, "
                  f"{row.cpu_seconds_per_fold or 0:.2f} cpu-s/fold, "
                  f"{row.ops_per_fold_step or 0:.0f} ops/fold-step, "
                  f"{row.mb_per_fold or 0:.1f} MB/fold", flush=True)
        if args.fractional:
            rows.append(fractional_throughput(setting, args.device, args.fractional))
            print(f"  {name} {args.fractional} processes: {rows[-1].seconds_per_fold:.2f} "
                  "s/fold", flush=True)
    print_table(rows, args.device, args.threads)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([asdict(r) for r in rows], handle, indent=1)
    for flag, mode in ((args.compile, None), (args.cuda_graphs, "reduce-overhead")):
        if flag:
            setting = SETTINGS["smoke" if args.smoke else "quick"]
            if args.smoke or args.gpu_check:
                setting.epochs = 1
            out = compile_check(setting, args.device, args.threads, mode)
            print(f"torch.compile(mode={mode!r}) {setting.profile} step on {args.device}: "
                  f"eager {out['eager_ms']:.1f} ms, compiled {out['compiled_ms']:.1f} ms "
                  f"(x{out['speedup']:.2f}), first compiled step {out['first_step_s']:.1f} s, "
                  f"deterministic: {out['deterministic']}, max |loss - eager| "
                  f"{out['max_loss_diff_vs_eager']:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
