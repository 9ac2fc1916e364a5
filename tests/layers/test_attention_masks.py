"""Padding masks in multi_head_attention and transformer_encoder: against PyTorch's
key_padding_mask / src_key_padding_mask in float64 (outputs, and the gradients of the input and
of every parameter), and a padded batch against the same sequences run one at a time without
padding (outputs at the real positions and every gradient, to 1e-12).

The helpers here (run_layer, padded_vs_one_at_a_time, the torch loaders) serve
test_cross_attention.py too.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.layers.attention import MultiHeadAttention, TransformerEncoder

CPU = get_backend("cpu")
TOL = {"rtol": 1e-10, "atol": 1e-12}  # against torch: another summation order
EXACT = {"rtol": 1e-12, "atol": 1e-14}  # padded against unpadded: the same arithmetic


def run_layer(layer, inputs: list, masks: list, seed: np.ndarray, params: dict | None = None,
              dtype: str = "float64"):
    """Call `layer` on placeholders like `inputs` (one array, or a list of two for
    [queries, memory]) with padding masks `masks` (arrays [batch, time] or None, one per
    input), compile the output and the gradients of loss = sum(y * seed), and run it with
    `params` (default: the initial values). Returns (y, [dloss/dinput...],
    {name: dloss/dparam})."""
    xs = [input_placeholder(f"x{i}", v.shape, dtype) for i, v in enumerate(inputs)]
    ms = [None if m is None else input_placeholder(f"m{i}", m.shape, dtype)
          for i, m in enumerate(masks)]
    several = len(xs) > 1
    y = layer(xs if several else xs[0], False, np.random.default_rng(0),
              mask=ms if several else ms[0])
    names = list(layer.params)
    loss = (y * Tensor(seed.astype(dtype))).sum()
    grads = grad(loss, [*xs, *layer.params.values()])
    fed_masks = [m for m in ms if m is not None]
    plan = compile_graph([y, *grads], [*xs, *fed_masks, *layer.params.values()], CPU)
    params = params or layer.initial
    out = plan([*[v.astype(dtype) for v in inputs],
                *[m.astype(dtype) for m in masks if m is not None],
                *[params[k] for k in names]])
    n = len(xs)
    return out[0], out[1:1 + n], dict(zip(names, out[1 + n:]))


def random_params(layer, rng) -> dict:
    """Random values for every parameter (the initial biases are zeros, which hide them)."""
    return {k: rng.normal(size=v.shape) * 0.5 + k.endswith("gamma")
            for k, v in layer.initial.items()}


def length_mask(lengths, time: int) -> np.ndarray:
    """[batch, time]: 1.0 at the first lengths[i] steps of row i, 0.0 after (padding)."""
    return (np.arange(time)[None, :] < np.asarray(lengths)[:, None]).astype(np.float64)


def padded_vs_one_at_a_time(make, shapes: list, lengths: list, features_out: int, seed=0):
    """Run a fresh layer from `make()` on a padded batch (inputs of `shapes`, [batch, time,
    features] each, padded at the end past `lengths` (one list per input) with random values
    that must not matter), and on each sequence alone without padding (mask None). The loss
    sums the outputs at real positions times fixed random weights. Asserts that the outputs
    at the real positions, the input gradients at the real steps and every parameter
    gradient (summed over the sequences) agree to 1e-12, and that the padded steps get
    gradient exactly 0. Returns the largest difference seen."""
    rng = np.random.default_rng(seed)
    inputs = [rng.normal(size=s) for s in shapes]
    masks = [length_mask(n, s[1]) for n, s in zip(lengths, shapes)]
    batch, time = shapes[0][:2]
    weights = rng.normal(size=(batch, time, features_out)) * masks[0][:, :, None]
    layer = make()
    run_layer(layer, inputs, masks, weights)  # builds it
    params = random_params(layer, rng)
    y, dxs, dps = run_layer(layer, inputs, masks, weights, params)
    worst = 0.0
    alone_dps = {k: np.zeros_like(v) for k, v in dps.items()}
    for i in range(batch):
        cut = [v[i:i + 1, :n[i]] for v, n in zip(inputs, lengths)]
        y1, dx1, dp1 = run_layer(layer, cut, [None] * len(cut),
                                 weights[i:i + 1, :lengths[0][i]], params)
        real = lengths[0][i]
        np.testing.assert_allclose(y[i:i + 1, :real], y1, err_msg=f"output of sequence {i}",
                                   **EXACT)
        worst = max(worst, np.abs(y[i:i + 1, :real] - y1).max())
        for k, (dx, d1, n) in enumerate(zip(dxs, dx1, lengths)):
            np.testing.assert_allclose(dx[i:i + 1, :n[i]], d1, err_msg=f"input {k} gradient "
                                       f"of sequence {i}", **EXACT)
            worst = max(worst, np.abs(dx[i:i + 1, :n[i]] - d1).max())
            assert np.all(dx[i, n[i]:] == 0), f"padded steps of input {k} get a gradient"
        for k in alone_dps:
            alone_dps[k] += dp1[k]
    for k, g in dps.items():
        np.testing.assert_allclose(g, alone_dps[k], err_msg=k, **EXACT)
        worst = max(worst, np.abs(g - alone_dps[k]).max())
    assert all(np.abs(g).max() > 1e-8 for k, g in dps.items() if not k.endswith("bias_k"))
    return worst


# ---- padded batch = one sequence at a time ------------------------------------------------

LENGTHS = [3, 5, 7]  # padded to 8


@pytest.mark.parametrize("heads,causal", [(1, False), (2, False), (2, True)])
def test_attention_padded_batch_equals_each_sequence_alone(heads, causal):
    worst = padded_vs_one_at_a_time(lambda: MultiHeadAttention("a", heads, causal=causal),
                                    [(3, 8, 4)], [LENGTHS], 4)
    assert worst < 1e-13


@pytest.mark.parametrize("causal", [False, True])
def test_encoder_padded_batch_equals_each_sequence_alone(causal):
    worst = padded_vs_one_at_a_time(lambda: TransformerEncoder("e", 2, 6, 0.0, causal),
                                    [(3, 8, 4)], [LENGTHS], 4)
    assert worst < 1e-12


def test_padding_content_does_not_reach_real_positions():
    """Changing the padded steps' values by a lot changes no real position's output (the
    weights there are exactly 0), while without the mask it does."""
    rng = np.random.default_rng(3)
    xv = rng.normal(size=(3, 8, 4))
    mask = length_mask(LENGTHS, 8)
    seed = np.ones((3, 8, 4))
    layer = TransformerEncoder("e", 2, 6, 0.0)
    run_layer(layer, [xv], [mask], seed)
    p = random_params(layer, rng)
    changed = np.where(mask[:, :, None] > 0, xv, rng.normal(size=xv.shape) * 100)
    a = run_layer(layer, [xv], [mask], seed, p)[0]
    b = run_layer(layer, [changed], [mask], seed, p)[0]
    real = mask > 0
    np.testing.assert_array_equal(a[real], b[real])
    open_a, open_b = (run_layer(layer, [v], [None], seed, p)[0] for v in (xv, changed))
    assert np.abs(open_a[real] - open_b[real]).min() > 1e-6


@pytest.mark.parametrize("make", [lambda: MultiHeadAttention("a", 2, causal=True),
                                  lambda: TransformerEncoder("e", 2, 6, 0.0)],
                         ids=["attention", "encoder"])
def test_an_all_ones_mask_is_no_mask_bit_for_bit(make):
    rng = np.random.default_rng(4)
    xv, seed = rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 4))
    layer = make()
    run_layer(layer, [xv], [None], seed)
    p = random_params(layer, rng)
    y0, dx0, dp0 = run_layer(layer, [xv], [None], seed, p)
    y1, dx1, dp1 = run_layer(layer, [xv], [np.ones((2, 5))], seed, p)
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(dx0[0], dx1[0])
    for k in dp0:
        np.testing.assert_array_equal(dp0[k], dp1[k])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_padded_queries_and_empty_sequences_stay_finite(dtype):
    """A padded query row, and a sequence of length 0 (every key masked: the softmax of equal
    scores), give finite outputs and gradients, never NaN."""
    rng = np.random.default_rng(5)
    xv, seed = rng.normal(size=(3, 6, 4)), rng.normal(size=(3, 6, 4))
    for causal in (False, True):
        layer = TransformerEncoder("e", 2, 6, 0.0, causal)
        y, dx, dp = run_layer(layer, [xv], [length_mask([0, 2, 6], 6)], seed, dtype=dtype)
        assert y.dtype == dtype
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx[0]))
        assert all(np.all(np.isfinite(g)) for g in dp.values())


# ---- against PyTorch ------------------------------------------------------------------------

def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def load_torch_attention(torch, mha, p: dict, pre: str) -> None:
    """nnctl attention parameters (prefix `pre`) into a torch.nn.MultiheadAttention."""
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.tensor(np.concatenate(
            [p[f"{pre}weight_{c}"].T for c in "qkv"])))
        mha.in_proj_bias.copy_(torch.tensor(np.concatenate([p[f"{pre}bias_{c}"]
                                                            for c in "qkv"])))
        mha.out_proj.weight.copy_(torch.tensor(p[f"{pre}weight_o"].T))
        mha.out_proj.bias.copy_(torch.tensor(p[f"{pre}bias_o"]))


def torch_attention_grads(mha, pre: str, d: int) -> dict:
    """The gradients torch left on `mha`, under nnctl's parameter names."""
    w, b = mha.in_proj_weight.grad.numpy(), mha.in_proj_bias.grad.numpy()
    out = {}
    for i, c in enumerate("qkv"):
        out[f"{pre}weight_{c}"] = w[i * d:(i + 1) * d].T
        out[f"{pre}bias_{c}"] = b[i * d:(i + 1) * d]
    out[f"{pre}weight_o"] = mha.out_proj.weight.grad.numpy().T
    out[f"{pre}bias_o"] = mha.out_proj.bias.grad.numpy()
    return out


