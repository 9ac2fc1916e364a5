"""Matrix product, 2-D and batched (NumPy matmul semantics for inputs of 2 or more axes)."""

from __future__ import annotations

from nnctl.ops.registry import Aval, Op, Sample, broadcast_shapes, fail, register, same_dtype


@register
class MatMul(Op):
    """y = a @ b;  da = g @ b^T, db = a^T @ g (summed over broadcast batch axes)"""
    name = "matmul"
    arity = 2

    def infer(self, a: Aval, b: Aval) -> Aval:
        dtype = same_dtype(a, b)
        if a.ndim < 2 or b.ndim < 2:
            fail(f"matmul needs inputs with at least 2 axes, got {a} and {b}")
        if a.shape[-1] != b.shape[-2]:
            fail(f"matmul of {list(a.shape)} and {list(b.shape)}: inner sizes "
                 f"{a.shape[-1]} and {b.shape[-2]} differ")
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
        return Aval(batch + (a.shape[-2], b.shape[-1]), dtype)

    def forward(self, xp, a, b):
        return a @ b

    def forward_into(self, xp, out, a, b):
        if b.ndim == 2 and a.ndim > 2 and a.flags.c_contiguous and out.flags.c_contiguous:
            # [..., M, K] @ [K, N] is one GEMM of all the rows: NumPy's matmul would run one
            # small GEMM per leading index (a transformer's dense layers: 16 of 64 rows, 5x
            # slower than one of 1024)
            xp.matmul(a.reshape(-1, a.shape[-1]), b, out=out.reshape(-1, out.shape[-1]))
            return out
        return xp.matmul(a, b, out=out)

    def vjp(self, g, out, a, b):
        if b.ndim == 2 and a.ndim > 2:
            # b is shared by every leading index: its gradient is one GEMM over all the rows,
            # not a batch of products summed afterwards
            k, n = b.shape
            return (g @ b.mT).sum_to(a.shape), a.reshape(-1, k).mT @ g.reshape(-1, n)
        return (g @ b.mT).sum_to(a.shape), (a.mT @ g).sum_to(b.shape)

    def samples(self):
        yield Sample(shapes=((3, 4), (4, 5)))
        yield Sample(shapes=((2, 3, 4), (2, 4, 5)))
        yield Sample(shapes=((2, 3, 4), (4, 2)))
        yield Sample(shapes=((3, 4), (2, 4, 5)))
