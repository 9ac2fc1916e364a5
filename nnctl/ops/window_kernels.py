"""The window ops of conv.py and pool.py on a device array module (CuPy), without Python loops
over kernel offsets: col2im as a gather, and the window argmax of max pooling.

On NumPy, conv.py adds columns back with one strided add per kernel offset (`_scatter_windows`)
and pool_kernels.py runs numba loops: tuned and measured on the CPU (docs/performance.md), and
kept. On CuPy every Python iteration is a kernel launch or more, so these are one kernel each:

- **col2im as a gather** (`col2im`): one thread per element of x sums the column entries that
  map to it, over the kernel offsets (i, j) in row-major order, starting from zero. That is
  the order in which the CPU's strided adds reach each element, so the sums are the CPU's
  bits (additions only: no contraction into an FMA changes them). Deterministic, no atomics.
  The columns are read through their strides, so a transposed or broadcast block (col2im's
  [C, KH, KW, N, OH, OW] order, avg-pool's broadcast share) needs no copy.
- **the window argmax** (`window_argmax`): one thread per window scans its elements of x in
  row-major order: the first maximum wins, a NaN is the maximum (the first NaN), and the
  padding is skipped, as in the CPU's numba loops (pool_kernels.py). So the index always
  names an element of x, even in a window whose elements of x are all -inf (NumPy's argmax
  over the -inf-padded view would name the padding there), and the value at the index is the
  window's maximum.

An array module that is neither NumPy nor CuPy (the strict test backend, nnctl/backend/strict.py,
which stands in for CuPy on the CPU), and CuPy for float16 (mixed precision's compute dtype;
the kernels are built for float32 and float64), run the same formulations with the module's
own calls:
col2im as one gather (a precomputed table of column positions) and one sum over the offset
axis, which NumPy adds element by element in offset order (the CPU's bits again); the argmax as
argmax over the window view (with the all -inf windows sent to their first element of x).
tests/ops/test_window_kernels.py compiles the kernels' bodies as
host C++ and checks their bits against the NumPy path, and compiles the kernels with nvcc.
"""

from __future__ import annotations

import functools

# One thread per element t of dx [N, C, H, W] (contiguous): the sum of the column entries
# cols[n, c, i, j, p, q] with i*dh + p*sh = h + ph and j*dw + q*sw = w + pw, over (i, j) in
# row-major order. cols is read through its element strides (sn, sc, si, sj, sp, sq).
COL2IM_BODY = """
  long long w = t % W, h = (t / W) % H, c = (t / (W * H)) % C, n = t / (W * H * C);
  const T* base = cols + n * sn + c * sc;
  T acc = (T)0;
  for (long long i = 0; i < KH; i++) {
    long long r = h + ph - i * dh;
    if (r < 0) break;  /* r falls as i grows */
    if (r % sh != 0 || r / sh >= OH) continue;
    for (long long j = 0; j < KW; j++) {
      long long s = w + pw - j * dw;
      if (s < 0) break;
      if (s % sw != 0 || s / sw >= OW) continue;
      acc += base[i * si + j * sj + (r / sh) * sp + (s / sw) * sq];
    }
  }
  dx[t] = acc;
"""
COL2IM_PARAMS = ("long long total, long long C, long long H, long long W, long long KH, "
                 "long long KW, long long OH, long long OW, long long sh, long long sw, "
                 "long long ph, long long pw, long long dh, long long dw, long long sn, "
                 "long long sc, long long si, long long sj, long long sp, long long sq")

