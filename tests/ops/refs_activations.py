"""NumPy references for the activation ops, merged into the op table by test_op_table.py."""

from __future__ import annotations

import numpy as np


def _gelu_tanh(x):
    # PyTorch's gelu(approximate="tanh")
    return x * 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * np.power(x, 3))))


REFERENCES = {
    "leaky_relu": lambda x, slope=0.01: np.where(x >= 0, x, slope * x),
    "elu": lambda x, alpha=1.0: np.where(x >= 0, x, alpha * (np.exp(x) - 1.0)),
    "gelu": _gelu_tanh,
    "softplus": lambda x: np.logaddexp(0.0, x),
}
