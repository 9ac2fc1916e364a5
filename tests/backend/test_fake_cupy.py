"""nnctl's CUDA backend end to end on the CPU: a stand-in `cupy` (tests/backend/fake_cupy.py)
whose ElementwiseKernel and RawModule compile the kernels' CUDA text for the host with g++ and
launch them as CuPy would (its argument, dtype and shape rules), so a training run through
CupyBackend runs every kernel nnctl launches: the fused elementwise programs, the optimizer
updates, the Philox draws, the scatter-add and the conv/pool window kernels.

- The fake itself against NumPy: broadcasting, raw arrays, scalars, type placeholders, size=,
  and CuPy's refusals.
- Whole runs and training steps of shipped configs on `get_backend("cuda")` against the CPU.
  Dropout is off where results are compared: the GPU draws its masks from Philox, the CPU from
  PCG64, so masks differ by design.
- g++ compiles are bounded: each kernel is built once, not per step.
- The device-side trainer on it: resume (Philox's state on the device), a NaN rewound, a
  divergence, sampling, mixed precision bit for bit against the CPU.
- CUDA-graph capture (train.cuda_graphs) on the capturing fake (the recording backend with
  the kernels recorded as launches): captured steps replay the eager steps bit for bit.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from nnctl.backend.strict import StrictArray
from tests.backend import fake_cupy

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


@pytest.fixture
def cupy(monkeypatch):
    """The fake installed as `cupy`, with nnctl's per-module kernel caches fresh (and put
    back after: on a machine with a GPU the real CuPy's kernels are cached under the same
    module name, and neither may reach the other's arrays)."""
    from nnctl.compile import fusion
    from nnctl.compile.kernels import cuda
    from nnctl.ops import segment_sum, window_kernels
    fake = fake_cupy.install(monkeypatch)
    monkeypatch.setattr(fusion, "_kernels", {})
    monkeypatch.setattr(cuda, "_built", {})
    monkeypatch.setattr(window_kernels, "_kernels", {})
    monkeypatch.setattr(segment_sum, "_kernels", {})
    return fake


def _d(a):
    return StrictArray(np.ascontiguousarray(a))


# ---- the fake itself ------------------------------------------------------------------------

def test_elementwise_broadcasts_allocates_and_writes_a_strided_output(cupy):
    k = cupy.ElementwiseKernel("float32 x, float32 y", "float32 z", "z = x * y + 1.0f", "mul1")
    x = np.arange(3, dtype=np.float32)[:, None]
    y = np.linspace(-1, 1, 4, dtype=np.float32)
    z = k(_d(x), _d(y))
    assert isinstance(z, StrictArray) and z.shape == (3, 4) and z.dtype == np.float32
    np.testing.assert_array_equal(z.get(), x * y + 1)
    out = StrictArray(np.zeros((4, 3), np.float32).T)  # not contiguous: written back
    assert k(_d(x), _d(y), out) is out
    np.testing.assert_array_equal(out.get(), x * y + 1)
    with pytest.raises(ValueError, match="Out shape is mismatched"):
        k(_d(x), _d(y), StrictArray(np.zeros(4, np.float32)))
    with pytest.raises(TypeError, match="Type is mismatched"):
        k(_d(x.astype(np.float64)), _d(y))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        k(x, _d(y))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_type_placeholders_raw_arrays_and_scalars(cupy, dtype):
    k = cupy.ElementwiseKernel("T x, raw T c, bool flip, float64 s", "T y",
                               "y = (flip ? -x : x) * c[1] + (T)(s * c.size())", "mixed")
    x = np.linspace(-2, 2, 10).astype(dtype).reshape(2, 5)
    c = np.array([9, 0.5, 7], dtype)
    y = k(_d(x), _d(c), True, 0.25)
    assert y.dtype == np.dtype(dtype)
    want = (-x.astype(np.float64) * 0.5 + 0.75).astype(dtype)
    np.testing.assert_array_equal(y.get(), want)
    with pytest.raises(TypeError, match="Type is mismatched"):
        k(_d(x), _d(c.astype(np.float32 if dtype == "float64" else np.float64)), True, 0.0)


