"""Ops that move elements without changing them: reshape, transpose, broadcast_to, indexing,
pad, and the row gather `take` (with `scatter_add`, its vjp).

Indices are stored as plain tuples so they export to JSON: an int, None (new axis), "..."
(Ellipsis) or ("slice", start, stop, step).
"""

from __future__ import annotations

from nnctl.ops.segment_sum import segment_sum
from nnctl.ops.registry import (INT_DTYPES, MOVEMENT, OPAQUE, Aval, Dim, Op, Sample,
                                broadcast_shapes, fail, is_size, register, require_float)


@register
class Reshape(Op):
    """y = x viewed with a new shape;  dx = g reshaped back"""
    name = "reshape"
    kind = MOVEMENT

    def infer(self, x: Aval, shape) -> Aval:
        if not all(is_size(d) for d in shape):
            fail(f"cannot reshape to {list(shape)}: sizes must be non-negative integers")
        size = 1
        for d in shape:
            size *= d
        if size != x.size:
            fail(f"cannot reshape {list(x.shape)} ({x.size} elements) to {list(shape)}")
        return Aval(tuple(shape), x.dtype)

    def forward(self, xp, x, shape):
        return xp.reshape(x, shape)

    def forward_into(self, xp, out, x, shape):
        xp.copyto(out.reshape(x.shape), x)  # a copy of strided data, without a temporary
        return out

    def vjp(self, g, out, x, shape):
        return (g.reshape(x.shape),)

    def samples(self):
        yield Sample(shapes=((3, 4),), attrs={"shape": (2, 6)})
        yield Sample(shapes=((2, 3, 4),), attrs={"shape": (6, 4)})


@register
class Transpose(Op):
    """y = x with axes permuted;  dx = g with the inverse permutation"""
    name = "transpose"
    kind = MOVEMENT

    def infer(self, x: Aval, axes) -> Aval:
        if sorted(axes) != list(range(x.ndim)):
            fail(f"axes {list(axes)} are not a permutation of a {x.ndim}-D input's axes")
        return Aval(tuple(x.shape[a] for a in axes), x.dtype)

    def forward(self, xp, x, axes):
        if hasattr(x, "transpose"):  # the method: np.transpose's wrapper costs ~1 us more
            return x.transpose(axes)
        return xp.transpose(x, axes)

    def vjp(self, g, out, x, axes):
        inverse = [0] * len(axes)
        for i, a in enumerate(axes):
            inverse[a] = i
        return (g.transpose(tuple(inverse)),)

    def samples(self):
        yield Sample(shapes=((3, 4),), attrs={"axes": (1, 0)})
        yield Sample(shapes=((2, 3, 4),), attrs={"axes": (2, 0, 1)})


@register
class BroadcastTo(Op):
    """y = x broadcast to a shape;  dx = g summed back to x's shape"""
    name = "broadcast_to"
    kind = MOVEMENT

    def infer(self, x: Aval, shape) -> Aval:
        if broadcast_shapes(x.shape, tuple(shape)) != tuple(shape):
            fail(f"cannot broadcast {list(x.shape)} to {list(shape)}")
        return Aval(tuple(shape), x.dtype)

    def forward(self, xp, x, shape):
        return xp.broadcast_to(x, shape)

    def vjp(self, g, out, x, shape):
        return (g.sum_to(x.shape),)

    def samples(self):
        yield Sample(shapes=((4,),), attrs={"shape": (3, 4)})
        yield Sample(shapes=((3, 1),), attrs={"shape": (2, 3, 5)})
        yield Sample(shapes=((),), attrs={"shape": (2, 2)})


def _as_index(index):
    """The stored index tuple as a real NumPy/CuPy index."""
    return tuple(slice(*i[1:]) if isinstance(i, tuple) else Ellipsis if i == "..." else i
                 for i in index)


def index_shape(shape: tuple[int, ...], index) -> tuple[int, ...]:
    """The result shape of basic indexing, computed without an array library."""
    n_real = sum(1 for i in index if i is not None and i != "...")
    if n_real > len(shape):
        fail(f"too many indices ({n_real}) for a {len(shape)}-D input")
    if index.count("...") > 1:
        fail("an index can only have a single ellipsis")
    if "..." in index:
        at = index.index("...")
        index = index[:at] + (("slice", None, None, None),) * (len(shape) - n_real) + index[at + 1:]
    else:
        index = index + (("slice", None, None, None),) * (len(shape) - n_real)
    out, axis = [], 0
    for i in index:
        if i is None:
            out.append(1)
            continue
        dim = shape[axis]
        if isinstance(dim, Dim):  # the symbolic batch axis: taken whole, or not at all
            if not (isinstance(i, tuple) and i[1:] in ((None, None, None), (None, None, 1),
                                                       (0, None, None), (0, None, 1))):
                fail(f"cannot index the batch axis {dim} with {i!r}: it has no fixed size")
            out.append(dim)
        elif isinstance(i, tuple):
            out.append(len(range(*slice(*i[1:]).indices(dim))))
        elif not -dim <= i < dim:
            fail(f"index {i} is out of bounds for axis {axis} with size {dim}")
        axis += 1
    return tuple(out)


