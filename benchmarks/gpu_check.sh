#!/usr/bin/env bash
# The checks that need a GPU, in one go (docs/cuda.md): run on a machine with an NVIDIA GPU,
# CuPy and PyTorch's CUDA build, from the repository root:   bash benchmarks/gpu_check.sh [OUT_DIR]
#
# The card's name first, then: the CUDA test cases, nnctl doctor on five configs, digits_cnn
# trained on GPU and CPU, the GPU benchmark (benchmarks/gpu.py: nnctl on CuPy vs PyTorch CUDA)
# and issue 14's acceptance ratios, PASS or FAIL each. Every step runs under a timeout, and the
# whole stays under 8 minutes: GPU_CHECK_BUDGET_S (default 460 s) in all, of which GPU_BENCH_S
# (default 210 s) is kept for the benchmark and the acceptance check whatever the steps before
# it take. The script goes on after a failure and exits non-zero at the end if any step failed.
# OUT_DIR (default gpu_check_out) gets the runs and the benchmark's gpu_bench.{json,md}.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check_out}"
mkdir -p "$out"
budget="${GPU_CHECK_BUDGET_S:-460}"
bench_s="${GPU_BENCH_S:-210}"
accept_s=20
failed=0

# step CAP RESERVE CMD...: CMD under a timeout of CAP seconds, cut to what the budget leaves
# once RESERVE seconds are kept for the steps after it
step() {
  local cap=$1 reserve=$2
  shift 2
  local limit=$((budget - SECONDS - reserve))
  [ "$limit" -gt "$cap" ] && limit=$cap
  [ "$limit" -lt 0 ] && limit=0
  echo
  echo "== $*  (timeout ${limit}s)"
  if [ "$limit" -lt 5 ]; then
    echo "SKIPPED (no time left in the ${budget}s budget): $*"
    failed=1
    return
  fi
  timeout -k 5 "$limit" "$@"
  local rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "FAILED (timed out after ${limit}s): $*"
    failed=1
  elif [ "$rc" -ne 0 ]; then
    echo "FAILED (exit $rc): $*"
    failed=1
  fi
}

echo "== the card"
if command -v nvidia-smi >/dev/null 2>&1; then
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
step 60 "$bench_s" python -c "import cupy; d = cupy.cuda.runtime.getDeviceProperties(0); \
print(d['name'].decode(), '| cupy', cupy.__version__, '| CUDA runtime', \
cupy.cuda.runtime.runtimeGetVersion())"
# the CUDA cases of the test suite (they skip on a machine without a GPU), the kernels'
# nvcc compiles included
step 150 "$bench_s" python -m pytest -q -m "" tests/backend tests/compile/test_cuda_codegen.py \
    tests/ops/test_segment_sum.py tests/optim/test_cuda_kernels.py tests/test_doctor.py
# parity: every op of the training step, CuPy float64 against NumPy float64 (1e-10)
for config in spirals digits_cnn chars_lstm digits_residual chars_transformer; do
  step 40 "$bench_s" nnctl doctor "configs/$config.yaml" --against cuda
done
# a whole run on the GPU against the CPU's accuracy
step 90 "$bench_s" nnctl train configs/digits_cnn.yaml --device cuda --out "$out/runs" --no-progress
step 60 "$bench_s" nnctl train configs/digits_cnn.yaml --device cpu --out "$out/runs" --no-progress
# the GPU benchmark, the acceptance workloads first (the JSON is written after each one, so a
# timeout keeps those done); then the ratios: PASS/FAIL each, the script going on either way
rm -f "$out/gpu_bench.json"
step $((bench_s - accept_s)) "$accept_s" python benchmarks/gpu.py \
    --cases mlp_digits,cnn,transformer,mlp_784,lstm \
    --json "$out/gpu_bench.json" --markdown "$out/gpu_bench.md"
step "$accept_s" 0 python benchmarks/gpu.py --accept "$out/gpu_bench.json"
echo
echo "${SECONDS}s in all"
if [ "$failed" -ne 0 ]; then echo "some GPU checks failed"; exit 1; fi
echo "every GPU check passed"
