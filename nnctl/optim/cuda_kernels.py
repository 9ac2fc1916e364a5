"""The fused optimizer updates on the GPU: one CuPy ElementwiseKernel per optimizer, the same
statements as the numba kernels of kernels.py, in the same order, so a parameter's update is
one kernel launch (Adam was about ten CuPy calls per parameter) and reads each gradient
element once.

`CudaKernels(xp)` has the interface of the `kernels` module the optimizers call (`adam(p, g,
m, v, c, l2)`, ..., and the `*_parallel` names, which are the same kernels here: a GPU kernel
is parallel already). `c` is the small coefficient array the optimizer fills each step, on
the device. The kernels are compiled without fused multiply-add (`--fmad=false`), so each
update is the same IEEE operations as on the CPU; tests/optim/test_cuda_kernels.py checks
the statements, compiled as host C++, against the numba kernels bit for bit.
"""

from __future__ import annotations

# every kernel first: the decayed parameter (c[0] is exactly 1 unless AdamW's decoupled
# decay) and the gradient with the L2 term where asked
DECAY_AND_L2 = """
T pi = p * decay;
T gi = g;
if (l2) gi = gi + wd * pi;"""
# name -> (extra inputs after the gradient, in-out arrays, statements); T is the dtype
SOURCES = {
    "sgd": ("", "T p", """
T decay = c[0], wd = c[1], lr = c[2];""" + DECAY_AND_L2 + """
p = pi - lr * gi;"""),
    "sgd_momentum": ("bool nesterov, bool first", "T p, T v", """
T decay = c[0], wd = c[1], lr = c[2], mu = c[3];""" + DECAY_AND_L2 + """
T vi = v * mu + gi;
if (first) vi = gi;
v = vi;
T d = nesterov ? gi + mu * vi : vi;
p = pi - lr * d;"""),
    "adam": ("", "T p, T m, T v", """
T decay = c[0], wd = c[1], omb1 = c[2], b1 = c[3], omb2 = c[4], b2 = c[5];
T eps = c[6], step = c[7];""" + DECAY_AND_L2 + """
T mi = m * b1 + gi * omb1;
T t = gi * gi;
T vi = v * b2 + t * omb2;
m = mi;
v = vi;
t = mi / (sqrt(vi) + eps);
p = pi - t * step;"""),
    "rmsprop": ("", "T p, T s", """
T decay = c[0], wd = c[1], oma = c[2], alpha = c[3], eps = c[4], lr = c[6];"""
        + DECAY_AND_L2 + """
T t = gi * gi;
T si = s * alpha + t * oma;
s = si;
T d = gi / (sqrt(si) + eps);
p = pi - d * lr;"""),
    "rmsprop_momentum": ("", "T p, T s, T b", """
T decay = c[0], wd = c[1], oma = c[2], alpha = c[3], eps = c[4], mu = c[5], lr = c[6];"""
        + DECAY_AND_L2 + """
T t = gi * gi;
T si = s * alpha + t * oma;
s = si;
T bi = b * mu + gi / (sqrt(si) + eps);
b = bi;
p = pi - bi * lr;"""),
    "adagrad": ("", "T p, T s", """
T decay = c[0], wd = c[1], eps = c[2], lr = c[3];""" + DECAY_AND_L2 + """
T si = s + gi * gi;
s = si;
T d = gi / (sqrt(si) + eps);
p = pi - d * lr;"""),
}


def in_params(name: str) -> str:
    extra = SOURCES[name][0]
    return "T g, raw T c, bool l2" + (f", {extra}" if extra else "")


def guarded(name: str) -> tuple[str, str]:
    """(the kernel's inputs, its body) with the step's guard: `ok[0]` is 0 for a step that
    must not be applied (a non-finite or diverged loss found on the device), and then the
    thread leaves its parameter and state elements as they are."""
    return in_params(name) + ", raw T ok", "if (ok[0] != (T)0) {" + SOURCES[name][2] + "\n}"


class CudaKernels:
    """The optimizers' kernel namespace on CuPy; kernels are built at first use."""

    def __init__(self, xp):
        self.xp = xp
        self._built: dict = {}
        self._ok = None
        self._flags: dict = {}  # dtype -> this step's guard in that dtype
        self._always: dict = {}  # dtype -> a 1 that never changes (steps without a guard)

    def guard(self, ok) -> None:
        """This step's guard: a 0-d device array (1 apply, 0 skip), or None to apply."""
        self._ok = ok
        self._flags = {}

    def _flag(self, dtype):
        flag = self._flags.get(dtype)
        if flag is None:
            if self._ok is None:
                flag = self._always.get(dtype)
                if flag is None:
                    flag = self._always[dtype] = self.xp.ones(1, dtype=dtype)
            else:
                flag = self._ok.astype(dtype).reshape(1)
            self._flags[dtype] = flag
        return flag

    def _kernel(self, name: str):
        kernel = self._built.get(name)
        if kernel is None:
            inputs, body = guarded(name)
            kernel = self._built[name] = self.xp.ElementwiseKernel(
                inputs, SOURCES[name][1], body, f"nnctl_{name}", options=("--fmad=false",))
        return kernel

    def sgd(self, p, g, c, l2):
        self._kernel("sgd")(g, c, l2, self._flag(p.dtype), p)

    def sgd_momentum(self, p, g, v, c, l2, nesterov, first):
        self._kernel("sgd_momentum")(g, c, l2, nesterov, first, self._flag(p.dtype), p, v)

    def adam(self, p, g, m, v, c, l2):
        self._kernel("adam")(g, c, l2, self._flag(p.dtype), p, m, v)

    def rmsprop(self, p, g, s, c, l2):
        self._kernel("rmsprop")(g, c, l2, self._flag(p.dtype), p, s)

    def rmsprop_momentum(self, p, g, s, b, c, l2):
        self._kernel("rmsprop_momentum")(g, c, l2, self._flag(p.dtype), p, s, b)

    def adagrad(self, p, g, s, c, l2):
        self._kernel("adagrad")(g, c, l2, self._flag(p.dtype), p, s)

    # a GPU kernel is parallel already
    sgd_parallel, sgd_momentum_parallel, adam_parallel = sgd, sgd_momentum, adam
    rmsprop_parallel, rmsprop_momentum_parallel, adagrad_parallel = \
        rmsprop, rmsprop_momentum, adagrad
