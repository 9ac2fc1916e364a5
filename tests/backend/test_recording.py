"""The recording backend (nnctl/backend/recording.py): CUDA-graph capture as CUDA does it, on
the CPU. The recorder itself (scalars frozen at the capture, device buffers read anew, nothing
run by the capture, refusals that name their culprit, RNG draws), then every op of the table
through capture and replay, and the CuPy backend's capture wiring with a stand-in CuPy."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from nnctl.backend.base import CaptureUnsupported
from nnctl.backend.recording import CaptureError, RecordingArray, RecordingBackend
from nnctl.gradcheck import sample_inputs
from nnctl.ops.registry import REGISTRY, Aval, Op

BACKEND = RecordingBackend()
XP = BACKEND.xp


def _host(a):
    return BACKEND.to_host(a)


def test_a_python_scalar_is_frozen_and_a_device_buffer_is_read_anew():
    x = BACKEND.asarray(np.arange(4.0))
    y, z = XP.empty(4), XP.empty(4)
    lr = BACKEND.asarray(np.array(0.5))
    host = {"scale": 2.0}

    def step():
        XP.multiply(x, host["scale"], out=y)  # a Python float: baked into the kernel
        XP.multiply(x, lr, out=z)  # a device buffer: read at every launch
    graph = BACKEND.capture(step)
    host["scale"], x[...] = 10.0, 1.0
    lr.fill(3.0)
    graph.launch()
    assert _host(y).tolist() == [2.0] * 4 and _host(z).tolist() == [3.0] * 4
    assert graph.labels == ["multiply", "multiply"]


def test_a_capture_runs_nothing_and_each_launch_runs_the_step_once():
    p = BACKEND.asarray(np.ones(3))
    g = BACKEND.asarray(np.full(3, 0.25))
    lr = BACKEND.asarray(np.array(2.0))

    def step():
        p.__isub__(g * lr)  # a temporary, then an in-place update
        return p * 1.0
    graph = BACKEND.capture(step)
    assert _host(p).tolist() == [1.0] * 3  # as it was: nothing ran
    assert np.isnan(graph.result.a).all()  # made by the capture: garbage until a launch
    graph.launch()
    assert _host(p).tolist() == [0.5] * 3 and _host(graph.result).tolist() == [0.5] * 3
    g[...] = 0.125
    graph.launch()
    assert _host(p).tolist() == [0.25] * 3 and _host(graph.result).tolist() == [0.25] * 3
    assert {id(a) for a in graph.static} == {id(p.a), id(g.a), id(lr.a)}  # its buffers


def test_later_calls_read_what_earlier_calls_of_the_replay_wrote():
    x = BACKEND.asarray(np.arange(3.0))

    def step():
        t = XP.exp(x)
        u = t.sum()  # a 0-d device array, as on CuPy (NumPy would return a scalar)
        return t / u
    graph = BACKEND.capture(step)
    x[...] = np.array([0.0, 0.0, np.log(2.0)])
    graph.launch()
    np.testing.assert_allclose(_host(graph.result), [0.25, 0.25, 0.5], rtol=1e-15)


@pytest.mark.parametrize("culprit,what", [
    (lambda a: float(a.sum()), "float() of a device array"),
    (lambda a: int(a[0]), "int() of a device array"),
    (lambda a: bool((a > 0).all()), "bool() of a device array"),
    (lambda a: a.get(), ".get()"),
    (lambda a: a.max().item(), ".item()"),
    (lambda a: BACKEND.to_host(a), "to_host()"),
    (lambda a: BACKEND.synchronize(), "synchronize()"),
    (lambda a: a.set(np.zeros(3)), ".set()"),
    (lambda a: BACKEND.asarray(np.ones(3)), "asarray() of host data"),
    (lambda a: XP.asarray(3.0), "asarray() of host data"),
    (lambda a: XP.add(a, np.ones(3)), "a host array passed to add()"),
    (lambda a: a[[0, 2]], "an index list or host array"),
    (lambda a: XP.nonzero(a), "nonzero()"),
    (lambda a: a[a > 1], "a boolean-mask index"),
])
def test_what_cuda_refuses_during_capture_raises_and_names_the_line(culprit, what):
    a = BACKEND.asarray(np.arange(3.0))

    def step():
        XP.multiply(a, 2.0, out=a)
        culprit(a)
    with pytest.raises(CaptureError) as err:
        BACKEND.capture(step)
    message = str(err.value)
    assert message.startswith(what) and " during CUDA-graph capture, at " in message
    assert "test_recording.py" in message and "<lambda>" in message
    assert _host(a).tolist() == [0.0, 1.0, 2.0]  # the failed capture ran nothing
    culprit(a)  # outside a capture each of them works


def test_rng_draws_replay_as_a_generator_with_its_state_on_the_device():
    rng = BACKEND.rng(7)
    buffer = XP.empty(4, dtype="float32")
    graph = BACKEND.capture(lambda: rng.random(dtype="float32", out=buffer))
    draws = []
    for _ in range(3):
        graph.launch()
        draws.append(_host(buffer))
    want = np.random.default_rng(7).random(12, dtype="float32")
    assert np.array_equal(np.concatenate(draws), want)


def test_the_cpu_backend_cannot_capture():
    from nnctl.backend import get_backend
    with pytest.raises(CaptureUnsupported, match="cpu backend .* no graphs to capture"):
        get_backend("cpu").capture(lambda: None)


# ---- the op table through capture and replay ---------------------------------------------------

CASES = [pytest.param(name, k, path, id=f"{name}-{k}-{path}")
         for name, op in REGISTRY.items() for k, _ in enumerate(op.samples())
         for path in ("own", "small")]
# ops whose GPU path is a RawModule kernel that the recorder cannot run: it runs their
# array-module fallback instead, which may differ in what it copies from the host
CUDA_KERNEL_FILES = ("nnctl/ops/window_kernels.py",)


def _capture_forward(op, sample, k, path):
    """(the static inputs, the out buffer, the graph of forward_into) for one sample; "own":
    the op's forward_into with its workspace, "small": forward and a copy (the plan's path
    for small arrays)."""
    arrays = sample_inputs(sample, np.random.default_rng(100 + k))
    ins = [BACKEND.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays]
    want = np.asarray(op.forward(np, *arrays, **sample.attrs))
    avals = [Aval(tuple(np.shape(a)), str(np.asarray(a).dtype)) for a in arrays]
    work = tuple(XP.empty(w.shape, dtype=w.dtype) for w in op.workspace(*avals, **sample.attrs))
    out = XP.empty(want.shape, dtype=want.dtype)
    if path == "own":
        attrs = dict(sample.attrs, **({"work": work} if work else {}))
        def forward():
            return op.forward_into(XP, out, *ins, **attrs)
    else:
        def forward():
            return Op.forward_into(op, XP, out, *ins, **sample.attrs)
    forward()  # the warm-up: caches and lazily made arrays, as the trainer's first step
    return ins, out, BACKEND.capture(forward)


@pytest.mark.parametrize("name,k,path", CASES)
def test_every_capturable_op_replays_with_new_inputs_as_it_runs_eagerly(name, k, path):
    op = REGISTRY[name]
    sample = list(op.samples())[k]
    if not op.capturable:
        pytest.skip(f"{name} is marked not capturable (see the next test)")
    try:
        ins, out, graph = _capture_forward(op, sample, k, path)
    except CaptureError as err:
        if any(f in str(err) for f in CUDA_KERNEL_FILES):
            pytest.skip(f"the CUDA path of {name} is a RawModule kernel; {err}")
        raise
    for r in range(3):  # new inputs copied into the same buffers, then a launch
        new = sample_inputs(sample, np.random.default_rng(1000 + 7 * r + k))
        for buffer, a in zip(ins, new):
            if isinstance(a, np.ndarray):
                XP.copyto(buffer, BACKEND.asarray(a))
        graph.launch()
        want = np.asarray(op.forward(np, *new, **sample.attrs))
        got = _host(out)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", sorted(n for n, op in REGISTRY.items() if not op.capturable
                                        and n != "allreduce_sum"))
def test_an_op_marked_not_capturable_is_refused_on_one_of_its_paths(name):
    """The marks are needed: each marked op's capture fails on one of the plan's paths
    (allreduce_sum only talks to other ranks when there are some: one process copies)."""
    op = REGISTRY[name]
    refused = []
    for k, sample in enumerate(op.samples()):
        for path in ("own", "small"):
            try:
                _capture_forward(op, sample, k, path)
            except CaptureError as err:
                refused.append(str(err))
    assert refused and all("nnctl/ops/" in r for r in refused)


# ---- CuPy's capture, wired as CuPy documents it (a stand-in CuPy) ------------------------------

class _FakeCuda:
    """cupy.cuda's capture API, logging each call."""

    def __init__(self):
        self.log, fake = [], self

        class Stream:
            def __init__(self, non_blocking=False):
                self.non_blocking = non_blocking

            def __enter__(self):
                fake.log.append("enter stream")
                fake.current = self

            def __exit__(self, *exc):
                fake.log.append("exit stream")
                fake.current = "null"

            def begin_capture(self):
                assert self.non_blocking and fake.allocator is not None
                fake.log.append("begin_capture")

            def end_capture(self):
                fake.log.append("end_capture")
                return Graph()

        class Graph:
            def launch(self, stream=None):
                fake.log.append(f"launch on {stream}")

        class MemoryPool:
            def malloc(self, size):
                return size

        self.Stream, self.MemoryPool = Stream, MemoryPool
        self.current, self.allocator = "null", None

    @contextlib.contextmanager
    def using_allocator(self, allocator=None):
        self.allocator = allocator
        try:
            yield
        finally:
            self.allocator = None

    def get_current_stream(self):
        return self.current