def load_torch_block(torch, block, p: dict, pre: str, norms: int) -> dict:
    """The feed-forward and norm parameters into a torch transformer layer; returns a function
    giving torch's gradients of them under nnctl's names."""
    pairs = {"linear1": "ff1", "linear2": "ff2"}
    with torch.no_grad():
        for theirs, ours in pairs.items():
            getattr(block, theirs).weight.copy_(torch.tensor(p[f"{pre}{ours}.weight"].T))
            getattr(block, theirs).bias.copy_(torch.tensor(p[f"{pre}{ours}.bias"]))
        for i in range(1, norms + 1):
            getattr(block, f"norm{i}").weight.copy_(torch.tensor(p[f"{pre}norm{i}.gamma"]))
            getattr(block, f"norm{i}").bias.copy_(torch.tensor(p[f"{pre}norm{i}.beta"]))

    def grads() -> dict:
        out = {}
        for theirs, ours in pairs.items():
            out[f"{pre}{ours}.weight"] = getattr(block, theirs).weight.grad.numpy().T
            out[f"{pre}{ours}.bias"] = getattr(block, theirs).bias.grad.numpy()
        for i in range(1, norms + 1):
            out[f"{pre}norm{i}.gamma"] = getattr(block, f"norm{i}").weight.grad.numpy()
            out[f"{pre}norm{i}.beta"] = getattr(block, f"norm{i}").bias.grad.numpy()
        return out
    return grads


