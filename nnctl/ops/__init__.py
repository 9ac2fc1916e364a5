"""The elementary ops. Importing this package fills `REGISTRY` with every op."""

from nnctl.ops import (activations, combine, conv, elementwise, linalg, nn, pool,  # noqa: F401
                       reduce, shape)  # (registration)
from nnctl.ops.registry import REGISTRY, Aval, Op, Sample, register, unregister

__all__ = ["REGISTRY", "Aval", "Op", "Sample", "register", "unregister"]
