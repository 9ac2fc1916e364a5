"""Every backend computes what NumPy computes. CUDA cases run where CuPy and a GPU are
present and skip cleanly elsewhere (STYLE R11)."""

from pathlib import Path

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import BackendError
from nnctl.graph import input_placeholder, parameter


def _cuda_available() -> bool:
    try:
        get_backend("cuda")
        return True
    except BackendError:
        return False


BACKENDS = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not _cuda_available(), reason="needs CuPy and a CUDA GPU"))]


@pytest.mark.parametrize("device", BACKENDS)
def test_a_compiled_training_step_matches_numpy(device):
    backend = get_backend(device)
    rng = np.random.default_rng(0)
    x = input_placeholder("x", (8, 5), "float32")
    y = input_placeholder("y", (8,), "int64")
    w = parameter("w", (5, 3), "float32")
    loss = (x @ w).tanh().cross_entropy(y)
    (gw,) = grad(loss, [w])
    plan = compile_graph([loss, gw], [x, y, w], backend)
    xv = rng.standard_normal((8, 5)).astype(np.float32)
    yv = rng.integers(0, 3, 8)
    wv = rng.standard_normal((5, 3)).astype(np.float32)
    loss_v, gw_v = plan([backend.asarray(xv), backend.asarray(yv), backend.asarray(wv)])
    reference = compile_graph([loss, gw], [x, y, w], get_backend("cpu"))([xv, yv, wv])
    np.testing.assert_allclose(float(backend.to_host(loss_v)), float(reference[0]), rtol=1e-5)
    np.testing.assert_allclose(backend.to_host(gw_v), reference[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("device", BACKENDS)
def test_training_runs_on_the_backend(device, tmp_path):
    from nnctl.config import load_config
    from nnctl.train import Trainer
    spirals = Path(__file__).resolve().parents[2] / "configs" / "spirals.yaml"
    config = load_config(spirals, ["train.epochs=3"])
    summary = Trainer(config, get_backend(device), out=tmp_path).fit()
    assert summary["status"] == "completed" and summary["device"] == device
    assert 0.0 <= summary["test_accuracy"] <= 1.0


def test_cuda_without_cupy_or_gpu_names_what_to_install():
    if _cuda_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(BackendError, match="cupy|CuPy|GPU"):
        get_backend("cuda")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.8, 1.0])
def test_bernoulli_into_draws_the_masks_of_bernoulli_without_allocating(dtype, p):
    import tracemalloc

    backend = get_backend("cpu")
    out = np.empty((40, 50), dtype=dtype)
    first, second = np.random.default_rng(3), np.random.default_rng(3)
    backend.bernoulli_into(first, out, p)  # warm-up: a float64 mask gets its draws buffer
    np.testing.assert_array_equal(out, backend.bernoulli(second, (40, 50), p, dtype))
    assert not np.signbit(out).any()  # 0.0, never -0.0
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        backend.bernoulli_into(first, out, p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak - before < 1024 < out.nbytes  # a few scalars, never an array
    np.testing.assert_array_equal(out, backend.bernoulli(second, (40, 50), p, dtype))


def test_a_plan_warms_its_backend_up_before_its_first_run():
    """The CPU backend runs one large GEMM once per process (OpenBLAS's small GEMMs are
    slower until it has: docs/performance.md); a plan asks for it when it lays out its
    arena, so every run, training and evaluation alike, starts warm."""
    import numpy as np

    from nnctl.backend.numpy_backend import NumpyBackend
    from nnctl.compile import compile_graph
    from nnctl.graph.tensor import input_placeholder

    class Counting(NumpyBackend):
        calls = 0

        def warm_up(self):
            Counting.calls += 1
            super().warm_up()

    x = input_placeholder("x", (3, 2), "float64")
    plan = compile_graph([x.tanh()], [x], Counting())
    assert Counting.calls == 0  # compiling alone runs nothing
    plan([np.ones((3, 2))])
    plan([np.ones((3, 2))])
    assert Counting.calls == 1
    import nnctl.backend.numpy_backend as nb
    assert nb._blas_warm


def _op_cases():
    from nnctl.ops.registry import REGISTRY
    return [pytest.param(name, k, id=f"{name}-{k}")
            for name, op in REGISTRY.items() for k, _ in enumerate(op.samples())]


@pytest.mark.skipif(not _cuda_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("name,k", _op_cases())
def test_every_op_of_the_table_matches_numpy_on_the_gpu(name, k):
    """The op table on CuPy: forward and forward_into on every sample, against NumPy. The
    samples are float64: 1e-10 relative, issue 14's parity bound."""
    from nnctl.gradcheck import sample_inputs
    from nnctl.ops.registry import REGISTRY, Aval
    backend = get_backend("cuda")
    xp = backend.xp
    op = REGISTRY[name]
    sample = list(op.samples())[k]
    arrays = sample_inputs(sample, np.random.default_rng(100 + k))
    device = [backend.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays]
    want = np.asarray(op.forward(np, *arrays, **sample.attrs))
    got = backend.to_host(xp.asarray(op.forward(xp, *device, **sample.attrs)))
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, equal_nan=True)
    avals = [Aval(tuple(np.shape(a)), str(np.asarray(a).dtype)) for a in arrays]
    work = tuple(xp.empty(w.shape, dtype=w.dtype) for w in op.workspace(*avals, **sample.attrs))
    out = xp.empty(want.shape, dtype=want.dtype)
    written = op.forward_into(xp, out, *device, **sample.attrs,
                              **({"work": work} if work else {}))
    np.testing.assert_allclose(backend.to_host(written), want, rtol=1e-10, atol=1e-12,
                               equal_nan=True)
