"""constant_block: a constant as a small read-only array that broadcasts to the same result."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.ops.blocks import BLOCK_ELEMENTS, constant_block


@pytest.mark.parametrize("shape", [(64, 128), (3, 5, 7), (4, 20000), (2, 96, 96), (1,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maximum_and_minimum_against_a_block_equal_the_scalar_forms(shape, dtype):
    x = np.random.default_rng(0).normal(size=shape).astype(dtype)
    x.flat[0], x.flat[-1] = np.nan, -0.0  # NaN wins; the sign of zero is kept as with 0.0
    for fn, value in ((np.maximum, 0.0), (np.minimum, 0.5), (np.maximum, -1.25)):
        block = constant_block(np, value, shape, dtype)
        got = fn(x, block)
        want = fn(x, value)
        assert got.dtype == want.dtype == dtype
        np.testing.assert_array_equal(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))


def test_the_block_covers_trailing_axes_within_the_budget_and_is_shared_read_only():
    block = constant_block(np, 0.0, (64, 16, 28, 28), np.float32)
    assert block.shape == (28, 28)  # 16 * 784 would exceed BLOCK_ELEMENTS
    assert block.size <= BLOCK_ELEMENTS and not block.flags.writeable
    assert constant_block(np, 0.0, (32, 16, 28, 28), np.float32) is block
    assert constant_block(np, -0.0, (64, 16, 28, 28), np.float32) is not block
    assert np.signbit(constant_block(np, -0.0, (28, 28), np.float32)).all()
    with pytest.raises(ValueError):
        block[0, 0] = 1.0


def test_a_long_last_axis_or_another_backend_keeps_the_scalar():
    assert constant_block(np, 0.0, (2, BLOCK_ELEMENTS + 1), np.float32) == 0.0

    class FakeXp:
        __name__ = "cupy"
    assert constant_block(FakeXp(), 0.5, (8, 8), "float32") == 0.5