def test_size_is_for_raw_arrays_only(cupy):
    advance = cupy.ElementwiseKernel("uint64 blocks", "raw uint32 s",
                                     "s[2] += (unsigned int)blocks; s[3] = i", "adv")
    s = _d(np.array([1, 2, 3, 4], np.uint32))
    advance(np.uint64(5), s, size=1)
    assert s.get().tolist() == [1, 2, 8, 0]
    with pytest.raises(ValueError, match="Loop size is undecided"):
        advance(np.uint64(5), s)
    k = cupy.ElementwiseKernel("T x", "T y", "y = x", "copy1")
    with pytest.raises(ValueError, match="only if all of the ndarray are 'raw'"):
        k(_d(np.ones(3)), size=3)
    fill = cupy.ElementwiseKernel("raw T x", "T y", "y = x[i] * 2", "twice")
    np.testing.assert_array_equal(fill(_d(np.arange(4.0)), size=4).get(), np.arange(4.0) * 2)


def test_cupy_refuses_c_type_names_as_parameter_types(cupy):
    """CuPy's ParameterInfo takes a NumPy dtype name spelled as numpy.dtype(t).name, or one
    letter: 'float' is 'Wrong type float' (v9..v13; on CuPy's main it reads as float64)."""
    with pytest.raises(ValueError, match="Wrong type float"):
        cupy.ElementwiseKernel("raw uint32 s", "float v", "v = s[0]", "bad")


def test_raw_module_launches_the_grid_and_checks_argument_types(cupy):
    code = """
extern "C" __global__ void scale(const double* x, double* y, long long n, double a) {
  long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (t < n) y[t] = a * x[t];
}"""
    f = cupy.RawModule(code=code).get_function("scale")
    x, y = _d(np.arange(10.0)), StrictArray(np.zeros(10))
    f((3,), (4,), (x, y, np.int64(10), np.float64(1.5)))
    np.testing.assert_array_equal(y.get(), np.arange(10.0) * 1.5)
    with pytest.raises(TypeError, match="int32 scalar"):
        f((3,), (4,), (x, y, np.int32(10), np.float64(1.5)))
    with pytest.raises(TypeError, match="float32 array"):
        f((3,), (4,), (x.astype(np.float32), y, np.int64(10), np.float64(1.5)))


def test_kernels_are_compiled_once_per_source(cupy):
    before = len(fake_cupy.COMPILES)
    for _ in range(3):
        cupy.ElementwiseKernel("T x", "T y", "y = x + (T)3", "plus3")(_d(np.ones(2)))
    assert len(fake_cupy.COMPILES) - before <= 1


# ---- nnctl's CUDA backend on it, end to end -------------------------------------------------

def _fit(backend, name, overrides):
    from nnctl.config import load_config
    from nnctl.train.trainer import Trainer
    config = load_config(ROOT / "configs" / name, ["train.cuda_graphs=false", *overrides])
    return Trainer(config, backend, out=None).fit()


def _assert_same_test_metrics(cpu, gpu, rel):
    keys = [k for k in cpu if k.startswith("test_")]
    assert keys
    for k in keys:
        assert gpu[k] == pytest.approx(cpu[k], rel=rel, abs=rel), (k, cpu[k], gpu[k])


def test_a_digits_mlp_epoch_on_the_cuda_backend_equals_the_cpus(cupy):
    """A whole run (training, evaluation, test metrics) through CupyBackend: the fused kernels,
    the Adam kernel with its device guard, the device-side sums. Dropout off (Philox vs PCG64)."""
    from nnctl.backend import get_backend
    overrides = ["train.epochs=1", "model.layers.1.dropout=0"]
    before, made = len(fake_cupy.COMPILES), len(fake_cupy.MADE)
    launched = sum(fake_cupy.LAUNCHES.values())
    started = time.perf_counter()
    gpu = _fit(get_backend("cuda"), "digits_mlp.yaml", overrides)
    took = time.perf_counter() - started
    cpu = _fit(get_backend("cpu"), "digits_mlp.yaml", overrides)
    _assert_same_test_metrics(cpu, gpu, 1e-6)
    compiled = fake_cupy.COMPILES[before:]
    launches = sum(fake_cupy.LAUNCHES.values()) - launched
    # kernels are made and compiled once (per program, per optimizer), not per step
    assert len(fake_cupy.MADE) - made <= 10 and len(compiled) <= 10, (fake_cupy.MADE, compiled)
    assert launches >= 200
    print(f"digits_mlp epoch on the fake cuda: {took:.1f} s, {len(compiled)} compiles")


