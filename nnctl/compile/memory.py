"""The memory plan: which values get storage, for how long, and where in one arena.

Every op result that is not a view of another value is a *buffer*. Liveness over the whole
step gives each buffer an interval [first write, last read]; a view (reshape, transpose,
broadcast, slice) extends the interval of the buffer it looks into. An elementwise op whose
input buffer dies at that op and has the output's exact shape and dtype writes in place
(NumPy's `out=` aliasing its input is safe elementwise). Buffers are then placed at byte
offsets of one arena by greedy-by-size assignment over the interval graph (the order
TFLite's and XLA's planners use): the largest first, each at the lowest offset where it
overlaps no buffer alive at the same time. The arena's size is the planned peak, known before
the first step, and it is allocated once.

Sizes may be symbolic in the batch (a `Dim`): the layout is made for a capacity (the largest
batch the plan expects); a smaller batch uses the front of every buffer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nnctl.graph.ir import Graph, Node
from nnctl.ops.registry import ELEMENTWISE, REGISTRY, Dim

ALIGN = 64  # bytes: a cache line, and what SIMD loads like

# Movement ops whose result is always a view of their input (NumPy basic indexing, strides).
VIEW_OPS = frozenset({"transpose", "broadcast_to", "getitem"})


def nbytes_at(node, sizes: dict, aval=None) -> int:
    n = (aval or node.aval).nbytes
    return n.resolve(sizes) if isinstance(n, Dim) else n


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def is_view(node: Node, contiguous: dict) -> bool:
    """The result aliases the input's storage: a view op, or a reshape of contiguous data."""
    if node.op in VIEW_OPS:
        return True
    return node.op == "reshape" and contiguous.get(node.inputs[0], False)


@dataclass
class MemoryPlan:
    """Where each buffer lives; `root` maps every value to the buffer (or leaf) it is stored in."""

    offsets: dict = field(default_factory=dict)     # buffer node -> byte offset in the arena
    sizes: dict = field(default_factory=dict)       # buffer node -> bytes at capacity
    intervals: dict = field(default_factory=dict)   # buffer node -> (first, last) op index
    root: dict = field(default_factory=dict)        # node -> node that owns its storage
    views: set = field(default_factory=set)         # nodes computed as views
    in_place: dict = field(default_factory=dict)    # node -> the input buffer it overwrites
    work: dict = field(default_factory=dict)        # node -> its workspace keys, in order
    avals: dict = field(default_factory=dict)       # workspace key -> its Aval
    joined: dict = field(default_factory=dict)      # concat -> its pieces, written in place
    slices: dict = field(default_factory=dict)      # piece -> (its concat, pieces before it)
    arena_bytes: int = 0                            # the planned peak: the arena's size
    capacity: dict = field(default_factory=dict)    # symbolic sizes the layout is made for

    @property
    def buffers(self) -> list:
        return list(self.offsets)

    def offset_at(self, key, sizes: dict) -> int:
        """The byte offset of a buffer at these sizes (a piece of a joined concat sits after
        the pieces before it, whose sizes depend on the batch)."""
        if key in self.slices:
            concat, before = self.slices[key]
            return self.offsets[concat] + sum(nbytes_at(p, sizes) for p in before)
        return self.offsets[key]

    def live_peak(self) -> int:
        """The most bytes alive at one moment: a lower bound no placement can beat; the
        arena's size over this is the fragmentation the placement cost."""
        events: dict[int, int] = {}
        for node, (first, last) in self.intervals.items():
            events[first] = events.get(first, 0) + self.sizes[node]
            events[last + 1] = events.get(last + 1, 0) - self.sizes[node]
        live = peak = 0
        for t in sorted(events):
            live += events[t]
            peak = max(peak, live)
        return peak


