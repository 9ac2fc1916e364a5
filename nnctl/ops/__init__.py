"""The elementary ops. Importing this package fills `REGISTRY` with every op."""

from nnctl.ops import (activations, cast, collective, combine, conv, elementwise,  # noqa: F401
                       linalg, nn, pool, reduce, shape)  # (registration)
from nnctl.ops.registry import REGISTRY, Aval, Op, Sample, register, unregister

__all__ = ["REGISTRY", "Aval", "Op", "Sample", "register", "unregister"]