def test_philox_draws_on_the_fake_gpu_equal_the_numpy_reference(cupy):
    """The two Philox kernels as CupyBackend launches them (the values from the device
    counter, then the one-thread advance with size=1) against philox.uniform."""
    from nnctl.backend import get_backend, philox
    rng = get_backend("cuda").rng(7)
    key = philox.seed_key(7)
    counter = 0
    for shape, dtype in [((5, 3), "float32"), ((7,), "float64"), ((2, 9), "float32")]:
        got = rng.random(shape, dtype=dtype)
        assert isinstance(got, StrictArray) and got.dtype == np.dtype(dtype)
        n = int(np.prod(shape))
        np.testing.assert_array_equal(got.get().reshape(-1),
                                      philox.uniform(key, counter, n, dtype))
        counter += philox.blocks_for(n, dtype)
        assert rng.bit_generator.counter == counter
    out = StrictArray(np.zeros((4, 6), np.float32).T)  # not contiguous: drawn, then copied
    rng.random(out.shape, dtype="float32", out=out)
    np.testing.assert_array_equal(out.get().reshape(-1),
                                  philox.uniform(key, counter, 24, "float32"))


def test_a_digits_mlp_epoch_with_dropout_draws_from_philox_on_the_fake_gpu(cupy):
    from nnctl.backend import get_backend
    before = dict(fake_cupy.LAUNCHES)
    summary = _fit(get_backend("cuda"), "digits_mlp.yaml", ["train.epochs=1"])
    assert summary["test_accuracy"] > 0.7  # masks differ from the CPU's (Philox vs PCG64)
    drawn = fake_cupy.LAUNCHES.get("nnctl_philox_float32", 0) - before.get(
        "nnctl_philox_float32", 0)
    assert drawn == 40  # one draw per training step (1257 samples / 32)


def test_a_mixed_precision_digits_mlp_epoch_on_the_cuda_backend_equals_the_cpus(cupy):
    """train.mixed_precision=float16: float16 arrays through the plan (float16 chains fused
    on the GPU, computed in float), the optimizer updates the float32 masters, the loss
    scale decided on the device."""
    from nnctl.backend import get_backend
    overrides = ["train.epochs=1", "model.layers.1.dropout=0",
                 "train.mixed_precision=float16"]
    gpu = _fit(get_backend("cuda"), "digits_mlp.yaml", overrides)
    cpu = _fit(get_backend("cpu"), "digits_mlp.yaml", overrides)
    _assert_same_test_metrics(cpu, gpu, 1e-6)


@pytest.mark.slow  # ~20 s: every conv backward and pooling step through the window kernels
def test_a_digits_cnn_epoch_on_the_cuda_backend_equals_the_cpus(cupy):
    from nnctl.backend import get_backend
    overrides = ["train.epochs=1", "model.layers.13.dropout=0"]
    before = dict(fake_cupy.LAUNCHES)
    gpu = _fit(get_backend("cuda"), "digits_cnn.yaml", overrides)
    cpu = _fit(get_backend("cpu"), "digits_cnn.yaml", overrides)
    _assert_same_test_metrics(cpu, gpu, 1e-6)
    for kernel in ("nnctl_col2im_float", "nnctl_window_argmax_float"):
        assert fake_cupy.LAUNCHES.get(kernel, 0) > before.get(kernel, 0), kernel


# ---- one training step of every shipped config, the same masks on both sides ------------------

FAST_STEPS = ("digits_cnn.yaml", "chars_lstm.yaml")
CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))


