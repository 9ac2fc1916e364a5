"""nnctl: train neural networks described in YAML, on a from-scratch autodiff engine.

The public API is small and imported lazily, so `nnctl --help` does not pay for NumPy.
"""

__version__ = "0.1.0"

__all__ = ["Tensor", "grad", "__version__"]


def __getattr__(name):
    if name == "Tensor":
        import nnctl.autodiff  # noqa: F401  (fills the registry; installs Tensor.backward)
        from nnctl.graph.tensor import Tensor
        return Tensor
    if name == "grad":
        import nnctl.ops  # noqa: F401
        from nnctl.autodiff import grad
        return grad
    raise AttributeError(f"module 'nnctl' has no attribute {name!r}")