def _cupy_backend():
    from types import SimpleNamespace

    from nnctl.backend.cupy_backend import CupyBackend
    backend = CupyBackend.__new__(CupyBackend)  # no GPU here: the stand-in's module
    backend.xp = SimpleNamespace(cuda=_FakeCuda())
    return backend


def test_cupy_captures_on_a_stream_of_its_own_from_a_pool_of_the_graphs_own():
    backend = _cupy_backend()
    cuda = backend.xp.cuda
    graph = backend.capture(lambda: cuda.log.append(f"step on {cuda.current.non_blocking}")
                            or "result")
    graph.launch()
    assert cuda.log == ["enter stream", "begin_capture", "step on True", "end_capture",
                        "exit stream", "launch on null"]
    assert graph.result == "result" and graph.pool is not None and cuda.allocator is None
    backend.capture(lambda: None)
    assert cuda.log.count("enter stream") == 2  # the same capture stream, not a new one


def test_cupy_ends_a_failed_capture_and_raises():
    backend = _cupy_backend()
    cuda = backend.xp.cuda

    def step():
        raise RuntimeError("the current stream is capturing, so H2D transfers are disallowed")
    with pytest.raises(RuntimeError, match="H2D"):
        backend.capture(step)
    assert cuda.log == ["enter stream", "begin_capture", "end_capture", "exit stream"]
    assert cuda.allocator is None and cuda.current == "null"


def test_recording_arrays_are_strict_arrays():
    from nnctl.backend.strict import ImplicitTransfer
    a = BACKEND.asarray(np.ones(2))
    assert isinstance(a, RecordingArray) and isinstance(a.sum(), RecordingArray)
    with pytest.raises(ImplicitTransfer):
        np.asarray(a)
