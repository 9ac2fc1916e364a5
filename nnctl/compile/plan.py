"""ExecutionPlan: the compiled graph as a flat list of kernels over integer slots and one arena.

Compiling does the work once: the passes, the fused kernels, the memory plan (every buffer
at its offset in one arena, allocated before the first step). Running a step is one tight
loop in which each kernel writes into its planned buffer; views (reshape, transpose,
broadcast, slices) are made afresh, results are never allocated.

One plan serves every batch size: the graph's shapes may hold the symbolic batch `B`
(nnctl.ops.registry.Dim). Each call reads B off the feeds, checks every feed's shape and
dtype against the graph's inputs, and runs the kernels bound for that B (attributes that
mention B resolved, buffers viewed at that size); bindings are cached per batch size, and a
batch larger than the arena's capacity grows the arena once.

`plan.run(feeds)` returns views into the arena, valid until the next run of the same plan:
the trainer's hot loop consumes them at once (gradients) or copies them (new layer state).
`plan(feeds)` returns copies, safe to keep.
"""

from __future__ import annotations

import functools
from typing import Sequence

from nnctl import jit as jit_policy
from nnctl.backend.base import Backend
from nnctl.compile.memory import MemoryPlan, nbytes_at, peak_bytes, plan_memory
from nnctl.compile.passes import PASSES, run_passes
from nnctl.errors import ShapeError
from nnctl.graph.ir import Graph, Node
from nnctl.graph.tensor import Tensor
from nnctl.ops.registry import REGISTRY, Dim, Op, contains_dim, resolve

# One-op programs with these functions run on numba even when NumPy needs one call for them
LONE_GAINS = frozenset({"tanh"})

# An op with a workspace whose inputs and result are at most this many elements runs its
# `forward` and copies (bounded temporaries) instead of its allocation-free workspace path.
SMALL_WORK = 4096


def _view(forward, xp, attrs, out, *inputs):
    return forward(xp, *inputs, **attrs)


def _fed(root: Node) -> bool:
    """Whether a storage root is an array passed anew at each run (an input or a parameter)."""
    return root.is_leaf and root.op != "constant"


def _lone_program(node: Node, xp):
    """The one-op Program of an elementwise node that numba runs faster than the op's own
    NumPy calls (a sigmoid: four ufunc passes, a float32 tanh: libm per element), else None.
    Fusion leaves such a node alone when its result has users outside one group (a sigmoid
    whose output its gradient reads)."""
    from nnctl.compile.fusion import fusable, program_of
    from nnctl.compile.kernels import uses_numba
    from nnctl.compile.kernels.expr import flatten
    if not fusable(node) or not jit_policy.enabled():
        return None
    program = program_of([node])[0]
    instrs = flatten(program)
    if not uses_numba(program, xp) or (len(instrs) < 3 and not any(
            i.fn in LONE_GAINS for i in instrs)):
        return None
    return program


def _runs_small(op: Op, nodes, sizes: dict) -> bool:
    """Whether an op with a workspace runs its `forward` and a copy for these nodes' sizes
    (all at most SMALL_WORK elements) instead of its allocation-free workspace path."""
    return op.copy_small and max(n.aval.at(sizes).size for n in nodes) <= SMALL_WORK


def companions(graph: Graph) -> tuple[Graph, dict]:
    """The graph scheduled for pairs of nodes one kernel computes together, and the pairs,
    first -> second. Op.companion names the second's op, on the same leading inputs, later
    in the schedule; the kernel runs at the first's place, after the second's other inputs
    are hoisted there (the 1/batch scale of a loss gradient), which is possible unless one
    depends on the first. The memory plan keeps the second's buffer alive from the first's
    place on (plan_memory's runs_at), so writing it there clobbers nothing."""
    by_inputs: dict = {}
    for node in graph.nodes:
        if not node.is_leaf:
            by_inputs.setdefault((node.op, node.inputs[:2]), []).append(node)
    pairs: dict = {}
    for first in graph.nodes:
        op = REGISTRY.get(first.op)
        if first.is_leaf or op is None or op.companion is None or first.attrs:
            continue
        k = len(first.inputs)
        for second in by_inputs.get((op.companion[0], first.inputs[:2]), ()):
            if second in pairs.values() or second.inputs[:k] != first.inputs or second.attrs:
                continue
            order = _hoisted(graph.nodes, first, second.inputs[k:])
            if order is not None and order.index(second) > order.index(first):
                graph = Graph(graph.outputs, order)
                pairs[first] = second
                break
    return graph, pairs