def _step_outputs(backend, name, overrides=(), n=8):
    from nnctl.config import load_config
    from nnctl.train.trainer import Trainer
    trainer = Trainer(load_config(ROOT / "configs" / name, ["train.cuda_graphs=false",
                                                            *overrides]),
                      backend, out=None)
    data, steps = trainer.batch_feeds("train", np.arange(n))
    plan = trainer.train_plan(steps)
    outs = plan.run([*data, *trainer.params, *trainer.states, *trainer._amp_feeds])
    return [backend.to_host(o).copy() for o in outs]


@pytest.mark.parametrize("name", [n if n in FAST_STEPS else
                                  pytest.param(n, marks=pytest.mark.slow) for n in CONFIGS])
def test_a_training_step_on_the_cuda_backend_equals_the_cpus(cupy, monkeypatch, name):
    """The compiled step (forward, loss, every gradient, layer states) of a shipped config on
    CupyBackend against the CPU's, from the same weights and batch. The dropout masks are made
    the same by giving the CUDA backend the CPU's PCG64 stream (Philox is checked above).
    Tolerance: float32 round-off of libm's tanh/exp against the CPU's numba lowerings and of
    summation orders (relative 2e-5 of each output's largest magnitude, plus 1e-6 of the step's
    largest, for gradients that are zero up to round-off, such as a bias before a norm)."""
    from nnctl.backend import get_backend
    from nnctl.backend.cupy_backend import CupyBackend
    from nnctl.backend.strict import StrictBackend
    monkeypatch.setattr(CupyBackend, "rng", StrictBackend.rng)
    gpu = _step_outputs(get_backend("cuda"), name)
    cpu = _step_outputs(get_backend("cpu"), name)
    assert len(gpu) == len(cpu)
    scale = max(float(np.max(np.abs(c))) for c in cpu if c.size and c.dtype.kind == "f")
    for k, (g, c) in enumerate(zip(gpu, cpu)):
        assert g.shape == c.shape and g.dtype == c.dtype, k
        if c.dtype.kind != "f":
            np.testing.assert_array_equal(g, c)
            continue
        if c.size:
            worst = float(np.max(np.abs(g.astype(np.float64) - c)))
            assert worst <= 2e-5 * float(np.max(np.abs(c))) + 1e-6 * scale, (k, worst)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_the_hosts_float16_rounds_as_numpy(cupy):
    """The prelude's float16 (CuPy's, stored as half and computed as float): every half
    converts to float exactly, and floats round to nearest even, subnormals, overflow and NaN
    included."""
    halves = np.arange(2 ** 16, dtype=np.uint16).view(np.float16)
    widen = cupy.ElementwiseKernel("float16 x", "float32 y", "y = x", "widen")
    got = widen(_d(halves)).get()
    np.testing.assert_array_equal(got, halves.astype(np.float32))  # NaNs compare equal here
    rng = np.random.default_rng(0)
    floats = np.concatenate([
        rng.normal(size=20000).astype(np.float32) * np.float32(2.0) ** rng.integers(
            -30, 20, 20000).astype(np.float32),
        np.array([65504, 65519.99, 65520, -np.inf, np.nan, 2 ** -25, 2 ** -24 * 1.5, 0.0,
                  -0.0], np.float32)])
    narrow = cupy.ElementwiseKernel("float32 x", "float16 y", "y = x", "narrow")
    assert np.array_equal(narrow(_d(floats)).get().view(np.uint16),
                          floats.astype(np.float16).view(np.uint16))


def test_host_arrays_are_refused_where_cupy_refuses_them(cupy):
    a = cupy.asarray(np.arange(6.0))
    host = np.ones(6)
    for call in (lambda: cupy.add(a, host), lambda: a + host, lambda: host * a,
                 lambda: cupy.concatenate([a, host]), lambda: cupy.where(a > 2, a, host),
                 lambda: a.__setitem__(slice(0, 2), host[:2])):
        with pytest.raises(fake_cupy.HostArray):
            call()
    a[:] = host  # the one host copy CuPy's __setitem__ takes
    b = a[np.array([0, 2])]  # host index arrays are converted
    assert isinstance(b, StrictArray) and b.get().tolist() == [1.0, 1.0]
    assert cupy.take(a, np.array([1, 3])).get().tolist() == [1.0, 1.0]  # so are take's
    assert isinstance(a.sum(), StrictArray) and a.sum().ndim == 0  # 0-d, not a scalar
    assert isinstance(cupy.vdot(a, a), StrictArray)