# One thread per window t of index [N, C, OH, OW] (contiguous): k = i*KW + j of the window's
# first maximum in row-major order (as a number of x's type), a NaN the maximum (the first
# one), the padding skipped (every window holds an element of x: pool.py's shape check).
# x is read through its element strides (sn, sc, sh_, sw_).
ARGMAX_BODY = """
  long long q = t % OW, p = (t / OW) % OH, c = (t / (OW * OH)) % C, n = t / (OW * OH * C);
  const T* base = x + n * sn + c * sc;
  T best = (T)0;
  int best_k = -1;
  for (long long i = 0; i < KH; i++) {
    long long h = p * sh - ph + i;
    if (h < 0 || h >= H) continue;
    for (long long j = 0; j < KW; j++) {
      long long w = q * sw - pw + j;
      if (w < 0 || w >= W) continue;
      T v = base[h * sh_ + w * sw_];
      if (best_k < 0 || v > best || (v != v && best == best)) {
        best = v;
        best_k = (int)(i * KW + j);
      }
    }
  }
  index[t] = (T)best_k;
"""
ARGMAX_PARAMS = ("long long total, long long C, long long H, long long W, long long KH, "
                 "long long KW, long long OH, long long OW, long long sh, long long sw, "
                 "long long ph, long long pw, long long sn, long long sc, long long sh_, "
                 "long long sw_")


def _names(params: str) -> str:
    return ", ".join(p.split()[-1] for p in params.split(", "))


def _device_source() -> str:
    parts = []
    for name, body, head, params in (
            ("col2im", COL2IM_BODY, "const T* cols, T* dx", COL2IM_PARAMS),
            ("window_argmax", ARGMAX_BODY, "const T* x, T* index", ARGMAX_PARAMS)):
        parts.append(f"template <typename T>\n__device__ void nnctl_{name}(long long t, {head}, "
                     f"{params}) {{{body}}}\n")
        for ctype in ("float", "double"):
            typed = head.replace("T*", f"{ctype}*")
            parts.append(
                f'extern "C" __global__ void nnctl_{name}_{ctype}({typed}, {params}) {{\n'
                "  long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;\n"
                f"  if (t < total) nnctl_{name}<{ctype}>(t, {head.split(', ')[0].split()[-1]}, "
                f"{head.split(', ')[1].split()[-1]}, {_names(params)});\n}}\n")
    return "".join(parts)


DEVICE_SOURCE = _device_source()
_kernels: dict = {}
THREADS = 256


def is_device(xp) -> bool:
    """Whether `xp` is a device array module (CuPy, or the strict backend standing in for it):
    the window ops take the loop-free formulations of this module there."""
    return xp.__name__ != "numpy"


KERNEL_DTYPES = {"float32": "float", "float64": "double"}


def _has_kernels(xp, dtype) -> bool:
    """CuPy, for a dtype the kernels are built for (float16, mixed precision's compute
    dtype, takes the array-module formulation: no loops either)."""
    return hasattr(xp, "RawModule") and str(dtype) in KERNEL_DTYPES


def _kernel(xp, name: str, dtype: str):
    key = (name, dtype)
    if key not in _kernels:
        ctype = KERNEL_DTYPES[dtype]
        _kernels[key] = xp.RawModule(code=DEVICE_SOURCE).get_function(f"nnctl_{name}_{ctype}")
    return _kernels[key]


