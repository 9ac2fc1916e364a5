"""The elementary ops. Importing this package fills `REGISTRY` with every op."""

from nnctl.ops import elementwise, linalg, nn, reduce, shape  # noqa: F401  (registration)
from nnctl.ops.registry import REGISTRY, Aval, Op, Sample, register, unregister

__all__ = ["REGISTRY", "Aval", "Op", "Sample", "register", "unregister"]
