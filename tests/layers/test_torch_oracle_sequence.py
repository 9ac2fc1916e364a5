"""PyTorch as an independent oracle for the sequence layers: rnn, lstm, gru,
multi_head_attention and transformer_encoder against torch.nn.RNN / LSTM / GRU /
MultiheadAttention / TransformerEncoderLayer with the same weights, in float64. Outputs, the
input gradient and every parameter gradient must agree to ~1e-10.

Weight layouts: nnctl's weight_x [in, gates * units] is torch's weight_ih [gates * units, in]
transposed (same gate order). torch has two biases per cell; nnctl's one bias is torch's
bias_ih with bias_hh zero, and gru's bias_h is the n-gate part of bias_hh.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from nnctl.autodiff import grad  # noqa: E402
from nnctl.backend import get_backend  # noqa: E402
from nnctl.compile import compile_graph  # noqa: E402
from nnctl.graph.tensor import Tensor, input_placeholder  # noqa: E402
from nnctl.layers.attention import MultiHeadAttention, TransformerEncoder  # noqa: E402
from nnctl.layers.recurrent import GRU, LSTM, RNN  # noqa: E402

CPU = get_backend("cpu")
TOL = {"rtol": 1e-10, "atol": 1e-12}


def run_nnctl(layer, xv: np.ndarray, seed: np.ndarray, params: dict | None = None):
    """Build `layer` on float64 input like `xv`, compile forward and backward, run it with
    `params` (default: the initial values). Returns (y, dloss/dx, {name: dloss/dparam}) for
    loss = sum(y * seed)."""
    x = input_placeholder("x", xv.shape, "float64")
    y = layer(x, False, np.random.default_rng(0))
    names = list(layer.params)
    loss = (y * Tensor(seed)).sum()
    grads = grad(loss, [x, *layer.params.values()])
    plan = compile_graph([y, *grads], [x, *layer.params.values()], CPU)
    params = params or layer.initial
    out = plan([xv, *[params[k] for k in names]])
    return out[0], out[1], dict(zip(names, out[2:]))


def run_torch(forward, xv: np.ndarray, seed: np.ndarray):
    """(y, dloss/dx) for loss = sum(forward(x) * seed); parameter gradients stay on the module."""
    x = torch.tensor(xv, requires_grad=True)
    y = forward(x)
    (y * torch.tensor(seed)).sum().backward()
    return y.detach().numpy(), x.grad.numpy()


def _t(a: np.ndarray):
    return torch.nn.Parameter(torch.tensor(a))


def _close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, err_msg=what, **TOL)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- recurrent ----------------------------------------------------------------------------

RECURRENT = {"rnn": (RNN, torch.nn.RNN), "lstm": (LSTM, torch.nn.LSTM), "gru": (GRU, torch.nn.GRU)}


@pytest.mark.parametrize("kind", RECURRENT)
@pytest.mark.parametrize("layers,return_sequences,bias", [(1, False, True), (2, True, True),
                                                          (2, False, False)])
def test_recurrent_matches_torch(kind, layers, return_sequences, bias):
    ours, theirs = RECURRENT[kind]
    batch, time, features, units = 3, 5, 4, 6
    rng = np.random.default_rng(10)
    xv = rng.normal(size=(batch, time, features))
    seed = rng.normal(size=(batch, time, units) if return_sequences else (batch, units))
    layer = ours(kind, units, return_sequences, layers, bias)
    y, dx, dp = run_nnctl(layer, xv, seed)
    p = layer.initial

    module = theirs(features, units, num_layers=layers, bias=bias, batch_first=True).double()
    with torch.no_grad():
        for k in range(layers):
            pre = f"{kind}.l{k}."
            setattr(module, f"weight_ih_l{k}", _t(p[pre + "weight_x"].T.copy()))
            setattr(module, f"weight_hh_l{k}", _t(p[pre + "weight_h"].T.copy()))
            if bias:
                hh = np.zeros_like(p[pre + "bias"])
                if kind == "gru":
                    hh[2 * units:] = p[pre + "bias_h"]
                setattr(module, f"bias_ih_l{k}", _t(p[pre + "bias"]))
                setattr(module, f"bias_hh_l{k}", _t(hh))

    def forward(x):
        out = module(x)[0]
        return out if return_sequences else out[:, -1]

    ty, tdx = run_torch(forward, xv, seed)
    _close(y, ty, "output")
    _close(dx, tdx, "input gradient")
    for k in range(layers):
        pre, g = f"{kind}.l{k}.", lambda name: getattr(module, f"{name}_l{k}").grad.numpy()
        _close(dp[pre + "weight_x"], g("weight_ih").T, pre + "weight_x")
        _close(dp[pre + "weight_h"], g("weight_hh").T, pre + "weight_h")
        if bias:
            _close(dp[pre + "bias"], g("bias_ih"), pre + "bias")
            if kind == "gru":  # the r and z parts of the two biases act as one
                _close(dp[pre + "bias"][:2 * units], g("bias_hh")[:2 * units], pre + "bias")
                _close(dp[pre + "bias_h"], g("bias_hh")[2 * units:], pre + "bias_h")
            else:
                _close(dp[pre + "bias"], g("bias_hh"), pre + "bias")
    assert len(dp) == layers * (2 + bias + (bias and kind == "gru"))


# ---- attention ----------------------------------------------------------------------------

def _random_params(layer, rng) -> dict:
    return {k: rng.normal(size=v.shape) * 0.5 + k.endswith("gamma")
            for k, v in layer.initial.items()}


def _load_attention(mha, p: dict, pre: str) -> None:
    """nnctl attention parameters (prefix `pre`) into a torch.nn.MultiheadAttention."""
    mha.in_proj_weight.copy_(torch.tensor(np.concatenate(
        [p[f"{pre}weight_{c}"].T for c in "qkv"])))
    mha.in_proj_bias.copy_(torch.tensor(np.concatenate([p[f"{pre}bias_{c}"] for c in "qkv"])))
    mha.out_proj.weight.copy_(torch.tensor(p[f"{pre}weight_o"].T))
    mha.out_proj.bias.copy_(torch.tensor(p[f"{pre}bias_o"]))


def _check_attention_grads(dp: dict, mha, pre: str, d: int) -> None:
    w, b = mha.in_proj_weight.grad.numpy(), mha.in_proj_bias.grad.numpy()
    for i, c in enumerate("qkv"):
        _close(dp[f"{pre}weight_{c}"], w[i * d:(i + 1) * d].T, f"{pre}weight_{c}")
        _close(dp[f"{pre}bias_{c}"], b[i * d:(i + 1) * d], f"{pre}bias_{c}")
    _close(dp[f"{pre}weight_o"], mha.out_proj.weight.grad.numpy().T, f"{pre}weight_o")
    _close(dp[f"{pre}bias_o"], mha.out_proj.bias.grad.numpy(), f"{pre}bias_o")


def _causal(time: int):
    return torch.triu(torch.ones(time, time, dtype=torch.bool), 1)  # True: may not attend


@pytest.mark.parametrize("heads,causal", [(1, False), (2, False), (2, True), (4, True)])
def test_multi_head_attention_matches_torch(heads, causal):
    batch, time, d = 2, 5, 8
    rng = np.random.default_rng(11)
    xv, seed = rng.normal(size=(batch, time, d)), rng.normal(size=(batch, time, d))
    layer = MultiHeadAttention("a", heads, causal=causal)
    layer(input_placeholder("x", xv.shape, "float64"), False, np.random.default_rng(0))
    p = _random_params(layer, rng)
    y, dx, dp = run_nnctl(layer, xv, seed, p)

    mha = torch.nn.MultiheadAttention(d, heads, dropout=0.0, batch_first=True).double()
    with torch.no_grad():
        _load_attention(mha, p, "a.")
    mask = _causal(time) if causal else None
    ty, tdx = run_torch(lambda x: mha(x, x, x, attn_mask=mask, need_weights=False)[0], xv, seed)
    _close(y, ty, "output")
    _close(dx, tdx, "input gradient")
    _check_attention_grads(dp, mha, "a.", d)


@pytest.mark.parametrize("causal", [False, True])
def test_transformer_encoder_matches_torch(causal):
    batch, time, d, heads, ff = 2, 5, 8, 2, 12
    rng = np.random.default_rng(12)
    xv, seed = rng.normal(size=(batch, time, d)), rng.normal(size=(batch, time, d))
    layer = TransformerEncoder("e", heads, ff, dropout=0.0, causal=causal)
    layer(input_placeholder("x", xv.shape, "float64"), False, np.random.default_rng(0))
    p = _random_params(layer, rng)
    y, dx, dp = run_nnctl(layer, xv, seed, p)

    block = torch.nn.TransformerEncoderLayer(d, heads, dim_feedforward=ff, dropout=0.0,
                                             activation="relu", batch_first=True,
                                             norm_first=False).double()
    pairs = {"linear1": "ff1", "linear2": "ff2"}
    with torch.no_grad():
        _load_attention(block.self_attn, p, "e.attn.")
        for theirs, ours in pairs.items():
            getattr(block, theirs).weight.copy_(torch.tensor(p[f"e.{ours}.weight"].T))
            getattr(block, theirs).bias.copy_(torch.tensor(p[f"e.{ours}.bias"]))
        for n in ("norm1", "norm2"):
            getattr(block, n).weight.copy_(torch.tensor(p[f"e.{n}.gamma"]))
            getattr(block, n).bias.copy_(torch.tensor(p[f"e.{n}.beta"]))
    block.train()  # the fused inference fast path is for float32 evaluation; dropout is 0
    mask = _causal(time) if causal else None
    ty, tdx = run_torch(lambda x: block(x, src_mask=mask), xv, seed)
    _close(y, ty, "output")
    _close(dx, tdx, "input gradient")
    _check_attention_grads(dp, block.self_attn, "e.attn.", d)
    for theirs, ours in pairs.items():
        _close(dp[f"e.{ours}.weight"], getattr(block, theirs).weight.grad.numpy().T, ours)
        _close(dp[f"e.{ours}.bias"], getattr(block, theirs).bias.grad.numpy(), ours)
    for n in ("norm1", "norm2"):
        _close(dp[f"e.{n}.gamma"], getattr(block, n).weight.grad.numpy(), n)
        _close(dp[f"e.{n}.beta"], getattr(block, n).bias.grad.numpy(), n)
    assert len(dp) == 16