@register
class GetItem(Op):
    """y = x[index] (ints and slices);  dx = g placed back into zeros of x's shape"""
    name = "getitem"
    kind = MOVEMENT

    def infer(self, x: Aval, index) -> Aval:
        return Aval(index_shape(x.shape, tuple(index)), x.dtype)

    def forward(self, xp, x, index):
        return x[_as_index(index)]

    def vjp(self, g, out, x, index):
        return (g.scatter_index(index, x.shape),)

    def samples(self):
        yield Sample(shapes=((4, 5),), attrs={"index": (("slice", 1, 3, None),)})
        yield Sample(shapes=((4, 5),), attrs={"index": (2, ("slice", None, None, 2))})
        yield Sample(shapes=((2, 3, 4),), attrs={"index": ("...", -1)})
        yield Sample(shapes=((3, 4),), attrs={"index": (None, 1)})


@register
class ScatterIndex(Op):
    """y = zeros(shape) with y[index] = x;  dx = g[index] (the vjp of getitem)"""
    name = "scatter_index"
    kind = MOVEMENT

    def infer(self, x: Aval, index, shape) -> Aval:
        expected = index_shape(tuple(shape), tuple(index))
        if expected != x.shape:
            fail(f"scatter of {list(x.shape)} into {list(shape)} at {index} needs {list(expected)}")
        return Aval(tuple(shape), x.dtype)

    def forward(self, xp, x, index, shape):
        return self.forward_into(xp, xp.empty(shape, dtype=x.dtype), x, index, shape)

    def forward_into(self, xp, out, x, index, shape):
        out.fill(0)
        out[_as_index(index)] = x
        return out

    def vjp(self, g, out, x, index, shape):
        return (g[_as_index(index)],)

    def samples(self):
        yield Sample(shapes=((2, 5),), attrs={"index": (("slice", 1, 3, None),), "shape": (4, 5)})
        yield Sample(shapes=((2, 3),), attrs={"index": ("...", -1), "shape": (2, 3, 4)})


@register
class Pad(Op):
    """y = x with zeros added before and after each axis;  dx = g sliced back to x's place"""
    name = "pad"
    kind = MOVEMENT

    def infer(self, x: Aval, pad_width) -> Aval:
        pad_width = tuple(pad_width)
        ok = len(pad_width) == x.ndim and all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                for n in p) for p in pad_width)
        if not ok:
            fail(f"pad of {list(x.shape)} needs {x.ndim} pairs (before, after) of non-negative "
                 f"ints, got {pad_width!r}")
        return Aval(tuple(d + b + a for d, (b, a) in zip(x.shape, pad_width)), x.dtype)

    def forward(self, xp, x, pad_width):
        return xp.pad(x, pad_width)

    def forward_into(self, xp, out, x, pad_width):
        out.fill(0)
        out[tuple(slice(b, b + d) for d, (b, _) in zip(x.shape, pad_width))] = x
        return out

    def vjp(self, g, out, x, pad_width):
        # an unpadded axis is taken whole: the batch axis B is symbolic and cannot be sliced
        return (g[tuple(slice(b, b + d) if (b, a) != (0, 0) else slice(None)
                        for d, (b, a) in zip(x.shape, pad_width))],)

    def samples(self):
        yield Sample(shapes=((3, 4),), attrs={"pad_width": ((1, 2), (0, 3))})
        yield Sample(shapes=((2, 3, 4),), attrs={"pad_width": ((0, 0), (2, 1), (1, 0))})
        yield Sample(shapes=((5,),), attrs={"pad_width": ((0, 0),)})  # no padding at all
        yield Sample(shapes=((0, 2),), attrs={"pad_width": ((1, 1), (0, 1))})  # empty input


