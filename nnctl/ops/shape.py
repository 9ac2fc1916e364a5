"""Ops that move elements without changing them: reshape, transpose, broadcast_to, indexing.

Indices are stored as plain tuples so they export to JSON: an int, None (new axis), "..."
(Ellipsis) or ("slice", start, stop, step).
"""

from __future__ import annotations

from nnctl.ops.registry import Aval, Op, Sample, broadcast_shapes, fail, register


@register
class Reshape(Op):
    """y = x viewed with a new shape;  dx = g reshaped back"""
    name = "reshape"

    def infer(self, x: Aval, shape) -> Aval:
        if any(not isinstance(d, int) or d < 0 for d in shape):
            fail(f"cannot reshape to {list(shape)}: sizes must be non-negative integers")
        size = 1
        for d in shape:
            size *= d
        if size != x.size:
            fail(f"cannot reshape {list(x.shape)} ({x.size} elements) to {list(shape)}")
        return Aval(tuple(shape), x.dtype)

    def forward(self, xp, x, shape):
        return xp.reshape(x, shape)

    def vjp(self, g, out, x, shape):
        return (g.reshape(x.shape),)

    def samples(self):
        yield Sample(shapes=((3, 4),), attrs={"shape": (2, 6)})
        yield Sample(shapes=((2, 3, 4),), attrs={"shape": (6, 4)})


@register
class Transpose(Op):
    """y = x with axes permuted;  dx = g with the inverse permutation"""
    name = "transpose"

    def infer(self, x: Aval, axes) -> Aval:
        if sorted(axes) != list(range(x.ndim)):
            fail(f"axes {list(axes)} are not a permutation of a {x.ndim}-D input's axes")
        return Aval(tuple(x.shape[a] for a in axes), x.dtype)

    def forward(self, xp, x, axes):
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
        if isinstance(i, tuple):
            out.append(len(range(*slice(*i[1:]).indices(dim))))
        elif not -dim <= i < dim:
            fail(f"index {i} is out of bounds for axis {axis} with size {dim}")
        axis += 1
    return tuple(out)


@register
class GetItem(Op):
    """y = x[index] (ints and slices);  dx = g placed back into zeros of x's shape"""
    name = "getitem"

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

    def infer(self, x: Aval, index, shape) -> Aval:
        expected = index_shape(tuple(shape), tuple(index))
        if expected != x.shape:
            fail(f"scatter of {list(x.shape)} into {list(shape)} at {index} needs {list(expected)}")
        return Aval(tuple(shape), x.dtype)

    def forward(self, xp, x, index, shape):
        y = xp.zeros(shape, dtype=x.dtype)
        y[_as_index(index)] = x
        return y

    def vjp(self, g, out, x, index, shape):
        return (g[_as_index(index)],)

    def samples(self):
        yield Sample(shapes=((2, 5),), attrs={"index": (("slice", 1, 3, None),), "shape": (4, 5)})
        yield Sample(shapes=((2, 3),), attrs={"index": ("...", -1), "shape": (2, 3, 4)})
