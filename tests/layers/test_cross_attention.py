"""transformer_decoder against torch.nn.TransformerDecoderLayer (causal tgt_mask,
tgt_key_padding_mask, memory_key_padding_mask) in float64; the Luong/Bahdanau `attention`
layer against a NumPy implementation of its equations and finite differences; both against
the same sequences run one at a time without padding; errors and config keys."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.errors import ShapeError
from nnctl.graph.tensor import input_placeholder
from nnctl.layers import build_model
from nnctl.layers.cross_attention import Attention, TransformerDecoder
from tests.layers.test_attention_masks import (TOL, compare_grads, length_mask,
                                               load_torch_attention, load_torch_block,
                                               padded_vs_one_at_a_time, padding_flags,
                                               random_params, run_layer,
                                               torch_attention_grads)

TARGET_LENGTHS, MEMORY_LENGTHS = [3, 5, 7], [4, 6, 2]  # padded to 8 and 6


# ---- transformer_decoder --------------------------------------------------------------------

def test_decoder_parameters():
    layer = TransformerDecoder("d", 2, 8, dropout=0.0)
    y = layer([input_placeholder("x", (2, 5, 4), "float64"),
               input_placeholder("m", (2, 3, 6), "float64")], False, np.random.default_rng(0))
    assert y.shape == (2, 5, 4)
    shapes = {k: v.shape for k, v in layer.params.items()}
    for a in ("self_attn", "cross_attn"):
        memory = 6 if a == "cross_attn" else 4
        assert shapes.pop(f"d.{a}.weight_q") == (4, 4)
        assert shapes.pop(f"d.{a}.weight_k") == shapes.pop(f"d.{a}.weight_v") == (memory, 4)
        assert shapes.pop(f"d.{a}.weight_o") == (4, 4)
        assert all(shapes.pop(f"d.{a}.bias_{c}") == (4,) for c in "qkvo")
    assert shapes == {"d.norm1.gamma": (4,), "d.norm1.beta": (4,), "d.norm2.gamma": (4,),
                      "d.norm2.beta": (4,), "d.norm3.gamma": (4,), "d.norm3.beta": (4,),
                      "d.ff1.weight": (4, 8), "d.ff1.bias": (8,), "d.ff2.weight": (8, 4),
                      "d.ff2.bias": (4,)}
    assert set(layer.initial) == set(layer.params) and not layer.states


@pytest.mark.parametrize("masked", [True, False])
def test_decoder_matches_torch(masked):
    """Every position is compared, padded query rows included: their keys are real steps
    (the padding is at the end, the causal mask keeps step 0), so torch's values are finite
    there and equal ours."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    batch, time, steps, d, heads, ff = 3, 8, 6, 8, 2, 12
    rng = np.random.default_rng(21)
    xv, mv = rng.normal(size=(batch, time, d)), rng.normal(size=(batch, steps, d))
    seed = rng.normal(size=(batch, time, d))
    masks = [length_mask(TARGET_LENGTHS, time), length_mask(MEMORY_LENGTHS, steps)] \
        if masked else [None, None]
    layer = TransformerDecoder("d", heads, ff, dropout=0.0)
    run_layer(layer, [xv, mv], masks, seed)
    p = random_params(layer, rng)
    y, (dx, dm), dp = run_layer(layer, [xv, mv], masks, seed, p)

    block = torch.nn.TransformerDecoderLayer(d, heads, dim_feedforward=ff, dropout=0.0,
                                             activation="relu", batch_first=True,
                                             norm_first=False).double()
    load_torch_attention(torch, block.self_attn, p, "d.self_attn.")
    load_torch_attention(torch, block.multihead_attn, p, "d.cross_attn.")
    block_grads = load_torch_block(torch, block, p, "d.", 3)
    block.train()  # dropout is 0; no inference fast path
    x, m = torch.tensor(xv, requires_grad=True), torch.tensor(mv, requires_grad=True)
    flags = [padding_flags(torch, k) if masked else None for k in masks]
    ty = block(x, m, tgt_mask=torch.triu(torch.ones(time, time, dtype=torch.bool), 1),
               tgt_key_padding_mask=flags[0], memory_key_padding_mask=flags[1])
    (ty * torch.tensor(seed)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, x.grad.numpy(), **TOL)
    np.testing.assert_allclose(dm, m.grad.numpy(), **TOL)
    compare_grads(dp, {**torch_attention_grads(block.self_attn, "d.self_attn.", d),
                       **torch_attention_grads(block.multihead_attn, "d.cross_attn.", d),
                       **block_grads()})
    assert len(dp) == 26


def test_decoder_padded_batch_equals_each_sequence_alone():
    worst = padded_vs_one_at_a_time(lambda: TransformerDecoder("d", 2, 6, 0.0),
                                    [(3, 8, 4), (3, 6, 4)], [TARGET_LENGTHS, MEMORY_LENGTHS], 4)
    assert worst < 1e-12


