"""Running one layer through the whole engine in the layer tests (graph, autodiff, the
compiled CPU plan)."""

from __future__ import annotations

import numpy as np

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.graph.tensor import Tensor, input_placeholder

CPU = get_backend("cpu")


def run_layer(layer, x: np.ndarray, cotangent=None, params=None):
    """(output, gradients of x and each parameter by short name, cotangent) for
    loss = sum(out * cotangent); the cotangent is drawn (seed 1) when not given, and
    `params` (by short name) replace the layer's initial values."""
    xt = input_placeholder("x", x.shape, str(x.dtype))
    out = layer(xt, False, np.random.default_rng(0))
    if params:
        layer.initial.update({f"{layer.name}.{k}": v for k, v in params.items()})
    names = list(layer.params)
    if cotangent is None:
        cotangent = np.random.default_rng(1).normal(size=out.shape)
    grads = grad((out * Tensor(cotangent)).sum(), [xt, *layer.params.values()])
    plan = compile_graph([out, *grads], [xt, *layer.params.values()], CPU)
    results = plan([x, *(layer.initial[k] for k in names)])
    return results[0], dict(zip(["x", *(n.split(".")[-1] for n in names)], results[1:])), \
        cotangent
