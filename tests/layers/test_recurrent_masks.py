"""rnn, lstm, gru with padding masks and an initial state.

The acceptance test: a padded batch (lengths 2, 5, 7 padded to 8) gives the same loss, the
same gradient of every parameter and the same input gradient at real positions as the three
sequences run one at a time without padding, in float64 to rtol 1e-12; the input gradient at
padded positions is exactly 0. PyTorch is the oracle for the states themselves:
pack_padded_sequence (the final h per sequence, the outputs at real steps) and h_0 / (h_0, c_0)
passed to torch.nn.RNN / LSTM / GRU.
"""

from __future__ import annotations

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
LENGTHS, PADDED, FEATURES, UNITS = (2, 5, 7), 8, 3, 4
RTOL = 1e-12  # elementwise (atol 1e-14-1e-15 for elements near 0)
NORMWISE = 1e-13  # max |padded - alone| / max |alone|, per tensor; measured <= 3e-15


def normwise(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def mask_of(lengths, steps):
    return (np.arange(steps)[None, :] < np.array(lengths)[:, None]).astype(np.float64)


def random_params(layer, rng) -> dict:
    """Larger than the initial weights, so that the states saturate and differ per step."""
    return {k: rng.normal(size=v.shape) for k, v in layer.initial.items()}


def run(outputs, inputs, values):
    return compile_graph(outputs, inputs, CPU)([*values])


def padded_and_unpadded(layer, seed=0):
    """Run `layer` on a padded batch and on each sequence alone. Returns, for both, the
    outputs, loss, input gradient(s) and parameter gradients of loss = sum(y * s), where the
    seed s is 0 at padded steps (which downstream masks ignore)."""
    rng = np.random.default_rng(seed)
    batch = len(LENGTHS)
    xv = rng.normal(size=(batch, PADDED, FEATURES))
    mv = mask_of(LENGTHS, PADDED)
    xv[mv == 0] = rng.normal(size=(int((mv == 0).sum()), FEATURES)) * 50  # padding is junk
    seq = layer.return_sequences
    sv = rng.normal(size=(batch, PADDED, UNITS) if seq else (batch, UNITS))
    if seq:
        sv *= mv[:, :, None]

    x, m = input_placeholder("x", xv.shape, "float64"), input_placeholder("m", mv.shape,
                                                                           "float64")
    y = layer(x, False, np.random.default_rng(0), mask=m)
    params = list(layer.params.values())
    pv = random_params(layer, rng)
    pvals = [pv[k] for k in layer.params]
    loss = (y * Tensor(sv)).sum()
    padded = run([y, loss, *grad(loss, [x, *params])], [x, m, *params], [xv, mv, *pvals])

    xs, ys, total = [], [], None
    for i, n in enumerate(LENGTHS):
        xi = input_placeholder(f"x{i}", (1, n, FEATURES), "float64")
        yi = layer(xi, False)  # no mask: the graph without padding
        si = sv[i:i + 1, :n] if seq else sv[i:i + 1]
        li = (yi * Tensor(si)).sum()
        xs.append(xi), ys.append(yi)
        total = li if total is None else total + li
    xvals = [xv[i:i + 1, :n] for i, n in enumerate(LENGTHS)]
    alone = run([*ys, total, *grad(total, [*xs, *params])], [*xs, *params], [*xvals, *pvals])
    k = len(LENGTHS)
    return (padded[0], padded[1], padded[2], padded[3:]), \
        (alone[:k], alone[k], alone[k + 1:2 * k + 1], alone[2 * k + 1:])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_padded_batch_equals_sequences_one_at_a_time(kind, layers, return_sequences):
    layer = KINDS[kind](kind, UNITS, return_sequences, layers)
    (y, loss, dx, dparams), (ys, loss1, dxs, dparams1) = padded_and_unpadded(layer)
    assert float(loss) == pytest.approx(float(loss1), rel=RTOL)
    assert abs(float(loss)) > 1e-3  # a real value, not two zeros
    for i, n in enumerate(LENGTHS):
        if return_sequences:
            np.testing.assert_allclose(y[i, :n], ys[i][0], rtol=RTOL, atol=0)
            # padded steps repeat the last real state exactly
            assert np.array_equal(y[i, n:], np.repeat(y[i, n - 1:n], PADDED - n, axis=0))
        else:
            np.testing.assert_allclose(y[i], ys[i][0], rtol=RTOL, atol=0)
        np.testing.assert_allclose(dx[i, :n], dxs[i][0], rtol=RTOL, atol=1e-15)
        assert normwise(dx[i, :n], dxs[i][0]) < NORMWISE
        assert np.all(dx[i, n:] == 0.0), "padded steps must get no gradient"
    assert len(dparams) == len(layer.params)
    for name, g, g1 in zip(layer.params, dparams, dparams1):
        assert np.abs(g1).max() > 1e-3, name
        np.testing.assert_allclose(g, g1, rtol=RTOL, atol=1e-14, err_msg=name)
        assert normwise(g, g1) < NORMWISE, name


@pytest.mark.parametrize("kind", KINDS)
def test_no_mask_adds_no_ops(kind):
    """Without a mask the graph is the one the layer always built; a mask of all ones gives
    the same values with the extra ops."""
    def count(mask):
        layer = KINDS[kind](kind, UNITS, True, 2)
        x = input_placeholder("x", (2, 5, FEATURES), "float64")
        m = None if mask is None else input_placeholder("m", (2, 5), "float64")
        y = layer(x, False, np.random.default_rng(0), mask=m)
        ops, stack = set(), [y.node]
        while stack:
            node = stack.pop()
            if id(node) not in ops:
                ops.add(id(node))
                stack.extend(node.inputs)
        return len(ops)
    assert count(True) > count(None)
    layer = KINDS[kind](kind, UNITS, True, 2)
    x = input_placeholder("x", (2, 5, FEATURES), "float64")
    m = input_placeholder("m", (2, 5), "float64")
    plain, masked = layer(x, False, np.random.default_rng(0)), layer(x, False, mask=m)
    xv = np.random.default_rng(1).normal(size=(2, 5, FEATURES))
    pv = [layer.initial[k] for k in layer.params]
    a, b = run([plain, masked], [x, m, *layer.params.values()], [xv, np.ones((2, 5)), *pv])
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_output_mask_kept_only_with_return_sequences(kind):
    m = Tensor(mask_of((1, 2), 3))
    x = Tensor(np.ones((2, 3, FEATURES)))
    assert KINDS[kind](kind, UNITS, True).output_mask(x, m, None) is m
    assert KINDS[kind](kind, UNITS, False).output_mask(x, m, None) is None
    state = Tensor(np.ones((2, UNITS)))
    assert KINDS[kind](kind, UNITS, True).output_mask([x, state], [m, None], None) is m


# ---- the initial state --------------------------------------------------------------------

def run_with_state(layer, xv, state, mv=None):
    x = input_placeholder("x", xv.shape, "float64")
    h0 = input_placeholder("h0", state.shape, "float64")
    m = None if mv is None else input_placeholder("m", mv.shape, "float64")
    y = layer([x, h0], False, np.random.default_rng(0), mask=[m, None])
    pv = random_params(layer, np.random.default_rng(7))
    loss = (y * Tensor(np.linspace(-1, 1, y.size).reshape(y.shape))).sum()
    inputs = [x, h0, *([] if m is None else [m]), *layer.params.values()]
    out = run([y, *grad(loss, [x, h0, *layer.params.values()])], inputs,
              [xv, state, *([] if mv is None else [mv]), *[pv[k] for k in layer.params]])
    return out, pv


def test_a_zero_state_is_the_default():
    xv = np.random.default_rng(3).normal(size=(2, 4, FEATURES))
    for kind, cls in KINDS.items():
        layer = cls(kind, UNITS, True)
        (y, *_), pv = run_with_state(layer, xv, np.zeros((2, UNITS)))
        x = input_placeholder("x", xv.shape, "float64")
        plain = run([layer(x, False)], [x, *layer.params.values()],
                    [xv, *[pv[k] for k in layer.params]])[0]
        np.testing.assert_allclose(y, plain, rtol=1e-14, atol=1e-15, err_msg=kind)


@pytest.mark.parametrize("kind,width", [("rnn", 3), ("lstm", 12), ("gru", 8), ("lstm", 1)])
def test_a_state_of_the_wrong_width_names_the_layer(kind, width):
    layer = KINDS[kind]("dec", UNITS, True)
    x = input_placeholder("x", (2, 4, FEATURES), "float64")
    with pytest.raises(ShapeError) as err:
        layer([x, input_placeholder("h0", (2, width), "float64")], False,
              np.random.default_rng(0))
    assert err.value.scope == "dec"
    wants = "[2, 4] or [2, 8]" if kind == "lstm" else "[2, 4]"
    assert wants in str(err.value) and f"[2, {width}]" in str(err.value)


def test_a_state_with_another_batch_is_refused():
    layer = GRU("dec", UNITS)
    x = input_placeholder("x", (2, 4, FEATURES), "float64")
    with pytest.raises(ShapeError, match=r"must be \[2, 4\].*got \[3, 4\]"):
        layer([x, input_placeholder("h0", (3, UNITS), "float64")], False,
              np.random.default_rng(0))


ENCODER_DECODER = """
layers:
  - embedding: {vocab: 9, dim: 3, name: src}
  - lstm: {units: 4, name: encoder}
  - embedding: {vocab: 9, dim: 3, inputs: [decoder_input], name: tgt}
  - lstm: {units: 4, return_sequences: true, inputs: [tgt, encoder], name: decoder}
  - dense: {units: 9}
"""


def test_an_encoder_state_starts_a_decoder_in_a_model(model_spec):
    """The sequence-to-sequence wiring: the decoder's output keeps decoder_input's mask, and
    its first step depends on the encoder (the state is read)."""
    errors = []
    model = build_model(model_spec(ENCODER_DECODER, errors), np.random.default_rng(0))
    assert errors == []
    src = np.array([[4, 5, 6], [7, 8, 0]])
    tgt = np.array([[2, 4], [2, 0]])
    # masks in the model's float dtype (float32 without a dtype hint)
    src_mask = Tensor(mask_of((3, 2), 3).astype(np.float32))
    tgt_mask = Tensor(mask_of((2, 1), 2).astype(np.float32))
    out = model({"input": Tensor(src), "decoder_input": Tensor(tgt)}, False,
                {"input": src_mask, "decoder_input": tgt_mask})
    assert out.shape == (2, 2, 9) and model.output_mask is tgt_mask
    # the state is read: a new source for sample 0 changes its first decoder step; a new
    # token in sample 1's source padding changes nothing (the encoder's state stops before it)
    src2 = src.copy()
    src2[0], src2[1, 2] = [6, 5, 4], 5
    other = model({"input": Tensor(src2), "decoder_input": Tensor(tgt)}, False,
                  {"input": src_mask, "decoder_input": tgt_mask})
    a, b = run([out, other], list(model.params.values()),
               [model.initial[k] for k in model.params])
    assert np.abs(a[0, 0] - b[0, 0]).max() > 1e-4
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6, atol=1e-7)