def _hoisted(nodes, first: Node, needed) -> tuple | None:
    """`nodes` reordered so that everything `needed` comes before `first` (the nodes it
    takes moved up, in their order); None where one of them depends on `first`."""
    position = {n: i for i, n in enumerate(nodes)}
    late: set = set()
    stack = [n for n in needed if position[n] >= position[first]]
    while stack:
        n = stack.pop()
        if n is first:
            return None
        if n not in late:
            late.add(n)
            stack.extend(i for i in n.inputs if position[i] >= position[first])
    if not late:
        return tuple(nodes)
    at = position[first]
    moved = [n for n in nodes[at:] if n in late]
    return (*nodes[:at], *moved, *[n for n in nodes[at:] if n not in late])


def _describe(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


class _Binding:
    """The plan's kernels and slot template for one set of symbolic sizes, and `run(feeds)`:
    the steps as one generated straight-line function."""

    __slots__ = ("template", "steps", "run")

    def __init__(self, template, steps, feed_slots, output_slots):
        self.template, self.steps = template, steps
        self.run = _straight_line(template, steps, feed_slots, output_slots)


def _straight_line(template, steps, feed_slots, output_slots):
    """`run(feeds) -> outputs`: each step one line `v7 = K3(v7, v2, v5)` over local
    variables, the kernels and the arena's stable arrays bound as globals. The loop it
    replaces (a slot list copied, each step's inputs gathered into a list) cost ~1 us a step
    in Python's own bookkeeping: 19 us of the digits MLP's 480, 0.5 ms of the LSTM's 20."""
    scope: dict = {}
    known: set = set()
    lines = ["def run(feeds):"]
    fed = [f"v{s}" if s is not None else "_" for s in feed_slots]
    if fed:
        lines.append(f"    {', '.join(fed)}, = feeds")
    known.update(s for s in feed_slots if s is not None)

    def ref(s: int) -> str:
        if s in known:
            return f"v{s}"
        scope[f"T{s}"] = template[s]  # an arena buffer, a constant, a view of them, or None
        return f"T{s}"

    for k, (fn, ins, out) in enumerate(steps):
        scope[f"K{k}"] = fn
        args = ", ".join([ref(out), *[ref(i) for i in ins]])
        lines.append(f"    v{out} = K{k}({args})")
        known.add(out)
    lines.append(f"    return [{', '.join(ref(s) for s in output_slots)}]")
    exec(compile("\n".join(lines) + "\n", "<nnctl plan>", "exec"), scope)
    return scope["run"]


class ExecutionPlan:
    """Run with `plan(feed_arrays)`: one array per feed, in the order given to compile_graph."""

    def __init__(self, graph: Graph, feeds: Sequence[Node], backend: Backend, rng=None,
                 pass_stats=(), capacity: dict | None = None, jit: bool | str = "auto"):
        graph, self.companions = companions(graph)
        self.graph, self.backend, self.pass_stats = graph, backend, list(pass_stats)
        self.rng = rng if rng is not None else backend.rng(0)
        slot = {node: i for i, node in enumerate(graph.nodes)}
        self.slot = slot
        self.n_slots = len(graph.nodes)
        # A feed the outputs do not depend on (an unused parameter) has no slot: it is skipped.
        self.feed_slots = [slot.get(f) for f in feeds]
        self.output_slots = [slot[o] for o in graph.outputs]
        for node in graph.nodes:
            if node.op in ("input", "parameter") and node not in feeds:
                raise ValueError(f"{node!r} is needed by the outputs but is not fed")
        self._feed_checks = [(f, f.aval.shape, backend.xp.dtype(f.aval.dtype), f.aval.symbolic)
                             for f in feeds]
        self.constants = {}
        for node in graph.nodes:
            if node.op == "constant":
                # NOTE: a Python float is a weak scalar to NumPy, but reshaping or broadcasting
                # it makes float64; as an array of the node's dtype it stays what it declares
                self.constants[slot[node]] = backend.asarray(node.value, dtype=node.aval.dtype)
        self._kernels = None  # made at the first run: planning memory needs no kernel
        symbols = {d.name for f in feeds for d in f.aval.shape if isinstance(d, Dim)}
        self.memory: MemoryPlan = self._plan_memory(capacity or dict.fromkeys(symbols, 1))
        self._arena = None
        self._bindings: dict = {}
        # False: NumPy kernels only, whatever the sizes (nnctl.jit.held_back). "auto": numba
        # only for a model with an array of jit.MIN_SIZE elements or more at the capacity; a
        # smaller one would pay numba's start-up (about a second) for microseconds per step.
        if jit == "auto":
            jit = self.largest_buffer() >= jit_policy.MIN_SIZE
        self.jit = bool(jit)

    # ---- what the plan costs -------------------------------------------------------------------
    @property
    def peak_bytes(self) -> int:
        """The planned peak: the arena's size, every intermediate buffer of a step at the
        capacity, allocated once."""
        return self.memory.arena_bytes

    def unplanned_peak_bytes(self, sizes: dict | None = None) -> int:
        """What an interpreter allocating every result would hold at its worst moment."""
        return peak_bytes(self.graph, set(self.graph.outputs), sizes or self.memory.capacity)

    def __len__(self) -> int:
        return sum(1 for n in self.graph.nodes if not n.is_leaf)

    def memory_report(self) -> dict:
        """Planned bytes at the capacity, for `nnctl summary` and `export-graph --memory`."""
        m = self.memory
        return {"capacity": dict(m.capacity), "arena_bytes": m.arena_bytes,
                "live_peak_bytes": m.live_peak(),
                "unplanned_peak_bytes": self.unplanned_peak_bytes(),
                "buffers": len(m.intervals),
                "in_place": len(m.in_place), "views": len(m.views), "steps": len(self)}

    # ---- binding kernels to buffers for one batch size --------------------------------------
    def _kernel_maker(self, node: Node):
        """make(sizes, as_view) -> the kernel `fn(out, *inputs) -> result` for those sizes."""
        xp = self.backend.xp
        if node.op == "fused":
            from nnctl.compile.fusion import fused_kernel
            kernel = fused_kernel(node, xp)
            return lambda sizes, as_view=False, work=(): kernel
        op = REGISTRY[node.op]
        attrs = dict(node.attrs)
        symbolic = contains_dim(attrs)
        lone = _lone_program(node, xp) if self.jit else None

        def make(sizes, as_view=False, work=()):
            a = resolve(attrs, sizes) if symbolic else attrs
            if as_view:
                return functools.partial(_view, op.forward, xp, a)
            if lone is not None and jit_policy.worth(node.aval.at(sizes).size,
                                                     jit_policy.KERNEL_MIN_SIZE):
                from nnctl.compile.kernels.numba_cpu import numba_kernel
                return numba_kernel(lone)
            if work and _runs_small(op, (node, *node.inputs), sizes):
                # small arrays: NumPy's few calls with their temporaries, then one copy, cost
                # less than the dozen in-place calls that keep large batches allocation-free
                return functools.partial(Op.forward_into, op, xp, **a)
            if work:
                return functools.partial(op.forward_into, xp, work=work, **a)
            return functools.partial(op.forward_into, xp, **a)
        return make

    def _plan_memory(self, capacity: dict) -> MemoryPlan:
        return plan_memory(self.graph, capacity,
                           runs_at={b: a for a, b in self.companions.items()})

    def _ensure_arena(self, sizes: dict) -> None:
        grow = any(sizes[k] > self.memory.capacity.get(k, 0) for k in sizes)
        if self._arena is None or grow:
            if grow:
                capacity = {k: max(v, self.memory.capacity.get(k, 0)) for k, v in sizes.items()}
                self.memory = self._plan_memory(capacity)
                self._bindings.clear()
            self._arena = self.backend.xp.empty(max(self.memory.arena_bytes, 1), dtype="uint8")
            self.backend.warm_up()

    def _view_of(self, key, aval, sizes: dict):
        """The arena's bytes planned for `key`, as an array of `aval` at these sizes."""
        off, n = self.memory.offset_at(key, sizes), nbytes_at(None, sizes, aval)
        return self._arena[off:off + n].view(aval.dtype).reshape(resolve(aval.shape, sizes))

    def _bind(self, sizes: dict) -> _Binding:
        if self._kernels is None:
            self._kernels = {n: self._kernel_maker(n) for n in self.graph.nodes if not n.is_leaf}
        self._ensure_arena(sizes)
        memory = self.memory
        template = [None] * self.n_slots
        for s, value in self.constants.items():
            template[s] = value
        steps = []
        seconds = set(self.companions.values())
        # slots holding the same array object at every run: buffers (every kernel writes into
        # the `out` it is given and returns it: tested for every op), constants, and views
        # of those; not feeds nor views of feeds
        stable = set(self.constants)
        for node in self.graph.nodes:
            s = self.slot[node]
            if node in memory.offsets:
                template[s] = self._view_of(node, node.aval, sizes)
                stable.add(s)
            if node.op == "random":
                steps.append((functools.partial(self._draw, node.attrs["p"]), (), s))
            elif node in memory.joined or node in seconds:
                continue  # written already: its pieces into its buffer, or with its companion
            elif node in self.companions:
                steps.append(self._pair_step(node, sizes))
            elif node in memory.views and not _fed(memory.root[node]):
                # a view of an arena buffer or a constant is the same array object at every
                # run: made here once, no step (the LSTM's gate slices, reshapes, transposes)
                view = self._kernels[node](sizes, True, ())
                template[s] = view(None, *[template[self.slot[i]] for i in node.inputs])
                stable.add(s)
            elif not node.is_leaf:
                work = tuple(self._view_of(key, memory.avals[key], sizes)
                             for key in memory.work.get(node, ()))
                fn = self._kernels[node](sizes, node in memory.views, work)
                ins = tuple(self.slot[i] for i in node.inputs)
                bind = getattr(fn, "bind", None)
                if bind is not None and s in stable and all(i in stable for i in ins):
                    # a generated kernel on arrays that never change: its launcher with the
                    # reshapes done once, called with no arguments gathered
                    launch = bind(template[s], *[template[i] for i in ins])
                    if launch is not None:
                        fn, ins = launch, ()
                steps.append((fn, ins, s))
        return _Binding(template, steps, self.feed_slots, self.output_slots)

    def _pair_step(self, first: Node, sizes: dict) -> tuple:
        """The step of `first` that also writes its companion's buffer (see companions)."""
        second = self.companions[first]
        op = REGISTRY[first.op]
        work = None  # small arrays: temporaries cost less than the workspace's calls
        if not _runs_small(op, (first, second, *first.inputs), sizes):
            work = tuple(self._view_of(key, self.memory.avals[key], sizes)
                         for key in self.memory.work.get(first, ())) or None
        fn = functools.partial(getattr(op, op.companion[1]), self.backend.xp, work=work,
                               other=self._view_of(second, second.aval, sizes))
        return fn, tuple(self.slot[i] for i in second.inputs), self.slot[first]

    # ---- running -------------------------------------------------------------------------------
    def _draw(self, p: float, out):
        return self.backend.bernoulli_into(self.rng, out, p)  # self.rng may be replaced

    def check_feeds(self, feeds: Sequence) -> tuple:
        """The symbolic sizes the feeds imply, e.g. (("B", 5),); a ShapeError naming the feed,
        what it got and what the graph expects when any feed does not fit."""
        if len(feeds) != len(self._feed_checks):
            raise ShapeError(f"the plan takes {len(self._feed_checks)} feeds, got {len(feeds)}")
        sizes: dict = {}
        for (node, shape, dtype, symbolic), array in zip(self._feed_checks, feeds):
            got = getattr(array, "shape", ())
            if getattr(array, "dtype", None) != dtype or len(got) != len(shape):
                self._feed_error(node, array, sizes)
            if not symbolic:
                if got != shape:
                    self._feed_error(node, array, sizes)
                continue
            for want, have in zip(shape, got):
                if isinstance(want, Dim):
                    value, rest = divmod(have, want.coef)
                    if rest or value < 1 or sizes.setdefault(want.name, value) != value:
                        self._feed_error(node, array, sizes)
                elif want != have:
                    self._feed_error(node, array, sizes)
        return tuple(sorted(sizes.items()))

    def _feed_error(self, node: Node, array, sizes):
        got, got_dtype = tuple(getattr(array, "shape", ())), getattr(array, "dtype", None)
        got_dtype = type(array).__name__ if got_dtype is None else str(got_dtype)
        name = node.name or node.op
        expected = f"{node.aval.dtype}{_describe(node.aval.shape)}"
        known = ", ".join(f"{k}={v}" for k, v in sizes.items())
        raise ShapeError(f"feed '{name}' is {got_dtype}{_describe(got)}, but the graph expects "
                         f"{expected}" + (f" (with {known} from the feeds before it)"
                                          if known else ""))

    def binding(self, feeds: Sequence) -> _Binding:
        key = self.check_feeds(feeds)
        bound = self._bindings.get(key)
        if bound is None:
            bound = self._bindings[key] = self._bind(dict(key))
        return bound

    def __call__(self, feeds: Sequence) -> list:
        """The outputs for `feeds`, as arrays of their own (copies of the arena's)."""
        outs = self.run(feeds)
        arena = self._arena
        return [out.copy() if _shares(out, arena) else out for out in outs]

    def run(self, feeds: Sequence) -> list:
        """The outputs for `feeds` as views into the arena: valid until the next run."""
        if not self.jit:
            from nnctl.jit import held_back
            with held_back():
                return self._run(feeds)
        return self._run(feeds)

    @property
    def capturable(self) -> bool:
        """Whether a step of this plan can be captured as a CUDA graph and replayed
        (nnctl/train/capture.py): every op allows it (Op.capturable). Its other kernels do:
        a fused group is one generated kernel on fixed buffers, and a dropout mask is drawn
        by the backend's generator, whose state CuPy's (Philox) keeps on the device. A
        replay reuses the buffers of one batch size: capture per size (the key's B)."""
        return not self.uncapturable()

    def uncapturable(self) -> list[str]:
        """The names of this plan's ops that cannot be captured, sorted (none: capturable)."""
        return sorted({n.op for n in self.graph.nodes if not n.is_leaf and n.op in REGISTRY
                       and not REGISTRY[n.op].capturable})

    def largest_buffer(self) -> int:
        """Elements of the largest buffer at the capacity (how big this plan's kernels get)."""
        m = self.memory
        return max((n.aval.at(m.capacity).size for n in m.offsets if not isinstance(n, tuple)),
                   default=0)

    def _slots(self, feeds: Sequence):
        """The binding for the feeds' batch size and the slot list of one run."""
        bound = self.binding(feeds)
        slots = bound.template.copy()
        for s, array in zip(self.feed_slots, feeds):
            if s is not None:
                slots[s] = array
        return bound, slots

    def _run(self, feeds: Sequence) -> list:
        return self.binding(feeds).run(feeds)

    def first_nonfinite(self, feeds: Sequence):
        """Run once more, checking every op's result; the first node (in execution order)
        whose value holds a NaN or Inf, or None. Slow: only for reporting a failure."""
        xp = self.backend.xp
        bound, slots = self._slots(feeds)
        nodes = {self.slot[n]: n for n in self.graph.nodes}
        for fn, ins, out in bound.steps:
            value = slots[out] = fn(slots[out], *[slots[i] for i in ins])
            node = nodes[out]
            if node.is_leaf:
                continue
            if xp.issubdtype(getattr(value, "dtype", xp.float64), xp.floating) and \
                    not bool(xp.isfinite(value).all()):
                return node
        return None


def _shares(array, arena) -> bool:
    base = array
    while getattr(base, "base", None) is not None:
        base = base.base
    return base is arena


def compile_graph(outputs: Sequence[Tensor], feeds: Sequence[Tensor], backend: Backend,
                  rng=None, passes=PASSES, capacity: dict | None = None,
                  jit: bool | str = "auto") -> ExecutionPlan:
    """Optimise the graph that computes `outputs` and lay it out as an ExecutionPlan.

    `feeds` are the input and parameter tensors whose arrays are passed on every run.
    `capacity` gives the symbolic sizes the arena is first laid out for (e.g. {"B": 64},
    the largest batch expected); a larger batch grows it. `jit=False` keeps every kernel on
    NumPy; True uses numba where arrays are large enough (nnctl.jit.worth); "auto" does so
    only for a model whose largest array at the capacity has jit.MIN_SIZE elements.
    """
    from nnctl.compile.fusion import half_fusion
    with half_fusion(backend.name == "cuda"):  # its generator takes float16 chains
        graph, stats = run_passes(Graph([t.node for t in outputs]), passes)
    return ExecutionPlan(graph, [t.node for t in feeds], backend, rng, stats, capacity, jit)