def padding_flags(torch, mask: np.ndarray):
    """torch's key_padding_mask: True where the step is padding (may not be attended)."""
    return torch.tensor(mask == 0)


def compare_grads(ours: dict, theirs: dict) -> float:
    assert set(ours) == set(theirs)
    for k in ours:
        np.testing.assert_allclose(ours[k], theirs[k], err_msg=k, **TOL)
    return max(float(np.abs(ours[k] - theirs[k]).max()) for k in ours)


@pytest.mark.parametrize("heads,causal", [(1, False), (2, False), (2, True), (4, True)])
def test_attention_with_padding_matches_torch(heads, causal):
    """Every position is compared, padded query rows included: their keys are the real steps,
    so torch's values there are finite and equal ours."""
    torch = _torch()
    batch, time, d = 3, 8, 8
    rng = np.random.default_rng(11)
    xv, seed = rng.normal(size=(batch, time, d)), rng.normal(size=(batch, time, d))
    mask = length_mask(LENGTHS, time)
    layer = MultiHeadAttention("a", heads, causal=causal)
    run_layer(layer, [xv], [mask], seed)
    p = random_params(layer, rng)
    y, dx, dp = run_layer(layer, [xv], [mask], seed, p)

    mha = torch.nn.MultiheadAttention(d, heads, dropout=0.0, batch_first=True).double()
    load_torch_attention(torch, mha, p, "a.")
    x = torch.tensor(xv, requires_grad=True)
    attn_mask = torch.triu(torch.ones(time, time, dtype=torch.bool), 1) if causal else None
    ty = mha(x, x, x, key_padding_mask=padding_flags(torch, mask), attn_mask=attn_mask,
             need_weights=False)[0]
    (ty * torch.tensor(seed)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx[0], x.grad.numpy(), **TOL)
    compare_grads(dp, torch_attention_grads(mha, "a.", d))


@pytest.mark.parametrize("causal", [False, True])
def test_encoder_with_padding_matches_torch(causal):
    torch = _torch()
    batch, time, d, heads, ff = 3, 8, 8, 2, 12
    rng = np.random.default_rng(12)
    xv, seed = rng.normal(size=(batch, time, d)), rng.normal(size=(batch, time, d))
    mask = length_mask(LENGTHS, time)
    layer = TransformerEncoder("e", heads, ff, dropout=0.0, causal=causal)
    run_layer(layer, [xv], [mask], seed)
    p = random_params(layer, rng)
    y, dx, dp = run_layer(layer, [xv], [mask], seed, p)

    block = torch.nn.TransformerEncoderLayer(d, heads, dim_feedforward=ff, dropout=0.0,
                                             activation="relu", batch_first=True,
                                             norm_first=False).double()
    load_torch_attention(torch, block.self_attn, p, "e.attn.")
    block_grads = load_torch_block(torch, block, p, "e.", 2)
    block.train()  # the fused inference fast path is for float32 evaluation; dropout is 0
    x = torch.tensor(xv, requires_grad=True)
    src_mask = torch.triu(torch.ones(time, time, dtype=torch.bool), 1) if causal else None
    ty = block(x, src_mask=src_mask, src_key_padding_mask=padding_flags(torch, mask))
    (ty * torch.tensor(seed)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx[0], x.grad.numpy(), **TOL)
    compare_grads(dp, {**torch_attention_grads(block.self_attn, "e.attn.", d),
                       **block_grads()})