def test_decoder_is_causal_and_reads_only_real_memory():
    rng = np.random.default_rng(22)
    xv, mv, seed = rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 4, 4)), np.ones((2, 5, 4))
    masks = [None, length_mask([2, 4], 4)]
    layer = TransformerDecoder("d", 2, 6, 0.0)
    run_layer(layer, [xv, mv], masks, seed)
    p = random_params(layer, rng)
    y = run_layer(layer, [xv, mv], masks, seed, p)[0]
    later = xv.copy()
    later[:, 3:] += 10.0
    np.testing.assert_array_equal(run_layer(layer, [later, mv], masks, seed, p)[0][:, :3],
                                  y[:, :3])
    padded = mv.copy()
    padded[0, 2:] += 10.0  # sequence 0's memory is 2 steps long
    changed = run_layer(layer, [xv, padded], masks, seed, p)[0]
    np.testing.assert_array_equal(changed[0], y[0])
    padded[1, 2:] += 10.0  # real steps of sequence 1
    assert np.abs(run_layer(layer, [xv, padded], masks, seed, p)[0][1] - y[1]).min() > 0


def test_decoder_dropout_masks_while_training():
    from nnctl.graph import Graph
    layer = TransformerDecoder("d", 2, 8)  # dropout 0.1
    x = [input_placeholder("x", (2, 5, 4), "float64"), input_placeholder("m", (2, 3, 4),
                                                                         "float64")]
    y = layer(x, True, np.random.default_rng(0))
    shapes = sorted(n.aval.shape for n in Graph([y.node]).nodes if n.op == "random")
    # both attentions' weights, after each of the three parts, after ff1's relu (as PyTorch)
    assert shapes == [(2, 2, 5, 3), (2, 2, 5, 5), (2, 5, 4), (2, 5, 4), (2, 5, 4), (2, 5, 8)]
    assert not any(n.op == "random" for n in Graph([layer(x, False).node]).nodes)


# ---- attention (Luong) --------------------------------------------------------------------

def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def luong_reference(h, s, p: dict, score: str, memory_lengths) -> np.ndarray:
    """The layer's equations in NumPy, one sequence at a time over its real memory steps
    only (masking by leaving the padding out, not by a mask)."""
    out = []
    for i, n in enumerate(memory_lengths):
        hi, si = h[i], s[i, :n]  # [T, H], [n, M]
        if score == "dot":
            e = hi @ si.T
        elif score == "general":
            e = hi @ p["l.weight"] @ si.T
        else:
            hidden = np.tanh((hi @ p["l.weight_query"])[:, None, :]
                             + (si @ p["l.weight_memory"])[None, :, :])
            e = hidden @ p["l.v"]
        context = _softmax(e) @ si
        out.append(np.tanh(np.concatenate([context, hi], -1) @ p["l.weight_c"]))
    return np.stack(out)


@pytest.mark.parametrize("score,features,units", [("dot", 4, None), ("general", 3, 5),
                                                  ("additive", 3, None)])
def test_attention_matches_numpy(score, features, units):
    rng = np.random.default_rng(31)
    h, s = rng.normal(size=(3, 5, 4)), rng.normal(size=(3, 6, features))
    masks = [length_mask([2, 5, 4], 5), length_mask(MEMORY_LENGTHS, 6)]
    seed = rng.normal(size=(3, 5, units or 4))
    layer = Attention("l", score, units, score_units=7 if score == "additive" else None)
    run_layer(layer, [h, s], masks, seed)
    p = random_params(layer, rng)
    expected_params = {"dot": {"l.weight_c": (features + 4, units or 4)},
                       "general": {"l.weight": (4, features),
                                   "l.weight_c": (features + 4, units or 4)},
                       "additive": {"l.weight_query": (4, 7), "l.weight_memory": (features, 7),
                                    "l.v": (7,), "l.weight_c": (features + 4, 4)}}[score]
    assert {k: v.shape for k, v in p.items()} == expected_params
    y = run_layer(layer, [h, s], masks, seed, p)[0]
    np.testing.assert_allclose(y, luong_reference(h, s, p, score, MEMORY_LENGTHS),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
def test_attention_gradients_match_finite_differences(score):
    """Directional central differences in float64 for the queries, the memory and every
    parameter, with the memory padded."""
    rng = np.random.default_rng(32)
    h, s = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 5, 3))
    masks = [None, length_mask([3, 5], 5)]
    seed = rng.normal(size=(2, 4, 3))
    layer = Attention("l", score)
    run_layer(layer, [h, s], masks, seed)
    p = random_params(layer, rng)
    names = list(p)
    _, dxs, dps = run_layer(layer, [h, s], masks, seed, p)
    analytic = [*dxs, *[dps[k] for k in names]]

    def loss(values):
        inputs, params = values[:2], dict(zip(names, values[2:]))
        return float(np.sum(run_layer(layer, inputs, masks, seed, params)[0] * seed))

    values, eps = [h, s, *[p[k] for k in names]], 1e-6
    for i, what in enumerate(["queries", "memory", *names]):
        assert np.abs(analytic[i]).max() > 1e-4, what
        u = rng.normal(size=values[i].shape)
        u /= np.linalg.norm(u)
        up, down = list(values), list(values)
        up[i], down[i] = values[i] + eps * u, values[i] - eps * u
        numeric = (loss(up) - loss(down)) / (2 * eps)
        np.testing.assert_allclose(np.sum(analytic[i] * u), numeric, rtol=1e-6, atol=1e-9,
                                   err_msg=what)
    assert np.all(dxs[1][0, 3:] == 0)  # padded memory steps


