"""The elementary ops. Importing this package fills `REGISTRY` with every op."""

from nnctl.ops import (activations, collective, combine, conv, elementwise, linalg,  # noqa: F401
                       nn, pool, reduce, shape)  # (registration)
from nnctl.ops.registry import REGISTRY, Aval, Op, Sample, register, unregister

__all__ = ["REGISTRY", "Aval", "Op", "Sample", "register", "unregister"]
