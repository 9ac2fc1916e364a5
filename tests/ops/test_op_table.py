"""The op table, driven by REGISTRY (STYLE R7, R8; RELIABILITY A1-A4).

For every registered op and every one of its samples: forward against a NumPy reference
written here, forward shape/dtype against infer(), float32 in -> float32 out, and the shared
gradcheck harness (first order, and second order where the op claims it). A new op without a
reference in REFERENCES makes test_every_op_has_a_reference fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.gradcheck import check_op, sample_inputs
from nnctl.graph.tensor import Tensor, apply
from nnctl.ops.registry import REGISTRY, Aval, Op, Sample, register, unregister


def _index(index):
    """The stored JSON-friendly index tuple as a NumPy index (written independently of nnctl)."""
    out = []
    for i in index:
        if isinstance(i, tuple):
            out.append(slice(i[1], i[2], i[3]))
        elif isinstance(i, str):
            out.append(Ellipsis)
        else:
            out.append(i)
    return tuple(out)


def _scatter(x, index, shape):
    y = np.zeros(shape, dtype=x.dtype)
    y[_index(index)] = x
    return y


def _log_softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)  # reference shift only; samples are in [-6, 6]
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _cross_entropy(logits, labels):
    picked = np.take_along_axis(_log_softmax(logits), labels[..., None], axis=-1)
    return -np.mean(picked)


REFERENCES = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "neg": lambda x: -x,
    "pow": lambda x, exponent: np.power(x, exponent),
    "exp": np.exp,
    "log": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "allreduce_sum": lambda x: x,  # one process: the sum over ranks is the value itself
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "relu": lambda x: np.where(x > 0, x, 0.0),
    "sign": np.sign,
    "step": lambda x: np.where(x > 0, 1.0, 0.0),
    "equal": lambda a, b: np.where(a == b, 1.0, 0.0),
    "matmul": lambda a, b: np.einsum("...ij,...jk->...ik", a, b),
    "softmax": lambda x, axis=-1: np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True),
    "log_softmax": _log_softmax,
    "one_hot": lambda labels, depth, dtype="float32": np.eye(depth)[labels],
    "sub_one_hot": lambda x, labels: x - np.eye(x.shape[-1])[labels],
    "softmax_xent_grad": lambda x, labels, s: (np.exp(_log_softmax(x))
                                               - np.eye(x.shape[-1])[labels]) * s,
    "numel": lambda x, axis=None: np.float64(np.prod([x.shape[a] for a in (
        range(x.ndim) if axis is None else axis)])),
    "cross_entropy": _cross_entropy,
    "sum": lambda x, axis=None, keepdims=False: np.sum(x, axis=axis, keepdims=keepdims),
    "mean": lambda x, axis=None, keepdims=False: np.sum(x, axis=axis, keepdims=keepdims)
    / (x.size / np.sum(np.ones_like(x), axis=axis, keepdims=keepdims).size),
    "max": lambda x, axis=None, keepdims=False: np.amax(x, axis=axis, keepdims=keepdims),
    "reshape": lambda x, shape: x.reshape(shape),
    "transpose": lambda x, axes: np.transpose(x, axes),
    "broadcast_to": lambda x, shape: np.broadcast_to(x, shape),
    "getitem": lambda x, index: x[_index(index)],
    "scatter_index": _scatter,
}

# float32 tolerances (A4), with the accumulating ops looser
F32_TOL = {"default": (1.3e-6, 1e-5)}
for _name in ("matmul", "sum", "mean", "softmax", "log_softmax", "cross_entropy"):
    F32_TOL[_name] = (1e-4, 1e-5)

NO_FLOAT_INPUT = {"one_hot"}  # ops with no float input at all


def _merge_family_tables() -> None:
    """Op families keep their references in tests/ops/refs_<family>.py (REFERENCES, and
    optionally F32_TOL and NO_FLOAT_INPUT), so adding a family does not edit this file."""
    import importlib.util
    from pathlib import Path

    for path in sorted(Path(__file__).parent.glob("refs_*.py")):
        spec = importlib.util.spec_from_file_location(f"_op_refs_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        clash = set(module.REFERENCES) & set(REFERENCES)
        assert not clash, f"{path.name} redefines {sorted(clash)}"
        REFERENCES.update(module.REFERENCES)
        F32_TOL.update(getattr(module, "F32_TOL", {}))
        NO_FLOAT_INPUT.update(getattr(module, "NO_FLOAT_INPUT", ()))


_merge_family_tables()


def _checked_samples(op) -> int:
    """Samples with at least one differentiable input: gradcheck gives one row per order."""
    return sum(1 for s in op.samples()
               if any(i not in op.nondifferentiable and i not in s.int_inputs
                      for i in range(len(s.shapes))))

CASES = [pytest.param(name, k, id=f"{name}-{k}")
         for name, op in REGISTRY.items() for k, _ in enumerate(op.samples())]


def _inputs(name: str, k: int, dtype=np.float64):
    op = REGISTRY[name]
    sample = list(op.samples())[k]
    arrays = sample_inputs(sample, np.random.default_rng(100 + k))
    if name == "equal":  # random floats never tie; round so that many elements are equal
        arrays = [np.round(a) for a in arrays]
    arrays = [a if i in sample.int_inputs else a.astype(dtype) for i, a in enumerate(arrays)]
    return op, sample, arrays


def _aval(a) -> Aval:
    a = np.asarray(a)
    return Aval(tuple(a.shape), str(a.dtype))


def test_every_op_has_a_reference():
    assert set(REFERENCES) == set(REGISTRY), (
        f"missing references: {sorted(set(REGISTRY) - set(REFERENCES))}, "
        f"stale: {sorted(set(REFERENCES) - set(REGISTRY))}")


def test_every_op_defines_samples_matching_its_arity():
    for name, op in REGISTRY.items():
        assert type(op).samples is not Op.samples, name
        samples = list(op.samples())
        assert samples, f"{name} has no samples"
        for s in samples:
            assert isinstance(s, Sample)
            assert op.arity is None or len(s.shapes) == op.arity, (name, s)  # None: variadic


@pytest.mark.parametrize("name,k", CASES)
def test_forward_matches_numpy_reference_float64(name, k):
    op, sample, arrays = _inputs(name, k)
    out = np.asarray(op.forward(np, *arrays, **sample.attrs))
    expected = REFERENCES[name](*arrays, **sample.attrs)
    np.testing.assert_allclose(out, expected, rtol=1e-7, atol=1e-7)
    # the Tensor path (eager apply) computes the same thing
    eager = apply(name, *[Tensor(a) for a in arrays], **sample.attrs)
    np.testing.assert_array_equal(eager.numpy(), out)


@pytest.mark.parametrize("name,k", CASES)
def test_forward_shape_and_dtype_equal_infer(name, k):
    for dtype in (np.float64, np.float32):
        op, sample, arrays = _inputs(name, k, dtype)
        aval = op.infer(*[_aval(a) for a in arrays], **sample.attrs)
        out = np.asarray(op.forward(np, *arrays, **sample.attrs))
        assert tuple(out.shape) == aval.shape
        assert str(out.dtype) == aval.dtype


@pytest.mark.parametrize("name,k", CASES)
def test_float32_in_float32_out(name, k):
    op, sample, arrays = _inputs(name, k, np.float32)
    out = apply(name, *[Tensor(a) for a in arrays], **sample.attrs)
    value = np.asarray(out.value)
    if name not in NO_FLOAT_INPUT:
        assert out.dtype == "float32"
    assert str(value.dtype) == out.dtype
    rtol, atol = F32_TOL.get(name, F32_TOL["default"])
    wide = [a.astype(np.float64) if a.dtype == np.float32 else a for a in arrays]
    np.testing.assert_allclose(value, REFERENCES[name](*wide, **sample.attrs), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name,k", CASES)
def test_non_contiguous_inputs_give_the_same_result(name, k):
    op, sample, arrays = _inputs(name, k)
    strided = []
    for a in arrays:  # the same values, every other element of a wider buffer
        wide = np.zeros(a.shape + (2,), dtype=a.dtype)
        wide[..., 0] = a
        strided.append(wide[..., 0])
        assert a.size <= 1 or not strided[-1].flags.c_contiguous
    np.testing.assert_allclose(np.asarray(op.forward(np, *strided, **sample.attrs)),
                               np.asarray(op.forward(np, *arrays, **sample.attrs)),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,k", CASES)
def test_forward_into_writes_the_forward_result_into_the_given_buffer(name, k):
    for dtype in (np.float64, np.float32):
        op, sample, arrays = _inputs(name, k, dtype)
        aval = op.infer(*[_aval(a) for a in arrays], **sample.attrs)
        out = np.full(aval.shape, np.nan if "float" in aval.dtype else 7, dtype=aval.dtype)
        work = tuple(np.full(w.shape, 3, dtype=w.dtype)  # scratch holds junk, as in an arena
                     for w in op.workspace(*[_aval(a) for a in arrays], **sample.attrs))
        returned = op.forward_into(np, out, *arrays, **sample.attrs,
                                   **({"work": work} if work else {}))
        assert returned is out  # written in place, not a new array
        # float32: a reduction may sum in another order (the conv weight gradient's one GEMM
        # against forward's per-image products): round-off of O(1) terms, absolute
        np.testing.assert_allclose(out, np.asarray(op.forward(np, *arrays, **sample.attrs)),
                                   rtol=1e-12 if dtype == np.float64 else 1e-6,
                                   atol=1e-14 if dtype == np.float64 else 2e-6)


def test_every_op_declares_a_kind_the_compiler_knows():
    from nnctl.ops.registry import ELEMENTWISE, KINDS
    assert {op.kind for op in REGISTRY.values()} <= set(KINDS)
    # the arithmetic and pointwise functions are what fusion works on
    for name in ("add", "sub", "mul", "div", "exp", "log", "tanh", "sigmoid", "relu", "where"):
        assert REGISTRY[name].kind == ELEMENTWISE, name
    assert REGISTRY["reshape"].kind == "movement" and REGISTRY["matmul"].kind == "opaque"
    assert REGISTRY["sum"].kind == "reduction"


def test_registry_refuses_an_unknown_kind():
    class Odd(Op):
        name, kind = "odd_kind", "magic"
        infer = forward = vjp = samples = lambda *a, **k: None
    with pytest.raises(TypeError, match="kind 'magic'"):
        register(Odd)
    assert "odd_kind" not in REGISTRY


def _failures(rows):
    return "\n".join(f"{r.name} [{r.case}] order {r.order}: max_abs {r.max_abs:.3g} "
                     f"max_rel {r.max_rel:.3g} {r.detail}" for r in rows if not r.passed)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_gradcheck_first_order(name):
    rows = check_op(name, second_order=False)
    assert len(rows) == _checked_samples(REGISTRY[name])
    assert all(r.order == 1 for r in rows)
    assert all(r.passed for r in rows), _failures(rows)


@pytest.mark.parametrize("name", [n for n, op in REGISTRY.items() if op.twice_differentiable])
def test_gradcheck_second_order(name):
    rows = [r for r in check_op(name) if r.order == 2]
    assert len(rows) == _checked_samples(REGISTRY[name])
    assert all(r.passed for r in rows), _failures(rows)


# ---- the registry refuses incomplete ops; the harness catches wrong ones --------------------

class _Sin(Op):
    arity = 1

    def infer(self, x):
        return x

    def forward(self, xp, x):
        return xp.sin(x)

    def samples(self):
        yield Sample(shapes=((3, 4),), low=-2.0, high=2.0)


def test_registry_refuses_an_op_without_vjp():
    class NoVjp(_Sin):
        name = "test_no_vjp"

    with pytest.raises(TypeError, match="vjp"):
        register(NoVjp)
    assert "test_no_vjp" not in REGISTRY


def test_registry_refuses_an_op_without_samples_or_name_or_twice():
    class NoSamples(Op):
        name = "test_no_samples"

        def infer(self, x):
            return x

        def forward(self, xp, x):
            return x

        def vjp(self, g, out, x):
            return (g,)

    class NoName(_Sin):
        def vjp(self, g, out, x):
            return (g * x.cos(),)

    class Twice(NoName):
        name = "sin"

    with pytest.raises(TypeError, match="samples"):
        register(NoSamples)
    with pytest.raises(TypeError, match="no name"):
        register(NoName)
    with pytest.raises(TypeError, match="twice"):
        register(Twice)
    assert "test_no_samples" not in REGISTRY
    assert type(REGISTRY["sin"]).__module__ == "nnctl.ops.elementwise"


def test_a_planted_wrong_vjp_fails_gradcheck():
    class BadSin(_Sin):
        name = "bad_sin"

        def vjp(self, g, out, x):
            return (g * x.sin(),)  # wrong: should be cos

    register(BadSin)
    try:
        rows = check_op("bad_sin", second_order=False)
        assert len(rows) == 1
        row = rows[0]
        assert not row.passed
        assert row.max_abs > 0.1
        assert "numeric" in row.detail and "analytic" in row.detail
    finally:
        unregister("bad_sin")
    assert "bad_sin" not in REGISTRY


def test_a_planted_wrong_second_derivative_fails_only_the_second_order():
    class BadCos(_Sin):
        name = "bad_cos"

        def forward(self, xp, x):
            return xp.cos(x)

        def vjp(self, g, out, x):
            return (g * x.sin(),)  # wrong sign

    class Sin2(_Sin):
        name = "sin_via_bad_cos"

        def vjp(self, g, out, x):
            return (g * apply("bad_cos", x),)  # first order right, its derivative wrong

    register(BadCos)
    register(Sin2)
    try:
        rows = check_op("sin_via_bad_cos")
        first = [r for r in rows if r.order == 1]
        second = [r for r in rows if r.order == 2]
        assert len(first) == 1 and first[0].passed
        assert len(second) == 1 and not second[0].passed and second[0].max_abs > 0.1
    finally:
        unregister("sin_via_bad_cos")
        unregister("bad_cos")
    assert "bad_cos" not in REGISTRY and "sin_via_bad_cos" not in REGISTRY
