"""rnn, lstm, gru: shapes, parameters, a NumPy reference of the gate equations, gradients
(every parameter gets one; directional finite differences in float64) and the config keys."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.layers import build_model
from nnctl.layers.recurrent import GRU, LSTM, RNN

CPU = get_backend("cpu")
KINDS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _plan(layer, shape, dtype="float64", seed=None):
    """Build `layer` on an input of `shape`; a plan giving [y] or, with a seed array for the
    output, [y, loss, dloss/dx, *dloss/dparams] where loss = sum(y * seed)."""
    x = input_placeholder("x", shape, dtype)
    y = layer(x, False, np.random.default_rng(0)) if not layer.built else layer(x, False)
    outputs = [y]
    if seed is not None:
        loss = (y * Tensor(seed)).sum()
        outputs += [loss, *grad(loss, [x, *layer.params.values()])]
    return y, compile_graph(outputs, [x, *layer.params.values()], CPU)


def _values(layer, params=None):
    params = params or layer.initial
    return [params[k] for k in layer.params]


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def reference(kind, x, p, name, layers, bias=True):
    """The gate equations in NumPy, written out step by step: every h, [batch, time, units]."""
    seq = x
    for k in range(layers):
        wx, wh = p[f"{name}.l{k}.weight_x"], p[f"{name}.l{k}.weight_h"]
        b = p[f"{name}.l{k}.bias"] if bias else 0.0
        n = wh.shape[0]
        h, c, out = np.zeros((x.shape[0], n)), np.zeros((x.shape[0], n)), []
        for t in range(seq.shape[1]):
            gx, gh = seq[:, t] @ wx + b, h @ wh
            if kind == "rnn":
                h = np.tanh(gx + gh)
            elif kind == "lstm":
                i, f, g, o = np.split(gx + gh, 4, axis=1)
                c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                h = _sigmoid(o) * np.tanh(c)
            else:
                bh = p[f"{name}.l{k}.bias_h"] if bias else 0.0
                r = _sigmoid(gx[:, :n] + gh[:, :n])
                z = _sigmoid(gx[:, n:2 * n] + gh[:, n:2 * n])
                cand = np.tanh(gx[:, 2 * n:] + r * (gh[:, 2 * n:] + bh))
                h = (1 - z) * cand + z * h
            out.append(h)
        seq = np.stack(out, axis=1)
    return seq


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("return_sequences,layers", [(False, 1), (True, 1), (False, 2),
                                                     (True, 3)])
def test_shapes_and_parameters(kind, return_sequences, layers):
    layer = KINDS[kind](kind, 5, return_sequences, layers)
    y, _ = _plan(layer, (2, 4, 3))
    assert y.shape == ((2, 4, 5) if return_sequences else (2, 5))
    g = GATES[kind]
    expected = {}
    for k in range(layers):
        expected[f"{kind}.l{k}.weight_x"] = (3 if k == 0 else 5, g * 5)
        expected[f"{kind}.l{k}.weight_h"] = (5, g * 5)
        expected[f"{kind}.l{k}.bias"] = (g * 5,)
        if kind == "gru":
            expected[f"{kind}.l{k}.bias_h"] = (5,)
    assert {k: v.shape for k, v in layer.params.items()} == expected
    assert all(layer.initial[k].shape == s for k, s in expected.items())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("return_sequences,layers,bias", [(False, 1, True), (True, 2, True),
                                                          (True, 1, False)])
def test_matches_the_numpy_gate_equations(kind, return_sequences, layers, bias):
    layer = KINDS[kind](kind, 4, return_sequences, layers, bias)
    xv = np.random.default_rng(1).normal(size=(3, 5, 2))
    _, plan = _plan(layer, xv.shape)
    out = plan([xv, *_values(layer)])[0]
    expected = reference(kind, xv, layer.initial, kind, layers, bias)
    np.testing.assert_allclose(out, expected if return_sequences else expected[:, -1],
                               rtol=1e-12, atol=1e-14)


def test_one_rnn_unit_by_hand():
    layer = RNN("r", 1, return_sequences=True)
    _, plan = _plan(layer, (1, 2, 1))
    p = {"r.l0.weight_x": np.array([[0.5]]), "r.l0.weight_h": np.array([[-2.0]]),
         "r.l0.bias": np.array([0.1])}
    out = plan([np.array([[[1.0], [3.0]]]), *_values(layer, p)])[0]
    h1 = math.tanh(1.0 * 0.5 + 0.1)                # h_0 = 0
    h2 = math.tanh(3.0 * 0.5 + h1 * -2.0 + 0.1)
    np.testing.assert_allclose(out.reshape(-1), [h1, h2], rtol=1e-15)


def test_initial_weights_are_pytorch_uniform():
    layer = LSTM("l", 16, layers=2)
    _plan(layer, (2, 3, 40))
    bound = 1 / math.sqrt(16)
    for name, w in layer.initial.items():
        assert np.abs(w).max() <= bound, name
    w = layer.initial["l.l0.weight_x"]  # [40, 64]: the draws fill the range
    assert np.abs(w).max() > 0.95 * bound and abs(w.mean()) < 0.02
    assert w.dtype == np.float64


def test_float32_stays_float32():
    layer = GRU("g", 3, return_sequences=True)
    y, plan = _plan(layer, (2, 4, 2), "float32")
    assert y.dtype == "float32" and layer.initial["g.l0.weight_h"].dtype == np.float32
    out = plan([np.ones((2, 4, 2), np.float32), *_values(layer)])[0]
    assert out.dtype == np.float32


@pytest.mark.parametrize("kind", KINDS)
def test_every_parameter_and_the_input_get_a_gradient(kind):
    layer = KINDS[kind](kind, 3, True, 2)
    rng = np.random.default_rng(2)
    xv = rng.normal(size=(2, 4, 3))
    _, plan = _plan(layer, xv.shape, seed=rng.normal(size=(2, 4, 3)))
    grads = plan([xv, *_values(layer)])[2:]
    assert len(grads) == 1 + len(layer.params)
    for name, g in zip(["x", *layer.params], grads):
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 1e-6, name


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_finite_differences(kind):
    """Directional central differences in float64 (Chainer's check_backward), per tensor."""
    layer = KINDS[kind](kind, 3, True, 2)
    rng = np.random.default_rng(3)
    xv = rng.normal(size=(2, 4, 2))
    _, plan = _plan(layer, xv.shape, seed=rng.normal(size=(2, 4, 3)))
    values = [xv, *_values(layer)]
    analytic = plan(values)[2:]
    eps = 1e-6
    for i, name in enumerate(["x", *layer.params]):
        for _ in range(2):
            u = rng.normal(size=values[i].shape)
            u /= np.linalg.norm(u)
            up, down = list(values), list(values)
            up[i], down[i] = values[i] + eps * u, values[i] - eps * u
            numeric = (plan(up)[1] - plan(down)[1]) / (2 * eps)
            np.testing.assert_allclose(np.sum(analytic[i] * u), numeric, rtol=1e-6, atol=1e-9,
                                       err_msg=name)


def test_the_last_step_is_the_last_of_the_sequence():
    seq, last = LSTM("l", 4, True), LSTM("l", 4, False)
    xv = np.random.default_rng(4).normal(size=(2, 3, 2))
    _, p1 = _plan(seq, xv.shape)
    _, p2 = _plan(last, xv.shape)
    out = p1([xv, *_values(seq)])[0]
    np.testing.assert_array_equal(p2([xv, *_values(seq)])[0], out[:, -1])


def test_input_must_be_a_float_sequence():
    with pytest.raises(ShapeError, match=r"rnn needs input \[batch, time, features\], got "
                                         r"\[4, 3\]"):
        RNN("r", 2)(input_placeholder("x", (4, 3), "float64"), False, np.random.default_rng(0))
    with pytest.raises(ShapeError, match="lstm needs float input, got int64"):
        LSTM("l", 2)(input_placeholder("x", (4, 3, 1), "int64"), False, np.random.default_rng(0))


def test_config_keys_and_defaults_build_a_model(model_spec):
    spec = model_spec("layers:\n"
                       "  - lstm: {units: 6, return_sequences: true, layers: 2}\n"
                       "  - gru: {units: 5, return_sequences: true, bias: false}\n"
                       "  - rnn: {units: 4}\n"
                       "  - dense: {units: 2}\n")
    rnn = spec.layers[2]
    assert (rnn.units, rnn.return_sequences, rnn.layers, rnn.bias) == (4, False, 1, True)
    model = build_model(spec, np.random.default_rng(0))
    y = model(input_placeholder("x", (3, 7, 2), "float64"))
    assert y.shape == (3, 2)
    assert "lstm_0.l1.weight_h" in model.params and "gru_1.l0.bias" not in model.params
    assert "gru_1.l0.bias_h" not in model.params and "rnn_2.l0.bias" in model.params


def test_config_errors_name_the_key(model_spec):
    errors: list = []
    model_spec("layers:\n  - lstm: {return_sequences: 1}\n  - gru: {units: 3, layers: 0}\n",
                errors)
    assert errors == [
        "m.yaml:2: layers[0].lstm: missing required key 'units'",
        "m.yaml:2: layers[0].lstm.return_sequences: expected true or false, got 1",
        "m.yaml:3: layers[1].gru.layers: expected a positive integer, got 0"]