def test_a_run_on_the_fake_gpu_resumes_bit_for_bit(cupy, tmp_path):
    """Philox's state on the device (its 4-word array read back by .get() at the checkpoint
    and written by .set() at the resume), the optimizer's state and the device-side step
    counters: two epochs straight equal one epoch, a checkpoint and a resumed second."""
    from nnctl.backend import get_backend
    from nnctl.config import load_config
    from nnctl.train import checkpoint as ckpt
    from nnctl.train.trainer import Trainer

    def config(epochs):
        return load_config(ROOT / "configs" / "digits_mlp.yaml",
                           ["train.cuda_graphs=false", f"train.epochs={epochs}"])

    straight = Trainer(config(2), get_backend("cuda"), out=None)
    straight.fit()
    Trainer(config(1), get_backend("cuda"), out=tmp_path).fit()
    (run,) = list(tmp_path.iterdir())
    _, meta = ckpt.load_checkpoint(run / "checkpoint.npz")
    assert meta["dropout_state"]["bit_generator"] == "Philox4x32-10"
    assert meta["dropout_state"]["counter"] > 0
    resumed = Trainer(config(2), get_backend("cuda"), out=None, resume=run)
    resumed.fit()
    want, got = straight.weights(), resumed.weights()
    assert want.keys() == got.keys()
    for name in want:
        assert np.array_equal(fake_cupy.FAKE.asnumpy(want[name]),
                              fake_cupy.FAKE.asnumpy(got[name])), name


def test_a_nan_step_on_the_fake_gpu_rewinds_to_the_last_good_state(cupy, tmp_path, monkeypatch):
    """The sync-free epoch on CupyBackend: a NaN planted in the batch of epoch 2, step 13 is
    found at the interval's read, reported as the CPU reports it, and the checkpoint holds
    the state before that step: the guarded kernels (`raw T ok`) left the weights finite,
    and Philox's device counter is rewound to the draws of the 52 good steps."""
    from nnctl.backend import get_backend, philox
    from nnctl.config import load_config
    from nnctl.errors import TrainingError
    from nnctl.train.trainer import Trainer
    from tests.train.test_device_steps import _checkpoint, _poison

    _poison(monkeypatch, 52)
    trainer = Trainer(load_config(ROOT / "configs" / "digits_mlp.yaml",
                                  ["train.cuda_graphs=false", "train.epochs=2",
                                   "train.log_every=9"]),
                      get_backend("cuda"), out=tmp_path)
    with pytest.raises(TrainingError, match="at epoch 2, step 13; the first NaN/Inf came from"):
        trainer.fit()
    arrays, meta = _checkpoint(tmp_path)
    assert (meta["epoch"], meta["step_in_epoch"], meta["global_step"]) == (2, 12, 52)
    assert int(arrays["optim/step"]) == 52
    assert all(np.isfinite(a).all() for k, a in arrays.items() if k.startswith("param/"))
    n, batch, units = len(trainer.splits.train.x), 32, 256  # dropout after dense(256)
    sizes = [min(batch, n - s) for s in range(0, n, batch)]
    sizes += sizes[:12]
    assert meta["dropout_state"]["counter"] == sum(philox.blocks_for(b * units, "float32")
                                                   for b in sizes)


