"""Numeric vs analytic gradients, in float64 with central differences.

Per op, driven by the registry's samples: every element of every differentiable input is
perturbed (the shapes are small), first order and, for twice-differentiable ops, second order
(the gradient of <vjp, w> is itself checked numerically). Per model, random unit directions
through the whole compiled training step (Chainer's check_backward), one scalar per direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from nnctl.autodiff import grad
from nnctl.graph.tensor import Tensor, apply
from nnctl.ops.registry import REGISTRY, Op, Sample

EPS, ATOL, RTOL = 1e-6, 1e-5, 1e-3


@dataclass
class CheckResult:
    """One row of the gradcheck table."""

    name: str          # the op, or the parameter for a model check
    case: str          # which sample / direction
    order: int         # 1 = gradient, 2 = gradient of the gradient
    max_abs: float
    max_rel: float
    passed: bool
    detail: str = ""   # where the worst element is, numeric vs analytic, on failure


def sample_inputs(sample: Sample, rng: np.random.Generator) -> list[np.ndarray]:
    """float64 inputs for one sample, kept away from kinks and (if asked) from ties."""
    arrays = []
    for i, shape in enumerate(sample.shapes):
        if i in sample.int_inputs:
            arrays.append(rng.integers(0, sample.int_inputs[i], size=shape).astype(np.int64))
            continue
        n = int(np.prod(shape))
        if sample.distinct:  # spread values at least (high-low)/2n apart
            grid = np.linspace(sample.low, sample.high, n) if n > 1 else np.array([sample.low])
            x = rng.permutation(grid) + rng.uniform(-0.1, 0.1, n) * (sample.high - sample.low) / (2 * n)
        else:
            x = rng.uniform(sample.low, sample.high, n)
        for k in sample.kinks:  # NOTE: finite differences straddling a kink are meaningless
            near = np.abs(x - k) < 0.05
            x[near] = k + np.where(x[near] >= k, 0.1, -0.1)
        arrays.append(x.reshape(shape))
    return arrays


def numeric_gradient(f: Callable[[list], float], arrays: list, index: int, eps: float) -> np.ndarray:
    """d f / d arrays[index] by central differences, element by element."""
    x = arrays[index]
    out = np.zeros_like(x)
    flat, gflat = x.reshape(-1), out.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        up = f(arrays)
        flat[k] = old - eps
        down = f(arrays)
        flat[k] = old
        gflat[k] = (up - down) / (2 * eps)
    return out


def compare(name: str, case: str, order: int, analytic: np.ndarray, numeric: np.ndarray,
            atol: float, rtol: float) -> CheckResult:
    err = np.abs(analytic - numeric)
    rel = err / np.maximum(np.abs(numeric), 1e-12)
    passed = bool(np.all(err <= atol + rtol * np.abs(numeric)))
    max_abs = float(err.max()) if err.size else 0.0
    significant = np.abs(numeric) > atol  # relative error of a ~0 derivative means nothing
    max_rel = float(rel[significant].max()) if significant.any() else 0.0
    detail = ""
    if not passed:
        k = int(np.argmax(err - rtol * np.abs(numeric)))
        where = np.unravel_index(k, numeric.shape) if numeric.shape else ()
        detail = (f"element {list(map(int, where))}: numeric {numeric.reshape(-1)[k]:.6g}, "
                  f"analytic {analytic.reshape(-1)[k]:.6g}")
    return CheckResult(name, case, order, max_abs, max_rel, passed, detail)


def _to_array(t: Tensor | None, like: np.ndarray) -> np.ndarray:
    return np.zeros_like(like) if t is None else np.asarray(t.numpy(), dtype=np.float64)


def check_op(op: Op | str, eps: float = EPS, atol: float = ATOL, rtol: float = RTOL,
             seed: int = 0, second_order: bool = True) -> list[CheckResult]:
    """Check `op` on each of its samples. Returns one row per (sample, order)."""
    op = REGISTRY[op] if isinstance(op, str) else op
    rows = []
    rng = np.random.default_rng(seed)
    for k, sample in enumerate(op.samples()):
        arrays = sample_inputs(sample, rng)
        diff = [i for i in range(len(arrays))
                if i not in op.nondifferentiable and i not in sample.int_inputs]
        if not diff:
            continue
        case = _describe(sample)

        def forward(xs):
            return op.forward(np, *xs, **sample.attrs)

        v = rng.standard_normal(np.shape(forward(arrays)))

        def vjps(xs):
            ts = [Tensor(x) for x in xs]
            out = apply(op.name, *ts, **sample.attrs)
            return ts, grad([out], [ts[i] for i in diff], [Tensor(v)])

        _, analytic = vjps(arrays)
        analytic = [_to_array(a, arrays[i]) for a, i in zip(analytic, diff)]
        numeric = [numeric_gradient(lambda xs: float(np.sum(forward(xs) * v)), arrays, i, eps)
                   for i in diff]
        rows.append(compare(op.name, case, 1, np.concatenate([a.ravel() for a in analytic]),
                            np.concatenate([n.ravel() for n in numeric]), atol, rtol))

        if not (second_order and op.twice_differentiable):
            continue
        ws = [rng.standard_normal(arrays[i].shape) for i in diff]

        def inner(xs):  # h(x) = sum_i <vjp_i(x, v), w_i>, a scalar Tensor
            ts, gs = vjps(xs)
            terms = [(g * Tensor(w)).sum() for g, w in zip(gs, ws) if g is not None]
            return ts, terms

        ts, terms = inner(arrays)
        if not terms or all(t.node.inputs == () for t in terms):
            continue
        h = terms[0]
        for t in terms[1:]:
            h = h + t
        second = grad([h], [ts[i] for i in diff])
        analytic2 = np.concatenate([_to_array(g, arrays[i]).ravel() for g, i in zip(second, diff)])
        numeric2 = np.concatenate([
            numeric_gradient(lambda xs: sum(float(t.item()) for t in inner(xs)[1]), arrays, i, eps)
            .ravel() for i in diff])
        # NOTE: second differences of first derivatives lose digits; PyTorch's gradgradcheck
        # uses the same tolerances, which hold for these small well-scaled samples.
        rows.append(compare(op.name, case, 2, analytic2, numeric2, atol, rtol))
    return rows


def check_ops(names: Sequence[str] | None = None, **kwargs) -> list[CheckResult]:
    """check_op over the whole registry (or the named ops), in registry order."""
    rows = []
    for name in names or list(REGISTRY):
        rows.extend(check_op(name, **kwargs))
    return rows


def _describe(sample: Sample) -> str:
    shapes = " ".join(str(list(s)) for s in sample.shapes)
    attrs = " ".join(f"{k}={v}" for k, v in sample.attrs.items())
    return f"{shapes} {attrs}".strip()


def check_model(config, batch: int = 4, directions: int = 4, eps: float = EPS,
                atol: float = ATOL, rtol: float = RTOL, seed: int = 0) -> list[CheckResult]:
    """The model's parameter gradients on a small training batch, in float64.

    The whole compiled training step is checked: for each parameter, `directions` random
    unit vectors u compare <grad, u> with (L(p + eps u) - L(p - eps u)) / 2 eps. Dropout
    masks are redrawn from the same seed on every evaluation, so they stay fixed.
    """
    from nnctl.backend import get_backend
    from nnctl.compile import compile_graph
    from nnctl.step import first_batch, prepare_in

    splits, builder = prepare_in(config, "float64")
    backend = get_backend("cpu")
    # padded sequences: the first n samples, padded to their longest, with their masks; so
    # the check covers the masks' paths (a sample shorter than the batch's longest)
    n, data, steps = first_batch(splits, builder, batch, "float64",
                                 config.spec.train.pad_multiple)
    outputs, feeds = builder.training_step(n, steps)
    plan = compile_graph(outputs, feeds, backend)
    names = list(builder.params)
    params = [builder.model.initial[k].astype(np.float64) for k in names]
    states = [builder.model.initial[k].astype(np.float64) for k in builder.states]

    def run(ps):
        plan.rng = backend.rng(seed)
        return plan([*data, *ps, *states])

    grads = run(params)[2:2 + len(params)]
    rng = np.random.default_rng(seed)
    rows = []
    for i, name in enumerate(names):
        analytic, numeric = [], []
        for _ in range(directions):
            u = rng.standard_normal(params[i].shape)
            u /= np.linalg.norm(u)
            shifted = list(params)
            shifted[i] = params[i] + eps * u
            up = float(run(shifted)[0])
            shifted[i] = params[i] - eps * u
            down = float(run(shifted)[0])
            analytic.append(float(np.sum(grads[i] * u)))
            numeric.append((up - down) / (2 * eps))
        rows.append(compare(name, f"{directions} directions, batch {n}", 1,
                            np.array(analytic), np.array(numeric), atol, rtol))
    return rows
