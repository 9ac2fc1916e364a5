"""Dropout (inverted): identity in evaluation; in training zeros about `rate` of the elements
and scales the rest by 1/(1 - rate), with a fresh seeded mask per run."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.layers import Dropout

CPU = get_backend("cpu")
N = 20000


def test_eval_mode_is_identity():
    x = input_placeholder("x", (4, 5), "float64")
    assert Dropout("drop", 0.5)(x, training=False) is x
    e = Tensor(np.ones(3))
    assert Dropout("drop", 0.5)(e, training=False) is e


def test_rate_zero_is_identity_in_training():
    x = input_placeholder("x", (4, 5), "float64")
    assert Dropout("drop", 0.0)(x, training=True) is x


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_train_mode_zeros_about_rate_and_scales_the_rest(rate):
    x = input_placeholder("x", (N,), "float64")
    y = Dropout("drop", rate)(x, training=True)
    assert y.shape == (N,) and y.value is None
    plan = compile_graph([y], [x], CPU, rng=np.random.default_rng(0))
    xv = np.linspace(1.0, 2.0, N)
    out = plan([xv])[0]
    zeroed = out == 0.0
    assert abs(zeroed.mean() - rate) < 0.02
    np.testing.assert_allclose(out[~zeroed], xv[~zeroed] / (1 - rate), rtol=1e-12)
    # the expectation is preserved
    assert abs(out.mean() / xv.mean() - 1.0) < 0.05


def test_fresh_mask_per_run_and_reproducible_for_a_seed():
    x = input_placeholder("x", (1000,), "float32")
    y = Dropout("drop", 0.5)(x, training=True)
    xv = np.ones(1000, dtype=np.float32)

    def runs(seed):
        plan = compile_graph([y], [x], CPU, rng=np.random.default_rng(seed))
        return [plan([xv])[0] for _ in range(2)]

    a = runs(3)
    b = runs(3)
    assert a[0].dtype == np.float32
    assert not np.array_equal(a[0] == 0, a[1] == 0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert set(np.unique(a[0])) == {0.0, 2.0}


def test_gradient_uses_the_same_mask_as_the_forward_pass():
    x = input_placeholder("x", (500,), "float64")
    y = Dropout("drop", 0.25)(x, training=True)
    (g,) = grad(y.sum(), [x])
    plan = compile_graph([y, g], [x], CPU, rng=np.random.default_rng(1))
    xv = np.linspace(1.0, 3.0, 500)
    out, gv = plan([xv])
    np.testing.assert_allclose(gv, out / xv, rtol=1e-12)
    assert set(np.round(np.unique(gv), 12)) == {0.0, round(1 / 0.75, 12)}
