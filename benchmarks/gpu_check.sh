#!/usr/bin/env bash
# The first run on a GPU, as one command (under 8 minutes on one GPU):
#
#   benchmarks/gpu_check.sh
#
# 1. a Python environment: $MEDN_PYTHON if set; else .venv-gpu/ (made once with
#    --system-site-packages, so a CUDA build of torch already on the machine is reused, then
#    `pip install -e '.[test]'`);
# 2. the `gpu` tests (tests/test_gpu.py: bf16 vs fp32 step, a paper-profile fold on CUDA,
#    packed training on CUDA, data staying on the device, a --gpus-per-trial 0.25 study with
#    4 trials on the GPU at once);
# 3. one table: paper-profile fold time unpacked and packed K = 8 / 16 / 32 / all, achieved
#    TFLOPS and MFU, GPU memory per fold, the throughput of 4 processes sharing the GPU (what a
#    --gpus-per-trial 0.25 study runs), and CUDA graphs (torch.compile mode="reduce-overhead")
#    on the quick step.
#
# Without a GPU it runs the CPU smoke path of the same code (the gpu tests skip, each with its
# reason; the benchmark runs its smoke settings), so this script is exercised in CI
# (tests/test_gpu.py::test_gpu_check_cpu_path_runs). Output also goes to $GPU_CHECK_OUT
# (default .medn_cache/gpu_check/).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${GPU_CHECK_OUT:-.medn_cache/gpu_check}"
mkdir -p "$OUT"

PY="${MEDN_PYTHON:-}"
if [ -z "$PY" ]; then
    if [ ! -x .venv-gpu/bin/python ]; then
        echo "== creating .venv-gpu (system site packages visible) and installing medn[test]"
        python3 -m venv --system-site-packages .venv-gpu
        .venv-gpu/bin/pip install -q -e '.[test]' || {
            echo "error: pip install -e '.[test]' failed (no package index reachable?); set" \
                 "MEDN_PYTHON to a Python that has medn's dependencies" >&2; exit 2; }
    fi
    PY=.venv-gpu/bin/python
fi

if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    "$PY" -c "import torch; print('== GPU:', torch.cuda.get_device_name(0), '| torch',
        torch.__version__, '| CUDA', torch.version.cuda)"
    echo "== gpu tests"
    tests=0
    "$PY" -m pytest -m gpu tests/test_gpu.py -q -rs -p no:cacheprovider \
        | tee "$OUT/gpu_tests.txt" || tests=$?
    # the table is worth having even when a test failed: the script's status says so at the end
    echo "== benchmark (paper profile on the GPU)"
    "$PY" benchmarks/bench_packing.py --gpu-check --json "$OUT/gpu_table.json" \
        | tee "$OUT/gpu_table.txt"
    if [ "$tests" -ne 0 ]; then
        echo "== gpu tests FAILED (exit $tests): see $OUT/gpu_tests.txt" >&2
        exit "$tests"
    fi
else
    echo "== no CUDA GPU: CPU smoke path (the gpu tests skip with their reasons)"
    "$PY" -m pytest -m gpu tests/test_gpu.py -q -rs -p no:cacheprovider \
        | tee "$OUT/gpu_tests.txt"
    "$PY" benchmarks/bench_packing.py --smoke --isolate no --json "$OUT/cpu_smoke.json" \
        | tee "$OUT/cpu_smoke.txt"
fi
echo "== done; output in $OUT"