def test_a_divergence_on_the_fake_gpu_is_found_at_the_cpus_step(cupy, tmp_path, monkeypatch):
    """DivergenceWatch's rule evaluated on the device: the same error and checkpoint as the
    CPU's (the CPU's PCG64 masks given to both, so the losses are the same)."""
    from nnctl.backend import get_backend
    from nnctl.backend.cupy_backend import CupyBackend
    from nnctl.backend.strict import StrictBackend
    from nnctl.config import load_config
    from nnctl.errors import TrainingError
    from nnctl.train.trainer import Trainer
    from tests.train.test_device_steps import _checkpoint, _without_run_folder

    monkeypatch.setattr(CupyBackend, "rng", StrictBackend.rng)
    overrides = ["train.cuda_graphs=false", "train.epochs=2", "train.log_every=25",
                 "optimizer.lr=3.0", "train.divergence.factor=1.5", "train.divergence.steps=3"]
    errors, checkpoints = {}, {}
    for name in ("cpu", "cuda"):
        with pytest.raises(TrainingError) as caught:
            Trainer(load_config(ROOT / "configs" / "digits_mlp.yaml", overrides),
                    get_backend(name), out=tmp_path / name).fit()
        errors[name] = _without_run_folder(str(caught.value), tmp_path / name)
        checkpoints[name] = _checkpoint(tmp_path / name)
    assert "the loss diverged" in errors["cpu"]
    assert errors["cuda"] == errors["cpu"]
    (cpu_arrays, cpu_meta), (gpu_arrays, gpu_meta) = checkpoints["cpu"], checkpoints["cuda"]
    for key in ("epoch", "step_in_epoch", "global_step", "divergence", "dropout_state"):
        assert gpu_meta[key] == cpu_meta[key], key
    assert sorted(gpu_arrays) == sorted(cpu_arrays)
    for key in cpu_arrays:
        np.testing.assert_allclose(gpu_arrays[key], cpu_arrays[key], rtol=1e-6, atol=1e-7,
                                   err_msg=key)


def test_sampling_on_the_fake_gpu_gives_the_cpus_text(cupy, tmp_path):
    """`nnctl sample --device cuda`: the inference plan's fused kernels and the draw written
    in array-module calls, against the CPU's text."""
    import yaml

    from nnctl.backend import get_backend
    from nnctl.config import load_config
    from nnctl.train.sample import sample_text
    from nnctl.train.trainer import Trainer

    (tmp_path / "words.txt").write_text("\n".join(["cat", "car", "cart", "dog", "door", "dot"]
                                                  * 30) + "\n")
    (tmp_path / "chars.yaml").write_text(yaml.safe_dump({
        "data": {"dataset": "words", "path": "words.txt", "seq_len": 6},
        "model": {"layers": [{"embedding": {"dim": 8}},
                             {"gru": {"units": 16, "return_sequences": True}},
                             {"dense": {"units": "classes"}}]},
        "loss": "cross_entropy", "metrics": ["accuracy"],
        "optimizer": {"name": "adam", "lr": 0.01}, "train": {"epochs": 2, "batch_size": 16}}))
    Trainer(load_config(tmp_path / "chars.yaml"), get_backend("cpu"), out=tmp_path / "runs").fit()
    (run,) = list((tmp_path / "runs").iterdir())
    for temperature, seed in ((1.0, 7), (0.7, 3)):
        assert sample_text(run, 30, "do", temperature, seed, backend=get_backend("cuda")) == \
            sample_text(run, 30, "do", temperature, seed)


def _mixed_residual_run(monkeypatch, device, *overrides, fuse_half: bool = False):
    """digits_residual, one epoch in mixed float16 with the CPU's masks. `fuse_half`: the
    GPU fuses float16 chains (computed in float, rounded once), as it does by default; off,
    it runs them op by op as the CPU does, so the two can be compared bit for bit."""
    from nnctl.backend import get_backend
    from nnctl.backend.cupy_backend import CupyBackend
    from nnctl.backend.strict import StrictBackend
    from nnctl.compile import fusion
    from nnctl.config import load_config
    from nnctl.train.trainer import Trainer
    monkeypatch.setattr(CupyBackend, "rng", StrictBackend.rng)  # the CPU's masks
    if not fuse_half:
        original = fusion.half_fusion
        monkeypatch.setattr(fusion, "half_fusion", lambda enabled=True: original(False))
    trainer = Trainer(load_config(ROOT / "configs" / "digits_residual.yaml",
                                  ["train.cuda_graphs=false", "train.epochs=1",
                                   "train.mixed_precision=float16", *overrides]),
                      get_backend(device), out=None)
    summary = trainer.fit()
    return summary, {k: fake_cupy.FAKE.asnumpy(v) for k, v in trainer.weights().items()}


def _mixed_residual_weights(monkeypatch, device, *overrides):
    summary, weights = _mixed_residual_run(monkeypatch, device, *overrides)
    assert summary["skipped_batches"] == 2  # the scale starts at 2^16: two overflows
    return weights