# ---- PyTorch ------------------------------------------------------------------------------

def torch_module(kind, layer, p, layers=1):
    torch = pytest.importorskip("torch")
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    module = cls(FEATURES, UNITS, num_layers=layers, batch_first=True).double()
    with torch.no_grad():
        for k in range(layers):
            pre = f"{kind}.l{k}."
            getattr(module, f"weight_ih_l{k}").copy_(torch.tensor(p[pre + "weight_x"].T))
            getattr(module, f"weight_hh_l{k}").copy_(torch.tensor(p[pre + "weight_h"].T))
            hh = np.zeros_like(p[pre + "bias"])
            if kind == "gru":
                hh[2 * UNITS:] = p[pre + "bias_h"]
            getattr(module, f"bias_ih_l{k}").copy_(torch.tensor(p[pre + "bias"]))
            getattr(module, f"bias_hh_l{k}").copy_(torch.tensor(hh))
    return module


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
def test_matches_torch_pack_padded_sequence(kind, layers):
    torch = pytest.importorskip("torch")
    pack = torch.nn.utils.rnn
    rng = np.random.default_rng(11)
    lengths = (7, 2, 5)  # not sorted: enforce_sorted=False
    xv, mv = rng.normal(size=(3, PADDED, FEATURES)), mask_of(lengths, PADDED)
    layer_seq = KINDS[kind](kind, UNITS, True, layers)
    x, m = input_placeholder("x", xv.shape, "float64"), input_placeholder("m", mv.shape,
                                                                           "float64")
    y = layer_seq(x, False, np.random.default_rng(0), mask=m)
    layer_last = KINDS[kind](kind, UNITS, False, layers)
    last = layer_last(x, False, np.random.default_rng(0), mask=m)
    p = random_params(layer_seq, rng)
    ys, hs = run([y], [x, m, *layer_seq.params.values()], [xv, mv, *p.values()])[0], \
        run([last], [x, m, *layer_last.params.values()], [xv, mv, *p.values()])[0]

    module = torch_module(kind, layer_seq, p, layers)
    packed = pack.pack_padded_sequence(torch.tensor(xv), torch.tensor(lengths),
                                       batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        out, state = module(packed)
    out = pack.pad_packed_sequence(out, batch_first=True, total_length=PADDED)[0].numpy()
    h_n = (state[0] if kind == "lstm" else state)[-1].numpy()  # the top layer's final h
    np.testing.assert_allclose(hs, h_n, rtol=1e-12, atol=1e-14)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(ys[i, :n], out[i, :n], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind,layers,with_c", [("rnn", 1, False), ("gru", 1, False),
                                                ("lstm", 1, False), ("lstm", 1, True),
                                                ("gru", 2, False), ("lstm", 2, True)])