def _launch(xp, name: str, dtype: str, arrays: tuple, total: int, ints: tuple) -> None:
    if total:
        _kernel(xp, name, dtype)(((total + THREADS - 1) // THREADS,), (THREADS,),
                                 arrays + tuple(xp.int64(v) for v in (total,) + ints))


def _element_strides(a) -> tuple:
    return tuple(s // a.itemsize for s in a.strides)


# ---- col2im ------------------------------------------------------------------------------------

def col2im(xp, cols, input_shape, stride, padding, dilation, out=None):
    """dx [N, C, H, W] (contiguous): the adjoint of conv.py's `_windows`, for cols
    [N, C, KH, KW, OH, OW] of any strides; written into `out` when it is given."""
    n, c, h, w = input_shape
    kh, kw, oh, ow = cols.shape[2:]
    if out is None:
        out = xp.empty((n, c, h, w), dtype=cols.dtype)
    if _has_kernels(xp, cols.dtype):
        _launch(xp, "col2im", str(cols.dtype), (cols, out), out.size,
                (c, h, w, kh, kw, oh, ow, *stride, *padding, *dilation,
                 *_element_strides(cols)))
        return out
    table = xp.asarray(gather_table((h, w), (kh, kw), (oh, ow), stride, padding, dilation))
    flat = xp.concatenate((cols.reshape(n, c, -1), xp.zeros((n, c, 1), dtype=cols.dtype)),
                          axis=2)  # the last entry is the zero that offsets off the grid read
    # [N, C, KH*KW, H, W] summed over the offsets: element by element, in offset order
    xp.sum(flat[:, :, table], axis=2, out=out)
    return out


@functools.lru_cache(maxsize=64)
def gather_table(hw, kernel, out_hw, stride, padding, dilation):
    """int64 [KH*KW, H, W]: for offset k = i*KW + j and pixel (h, w), the position of the
    column entry (i, j, p, q) that maps to it in the flattened [KH, KW, OH, OW] columns, or
    KH*KW*OH*OW (one past the end: a zero) where none does. Host NumPy, from the geometry."""
    import numpy as np

    (h, w), (kh, kw), (oh, ow) = hw, kernel, out_hw
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    r = np.arange(h)[None, :] + ph - np.arange(kh)[:, None] * dh  # [KH, H]: p * sh
    s = np.arange(w)[None, :] + pw - np.arange(kw)[:, None] * dw  # [KW, W]: q * sw
    p_ok = (r >= 0) & (r % sh == 0) & (r // sh < oh)
    q_ok = (s >= 0) & (s % sw == 0) & (s // sw < ow)
    i, j = np.arange(kh)[:, None, None, None], np.arange(kw)[None, :, None, None]
    p, q = (r // sh)[:, None, :, None], (s // sw)[None, :, None, :]
    flat = ((i * kw + j) * oh + p) * ow + q
    ok = p_ok[:, None, :, None] & q_ok[None, :, None, :]
    table = np.where(ok, flat, kh * kw * oh * ow)  # [KH, KW, H, W]
    table.flags.writeable = False
    return table.reshape(kh * kw, h, w)


# ---- max pooling's window argmax ---------------------------------------------------------------

def window_argmax(xp, x, kernel, stride, padding, out_hw):
    """[N, C, OH, OW] in x's dtype: k = i*KW + j of each window's first maximum among its
    elements of x (a NaN is the maximum, the first one). kernel, stride, padding are pairs."""
    n, c, h, w = x.shape
    oh, ow = out_hw
    if _has_kernels(xp, x.dtype):
        index = xp.empty((n, c, oh, ow), dtype=x.dtype)
        _launch(xp, "window_argmax", str(x.dtype), (x, index), index.size,
                (c, h, w, *kernel, oh, ow, *stride, *padding, *_element_strides(x)))
        return index
    from nnctl.ops.conv import _windows
    view = _windows(xp, x, kernel, stride, padding, (1, 1), out_hw, fill=float("-inf"))
    flat = view.reshape(n, c, kernel[0] * kernel[1], oh, ow)
    index = xp.argmax(flat, axis=2)[:, :, None]
    # a window whose maximum is -inf: its first element of x, not the -inf padding before it
    empty = xp.take_along_axis(flat, index, axis=2)[:, :, 0] == float("-inf")
    first = xp.asarray(first_inside((h, w), kernel, stride, padding, out_hw))
    return xp.where(empty, first, index[:, :, 0]).astype(x.dtype)


@functools.lru_cache(maxsize=64)
def first_inside(hw, kernel, stride, padding, out_hw):
    """int64 [OH, OW]: k = i*KW + j of each window's first element inside x (host NumPy)."""
    import numpy as np

    kw, (sh, sw), (ph, pw), (oh, ow) = kernel[1], stride, padding, out_hw
    i = np.maximum(ph - np.arange(oh) * sh, 0)  # the first row of x in window row p
    j = np.maximum(pw - np.arange(ow) * sw, 0)
    table = i[:, None] * kw + j[None, :]
    table.flags.writeable = False
    return table