@pytest.mark.parametrize("score", ["dot", "general", "additive"])
def test_attention_padded_batch_equals_each_sequence_alone(score):
    worst = padded_vs_one_at_a_time(lambda: Attention("l", score, units=5),
                                    [(3, 8, 4), (3, 6, 4)], [TARGET_LENGTHS, MEMORY_LENGTHS], 5)
    assert worst < 1e-13


# ---- errors and config ----------------------------------------------------------------------

def test_two_input_layers_refuse_one_input_and_mismatches():
    rng = np.random.default_rng(0)
    x = input_placeholder("x", (2, 5, 4), "float64")
    for layer in (TransformerDecoder("d", 2, 8), Attention("l")):
        with pytest.raises(ShapeError, match=r"reads two inputs \[queries, memory\].*got one "
                                              r"input"):
            layer(x, False, rng)
    with pytest.raises(ShapeError, match=r"does not match the queries \[2, 5, 4\] \(float64\) "
                                         r"in batch"):
        Attention("l")([x, input_placeholder("m", (3, 5, 4), "float64")], False, rng)
    with pytest.raises(ShapeError, match=r"score 'dot' needs .* got 4 and 6"):
        Attention("l", "dot")([x, input_placeholder("m", (2, 3, 6), "float64")], False, rng)
    with pytest.raises(ShapeError, match=r"dim \(6\) must be divisible by heads \(4\)"):
        TransformerDecoder("d", 4, 8)([input_placeholder("x", (2, 3, 6), "float64"),
                                       input_placeholder("m", (2, 3, 6), "float64")], False,
                                      rng)


SEQ2SEQ = """layers:
  - embedding: {dim: 8, vocab: 20, name: src}
  - transformer_encoder: {heads: 2, ff_units: 16, name: enc}
  - embedding: {dim: 8, vocab: 11, name: tgt, inputs: [decoder_input]}
  - transformer_decoder: {heads: 2, ff_units: 16, inputs: [tgt, enc], name: dec}
  - attention: {inputs: [dec, enc], score: additive, units: 12}
  - dense: {units: 11}
"""


def test_a_seq2seq_model_from_config_carries_the_masks(model_spec):
    spec = model_spec(SEQ2SEQ)
    dec, att = spec.layers[3], spec.layers[4]
    assert (dec.heads, dec.ff_units, dec.dropout) == (2, 16, 0.1)
    assert (att.score, att.units, att.score_units) == ("additive", 12, None)
    model = build_model(spec, np.random.default_rng(0))
    src = input_placeholder("input", (3, 7), "int64")
    tgt = input_placeholder("decoder_input", (3, 5), "int64")
    masks = {"input": input_placeholder("input_mask", (3, 7), "float32"),
             "decoder_input": input_placeholder("decoder_mask", (3, 5), "float32")}
    y = model({"input": src, "decoder_input": tgt}, masks=masks)
    assert y.shape == (3, 5, 11) and y.dtype == "float32"
    assert model.output_mask is masks["decoder_input"]  # the queries' mask, through to the end
    assert model.params["dec.cross_attn.weight_k"].shape == (8, 8)
    assert model.params["attention_4.weight_c"].shape == (16, 12)


def test_config_errors_name_the_key(model_spec):
    errors: list = []
    model_spec("layers:\n"
               "  - transformer_decoder: {heads: 2, ff_units: 8}\n"
               "  - attention: {score: cosine}\n", errors)
    assert errors == [
        "m.yaml:2: layers[0].transformer_decoder.inputs: transformer_decoder reads two inputs "
        "[queries, memory] (e.g. inputs: [decoder, encoder])",
        "m.yaml:3: layers[1].attention.score: unknown value 'cosine' (expected one of: dot, "
        "general, additive)"]
    errors.clear()
    model_spec("layers:\n  - attention: {inputs: [input, input, input]}\n", errors)
    assert errors == ["m.yaml:2: layers[0].attention.inputs: attention reads 1 to 2 inputs, "
                      "got 3"]