def test_initial_state_matches_torch(kind, layers, with_c):
    """h_0 (lstm: with c_0 = 0, or h_0 and c_0 side by side) against torch's h_0 repeated
    over its layers; outputs, and the gradients of the input and of the state."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    xv = rng.normal(size=(3, 5, FEATURES))
    h0 = rng.normal(size=(3, UNITS))
    c0 = rng.normal(size=(3, UNITS)) if with_c else np.zeros((3, UNITS))
    state = np.concatenate([h0, c0], axis=1) if with_c else h0
    layer = KINDS[kind](kind, UNITS, True, layers)
    (y, dx, dstate, *_), p = run_with_state(layer, xv, state)

    module = torch_module(kind, layer, p, layers)
    tx = torch.tensor(xv, requires_grad=True)
    th = torch.tensor(h0, requires_grad=True)
    tc = torch.tensor(c0, requires_grad=True)
    hh = th[None].expand(layers, -1, -1)
    ty = module(tx, (hh, tc[None].expand(layers, -1, -1)) if kind == "lstm" else hh)[0]
    seed = torch.tensor(np.linspace(-1, 1, ty.numel()).reshape(ty.shape))
    (ty * seed).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(dstate[:, :UNITS], th.grad.numpy(), rtol=1e-10, atol=1e-13)
    if with_c:
        np.testing.assert_allclose(dstate[:, UNITS:], tc.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_initial_state_with_padding_matches_torch():
    """Both together: a decoder started from a state, over a padded batch (packed in torch)."""
    torch = pytest.importorskip("torch")
    pack = torch.nn.utils.rnn
    rng = np.random.default_rng(13)
    lengths = (3, 6, 1)
    xv, mv, h0 = rng.normal(size=(3, 6, FEATURES)), mask_of(lengths, 6), rng.normal(size=(3,
                                                                                         UNITS))
    layer = LSTM("lstm", UNITS, False)
    (h, *_), p = run_with_state(layer, xv, h0, mv)
    module = torch_module("lstm", layer, p)
    packed = pack.pack_padded_sequence(torch.tensor(xv), torch.tensor(lengths),
                                       batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        _, (h_n, _) = module(packed, (torch.tensor(h0)[None], torch.zeros(1, 3, UNITS,
                                                                          dtype=torch.float64)))
    np.testing.assert_allclose(h, h_n[0].numpy(), rtol=1e-12, atol=1e-14)