@register
class Numel(Op):
    """y = the number of elements of x over `axis` (all axes: None), as a 0-d float of x's
    dtype; reads x's shape only, so a graph that scales by a count (a mean's gradient) stays
    valid for every batch size;  no gradient"""
    name = "numel"
    kind = OPAQUE
    nondifferentiable = (0,)

    def infer(self, x: Aval, axis=None) -> Aval:
        require_float(x)
        if axis is not None and any(not 0 <= a < x.ndim for a in axis):
            fail(f"numel: axes {axis} are out of range for {x}")
        return Aval((), x.dtype)

    @staticmethod
    def count(x, axis) -> int:
        n = 1
        for a in range(x.ndim) if axis is None else axis:
            n *= x.shape[a]
        return n

    def forward(self, xp, x, axis=None):
        # a fill, not asarray: asarray copies from the host, which no captured graph holds
        return xp.full((), self.count(x, axis), dtype=x.dtype)

    def forward_into(self, xp, out, x, axis=None):
        out.fill(self.count(x, axis))
        return out

    def vjp(self, g, out, x, axis=None):
        return (None,)

    def samples(self):
        yield Sample(shapes=((2, 3, 4),))
        yield Sample(shapes=((2, 3, 4),), attrs={"axis": (0, 2)})


def per_element(x, axis=None, scale: float = 1.0):
    """scale / (how many elements of the Tensor `x` a reduction over `axis` reads; at least 1,
    so empty inputs get zero gradients): a float when x's shape is static, else a 0-d Tensor
    computed at run time from x's shape (numel), so the graph serves every batch size."""
    n = 1
    for a in range(x.ndim) if axis is None else axis:
        n *= x.shape[a]
    if isinstance(n, Dim):
        return scale / x.apply("numel", axis=None if axis is None else tuple(axis))
    return scale / max(n, 1)


def _rows(what: str, indices: Aval) -> None:
    if indices.dtype not in INT_DTYPES:
        fail(f"{what} needs integer indices, got {indices}")


@register
class Take(Op):
    """y = table[indices] (rows of axis 0; y.shape = indices.shape + table.shape[1:]);
    dtable = scatter_add(g, indices): rows picked twice get both gradients"""
    name = "take"
    kind = MOVEMENT
    arity = 2
    nondifferentiable = (1,)

    def infer(self, table: Aval, indices: Aval) -> Aval:
        _rows("take", indices)
        if table.ndim == 0:
            fail(f"take needs a table with at least one axis, got {table}")
        if table.shape[0] == 0 and indices.size:
            fail(f"take of {list(indices.shape)} indices from an empty table {list(table.shape)}")
        return Aval(indices.shape + table.shape[1:], table.dtype)

    def forward(self, xp, table, indices):
        # NOTE: indices must lie in [-rows, rows); NumPy raises outside, CuPy wraps around
        return xp.take(table, indices, axis=0)

    def forward_into(self, xp, out, table, indices):
        return xp.take(table, indices, axis=0, out=out)

    def vjp(self, g, out, table, indices):
        return g.scatter_add(indices, table.shape[0]), None

    def samples(self):
        yield Sample(shapes=((5, 3), (4,)), int_inputs={1: 5})
        yield Sample(shapes=((3, 2), (6,)), int_inputs={1: 3})  # repeats: 6 picks of 3 rows
        yield Sample(shapes=((6,), (2, 3)), int_inputs={1: 6})
        yield Sample(shapes=((4, 2, 3), (3, 2)), int_inputs={1: 4})
        yield Sample(shapes=((5, 3), ()), int_inputs={1: 5})  # a single row


@register
class ScatterAdd(Op):
    """y = zeros(num_rows, ...) with y[indices[k]] += x[k] for every k (repeats add up);
    dx = take(g, indices) (the vjp of take)"""
    name = "scatter_add"
    arity = 2
    nondifferentiable = (1,)

    def infer(self, x: Aval, indices: Aval, num_rows: int) -> Aval:
        _rows("scatter_add", indices)
        require_float(x)
        if not isinstance(num_rows, int) or isinstance(num_rows, bool) or num_rows < 0:
            fail(f"scatter_add needs a non-negative int num_rows, got {num_rows!r}")
        if x.shape[:indices.ndim] != indices.shape:
            fail(f"scatter_add of {list(x.shape)} at indices {list(indices.shape)}: the values' "
                 f"leading axes must equal the indices' shape")
        return Aval((num_rows,) + x.shape[indices.ndim:], x.dtype)

    def forward(self, xp, x, indices, num_rows):
        # in k order on every backend: CuPy's add.at would add with atomics (segment_sum.py)
        return segment_sum(xp, x, indices, num_rows)

    def vjp(self, g, out, x, indices, num_rows):
        return g.take(indices), None

    def samples(self):
        yield Sample(shapes=((4, 3), (4,)), attrs={"num_rows": 5}, int_inputs={1: 5})
        yield Sample(shapes=((6,), (6,)), attrs={"num_rows": 2}, int_inputs={1: 2})  # repeats
        yield Sample(shapes=((2, 3, 2), (2, 3)), attrs={"num_rows": 3}, int_inputs={1: 3})