def test_fused_float16_chains_on_the_fake_gpu_train_as_the_cpu_does(cupy, monkeypatch):
    """By default the GPU fuses float16 chains: kernels whose float16 inputs are read as
    float and whose result is rounded to half once. The run then differs from the CPU's
    by float16 rounding only: the same skipped steps, test metrics within a point."""
    from nnctl.compile.kernels import cuda
    gpu, _ = _mixed_residual_run(monkeypatch, "cuda", fuse_half=True)
    halves = [p for p in cuda._built if p.dtype == "float16"]
    assert len(halves) >= 3  # the residual blocks' bias + ReLU chains, among others
    assert "((float)(x0))" in cuda.cuda_source(halves[0]).operation
    cpu, _ = _mixed_residual_run(monkeypatch, "cpu")
    assert gpu["skipped_batches"] == cpu["skipped_batches"] == 2
    assert abs(gpu["test_accuracy"] - cpu["test_accuracy"]) <= 0.01
    assert gpu["test_loss"] == pytest.approx(cpu["test_loss"], rel=0.05)


def test_mixed_precision_read_every_step_on_the_fake_gpu_equals_the_cpu_bit_for_bit(
        cupy, monkeypatch):
    """digits_residual in float16 (two overflow steps skipped): with the device read after
    every step (train.log_every=1) the weights are the CPU's, bit for bit."""
    gpu = _mixed_residual_weights(monkeypatch, "cuda", "train.log_every=1")
    cpu = _mixed_residual_weights(monkeypatch, "cpu", "train.log_every=1")
    for name in cpu:
        assert np.array_equal(gpu[name], cpu[name]), name


def test_mixed_precision_on_the_fake_gpu_equals_the_cpu_bit_for_bit(cupy, monkeypatch):
    """The same with the default read interval: a float16 overflow skipped on the device
    leaves Adam's step count and the schedule's step as the host path leaves them (before
    182e9fd the device path counted the skipped steps until the interval's read)."""
    gpu = _mixed_residual_weights(monkeypatch, "cuda")
    cpu = _mixed_residual_weights(monkeypatch, "cpu")
    for name in cpu:
        assert np.array_equal(gpu[name], cpu[name]), name


# ---- CUDA-graph capture: the fake on the recording backend ------------------------------------

@pytest.fixture
def capturing_cupy(monkeypatch):
    from nnctl.compile import fusion
    from nnctl.compile.kernels import cuda
    from nnctl.ops import segment_sum, window_kernels
    fake = fake_cupy.install(monkeypatch, capture=True)
    monkeypatch.setattr(fusion, "_kernels", {})
    monkeypatch.setattr(cuda, "_built", {})
    monkeypatch.setattr(window_kernels, "_kernels", {})
    monkeypatch.setattr(segment_sum, "_kernels", {})
    return fake


CAPTURED_OPS = ["conv2d", "conv2d_grad_input", "conv2d_grad_weight", "col2im", "max_pool2d",
                "max_pool2d_grad", "max_pool2d_index", "max_pool2d_take", "max_pool2d_scatter",
                "avg_pool2d_grad", "take", "scatter_add"]


@pytest.mark.parametrize("name", CAPTURED_OPS)
def test_the_window_and_scatter_kernels_replay_in_a_captured_graph(capturing_cupy, name):
    """Each op's device path (RawModule launches included) captured on CupyBackend, nothing
    run until the launch, then launched: NumPy's result."""
    from nnctl.backend import get_backend
    from nnctl.gradcheck import sample_inputs
    from nnctl.ops.registry import REGISTRY

    backend, op = get_backend("cuda"), REGISTRY[name]
    for k, sample in enumerate(op.samples()):
        arrays = sample_inputs(sample, np.random.default_rng(100 + k))
        want = op.forward(np, *arrays, **sample.attrs)
        device = [backend.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays]
        graph = backend.capture(lambda device=device, attrs=sample.attrs:
                                op.forward(capturing_cupy, *device, **attrs))
        graph.launch()
        got = capturing_cupy.asnumpy(graph.result)
        assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True), (name, k)


