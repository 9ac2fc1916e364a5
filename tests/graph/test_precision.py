"""The mixed-precision policy (nnctl/graph/precision.py): which ops compute in float16, which
stay float32, how the others follow, and what `autocast` does to a graph."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.graph.precision import (FLOAT32, FOLLOW, HALF, KEEP_DTYPE, POLICY, autocast,
                                   dtypes_by_op, policy)
from nnctl.graph.tensor import Tensor, input_placeholder, parameter
from nnctl.ops.registry import REGISTRY


def test_the_table_names_registered_ops_only():
    assert set(POLICY) <= set(REGISTRY)
    assert set(POLICY.values()) <= {HALF, FLOAT32}
    assert set(KEEP_DTYPE) <= set(REGISTRY)


def test_the_policy_of_each_kind_of_op():
    # the compute-bound ops in float16
    for op in ("matmul", "conv2d", "conv2d_grad_input", "conv2d_grad_weight"):
        assert policy(op) == HALF, op
    # the float32 islands: accumulation, the loss's ops, what overflows or underflows
    for op in ("sum", "mean", "logsumexp", "softmax", "log_softmax", "cross_entropy",
               "softmax_xent_grad", "exp", "log", "pow", "sqrt", "softplus", "numel"):
        assert policy(op) == FLOAT32, op
    # everything else follows its inputs
    for op in ("add", "mul", "relu", "tanh", "sigmoid", "max", "reshape", "transpose",
               "take", "concat", "where", "max_pool2d", "avg_pool2d", "cast"):
        assert policy(op) == FOLLOW, op


def _dense(x, w, b):
    return (x @ w + b).relu()


def test_a_dense_layer_computes_in_float16_with_its_bias():
    x = input_placeholder("x", (4, 3), "float32")
    w, b = parameter("w", (3, 5), "float32"), parameter("b", (5,), "float32")
    (y,) = autocast([_dense(x, w, b)])
    assert y.dtype == "float32"  # a root comes back in its own dtype
    assert y.op == "cast" and y.node.inputs[0].aval.dtype == "float16"
    assert dtypes_by_op([y]) == {"matmul": {"float16"}, "add": {"float16"},
                                 "relu": {"float16"}, "cast": {"float16", "float32"}}
    # x, w and b are each cast down once, the result up once
    casts = [n for n in _nodes(y) if n.op == "cast"]
    assert sorted(n.inputs[0].name or n.inputs[0].op for n in casts) == ["b", "relu", "w", "x"]


def _nodes(t):
    from nnctl.graph.ir import toposort
    return toposort([t.node])


def test_statistics_stay_float32_and_promote_what_they_meet():
    # a layer norm: the mean and the variance in float32; x - mean meets float16 and float32
    # values: the widest wins, so the normalised value is float32 until the next matmul
    x = input_placeholder("x", (4, 6), "float32")
    w = parameter("w", (6, 6), "float32")
    h = x @ w
    mu = h.mean(-1, keepdims=True)
    c = h - mu
    z = c / ((c * c).mean(-1, keepdims=True) + 1e-5).sqrt()
    y = z @ w
    (out,) = autocast([y])
    seen = dtypes_by_op([out])
    assert seen["mean"] == {"float32"} and seen["sqrt"] == {"float32"}
    assert seen["sub"] == {"float32"} and seen["div"] == {"float32"}
    assert seen["matmul"] == {"float16"}
    # w is read by both matmuls: cast once
    assert sum(1 for n in _nodes(out) if n.op == "cast" and n.inputs[0].name == "w") == 1


def test_the_softmax_and_the_loss_are_float32():
    x = input_placeholder("x", (4, 3), "float32")
    labels = input_placeholder("y", (4,), "int64")
    w = parameter("w", (3, 5), "float32")
    logits = x @ w
    p = logits.softmax(-1)
    loss = logits.cross_entropy(labels)
    p16, loss16 = autocast([p, loss])
    seen = dtypes_by_op([p16, loss16])
    assert seen["softmax"] == {"float32"} and seen["cross_entropy"] == {"float32"}
    assert loss16.dtype == "float32"
    assert labels.node in [n for n in _nodes(loss16)]  # integer labels: never cast


def test_leaves_and_what_is_computed_from_leaves_alone_follow_the_activations():
    # a bias reshaped to [1, C] and a dropout-like mask are not activations: they take the
    # activations' dtype; a float32 activation next to a float16 one promotes it
    x = input_placeholder("x", (2, 3), "float32")
    w, b = parameter("w", (3, 4), "float32"), parameter("b", (4,), "float32")
    mask = input_placeholder("m", (2, 4), "float32")
    h = (x @ w + b.reshape(1, 4)) * mask
    (out,) = autocast([h])
    assert dtypes_by_op([out])["mul"] == {"float16"}
    assert dtypes_by_op([out])["reshape"] == {"float32"}  # the bias, before its cast
    s = x.sum(-1, keepdims=True)  # a float32 activation
    (mixed,) = autocast([(x @ w) + s])
    assert dtypes_by_op([mixed])["add"] == {"float32"}
    # nothing the policy decides: left as it is, node for node
    plain = (x * 2.0 + 1.0).tanh()
    (same,) = autocast([plain])
    assert same.node is plain.node


def test_scalar_constants_are_restated_not_cast():
    x = input_placeholder("x", (2, 3), "float32")
    w = parameter("w", (3, 3), "float32")
    (out,) = autocast([(x @ w) * 0.5 + 1.0])
    consts = [n for n in _nodes(out) if n.op == "constant"]
    assert {(n.aval.dtype, n.value) for n in consts} == {("float16", 0.5), ("float16", 1.0)}
    assert not any(n.op == "cast" and n.inputs[0].op == "constant" for n in _nodes(out))


def test_where_keeps_its_condition():
    x = input_placeholder("x", (2, 3), "float32")
    w = parameter("w", (3, 3), "float32")
    cond = input_placeholder("c", (2, 3), "float32")  # 1e-9 means true; float16 would flush it
    (out,) = autocast([(x @ w).where(cond, 0.0)])
    node = next(n for n in _nodes(out) if n.op == "where")
    assert node.inputs[0] is cond.node and node.aval.dtype == "float16"


def test_the_mixed_gradients_of_float32_masters_are_float32_and_close():
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((8, 5)).astype(np.float32))
    w = Tensor(rng.standard_normal((5, 4)).astype(np.float32) * 0.5, requires_grad=True)
    b = Tensor(np.zeros(4, np.float32), requires_grad=True)
    y = (x @ w + b).tanh()
    (y16,) = autocast([y])
    ref = grad([y.sum()], [w, b])
    mixed = grad([y16.sum()], [w, b])
    for r, m in zip(ref, mixed):
        assert m.dtype == "float32"
        np.testing.assert_allclose(m.numpy(), r.numpy(), rtol=1e-2, atol=1e-2)


def test_refuses_a_compute_dtype_it_cannot_compute_in():
    x = input_placeholder("x", (2, 3), "float32")
    with pytest.raises(ValueError, match="bfloat16"):
        autocast([x.tanh()], "bfloat16")


def test_constants_saturate_at_the_float16_range_so_inf_still_means_overflow():
    # an attention mask: -1e9 above the diagonal, added to float16 scores
    from nnctl.layers.attention import causal_mask
    q = input_placeholder("q", (2, 3, 4), "float32")
    w = parameter("w", (4, 4), "float32")
    scores = (q @ w) @ (q @ w).mT + causal_mask(3, "float32")
    (out,) = autocast([scores.softmax(-1)])
    mask = next(n for n in _nodes(out) if n.op == "constant" and n.aval.shape == (3, 3))
    assert mask.aval.dtype == "float16" and mask.value.dtype == np.float16
    np.testing.assert_array_equal(mask.value, [[0, -65504, -65504], [0, 0, -65504], [0, 0, 0]])
    (big,) = autocast([(q @ w) * 1e9])
    assert {n.value for n in _nodes(big) if n.op == "constant"} == {65504.0}


def test_a_batch_norms_count_is_float32_and_shares_the_means_cast():
    # a symbolic batch: batch norm's running variance is scaled by n / (n - 1) with n from
    # numel at run time; in float16, n = 32 x 48 x 48 = 73728 would be inf
    from nnctl.ops.registry import Dim
    x = input_placeholder("x", (Dim("B"), 3, 48, 48), "float32")
    w = parameter("w", (4, 3, 3, 3), "float32")
    h = x.apply("conv2d", w, padding=(1, 1))
    count = h.apply("numel", axis=(0, 2, 3))
    var = h.mean((0, 2, 3)) * (count / (count - 1.0))
    (out,) = autocast([var])
    numel = next(n for n in _nodes(out) if n.op == "numel")
    mean = next(n for n in _nodes(out) if n.op == "mean")
    assert numel.aval.dtype == "float32" and numel.inputs[0] is mean.inputs[0]
    assert numel.inputs[0].op == "cast"  # the conv's float16 output, cast up once
