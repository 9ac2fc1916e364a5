"""Deterministic scatter-add (the gradient of `take`, an embedding's gradient): y[r] = the sum
of x[k] over the k with indices[k] == r, added in increasing k.

NumPy's `add.at` already adds that way, one k after another. CuPy's adds with atomics, whose
order varies from run to run, so a float sum differs in its last bits between two runs of one
training step. On the GPU the sum is therefore a sort-based segment sum: the indices sorted
stably (each row's k stay in increasing order), each row's run of k found by a binary search,
and one thread per output element adds its run in order. The result is the same bits as
NumPy's add.at (tests/ops/test_segment_sum.py checks the algorithm on NumPy and the kernel's
statements compiled as host C++).
"""

from __future__ import annotations

# One thread per output element t = r * width + c adds its row's run of values in k order.
SEGMENT_BODY = """
  long long r = t / width, c = t % width;
  T acc = (T)0;
  for (long long j = starts[r]; j < ends[r]; j++) {
    acc += rows[order[j] * width + c];
  }
  y[t] = acc;
"""
DEVICE_SOURCE = """
template <typename T>
__device__ void nnctl_segment_sum(long long t, const T* rows, const long long* order,
                                  const long long* starts, const long long* ends, T* y,
                                  long long width) {""" + SEGMENT_BODY + """}
extern "C" __global__ void nnctl_segment_sum_float(const float* rows, const long long* order,
    const long long* starts, const long long* ends, float* y, long long n, long long width) {
  long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (t < n) nnctl_segment_sum<float>(t, rows, order, starts, ends, y, width);
}
extern "C" __global__ void nnctl_segment_sum_double(const double* rows, const long long* order,
    const long long* starts, const long long* ends, double* y, long long n, long long width) {
  long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (t < n) nnctl_segment_sum<double>(t, rows, order, starts, ends, y, width);
}
"""
_kernels: dict = {}


def segment_plan(xp, indices, num_rows: int):
    """(order, starts, ends): the positions k sorted stably by their row, and each row's
    run [starts[r], ends[r]) in that order."""
    flat = indices.reshape(-1).astype("int64")
    order = xp.argsort(flat, kind="stable")
    rows = xp.arange(num_rows, dtype="int64")
    sorted_rows = flat[order]
    return order, xp.searchsorted(sorted_rows, rows, side="left"), \
        xp.searchsorted(sorted_rows, rows, side="right")


def segment_sum(xp, x, indices, num_rows: int):
    """scatter_add's result, added in k order on every backend."""
    y = xp.zeros((num_rows,) + x.shape[indices.ndim:], dtype=x.dtype)
    if not hasattr(xp, "RawModule"):  # NumPy (and the CPU's strict test backend)
        xp.add.at(y, indices, x)  # unbuffered: repeated rows accumulate, in k order
        return y
    order, starts, ends = segment_plan(xp, indices, num_rows)
    width = max(int(y.size // max(num_rows, 1)), 1)
    rows = xp.ascontiguousarray(x).reshape(-1, width)
    n = y.size
    if n:
        kernel = _segment_kernel(xp, str(x.dtype))
        threads = 256
        kernel(((n + threads - 1) // threads,), (threads,),
               (rows, order, starts, ends, y, xp.int64(n), xp.int64(width)))
    return y


def _segment_kernel(xp, dtype: str):
    key = dtype
    if key not in _kernels:
        name = {"float32": "nnctl_segment_sum_float", "float64": "nnctl_segment_sum_double"}
        _kernels[key] = xp.RawModule(code=DEVICE_SOURCE).get_function(name[dtype])
    return _kernels[key]
