"""NumPy reference for the cast op (nnctl/ops/cast.py), merged into the op table by
test_op_table.py."""

from __future__ import annotations

REFERENCES = {
    "cast": lambda x, dtype: x.astype(dtype),
}
