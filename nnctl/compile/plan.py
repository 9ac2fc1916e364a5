"""ExecutionPlan: the compiled graph as a flat list of steps over integer slots.

Running a step is one tight loop: no graph walking, no dictionary lookups, and each
intermediate value dropped right after its last reader (from the liveness analysis).
"""

from __future__ import annotations

import functools
from typing import Sequence

from nnctl.backend.base import Backend
from nnctl.compile.memory import last_uses, peak_bytes
from nnctl.compile.passes import PASSES, run_passes
from nnctl.graph.ir import Graph, Node
from nnctl.graph.tensor import Tensor
from nnctl.ops.registry import REGISTRY


class ExecutionPlan:
    """Run with `plan(feed_arrays)`: one array per feed, in the order given to compile_graph."""

    def __init__(self, graph: Graph, feeds: Sequence[Node], backend: Backend, rng=None,
                 pass_stats=()):
        self.graph, self.backend, self.pass_stats = graph, backend, list(pass_stats)
        self.rng = rng if rng is not None else backend.rng(0)
        slot = {node: i for i, node in enumerate(graph.nodes)}
        self.n_slots = len(graph.nodes)
        # A feed the outputs do not depend on (an unused parameter) has no slot: it is skipped.
        self.feed_slots = [slot.get(f) for f in feeds]
        self.output_slots = [slot[o] for o in graph.outputs]
        self.template = [None] * self.n_slots
        self.random = []
        for node in graph.nodes:
            if node.op == "constant":
                # NOTE: a Python float is a weak scalar to NumPy, but reshaping or broadcasting
                # it makes float64; as an array of the node's dtype it stays what it declares
                self.template[slot[node]] = backend.asarray(node.value, dtype=node.aval.dtype)
            elif node.op == "random":
                self.random.append((slot[node], node.aval.shape, node.attrs["p"], node.aval.dtype))
            elif node.op in ("input", "parameter"):
                if node not in feeds:
                    raise ValueError(f"{node!r} is needed by the outputs but is not fed")
        release_at: dict[int, list[int]] = {}
        for node, i in last_uses(graph, set(graph.outputs)).items():
            release_at.setdefault(i, []).append(slot[node])
        xp = backend.xp
        self.steps = []
        for i, node in enumerate(graph.nodes):
            if node.is_leaf:
                continue
            kernel = functools.partial(REGISTRY[node.op].forward, xp, **node.attrs)
            self.steps.append((kernel, tuple(slot[n] for n in node.inputs), slot[node],
                               tuple(release_at.get(i, ()))))
        self.peak_bytes = peak_bytes(graph, set(graph.outputs))

    def _slots(self, feeds: Sequence) -> list:
        """The slot list of one run: constants, the fed arrays, fresh random draws."""
        slots = self.template.copy()
        for s, array in zip(self.feed_slots, feeds):
            if s is not None:
                slots[s] = array
        for s, shape, p, dtype in self.random:
            slots[s] = self.backend.bernoulli(self.rng, shape, p, dtype)
        return slots

    def __call__(self, feeds: Sequence) -> list:
        slots = self._slots(feeds)
        for kernel, ins, out, release in self.steps:
            slots[out] = kernel(*[slots[i] for i in ins])
            for r in release:
                slots[r] = None
        return [slots[i] for i in self.output_slots]

    def __len__(self) -> int:
        return len(self.steps)

    def first_nonfinite(self, feeds: Sequence):
        """Run once more, checking every op's result; the first node (in execution order)
        whose value holds a NaN or Inf, or None. Slow: only for reporting a failure."""
        xp = self.backend.xp
        slots = self._slots(feeds)
        ops = [n for n in self.graph.nodes if not n.is_leaf]
        for node, (kernel, ins, out, _) in zip(ops, self.steps):
            value = kernel(*[slots[i] for i in ins])
            slots[out] = value
            if xp.issubdtype(getattr(value, "dtype", xp.float64), xp.floating) and \
                    not bool(xp.isfinite(value).all()):
                return node
        return None


def compile_graph(outputs: Sequence[Tensor], feeds: Sequence[Tensor], backend: Backend,
                  rng=None, passes=PASSES) -> ExecutionPlan:
    """Optimise the graph that computes `outputs` and lay it out as an ExecutionPlan.

    `feeds` are the input and parameter tensors whose arrays are passed on every run.
    """
    graph, stats = run_passes(Graph([t.node for t in outputs]), passes)
    return ExecutionPlan(graph, [t.node for t in feeds], backend, rng, stats)
