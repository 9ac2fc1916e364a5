"""The fused numba kernels (nnctl/optim/kernels.py) against the pure-NumPy path, which is the
reference: every optimizer and variant, 20 steps with the learning rate changing every step,
float32 and float64, small and large (parallel) parameters; the fallbacks; no allocation per
step in steady state; numba imported only by the first step."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from nnctl import jit
from nnctl.optim import SGD, Adagrad, Adam, AdamW, RMSprop


@pytest.fixture(autouse=True)
def fuse_small_models(monkeypatch):
    """The fused kernels on these small parameters too (models under jit.MIN_TOTAL
    parameters are otherwise updated by NumPy)."""
    monkeypatch.setattr(jit, "MIN_TOTAL", 0)

pytestmark = pytest.mark.skipif(not jit.available(), reason="numba is not installed")

CASES = {
    "sgd": lambda: SGD(np, 0.1),
    "sgd_wd": lambda: SGD(np, 0.1, weight_decay=0.05),
    "sgd_momentum": lambda: SGD(np, 0.1, momentum=0.9),
    "sgd_momentum_wd": lambda: SGD(np, 0.1, momentum=0.9, weight_decay=0.05),
    "sgd_nesterov": lambda: SGD(np, 0.05, momentum=0.8, nesterov=True),
    "sgd_nesterov_wd": lambda: SGD(np, 0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
    "adam": lambda: Adam(np, 0.01),
    "adam_wd": lambda: Adam(np, 0.02, 0.8, 0.99, 1e-6, weight_decay=0.1),
    "adamw": lambda: AdamW(np, 0.02, weight_decay=0.0),
    "adamw_wd": lambda: AdamW(np, 0.02, 0.85, 0.995, 1e-4, weight_decay=0.3),
    "rmsprop": lambda: RMSprop(np, 0.01),
    "rmsprop_wd": lambda: RMSprop(np, 0.01, weight_decay=0.05),
    "rmsprop_momentum": lambda: RMSprop(np, 0.01, 0.9, 1e-4, momentum=0.9),
    "rmsprop_momentum_wd": lambda: RMSprop(np, 0.01, 0.9, 1e-4, momentum=0.9, weight_decay=0.05),
    "adagrad": lambda: Adagrad(np, 0.1),
    "adagrad_wd_init": lambda: Adagrad(np, 0.1, 1e-6, weight_decay=0.05,
                                       initial_accumulator_value=0.2),
}
RTOL = {np.float32: 1e-6, np.float64: 1e-12}
STEPS = 20


def make(name, on):
    jit.set_enabled(on)
    try:
        opt = CASES[name]()
    finally:
        jit.set_enabled(None)
    assert opt.jit is on
    return opt


def problem(dtype, shapes, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s).astype(dtype) for s in shapes]
    grads = [[rng.normal(size=s).astype(dtype) for s in shapes] for _ in range(STEPS)]
    return params, grads


def run(opt, params, grads, lr_factors=None):
    base = opt.lr
    for t, g in enumerate(grads):
        opt.lr = base * (lr_factors[t] if lr_factors else 1.0 / (1 + 0.1 * t))
        opt.step(params, g)
    return params


def assert_same(opt_a, opt_b, pa, pb, dtype):
    rtol = RTOL[dtype]
    for a, b in zip(pa, pb):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-3)
    sa, sb = opt_a.state_dict(np.asarray), opt_b.state_dict(np.asarray)
    assert sa.keys() == sb.keys()
    for key in sa:
        scale = float(np.abs(sb[key]).max()) if sb[key].size else 0.0
        np.testing.assert_allclose(sa[key], sb[key], rtol=rtol, atol=rtol * scale, err_msg=key)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CASES)
def test_fused_matches_numpy(name, dtype):
    shapes = [(7, 5), (5,), (2, 3, 4, 4), ()]
    params, grads = problem(dtype, shapes)
    fused, ref = make(name, True), make(name, False)
    pf = run(fused, [p.copy() for p in params], grads)
    pr = run(ref, [p.copy() for p in params], grads)
    assert fused._kernels is not None  # really fused
    assert all(e[1] is not None for e in fused._fused.values())
    assert ref._kernels is None
    assert_same(fused, ref, pf, pr, dtype)
    assert not np.allclose(pf[0], params[0], rtol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adam_wd", "adamw_wd",
                                  "rmsprop_momentum_wd", "adagrad_wd_init", "sgd"])
def test_parallel_kernels_match_numpy(name, dtype, monkeypatch):
    import numba

    from nnctl import jit
    if numba.get_num_threads() < 2:
        monkeypatch.setattr(numba, "get_num_threads", lambda: 2)  # picks the parallel form
    monkeypatch.setattr(jit, "PARALLEL_MIN_SIZE", 1 << 16)
    shapes = [((1 << 16) + 12345,), (300, 400), (3,)]
    params, grads = problem(dtype, shapes, seed=1)
    grads = grads[:5]
    fused, ref = make(name, True), make(name, False)
    pf = run(fused, [p.copy() for p in params], grads)
    pr = run(ref, [p.copy() for p in params], grads)
    assert_same(fused, ref, pf, pr, dtype)


@pytest.mark.parametrize("name", CASES)
def test_resume_across_paths(name):
    # a checkpoint written on one path continues on the other as if it had not stopped
    params, grads = problem(np.float64, [(6, 4), (4,)], seed=2)
    straight = run(make(name, False), [p.copy() for p in params], grads)
    first = make(name, True)
    p = run(first, [q.copy() for q in params], grads[:10])
    second = make(name, False)
    second.load_state_dict(first.state_dict(np.asarray), np.asarray)
    second.lr = first.lr
    third = make(name, True)
    for t in range(10, STEPS):
        opt = second if t < 15 else third
        if t == 15:
            third.load_state_dict(second.state_dict(np.asarray), np.asarray)
        opt.lr = CASES[name]().lr / (1 + 0.1 * t)
        opt.step(p, grads[t])
    for a, b in zip(p, straight):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_broadcast_gradient_is_copied_once_and_never_written():
    p = np.ones((3, 4), dtype=np.float32)
    g = np.broadcast_to(np.arange(4, dtype=np.float32), (3, 4))
    fused, ref = make("adam_wd", True), make("adam_wd", False)
    q = p.copy()
    for _ in range(3):
        fused.step([p], [g])
        ref.step([q], [g])
    np.testing.assert_array_equal(g, np.broadcast_to(np.arange(4, dtype=np.float32), (3, 4)))
    np.testing.assert_allclose(p, q, rtol=1e-6)
    assert fused._fused[0][1] is not None


def test_what_the_kernels_cannot_take_goes_the_numpy_way():
    # float16 parameters; a float64 gradient for a float32 parameter; state loaded as float64
    p16 = np.ones(5, dtype=np.float16)
    p32, g64 = np.ones(5, dtype=np.float32), np.full(5, 0.5)
    p64 = np.ones(5, dtype=np.float32)
    opt = make("adam", True)
    opt.load_state_dict({"step": np.array(0), "m.2": np.zeros(5), "v.2": np.zeros(5)}, np.asarray)
    ref = make("adam", False)
    ref.load_state_dict({"step": np.array(0), "m.2": np.zeros(5), "v.2": np.zeros(5)}, np.asarray)
    args = [np.full(5, 0.25, dtype=np.float16), g64, np.full(5, 0.5, dtype=np.float32)]
    qs = [p16.copy(), p32.copy(), p64.copy()]
    for _ in range(3):
        opt.step([p16, p32, p64], args)
        ref.step(qs, args)
    assert opt._fused[0][1] is None and opt._fused[2][1] is None and 1 not in opt._fused
    for a, b in zip([p16, p32, p64], qs):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_division_by_zero_gives_what_numpy_gives(dtype):
    # eps = 0 and a zero gradient: 0 / 0 is nan on both paths, never an exception
    with np.errstate(invalid="ignore", divide="ignore"):
        for on in (True, False):
            jit.set_enabled(on)
            try:
                opts = [Adagrad(np, 0.1, eps=0.0), RMSprop(np, 0.1, eps=0.0)]
            finally:
                jit.set_enabled(None)
            for opt in opts:
                p = np.ones(4, dtype=dtype)
                opt.step([p], [np.array([0.0, 1.0, -1.0, 0.0], dtype=dtype)])
                assert np.isnan(p[0]) and np.isnan(p[3]) and np.isfinite(p[1:3]).all()


def test_sgd_velocity_starts_from_the_gradient_whichever_path_takes_the_first_step():
    # a first gradient of another dtype goes the NumPy way, whose float64 velocity then keeps
    # this parameter there: the kernel never finds a velocity it did not start
    p, q = np.ones(3, dtype=np.float32), np.ones(3, dtype=np.float32)
    fused, ref = make("sgd_momentum_wd", True), make("sgd_momentum_wd", False)
    grads = [np.array([1.0, -2.0, 0.5]), np.array([0.5, 0.5, -1.0], dtype=np.float32),
             np.array([-1.0, 2.0, 0.0], dtype=np.float32)]
    for g in grads:
        fused.step([p], [g])
        ref.step([q], [g])
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(fused.velocity[0], ref.velocity[0])
    assert fused._fused[0][1] is None


def test_cupy_takes_the_cuda_kernels_and_numpy_numbas():
    import types
    fake = types.SimpleNamespace(__name__="cupy", **{k: getattr(np, k) for k in
                                                     ("zeros_like", "sqrt", "multiply",
                                                      "divide", "empty_like")})
    jit.set_enabled(False)
    try:  # the JIT switch is numba's: CuPy's kernels do not depend on it
        assert Adam(fake).jit is True and Adam(fake).on_gpu and Adam(np).jit is False
    finally:
        jit.set_enabled(None)


@pytest.mark.parametrize("name", ["sgd_momentum_wd", "sgd_nesterov", "adam_wd", "adamw_wd",
                                  "rmsprop_momentum_wd", "adagrad_wd_init"])
def test_no_allocation_per_step_in_steady_state(name):
    # 1 MB of float32 parameters; after warm-up a step allocates no array: numpy reports its
    # allocations to tracemalloc, so the traced peak during a step stays at a few Python objects
    rng = np.random.default_rng(4)
    shapes = [(256, 512), (512,), (512, 256)]  # 262,656 float32 = 1.05 MB
    params = [rng.normal(size=s).astype(np.float32) for s in shapes]
    grads = [rng.normal(size=s).astype(np.float32) for s in shapes]
    opt = make(name, True)
    for _ in range(3):
        opt.step(params, grads)
    tracemalloc.start()
    try:
        for t in range(5):
            opt.lr = 0.01 / (1 + t)  # a schedule sets lr on every step
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            opt.step(params, grads)
            current, peak = tracemalloc.get_traced_memory()
            assert peak - before < 1024, (t, peak - before)
            assert current - before < 256, (t, current - before)
    finally:
        tracemalloc.stop()


def test_importing_the_optimizers_does_not_import_numba():
    code = ("import sys, numpy as np; import nnctl.optim as o; assert 'numba' not in sys.modules;"
            "opt = o.Adam(np); assert 'numba' not in sys.modules;"
            "p = [np.ones(1 << 17)]; opt.step(p, [np.ones(1 << 17)]); "
            "assert 'numba' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env={
        **__import__("os").environ, "NNCTL_JIT": "1"})


def test_a_small_model_is_updated_by_numpy_without_importing_numba():
    code = ("import sys, numpy as np; from nnctl import jit; from nnctl.optim import Adam; "
            "opt = Adam(np, 0.01); p = [np.ones((64, 32), np.float32)]; "
            "opt.step(p, [np.ones_like(p[0])]); print(opt.jit, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]
