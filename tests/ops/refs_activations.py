"""NumPy references for the activation ops, merged into the op table by test_op_table.py."""

from __future__ import annotations

import numpy as np


REFERENCES = {
    "leaky_relu": lambda x, slope=0.01: np.where(x >= 0, x, slope * x),
    "elu": lambda x, alpha=1.0: np.where(x >= 0, x, alpha * (np.exp(x) - 1.0)),
    "softplus": lambda x: np.logaddexp(0.0, x),
}
