"""Tensor.backward() without an import cycle: graph never imports autodiff; autodiff installs
the function behind backward() when it is imported."""

import subprocess
import sys

import numpy as np


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_graph_does_not_import_autodiff():
    result = _run("import sys, nnctl.graph.tensor; "
                  "print('nnctl.autodiff' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_backward_before_autodiff_is_imported_says_what_to_do():
    result = _run("from nnctl.graph.tensor import Tensor\n"
                  "x = Tensor(2.0, requires_grad=True)\n"
                  "try:\n    (x * x).backward()\n"
                  "except Exception as e:\n    print(type(e).__name__, e)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("NnctlError Tensor.backward() needs nnctl.autodiff")


def test_public_tensor_has_backward_ready():
    result = _run("import nnctl\nx = nnctl.Tensor(3.0, requires_grad=True)\n"
                  "(x * x).backward()\nprint(x.grad)")
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == 6.0


def test_backward_stores_host_arrays():
    import nnctl.autodiff  # noqa: F401
    from nnctl.graph.tensor import Tensor
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, -4.0])
