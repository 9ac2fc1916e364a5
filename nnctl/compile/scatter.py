"""Gradients of slices, joined: sums of `scatter_index` over adjacent slices become a concat.

A layer that slices a tensor into pieces (an LSTM's four gates from one [B, 4H] product,
attention's heads) gets, from reverse-mode AD, one `scatter_index` per piece: the piece's
gradient placed into zeros of the whole shape, and these added up. Each scatter writes a
whole zero array and each add reads two, so k pieces cost about 3k passes over the whole
shape, where joining the pieces is one. This pass rewrites

    scatter(a, [.., i:j, ..]) + scatter(b, [.., j:k, ..])  ->  scatter(concat(a, b), [.., i:k, ..])

(slices of one axis that tile a span, added in any order, the other axes indexed alike),
flattens concat chains, and drops
a scatter whose slice covers the whole shape: the four gate gradients become one concat.
Values are the same bit for bit (the pieces never overlap, so no sum changes).
"""

from __future__ import annotations

from nnctl.compile.rewrite import Rewrite, apply_rules, make
from nnctl.graph.ir import Graph, Node


def _ranges(index, shape):
    """The index as one (start, stop, picked) per axis when it is only unit-step slices with
    plain bounds and non-negative ints (`picked`: the axis is indexed by an int, so the value
    has no such axis); a full axis may be symbolic. Else None."""
    if len(index) > len(shape):
        return None
    out = []
    for k, dim in enumerate(shape):
        i = index[k] if k < len(index) else ("slice", None, None, None)
        if isinstance(i, int) and not isinstance(i, bool) and i >= 0:
            out.append((i, i + 1, True))
            continue
        if not (isinstance(i, tuple) and len(i) == 4 and i[0] == "slice" and i[3] in (None, 1)):
            return None
        start, stop = i[1], i[2]
        start = 0 if start is None else start
        stop = dim if stop is None else stop
        if not isinstance(start, int) or start < 0:
            return None
        if isinstance(stop, int) and (stop < 0 or (isinstance(dim, int) and stop > dim)):
            return None
        out.append((start, stop, False))
    return out


def _as_index(ranges, shape):
    return tuple(a if picked else ("slice", None if a == 0 else a, None if b == dim else b, None)
                 for (a, b, picked), dim in zip(ranges, shape))


def _only_reader(node: Node, ctx: Rewrite) -> bool:
    """Read by one node only (or built by this rewrite, hence read by its builder only)."""
    return ctx.single_use(node) or node not in ctx.origin


def _scatter_leaves(node: Node, ctx: Rewrite, leaves: list) -> bool:
    """The scatter_index nodes a tree of adds sums (True), or False when another op is in it."""
    for inp in node.inputs:
        if not _only_reader(inp, ctx):
            return False
        if inp.op == "scatter_index":
            leaves.append(inp)
        elif inp.op != "add" or inp.aval != node.aval or not _scatter_leaves(inp, ctx, leaves):
            return False
    return True


def _join_scatters(node: Node, ctx: Rewrite):
    """A sum of scatters whose slices of one axis tile a contiguous span, in any order of
    addition (AD adds the pieces' gradients in the order it reaches them)."""
    leaves: list[Node] = []
    if not _scatter_leaves(node, ctx, leaves) or len(leaves) < 2:
        return None
    shape = node.aval.shape
    if any(n.attrs["shape"] != shape or n.aval != node.aval for n in leaves):
        return None
    ranges = [_ranges(n.attrs["index"], shape) for n in leaves]
    if any(r is None for r in ranges):
        return None
    differ = {k for r in ranges[1:] for k in range(len(shape)) if r[k] != ranges[0][k]}
    if len(differ) != 1:
        return None
    (k,) = differ
    order = sorted(range(len(leaves)), key=lambda i: ranges[i][k][0])
    for first, second in zip(order, order[1:]):
        if ranges[first][k][1] != ranges[second][k][0]:
            return None  # a gap or an overlap: not one span (yet)
    values = [leaves[i].inputs[0] for i in order]
    # the axis of the values that k is: axes picked by an int before it are not there
    at = k - sum(1 for a in range(k) if ranges[0][a][2])
    picked = [ranges[i][k][2] for i in order]
    if all(picked):  # one int each (x[:, t] of every step): the pieces stack
        joined = make("stack", values, node, axis=at)
    else:  # some pieces are spans already: an int-picked piece gets its axis back (a view)
        values = [make("reshape", (v,), node, shape=v.aval.shape[:at] + (1,) + v.aval.shape[at:])
                  if p else v for v, p in zip(values, picked)]
        joined = make("concat", values, node, axis=at)
    span = list(ranges[order[0]])
    span[k] = (ranges[order[0]][k][0], ranges[order[-1]][k][1], False)
    return (f"sum of {len(leaves)} scatters of adjacent slices -> scatter(concat)",
            make("scatter_index", (joined,), node, index=_as_index(span, shape), shape=shape))


def _whole_scatter(node: Node, ctx: Rewrite):
    (value,) = node.inputs
    shape = node.aval.shape
    ranges = _ranges(node.attrs["index"], shape)
    if ranges is None or value.aval.shape != shape:
        return None
    if all(a == 0 and b == dim and not picked for (a, b, picked), dim in zip(ranges, shape)):
        return "scatter(x, everything) -> x", value
    return None


def _flat_concat(node: Node, ctx: Rewrite):
    axis = node.attrs["axis"] % node.aval.ndim
    pieces, merged = [], False
    for inp in node.inputs:
        if inp.op == "concat" and inp.attrs["axis"] % inp.aval.ndim == axis and \
                _only_reader(inp, ctx):
            pieces.extend(inp.inputs)
            merged = True
        else:
            pieces.append(inp)
    if not merged:
        return None
    return "concat(concat(a, b), c) -> concat(a, b, c)", make("concat", pieces, node, axis=axis)


RULES = {"add": [_join_scatters], "scatter_index": [_whole_scatter], "concat": [_flat_concat]}


def join_slice_gradients(graph: Graph) -> Graph:
    """Sums of slice gradients over adjacent slices become one concat (see the module)."""
    return apply_rules(graph, RULES, sweeps=8)