def plan_memory(graph: Graph, capacity: dict, keep=(), runs_at=None) -> MemoryPlan:
    """Lay out the buffers of `graph` for the symbolic sizes in `capacity` (e.g. {"B": 64}).

    `keep`: nodes whose storage must survive the whole run besides the graph's outputs.
    `runs_at`: node -> the node at whose place in the schedule its kernel runs (a companion
    pair, plan.py): its buffer is alive from the earlier of the two places on, its
    workspace at that place."""
    runs_at = runs_at or {}
    plan = MemoryPlan(capacity=dict(capacity))
    position = {}
    contiguous: dict = {}
    order = [n for n in graph.nodes]
    for i, node in enumerate(order):
        position[node] = i
        if node.is_leaf:
            plan.root[node] = node
            contiguous[node] = True
            continue
        if is_view(node, contiguous):
            plan.views.add(node)
            plan.root[node] = plan.root[node.inputs[0]]
            contiguous[node] = node.op == "reshape" or (
                node.op == "broadcast_to" and node.inputs[0].aval.shape == node.aval.shape)
        else:
            plan.root[node] = node
            contiguous[node] = True

    # last read of every storage root: through any view of it, by any op, or by the outputs
    end = len(order)
    last: dict = {}
    for node in order:
        for inp in node.inputs:
            r = plan.root[inp]
            last[r] = max(last.get(r, -1), position[node])
    for node in list(graph.outputs) + list(keep):
        last[plan.root[node]] = end

    buffers = [n for n in order if not n.is_leaf and plan.root[n] is n] + \
        [n for n in order if n.op == "random"]
    owner: dict = {}  # buffer -> the buffer whose storage it shares (in-place chains)
    for node in buffers:
        owner[node] = node
        if node in runs_at:
            continue  # written away from its own place: never over an input
        if REGISTRY.get(node.op) is not None and REGISTRY[node.op].kind == ELEMENTWISE or \
                node.op == "fused":
            for inp in node.inputs:
                r = plan.root[inp]
                if (r is inp and not inp.is_leaf and inp.aval == node.aval
                        and last.get(inp) == position[node]):
                    owner[node] = owner[inp]
                    plan.in_place[node] = inp
                    break
    _join_concats(plan, buffers, owner, set(graph.outputs) | set(keep))
    for node in order:  # scratch arrays an op asks for: alive while it runs, nowhere else
        op = REGISTRY.get(node.op)
        if op is None or node.is_leaf:
            continue
        wanted = op.workspace(*(i.aval for i in node.inputs), **node.attrs)
        if wanted:
            keys = [("work", node, k) for k in range(len(wanted))]
            plan.work[node] = keys
            for key, aval in zip(keys, wanted):
                plan.avals[key] = aval
                at = position[runs_at.get(node, node)]
                plan.intervals[key] = (at, at)
                plan.sizes[key] = _aligned(nbytes_at(None, capacity, aval))
    for node in buffers:
        o = owner[node]
        if node in plan.slices:  # stored inside its concat's buffer: alive as part of it
            o = plan.slices[node][0]
        first = min(position[node], position[runs_at.get(node, node)])
        lo, hi = plan.intervals.get(o, (first, first))
        plan.intervals[o] = (min(lo, first), max(hi, last.get(node, first)))
        plan.sizes[o] = max(plan.sizes.get(o, 0), _aligned(nbytes_at(node, capacity)))

    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    for o in sorted(plan.intervals, key=lambda n: (-plan.sizes[n], plan.intervals[n][0])):
        size, (first, lastuse) = plan.sizes[o], plan.intervals[o]
        busy = sorted((off, sz) for off, sz, f, l in placed if f <= lastuse and first <= l)
        offset = 0
        for off, sz in busy:
            if offset + size <= off:
                break
            offset = max(offset, off + sz)
        placed.append((offset, size, first, lastuse))
        plan.offsets[o] = offset
        plan.arena_bytes = max(plan.arena_bytes, offset + size)
    for node in buffers:
        if node in plan.slices:
            plan.offsets[node] = plan.offset_at(node, capacity)
        elif owner[node] is not node:
            plan.offsets[node] = plan.offsets[owner[node]]
    return plan


def _join_concats(plan: MemoryPlan, buffers: list, owner: dict, kept: set) -> None:
    """concat(p1, p2, ...) along the leading axis, where every piece is a buffer of its own
    (not a view, not written in place over another, not kept, in no other joined concat):
    each piece is stored as its slice of the concat's buffer, so the concat copies nothing
    and runs no step (the recurrent weight gradients concat one piece per time step).
    Neither a piece nor the concat may be overwritten in place by a reader: the storage is
    shared, so that would change the other's values."""
    shared = {o for n, o in owner.items() if o is not n} | set(plan.in_place.values())
    taken: set = set()
    for node in buffers:
        if node.op != "concat" or node.attrs.get("axis") != 0 or owner[node] is not node \
                or node in shared:
            continue
        pieces = node.inputs
        if len(set(pieces)) != len(pieces) or any(
                p.is_leaf or plan.root.get(p) is not p or owner.get(p) is not p or p in shared
                or p in kept or p in taken or p.op == "random"
                or p.aval.shape[1:] != node.aval.shape[1:] for p in pieces):
            continue
        plan.joined[node] = tuple(pieces)
        for k, p in enumerate(pieces):
            plan.slices[p] = (node, tuple(pieces[:k]))
        taken.update(pieces)


def last_uses(graph: Graph, keep: set) -> dict:
    """node -> index of the last op node (in graph order) that reads it; nodes in `keep`
    (the outputs) and leaves are never released."""
    position = {node: i for i, node in enumerate(graph.nodes)}
    last = {}
    for node in graph.nodes:
        for inp in node.inputs:
            last[inp] = max(last.get(inp, -1), position[node])
    return {n: i for n, i in last.items() if n not in keep and not n.is_leaf}


def peak_bytes(graph: Graph, keep: set, sizes: dict | None = None) -> int:
    """Bytes of op results alive at once at the worst point of one run if every op allocated
    its own result and dropped it after its last reader (leaves excluded: inputs and
    parameters are resident anyway): the interpreter's peak, for comparison with the plan."""
    sizes = sizes or {}
    release_at: dict[int, list] = {}
    for node, i in last_uses(graph, keep).items():
        release_at.setdefault(i, []).append(node)
    live = peak = 0
    for i, node in enumerate(graph.nodes):
        if not node.is_leaf:
            live += nbytes_at(node, sizes)
            peak = max(peak, live)
        for dead in release_at.get(i, ()):
            live -= nbytes_at(dead, sizes)
    return peak


__all__ = ["MemoryPlan", "VIEW_OPS", "last_uses", "nbytes_at", "peak_bytes",
           "plan_memory"]
