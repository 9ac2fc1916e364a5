"""multi_head_attention and transformer_encoder: shapes, parameters, a NumPy reference,
causal masking, dropout, gradients (every parameter; directional finite differences in
float64) and the config keys."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.graph import Graph
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.layers import build_model
from nnctl.layers.attention import MultiHeadAttention, TransformerEncoder

CPU = get_backend("cpu")


def _plan(layer, shape, training=False, seed=None):
    """Build `layer` on an input of `shape` (float64); a plan giving [y] or, with a seed array
    for the output, [y, loss, dloss/dx, *dloss/dparams] where loss = sum(y * seed)."""
    x = input_placeholder("x", shape, "float64")
    y = layer(x, training, np.random.default_rng(0))
    outputs = [y]
    if seed is not None:
        loss = (y * Tensor(seed)).sum()
        outputs += [loss, *grad(loss, [x, *layer.params.values()])]
    return y, compile_graph(outputs, [x, *layer.params.values()], CPU,
                            rng=CPU.rng(0) if training else None)


def _random_params(layer, seed=5):
    """Random values for every parameter (the initial biases are zeros, which would hide them)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=layer.initial[k].shape) * 0.5 + (k.endswith("gamma"))
            for k in layer.params]


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def mha_reference(x, p, heads, causal):
    """Attention in NumPy; p = (wq, wk, wv, wo, bq, bk, bv, bo)."""
    wq, wk, wv, wo, bq, bk, bv, bo = p
    b, t, _ = x.shape
    d = wq.shape[1]

    def split(y):
        return y.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)

    q, k, v = split(x @ wq + bq), split(x @ wk + bk), split(x @ wv + bv)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d // heads)
    if causal:
        s = np.where(np.triu(np.ones((t, t), bool), 1), -np.inf, s)
    y = (_softmax(s) @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
    return y @ wo + bo


def encoder_reference(x, p, heads, causal):
    """PyTorch's post-norm encoder block in NumPy, in this layer's parameter order."""
    def norm(z, gamma, beta):
        c = z - z.mean(-1, keepdims=True)
        return c / np.sqrt((c * c).mean(-1, keepdims=True) + 1e-5) * gamma + beta

    attn, (g1, b1, w1, c1, w2, c2, g2, b2) = p[:8], p[8:]
    x = norm(x + mha_reference(x, attn, heads, causal), g1, b1)
    return norm(x + np.maximum(x @ w1 + c1, 0) @ w2 + c2, g2, b2)


def test_attention_shapes_and_parameters():
    layer = MultiHeadAttention("a", 2)
    y, _ = _plan(layer, (3, 5, 4))
    assert y.shape == (3, 5, 4)
    assert {k: v.shape for k, v in layer.params.items()} == {
        "a.weight_q": (4, 4), "a.weight_k": (4, 4), "a.weight_v": (4, 4), "a.weight_o": (4, 4),
        "a.bias_q": (4,), "a.bias_k": (4,), "a.bias_v": (4,), "a.bias_o": (4,)}
    wide = MultiHeadAttention("w", 3, dim=6)
    assert _plan(wide, (3, 5, 4))[0].shape == (3, 5, 6)
    assert wide.params["w.weight_q"].shape == (4, 6) and wide.params["w.weight_o"].shape == (6, 6)


@pytest.mark.parametrize("heads,causal", [(1, False), (2, False), (2, True), (4, True)])
def test_attention_matches_numpy(heads, causal):
    layer = MultiHeadAttention("a", heads, causal=causal)
    xv = np.random.default_rng(1).normal(size=(2, 5, 8))
    _, plan = _plan(layer, xv.shape)
    p = _random_params(layer)
    np.testing.assert_allclose(plan([xv, *p])[0], mha_reference(xv, p, heads, causal),
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("make", [lambda c: MultiHeadAttention("a", 2, causal=c),
                                  lambda c: TransformerEncoder("e", 2, 8, 0.0, c)],
                         ids=["attention", "encoder"])
def test_causal_masking_hides_the_future(make):
    layer = make(True)
    rng = np.random.default_rng(2)
    xv = rng.normal(size=(2, 6, 4))
    _, plan = _plan(layer, xv.shape)
    p = _random_params(layer)
    out = plan([xv, *p])[0]
    for t in range(5):
        changed = xv.copy()
        changed[:, t + 1:] = rng.normal(size=changed[:, t + 1:].shape) * 10
        new = plan([changed, *p])[0]
        np.testing.assert_array_equal(new[:, :t + 1], out[:, :t + 1])
        assert np.abs(new[:, t + 1:] - out[:, t + 1:]).min() > 0
    # and without the mask, the future does reach the past
    open_layer = make(False)
    _, plan = _plan(open_layer, xv.shape)
    changed = xv.copy()
    changed[:, -1] += 1.0
    assert np.abs(plan([changed, *p])[0][:, 0] - plan([xv, *p])[0][:, 0]).min() > 0


def test_causal_gradient_of_a_position_is_zero_for_later_inputs():
    layer = MultiHeadAttention("a", 2, causal=True)
    seed = np.zeros((2, 5, 4))
    seed[:, 2] = 1.0  # the loss reads position 2 only
    xv = np.random.default_rng(3).normal(size=(2, 5, 4))
    _, plan = _plan(layer, xv.shape, seed=seed)
    dx = plan([xv, *_random_params(layer)])[2]
    assert np.all(dx[:, 3:] == 0) and np.abs(dx[:, :3]).min() > 0


def test_attention_dropout_only_while_training():
    layer = MultiHeadAttention("a", 2, dropout=0.5)
    xv = np.random.default_rng(4).normal(size=(2, 5, 4))
    _, train = _plan(layer, xv.shape, training=True)
    y, evaluate = _plan(layer, xv.shape, training=False)
    p = _random_params(layer)
    assert not any(n.op == "random" for n in Graph([y.node]).nodes)
    dropped = train([xv, *p])[0]
    np.testing.assert_allclose(evaluate([xv, *p])[0],
                               mha_reference(xv, p, 2, False), rtol=1e-12, atol=1e-13)
    assert np.abs(dropped - evaluate([xv, *p])[0]).max() > 1e-3
    no_drop = MultiHeadAttention("a", 2)
    _, plan = _plan(no_drop, xv.shape, training=True)
    np.testing.assert_allclose(plan([xv, *p])[0], mha_reference(xv, p, 2, False), rtol=1e-12,
                               atol=1e-13)


def test_attention_shape_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ShapeError, match=r"dim \(6\) must be divisible by heads \(4\)"):
        MultiHeadAttention("a", 4)(input_placeholder("x", (2, 3, 6), "float64"), False, rng)
    with pytest.raises(ShapeError, match=r"needs input \[batch, time, features\], got \[2, 6\]"):
        MultiHeadAttention("a", 2)(input_placeholder("x", (2, 6), "float64"), False, rng)
    with pytest.raises(ShapeError, match=r"dim \(6\) must be divisible by heads \(4\)"):
        TransformerEncoder("e", 4, 8)(input_placeholder("x", (2, 3, 6), "float64"), False, rng)


def test_encoder_parameters_and_numpy_reference():
    layer = TransformerEncoder("e", 2, 8, dropout=0.0)
    xv = np.random.default_rng(6).normal(size=(2, 5, 4))
    y, plan = _plan(layer, xv.shape)
    assert y.shape == (2, 5, 4)
    assert {k: v.shape for k, v in layer.params.items()} == {
        "e.attn.weight_q": (4, 4), "e.attn.weight_k": (4, 4), "e.attn.weight_v": (4, 4),
        "e.attn.weight_o": (4, 4), "e.attn.bias_q": (4,), "e.attn.bias_k": (4,),
        "e.attn.bias_v": (4,), "e.attn.bias_o": (4,), "e.norm1.gamma": (4,),
        "e.norm1.beta": (4,), "e.ff1.weight": (4, 8), "e.ff1.bias": (8,),
        "e.ff2.weight": (8, 4), "e.ff2.bias": (4,), "e.norm2.gamma": (4,), "e.norm2.beta": (4,)}
    assert set(layer.initial) == set(layer.params) and not layer.states
    for causal in (False, True):
        layer = TransformerEncoder("e", 2, 8, dropout=0.0, causal=causal)
        _, plan = _plan(layer, xv.shape)
        p = _random_params(layer)
        np.testing.assert_allclose(plan([xv, *p])[0], encoder_reference(xv, p, 2, causal),
                                   rtol=1e-12, atol=1e-12)


def test_encoder_dropout_masks_while_training():
    layer = TransformerEncoder("e", 2, 8)  # dropout 0.1
    x = input_placeholder("x", (2, 5, 4), "float64")
    y = layer(x, True, np.random.default_rng(0))
    masks = [n for n in Graph([y.node]).nodes if n.op == "random"]
    # attention weights, after attention, after ff1's relu, after ff2 (as in PyTorch)
    assert sorted(m.aval.shape for m in masks) == [(2, 2, 5, 5), (2, 5, 4), (2, 5, 4), (2, 5, 8)]
    assert not any(n.op == "random" for n in Graph([layer(x, False).node]).nodes)


@pytest.mark.parametrize("make", [lambda: MultiHeadAttention("a", 2, causal=True),
                                  lambda: TransformerEncoder("e", 2, 6, 0.0, causal=True)],
                         ids=["attention", "encoder"])
def test_gradients_exist_and_match_finite_differences(make):
    """Every parameter and the input get a gradient; directional central differences in
    float64 (Chainer's check_backward) agree with it. The key bias's gradient is exactly zero
    in theory: it adds q . b_k to every score of a row, which softmax ignores."""
    layer = make()
    rng = np.random.default_rng(7)
    xv = rng.normal(size=(2, 4, 4))
    _, plan = _plan(layer, xv.shape, seed=rng.normal(size=(2, 4, 4)))
    values = [xv, *_random_params(layer)]
    analytic = plan(values)[2:]
    assert len(analytic) == 1 + len(layer.params)
    eps = 1e-6
    for i, name in enumerate(["x", *layer.params]):
        size = np.abs(analytic[i]).max()
        assert np.all(np.isfinite(analytic[i])) and (
            size < 1e-12 if name.endswith("bias_k") else size > 1e-6), name
        u = rng.normal(size=values[i].shape)
        u /= np.linalg.norm(u)
        up, down = list(values), list(values)
        up[i], down[i] = values[i] + eps * u, values[i] - eps * u
        numeric = (plan(up)[1] - plan(down)[1]) / (2 * eps)
        # atol: the round-off floor of a central difference, ~1e-16 |f| / eps (a few 1e-9
        # for this loss): bias_k's true derivative is 0, so only that noise is left to see
        np.testing.assert_allclose(np.sum(analytic[i] * u), numeric, rtol=1e-6, atol=1e-8,
                                   err_msg=name)


def test_config_keys_and_defaults_build_a_model(model_spec):
    spec = model_spec("layers:\n"
                       "  - multi_head_attention: {heads: 2}\n"
                       "  - transformer_encoder: {heads: 2, ff_units: 16, causal: true}\n"
                       "  - multi_head_attention: {heads: 3, dim: 6, dropout: 0.2}\n")
    a, e, w = spec.layers
    assert (a.heads, a.dim, a.causal, a.dropout) == (2, None, False, 0.0)
    assert (e.heads, e.ff_units, e.dropout, e.causal) == (2, 16, 0.1, True)
    assert (w.dim, w.dropout) == (6, 0.2)
    model = build_model(spec, np.random.default_rng(0))
    assert model(input_placeholder("x", (3, 7, 4), "float32")).shape == (3, 7, 6)
    assert "transformer_encoder_1.attn.weight_q" in model.params
    assert model.params["transformer_encoder_1.ff1.weight"].dtype == "float32"


def test_config_errors_name_the_key(model_spec):
    errors: list = []
    model_spec("layers:\n"
                "  - multi_head_attention: {heads: 4, dim: 6}\n"
                "  - transformer_encoder: {heads: 2, dropout: 1.0}\n", errors)
    assert errors == [
        "m.yaml:2: layers[0].multi_head_attention.dim: dim (6) must be divisible by heads (4)",
        "m.yaml:3: layers[1].transformer_encoder: missing required key 'ff_units'",
        "m.yaml:3: layers[1].transformer_encoder.dropout: expected a fraction in [0, 1), got 1.0"]
