"""`nnctl explain CONFIG PARAM`: the chain rule made visible for one parameter.

The training graph's loss depends on a parameter through one or more paths (a chain of ops
from the parameter to the loss). Reverse-mode AD sums, over every path, the product of the
local derivatives along it: each edge's vector-Jacobian product (the op's vjp rule for that
input). This module lists those paths with the rule each edge applies, and computes each
path's own contribution (backpropagation restricted to the path) on a batch, so that their
sum can be checked against the gradient autodiff computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.autodiff import grad
from nnctl.graph.ir import toposort
from nnctl.graph.tensor import Tensor
from nnctl.ops.registry import REGISTRY

MAX_PATHS = 200

# What each op's vjp does to the incoming gradient g, per input (y: the op's output)
RULES = {
    "add": ("g", "g"), "sub": ("g", "-g"), "mul": ("g * b", "g * a"),
    "div": ("g / b", "-g * a / b^2"), "neg": ("-g",), "matmul": ("g @ B^T", "A^T @ g"),
    "tanh": ("g * (1 - y^2)",), "sigmoid": ("g * y * (1 - y)",), "relu": ("g * step(x)",),
    "exp": ("g * y",), "log": ("g / x",), "sqrt": ("g / (2 y)",), "sin": ("g * cos x",),
    "cos": ("-g * sin x",), "abs": ("g * sign(x)",), "pow": ("g * p * x^(p-1)",),
    "sum": ("g broadcast back",), "mean": ("g broadcast back / n",),
    "reshape": ("g reshaped back",), "transpose": ("g transposed back",),
    "broadcast_to": ("g summed to x's shape",), "getitem": ("g scattered into x's shape",),
    "softmax": ("y * (g - sum(g * y))",), "log_softmax": ("g - softmax(x) * sum(g)",),
    "cross_entropy": ("g * (softmax(z) - onehot(labels)) / n", None),
    "leaky_relu": ("g * (x > 0 ? 1 : slope)",), "softplus": ("g * sigmoid(x)",),
    "maximum": ("g where a >= b", "g where b > a"), "minimum": ("g where a <= b",
                                                              "g where b < a"),
    "where": (None, "g where cond", "g where not cond"), "take": ("scatter_add of g", None),
    "concat": ("g sliced to x's part",), "stack": ("g sliced to x's part",),
    "logsumexp": ("g * softmax(x)",), "max": ("g at the maximum",),
    "clip": ("g where lo < x < hi",), "pad": ("g with the padding cut",),
}


def rule(op: str, index: int) -> str:
    """The local derivative an edge into input `index` of `op` applies."""
    rules = RULES.get(op)
    if rules is None:
        return f"vjp of {op}"
    text = rules[min(index, len(rules) - 1)]
    return text if text is not None else "no gradient"


@dataclass
class Edge:
    node: object  # the consumer
    index: int  # which of its inputs the path enters through


@dataclass
class Path:
    edges: list  # from the parameter up to the loss

    def describe(self) -> list[str]:
        lines = []
        for e in self.edges:
            where = f" in {e.node.scope}" if e.node.scope else ""
            lines.append(f"{e.node.op}{where} (input {e.index}): {rule(e.node.op, e.index)}")
        return lines


def paths_to(loss: Tensor, param: Tensor, limit: int = MAX_PATHS) -> list[Path]:
    """Every chain of (consumer, input index) edges from `param` to `loss` (an op that reads
    the same tensor twice gives two edges); at most `limit`, else ValueError."""
    order = toposort([loss.node])
    consumers: dict = {}
    for node in order:
        for i, inp in enumerate(node.inputs):
            consumers.setdefault(inp, []).append(Edge(node, i))
    reaches = {loss.node}
    for node in reversed(order):
        if any(e.node in reaches for e in consumers.get(node, ())):
            reaches.add(node)
    found: list[Path] = []

    def walk(node, trail):
        if node is loss.node:
            found.append(Path(list(trail)))
            if len(found) > limit:
                raise ValueError(f"more than {limit} paths")
            return
        for e in consumers.get(node, ()):
            if e.node in reaches:
                trail.append(e)
                walk(e.node, trail)
                trail.pop()
    walk(param.node, [])
    return found


def path_gradient(loss: Tensor, param: Tensor, path: Path) -> tuple[Tensor, list[Tensor]]:
    """(the gradient that flows along this path only, the gradient arriving at each edge's
    consumer from above, in the path's order): the loss's seed 1 pulled back through each
    edge's vjp, from the loss down to the parameter."""
    g = Tensor(np.ones(loss.shape, dtype=loss.dtype))
    arriving: list[Tensor] = []
    for k in range(len(path.edges) - 1, -1, -1):
        e = path.edges[k]
        arriving.append(g)
        op = REGISTRY[e.node.op]
        inputs = [Tensor(node=n) for n in e.node.inputs]
        g = op.vjp(g, Tensor(node=e.node), *inputs, **e.node.attrs)[e.index]
        if g is None:
            zero = Tensor(np.zeros(param.shape, dtype=param.dtype))
            return zero, [zero] * (len(path.edges) - len(arriving)) + arriving[::-1]
    return g, arriving[::-1]


def explain(config, param_name: str, batch: int = 4, weights: dict | None = None) -> dict:
    """{"param", "paths": [{"edges": [...], "norm": float}], "sum", "autodiff"} for one
    parameter of a config's training graph, on a training batch of `batch` samples (float64,
    the initial weights or `weights`)."""

    from nnctl.backend import get_backend
    from nnctl.compile import compile_graph
    from nnctl.errors import UsageError
    from nnctl.step import first_batch, prepare_in

    splits, builder = prepare_in(config, "float64")
    if param_name not in builder.params:
        from nnctl.config.validate import suggest
        raise UsageError(f"no parameter {param_name!r}{suggest(param_name, builder.params)}; "
                         f"the model has {', '.join(builder.params)}")
    n, data, steps = first_batch(splits, builder, batch, "float64")
    feeds, out = builder.build(n, True, steps or None)
    loss, _ = builder.objective(feeds, out)
    param = builder.params[param_name]
    try:
        paths = paths_to(loss, param)
    except ValueError as err:
        raise UsageError(f"{param_name} reaches the loss by {err}; explain shows smaller "
                         "models") from None
    pulled = [path_gradient(loss, param, p) for p in paths]
    contributions = [c for c, _ in pulled]
    flows = [f for _, along in pulled for f in along]
    (total,) = grad(loss, [param])
    params, states = list(builder.params.values()), list(builder.states.values())
    plan = compile_graph([*contributions, total, *flows], [*feeds.data, *params, *states],
                         get_backend("cpu"), passes=())
    initial = dict(builder.model.initial)
    wrong = [k for k in initial if weights and (k not in weights or
                                                 np.shape(weights[k]) != np.shape(initial[k]))]
    if wrong:
        raise UsageError(f"--values: the run's weights do not belong to this config's model "
                         f"({wrong[0]} is missing or has another shape)")
    if weights:
        initial.update({k: np.asarray(v, np.float64) for k, v in weights.items()
                        if k in initial})
    values = plan.run([*data, *[initial[k] for k in builder.params],
                       *[initial[k] for k in builder.states]])
    parts = [np.array(v) for v in values[:len(paths)]]
    autodiff = np.array(values[len(paths)])
    norms = iter(float(np.linalg.norm(v)) for v in values[len(paths) + 1:])
    return {"param": param_name, "shape": list(param.shape), "batch": n,
            "paths": [{"edges": p.describe(), "norm": float(np.linalg.norm(v)), "value": v,
                       "flow": [next(norms) for _ in p.edges],
                       "graph_edges": [(e.node, e.index) for e in p.edges]}
                      for p, v in zip(paths, parts)],
            "sum": np.sum(parts, axis=0) if parts else np.zeros(param.shape),
            "autodiff": autodiff, "loss": loss.node, "param_node": param.node}
