#!/usr/bin/env bash
# The checks that need a GPU, in one go (docs/cuda.md): run on a machine with an NVIDIA GPU,
# CuPy and PyTorch, from the repository root:   bash benchmarks/gpu_check.sh [OUT_DIR]
# Each step prints its result; the script goes on after a failure and exits non-zero at the
# end if any step failed. About 5 minutes on a recent GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check_out}"
mkdir -p "$out"
failed=0
step() { echo; echo "== $*"; "$@" || { echo "FAILED: $*"; failed=1; }; }

step python -c "import cupy; d = cupy.cuda.runtime.getDeviceProperties(0); \
print(d['name'].decode(), cupy.__version__, 'CUDA', cupy.cuda.runtime.runtimeGetVersion())"
# the CUDA cases of the test suite (they skip on a machine without a GPU), the kernels'
# nvcc compiles included
step python -m pytest -q -m "" tests/backend tests/compile/test_cuda_codegen.py \
    tests/ops/test_segment_sum.py tests/optim/test_cuda_kernels.py tests/test_doctor.py
# parity: every op of the training step, CuPy float64 against NumPy float64 (1e-10)
for config in spirals digits_cnn chars_lstm digits_residual chars_transformer; do
  step nnctl doctor "configs/$config.yaml" --against cuda
done
# a whole run on the GPU against the CPU's accuracy
step nnctl train configs/digits_cnn.yaml --device cuda --out "$out/runs" --no-progress
step nnctl train configs/digits_cnn.yaml --device cpu --out "$out/runs" --no-progress
echo
if [ "$failed" -ne 0 ]; then echo "some GPU checks failed"; exit 1; fi
echo "every GPU check passed"
