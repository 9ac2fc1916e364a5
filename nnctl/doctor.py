"""`nnctl doctor CONFIG`: the model's training step (forward, loss, every gradient and layer
state) evaluated op by op on two backends from the same weights, batch and dropout masks,
and the largest difference of each op's results: where a GPU (or a lower precision) first
departs from the NumPy float64 reference, named by op and layer.

The step is interpreted node by node (each op's own `forward`, no compile passes, no fusion),
so a difference belongs to one op: the one whose inputs agree and whose result does not.
Each node's difference is normwise: max |a - b| over the node's scale, the larger of max |b|
and its inputs' max |x| (an op that only moves values, a reshape or a slice, takes its input's
scale). So an element near zero does not dominate, nor does a result that cancels to nearly
nothing (a conv bias before batch norm has a zero gradient, up to its inputs' round-off).

Targets: `cuda` (CuPy, float64: parity; tolerance 1e-10) and `float32` (the same graph built
in float32 on the CPU: what a float32 run loses; tolerance 1e-3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.graph.ir import toposort
from nnctl.ops.registry import REGISTRY

TOLERANCE = {"cuda": 1e-10, "float32": 1e-3}


@dataclass
class OpReport:
    op: str
    nodes: int
    max_error: float       # normwise relative difference, the worst node of this op
    layer: str             # where that node is
    inherited: float       # the largest difference among that node's inputs


def training_graph(config, dtype: str, batch: int):
    """(graph nodes in order, the data arrays of a training batch in feed order, feeds) for
    `config` built in `dtype`."""
    from nnctl.step import first_batch, prepare_in
    splits, builder = prepare_in(config, dtype)
    n, data, steps = first_batch(splits, builder, batch, dtype)
    outputs, feeds = builder.training_step(n, steps or None)
    values = data + [np.asarray(builder.model.initial[t.node.name], dtype)
                     for t in feeds[len(data):]]
    return toposort([t.node for t in outputs]), {t.node: v for t, v in zip(feeds, values)}


def evaluate(nodes, feeds: dict, xp, masks: dict) -> list:
    """Every node's value (on the host), each op run by its own forward on `xp`."""
    values: dict = {}
    out = []
    for k, node in enumerate(nodes):
        if node in feeds:
            value = xp.asarray(feeds[node])
        elif node.op == "constant":
            v = node.value.get() if hasattr(node.value, "get") else node.value
            value = xp.asarray(np.asarray(v, dtype=node.aval.dtype))
        elif node.op == "random":
            value = xp.asarray(masks[k].astype(node.aval.dtype))
        else:
            args = [values[i] for i in node.inputs]
            value = REGISTRY[node.op].forward(xp, *args, **node.attrs)
            value = xp.asarray(value, dtype=node.aval.dtype)
        values[node] = value
        out.append(value)
    to_host = getattr(xp, "asnumpy", np.asarray)
    return [np.asarray(to_host(v), dtype=np.float64) if np.asarray(to_host(v)).dtype.kind
            == "f" else np.asarray(to_host(v)) for v in out]


def magnitude(x: np.ndarray) -> float:
    return float(np.nanmax(np.abs(x), initial=0.0)) if x.dtype.kind == "f" else 0.0


def scales(nodes, reference: list) -> list[float]:
    """Each node's scale: the larger of its value's and its inputs' max |x|; an op that only
    moves values (reshape, transpose, slicing) takes its inputs' scales."""
    from nnctl.ops.registry import MOVEMENT
    index = {n: k for k, n in enumerate(nodes)}
    out: list[float] = []
    for k, node in enumerate(nodes):
        own = magnitude(reference[k])
        if node.is_leaf:
            out.append(own)
        elif REGISTRY[node.op].kind == MOVEMENT:
            out.append(max([own] + [out[index[i]] for i in node.inputs]))
        else:
            out.append(max([own] + [magnitude(reference[index[i]]) for i in node.inputs]))
    return out


def difference(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """max |a - b| / scale (0 when all is zero; inf where shapes differ)."""
    if a.shape != b.shape:
        return float("inf")
    if a.dtype.kind != "f":
        return 0.0 if np.array_equal(a, b) else float("inf")
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a - b))
    worst = float(np.nanmax(diff, initial=0.0)) if not np.isnan(diff).any() else float("inf")
    return worst / scale if scale > 0 else worst


def diagnose(config, target: str, batch: int = 8, xp_target=None) -> tuple[list, dict]:
    """([OpReport] worst first, {"nodes", "worst", "tolerance"}) comparing `target` with
    NumPy float64. `xp_target` replaces the target's array module (tests plant a wrong
    one)."""
    from nnctl.errors import UsageError
    if target not in TOLERANCE:
        raise UsageError(f"--against: expected cuda or float32, got {target!r}")
    nodes, feeds = training_graph(config, "float64", batch)
    rng = np.random.default_rng(0)
    masks = {k: (rng.random(tuple(n.aval.shape)) < n.attrs["p"])
             for k, n in enumerate(nodes) if n.op == "random"}
    reference = evaluate(nodes, feeds, np, masks)
    if target == "float32":
        other_nodes, other_feeds = training_graph(config, "float32", batch)
        if [n.op for n in other_nodes] != [n.op for n in nodes]:
            raise UsageError("the float32 graph differs from the float64 one; cannot compare "
                             "op by op")
        other = evaluate(other_nodes, other_feeds, xp_target or np, masks)
    else:
        if xp_target is None:
            from nnctl.backend import get_backend
            xp_target = get_backend("cuda").xp
        other = evaluate(nodes, feeds, xp_target, masks)
    index = {n: k for k, n in enumerate(nodes)}
    errors = [difference(a, b, s) for a, b, s in zip(other, reference, scales(nodes, reference))]
    by_op: dict[str, OpReport] = {}
    for k, node in enumerate(nodes):
        if node.is_leaf:
            continue
        inherited = max((errors[index[i]] for i in node.inputs), default=0.0)
        report = by_op.get(node.op)
        if report is None:
            by_op[node.op] = OpReport(node.op, 1, errors[k], node.scope or "-", inherited)
            continue
        report.nodes += 1
        if errors[k] > report.max_error:
            report.max_error, report.layer, report.inherited = errors[k], node.scope or "-", \
                inherited
    reports = sorted(by_op.values(), key=lambda r: -r.max_error)
    worst = reports[0].max_error if reports else 0.0
    tolerance = TOLERANCE[target]
    first = None
    for k, node in enumerate(nodes):  # in graph order: the first op that departs on its own
        inherited = max((errors[index[i]] for i in node.inputs), default=0.0)
        if not node.is_leaf and errors[k] > tolerance and inherited <= tolerance:
            first = OpReport(node.op, 1, errors[k], node.scope or "-", inherited)
            break
    return reports, {"nodes": len(nodes), "worst": worst, "tolerance": tolerance,
                     "first": first}


def first_departure(summary: dict) -> OpReport | None:
    """The first node in graph order whose result is outside the tolerance while its inputs
    are inside: where the difference starts."""
    return summary["first"]