def _captured_and_eager(name, overrides=()):
    from nnctl.backend import get_backend
    from nnctl.config import load_config
    from nnctl.train.trainer import Trainer
    runs = {}
    for graphs in (False, True):
        trainer = Trainer(load_config(ROOT / "configs" / name,
                                      [f"train.cuda_graphs={graphs}", "train.epochs=1",
                                       *overrides]),
                          get_backend("cuda"), out=None)
        runs[graphs] = (trainer, trainer.fit())
    return runs


def _assert_same_weights(a, b):
    wa, wb = a.weights(), b.weights()
    assert wa.keys() == wb.keys()
    for name in wa:
        assert np.array_equal(fake_cupy.FAKE.asnumpy(wa[name]), fake_cupy.FAKE.asnumpy(wb[name])), \
            name


def test_the_captured_digits_mlp_step_replays_what_the_eager_step_computes(capturing_cupy):
    """train.cuda_graphs on CupyBackend with the real kernels: the fused programs, Adam's
    kernel with its device guard and Philox's two dropout kernels (the counter moves on in
    the graph: each replay draws new masks) captured once and replayed; the same weights
    and test metrics as eager steps, bit for bit."""
    runs = _captured_and_eager("digits_mlp.yaml")
    (eager, eager_summary), (captured, captured_summary) = runs[False], runs[True]
    # batch 32: a warm-up, the capture, 38 replays; the last batch of 9: its warm-up only
    assert captured._graphs.captures == 1 and captured._graphs.launches == 38
    assert eager._graphs.captures == 0
    _assert_same_weights(eager, captured)
    assert captured_summary["test_loss"] == eager_summary["test_loss"]


@pytest.mark.slow  # ~7 s
@pytest.mark.parametrize("name", ["digits_cnn.yaml", "chars_lstm.yaml"])
def test_a_captured_conv_or_embedding_step_replays_what_the_eager_step_computes(
        capturing_cupy, name):
    """The window kernels (col2im, the window argmax) and the segment sum, RawModule
    launches, inside a captured step."""
    runs = _captured_and_eager(name)
    (eager, _), (captured, _) = runs[False], runs[True]
    assert captured._graphs.captures >= 1 and captured._graphs.launches >= 30
    _assert_same_weights(eager, captured)


def test_the_recording_backend_keeps_the_input_of_an_as_strided_op():
    from nnctl.backend.recording import RecordingBackend
    from nnctl.ops.registry import REGISTRY

    backend = RecordingBackend()
    x = np.arange(32.0).reshape(2, 1, 4, 4)
    device = backend.asarray(x)
    graph = backend.capture(lambda: REGISTRY["max_pool2d"].forward(backend.xp, device,
                                                                   kernel=(2, 2)))
    assert np.array_equal(backend.to_host(device), x)
    graph.launch()
    assert np.array_equal(backend.to_host(graph.result),
                          REGISTRY["max_pool2d"].forward(np, x, kernel=(2, 2)))


def test_a_fused_float16_program_computes_in_float_and_rounds_once(cupy):
    """The CUDA generator's float16 programs through the stand-in's ElementwiseKernel (its
    float16 is CuPy's: stored as half, computed as float): (2h).relu() * h with every step
    in float and one rounding, here exact in float, so NumPy's float32 result rounded."""
    from nnctl.compile.fusion import half_fusion
    from nnctl.compile.kernels.cuda import cuda_kernel
    from nnctl.compile.passes import run_passes
    from nnctl.graph import input_placeholder
    from nnctl.graph.ir import Graph
    x = input_placeholder("x", (64, 33), "float16")
    y = (x * 2.0).relu() * x
    with half_fusion():
        graph, _ = run_passes(Graph([y.node]))
    (fused,) = [n for n in graph.nodes if n.op == "fused"]
    h = np.random.default_rng(0).normal(size=(64, 33)).astype(np.float16)
    got = cuda_kernel(fused.attrs["program"], cupy)(None, _d(h)).get()
    h32 = h.astype(np.float32)
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, (np.maximum(h32 * 2, 0) * h32).astype(np.float16))
