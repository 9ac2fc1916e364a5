"""The gradcheck harness itself (nnctl.gradcheck): numeric gradients, comparison, sampling."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.gradcheck import (ATOL, EPS, RTOL, CheckResult, check_op, check_ops, compare,
                             numeric_gradient, sample_inputs)
from nnctl.ops.registry import REGISTRY, Sample


def test_defaults_follow_reliability_a1():
    assert (EPS, ATOL, RTOL) == (1e-6, 1e-5, 1e-3)


def test_numeric_gradient_of_a_known_function():
    x = np.array([[0.5, -1.0], [2.0, 0.25]])
    y = np.array([3.0, -2.0])
    arrays = [x, y]

    def f(xs):
        return float(np.sum(xs[0] ** 3) + np.sum(xs[0] @ xs[1]))

    g = numeric_gradient(f, arrays, 0, 1e-5)
    np.testing.assert_allclose(g, 3 * x**2 + y[None, :], rtol=1e-8)
    np.testing.assert_array_equal(arrays[0], [[0.5, -1.0], [2.0, 0.25]])  # restored
    gy = numeric_gradient(f, arrays, 1, 1e-5)
    np.testing.assert_allclose(gy, x.sum(0), rtol=1e-8)


def test_compare_passes_and_fails_with_detail():
    ok = compare("op", "case", 1, np.array([1.0, 2.0]), np.array([1.0 + 1e-6, 2.0]), ATOL, RTOL)
    assert ok.passed and ok.max_abs == pytest.approx(1e-6) and ok.detail == ""
    bad = compare("op", "case", 2, np.array([1.0, 2.0, 0.0]), np.array([1.0, 2.5, 0.0]),
                  ATOL, RTOL)
    assert not bad.passed
    assert bad.max_abs == pytest.approx(0.5) and bad.max_rel == pytest.approx(0.2)
    assert bad.detail == "element [1]: numeric 2.5, analytic 2"
    assert isinstance(bad, CheckResult) and bad.order == 2


def test_compare_relative_tolerance_scales_with_magnitude():
    # 1e-3 relative of 1e4 is 10: an error of 5 passes, 20 fails
    assert compare("o", "c", 1, np.array([1e4 + 5]), np.array([1e4]), ATOL, RTOL).passed
    assert not compare("o", "c", 1, np.array([1e4 + 20]), np.array([1e4]), ATOL, RTOL).passed


def test_sample_inputs_dodge_kinks_and_respect_ranges():
    rng = np.random.default_rng(0)
    s = Sample(shapes=((200,), (50,)), low=-1.0, high=1.0, kinks=(0.0, 0.5))
    a, b = sample_inputs(s, rng)
    assert a.shape == (200,) and b.shape == (50,) and a.dtype == np.float64
    for k in (0.0, 0.5):
        assert np.all(np.abs(a - k) >= 0.05 - 1e-12)
    assert np.all(np.abs(a) <= 1.1)


def test_sample_inputs_distinct_and_integer_labels():
    rng = np.random.default_rng(1)
    s = Sample(shapes=((2, 3, 4), (7,)), distinct=True, int_inputs={1: 5})
    x, labels = sample_inputs(s, rng)
    gaps = np.diff(np.sort(x.ravel()))
    assert gaps.min() > 0.05  # spread (high-low)/2n = 4/48 apart, minus a little jitter
    assert labels.dtype == np.int64 and labels.min() >= 0 and labels.max() < 5


def test_check_op_is_deterministic_for_a_seed():
    a = check_op("tanh", seed=3)
    b = check_op("tanh", seed=3)
    assert [(r.case, r.order, r.max_abs) for r in a] == [(r.case, r.order, r.max_abs) for r in b]
    assert [r.order for r in a] == [1, 2]
    assert a[0].case == "[3, 4]"


def test_check_op_rows_name_the_sample():
    rows = check_op("pow", second_order=False)
    assert [r.case for r in rows] == ["[3, 4] exponent=2", "[3, 4] exponent=3",
                                      "[3, 4] exponent=0.5", "[3, 4] exponent=-1.5",
                                      "[3, 4] exponent=2"]
    assert all(r.name == "pow" for r in rows)


def test_check_ops_covers_the_registry_and_passes():
    rows = check_ops()
    assert {r.name for r in rows} == set(REGISTRY) - {"equal", "one_hot", "numel"}
    assert all(r.passed for r in rows), [r for r in rows if not r.passed]
    assert [r.name for r in check_ops(["exp", "log"], second_order=False)] == ["exp", "log"]


def test_a_tighter_tolerance_can_fail_a_correct_op():
    # central differences carry ~eps^2 truncation error; atol=rtol=0 must flag it
    rows = check_op("exp", atol=0.0, rtol=0.0, eps=1e-2, second_order=False)
    assert not rows[0].passed and rows[0].max_abs > 1e-6
