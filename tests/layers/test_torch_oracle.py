"""PyTorch as an independent oracle for the layer library, in float64.

Each row of CASES runs one layer in nnctl (graph, autodiff, compile, CPU plan) and the same
computation in PyTorch with identical weights and inputs, and compares the output, the
gradient of every float input and of every parameter for loss = sum(out * R) with R random,
and (batch norm, training mode) the new running statistics. Parameters are perturbed from
their initial values (biases 0, gamma 1, ...) so that every one of them is exercised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from nnctl.autodiff import grad  # noqa: E402
from nnctl.backend import get_backend  # noqa: E402
from nnctl.compile import compile_graph  # noqa: E402
from nnctl.graph.tensor import Tensor, input_placeholder  # noqa: E402
from nnctl.layers.conv import AvgPool2d, Conv2d, MaxPool2d  # noqa: E402
from nnctl.layers.dense import Dense  # noqa: E402
from nnctl.layers.embedding import Embedding, PositionalEncoding  # noqa: E402
from nnctl.layers.merge import Add, Concat  # noqa: E402
from nnctl.layers.norm import BatchNorm, LayerNorm  # noqa: E402
from nnctl.layers.reshape import Flatten  # noqa: E402

CPU = get_backend("cpu")
RTOL, ATOL = 1e-10, 1e-12


# ---- nnctl side ----------------------------------------------------------------------------

def run_nnctl(layer, inputs_np, cotangent, training, perturb=None):
    """Run `layer` on `inputs_np` through the whole engine. Returns {"out", "grads", "updates"}:
    grads keyed "x<i>" for float inputs and by full parameter name; updates by state name.

    `perturb(name, array) -> array`, if given, replaces the freshly built initial values of
    parameters and states (in layer.initial, so the torch side copies the same values)."""
    xs = [input_placeholder(f"x{i}", a.shape, str(a.dtype)) for i, a in enumerate(inputs_np)]
    arg = xs if layer.merge else xs[0]
    out = layer(arg, training, np.random.default_rng(0))
    if perturb is not None:
        for name in [*layer.params, *layer.states]:
            layer.initial[name] = perturb(name, layer.initial[name])
    float_xs = [(f"x{i}", x) for i, x in enumerate(xs) if x.dtype.startswith("float")]
    params = list(layer.params.items())
    states = list(layer.states.items())
    updates = [(k, layer.updates[k]) for k, _ in states if k in layer.updates]
    loss = (out * Tensor(cotangent)).sum()
    grads = grad(loss, [x for _, x in float_xs] + [p for _, p in params])
    plan = compile_graph([out, *grads, *(u for _, u in updates)],
                         [*xs, *(p for _, p in params), *(s for _, s in states)], CPU)
    results = plan([*inputs_np, *(layer.initial[k] for k, _ in params),
                    *(layer.initial[k] for k, _ in states)])
    names = [n for n, _ in float_xs] + [n for n, _ in params]
    return {"out": results[0],
            "grads": dict(zip(names, results[1:1 + len(names)])),
            "updates": dict(zip([k for k, _ in updates], results[1 + len(names):]))}


# ---- the table -----------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    layer: Callable[[], object]                 # a fresh nnctl layer named "L"
    inputs: list                                # shapes of float64 inputs, or int64 arrays
    module: Callable[[], "torch.nn.Module"]     # the torch module holding the same weights
    forward: Callable                           # (module, [torch inputs]) -> torch output
    params: dict = field(default_factory=dict)  # nnctl local name -> (torch attr, transpose)
    states: dict = field(default_factory=dict)  # nnctl local name -> torch buffer
    training: bool = False


def _call(m, xs):
    return m(*xs)


def _dense(id, shape, units, **kw):
    bias = kw.get("bias", True)
    act = kw.get("activation", "linear")

    def fwd(m, xs):
        y = m(xs[0])
        return F.relu(y) if act == "relu" else y
    params = {"weight": ("weight", True)} | ({"bias": ("bias", False)} if bias else {})
    return Case(id, lambda: Dense("L", units, **kw), [shape],
                lambda: torch.nn.Linear(shape[-1], units, bias=bias, dtype=torch.float64),
                fwd, params)


def _conv(id, shape, filters, kernel, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
          groups=1, bias=True, activation="linear"):
    def fwd(m, xs):
        y = m(xs[0])
        return F.relu(y) if activation == "relu" else y
    params = {"weight": ("weight", False)} | ({"bias": ("bias", False)} if bias else {})
    return Case(
        id,
        lambda: Conv2d("L", filters, kernel, stride, padding, dilation, groups, activation,
                       bias=bias),
        [shape],
        lambda: torch.nn.Conv2d(shape[1], filters, kernel, stride, padding, dilation, groups,
                                bias=bias, dtype=torch.float64),
        fwd, params)


def _pool(kind, kernel, stride, padding, shape=(2, 3, 7, 7)):
    id = f"{kind}-k{kernel}-s{stride}-p{padding}"
    k, s, p = (kernel, kernel), (stride, stride), (padding, padding)
    if kind == "max_pool2d":
        return Case(id, lambda: MaxPool2d("L", k, s, p), [shape],
                    lambda: torch.nn.MaxPool2d(k, s, p), _call)
    return Case(id, lambda: AvgPool2d("L", k, s, p), [shape],
                lambda: torch.nn.AvgPool2d(k, s, p, count_include_pad=True), _call)


def _batch_norm(id, shape, training, affine=True, momentum=0.1):
    cls = torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d
    params = {"gamma": ("weight", False), "beta": ("bias", False)} if affine else {}
    return Case(id, lambda: BatchNorm("L", momentum, 1e-5, affine), [shape],
                lambda: cls(shape[1], eps=1e-5, momentum=momentum, affine=affine,
                            dtype=torch.float64),
                _call, params, {"running_mean": "running_mean", "running_var": "running_var"},
                training)


def _layer_norm(id, shape, affine):
    params = {"gamma": ("weight", False), "beta": ("bias", False)} if affine else {}
    return Case(id, lambda: LayerNorm("L", 1e-5, affine), [shape],
                lambda: torch.nn.LayerNorm(shape[-1], eps=1e-5, elementwise_affine=affine,
                                           dtype=torch.float64),
                _call, params)


def _sinusoid_pe(xs):
    """x + PE with PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(t / 10000^(2i/d))."""
    x = xs[0]
    t, d = x.shape[1], x.shape[2]
    pos = torch.arange(t, dtype=torch.float64)[:, None]
    two_i = torch.arange(0, d, 2, dtype=torch.float64)
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), two_i / d)
    pe = torch.zeros(t, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d // 2])
    return x + pe


IDS = np.array([[0, 3, 3, 1], [4, 3, 0, 0], [2, 2, 3, 4]], dtype=np.int64)  # repeated ids

CASES = [
    _dense("dense-bias-2d", (4, 5), 3),
    _dense("dense-nobias-2d", (4, 5), 3, bias=False),
    _dense("dense-relu-2d", (4, 5), 6, activation="relu"),
    _dense("dense-bias-3d", (2, 3, 5), 4),
    _dense("dense-relu-nobias-3d", (2, 3, 5), 4, activation="relu", bias=False),
    _conv("conv2d-s1-p0", (2, 3, 7, 7), 4, (3, 3)),
    _conv("conv2d-s2-p1", (2, 3, 7, 8), 4, (3, 3), stride=(2, 2), padding=(1, 1)),
    _conv("conv2d-s2-p0-rect", (2, 3, 8, 7), 4, (2, 3), stride=(2, 1)),
    _conv("conv2d-same-3x5", (2, 3, 6, 7), 4, (3, 5), padding="same"),
    _conv("conv2d-dilation2", (2, 3, 8, 8), 4, (3, 3), padding=(2, 2), dilation=(2, 2)),
    _conv("conv2d-dilation2-same", (2, 3, 8, 8), 4, (3, 3), padding="same", dilation=(2, 2)),
    _conv("conv2d-groups2", (2, 4, 6, 6), 6, (3, 3), padding=(1, 1), groups=2),
    _conv("conv2d-depthwise", (2, 3, 6, 6), 3, (3, 3), padding=(1, 1), groups=3),
    _conv("conv2d-depthwise-x2-s2", (2, 3, 7, 7), 6, (3, 3), stride=(2, 2), groups=3),
    _conv("conv2d-nobias-relu", (2, 3, 6, 6), 4, (3, 3), bias=False, activation="relu"),
    *(_pool(kind, k, s, p) for kind in ("max_pool2d", "avg_pool2d")
      for k, s, p in [(2, 2, 0), (2, 1, 0), (3, 1, 0), (3, 2, 0), (2, 2, 1), (3, 2, 1),
                      (3, 1, 1)]),
    _batch_norm("batch_norm-2d-train", (6, 4), True),
    _batch_norm("batch_norm-2d-eval", (6, 4), False),
    _batch_norm("batch_norm-4d-train", (3, 4, 5, 5), True),
    _batch_norm("batch_norm-4d-eval", (3, 4, 5, 5), False),
    _batch_norm("batch_norm-4d-train-noaffine-m0.3", (3, 4, 5, 5), True, affine=False,
                momentum=0.3),
    _layer_norm("layer_norm-affine", (2, 3, 6), True),
    _layer_norm("layer_norm-noaffine", (2, 3, 6), False),
    _layer_norm("layer_norm-affine-2d", (4, 6), True),
    Case("embedding-repeated-ids", lambda: Embedding("L", 3, 5, "float64"), [IDS],
         lambda: torch.nn.Embedding(5, 3, dtype=torch.float64),
         lambda m, xs: F.embedding(xs[0], m.weight), {"table": ("weight", False)}),
    Case("flatten", lambda: Flatten("L"), [(2, 3, 4, 5)], lambda: torch.nn.Identity(),
         lambda m, xs: torch.flatten(xs[0], 1)),
    Case("positional_encoding-even", lambda: PositionalEncoding("L"), [(2, 6, 8)],
         lambda: torch.nn.Identity(), lambda m, xs: _sinusoid_pe(xs)),
    Case("positional_encoding-odd", lambda: PositionalEncoding("L"), [(2, 5, 7)],
         lambda: torch.nn.Identity(), lambda m, xs: _sinusoid_pe(xs)),
    Case("add-3", lambda: Add("L"), [(2, 3, 4)] * 3, lambda: torch.nn.Identity(),
         lambda m, xs: xs[0] + xs[1] + xs[2]),
    Case("concat-last", lambda: Concat("L", -1), [(2, 3, 4), (2, 3, 2)],
         lambda: torch.nn.Identity(), lambda m, xs: torch.cat(xs, -1)),
    Case("concat-axis1", lambda: Concat("L", 1), [(2, 3, 4), (2, 1, 4), (2, 2, 4)],
         lambda: torch.nn.Identity(), lambda m, xs: torch.cat(xs, 1)),
]


# ---- the test ------------------------------------------------------------------------------

def _perturb(rng):
    def change(name, value):
        if name.endswith("running_var"):
            return rng.uniform(0.5, 2.0, value.shape)
        return value + rng.normal(0.0, 0.5, value.shape)
    return change


def _close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_layer_agrees_with_torch(case):
    rng = np.random.default_rng(1234)
    inputs = [a if isinstance(a, np.ndarray) else rng.normal(size=a) for a in case.inputs]
    layer = case.layer()
    # the output shape is known only after the layer is called: probe it with torch first
    module = case.module()
    with torch.no_grad():
        probe = case.forward(module.eval(), [torch.from_numpy(a) for a in inputs])
    cotangent = rng.normal(size=tuple(probe.shape))

    mine = run_nnctl(layer, inputs, cotangent, case.training, _perturb(rng))

    # the same weights and running statistics, layouts mapped per parameter
    assert set(layer.params) == {f"L.{k}" for k in case.params}, "unmapped parameters"
    assert set(layer.states) == {f"L.{k}" for k in case.states}, "unmapped states"
    with torch.no_grad():
        for local, (attr, transpose) in case.params.items():
            value = layer.initial[f"L.{local}"]
            getattr(module, attr).copy_(torch.from_numpy(value.T if transpose else value))
        for local, attr in case.states.items():
            getattr(module, attr).copy_(torch.from_numpy(layer.initial[f"L.{local}"]))
    module.train(case.training)
    xs = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    out = case.forward(module, xs)
    (out * torch.from_numpy(cotangent)).sum().backward()

    _close(mine["out"], out.detach().numpy(), "output")
    expected = {f"x{i}": x.grad.numpy() for i, x in enumerate(xs) if x.requires_grad}
    for local, (attr, transpose) in case.params.items():
        g = getattr(module, attr).grad.numpy()
        expected[f"L.{local}"] = g.T if transpose else g
    assert set(mine["grads"]) == set(expected)
    for name, g in expected.items():
        _close(mine["grads"][name], g, f"gradient of {name}")
    if case.training:
        assert set(mine["updates"]) == {f"L.{k}" for k in case.states}
        for local, attr in case.states.items():
            _close(mine["updates"][f"L.{local}"], getattr(module, attr).numpy(),
                   f"updated {local}")
    else:
        assert mine["updates"] == {}


def test_case_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)
