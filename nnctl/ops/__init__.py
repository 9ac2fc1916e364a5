"""The elementary ops. Importing this package fills `REGISTRY` with every op."""

from nnctl.ops import (activations, combine, elementwise, linalg, nn, reduce,  # noqa: F401
                       shape)  # (registration)
from nnctl.ops import conv  # noqa: F401  (registration: image ops)
from nnctl.ops.registry import REGISTRY, Aval, Op, Sample, register, unregister

__all__ = ["REGISTRY", "Aval", "Op", "Sample", "register", "unregister"]
