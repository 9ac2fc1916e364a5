"""The video layers against independent references, in float64.

conv3d and the 3-D poolings against torch.nn.functional (output, and the gradients of the
input and the weights for loss = sum(out * R)) over strides, paddings ('same' with odd and
even spans), dilations and groups; time_distributed against the inner layer run frame by
frame; permute and select_frame against NumPy; a second-order check of conv3d by central
differences of its first-order gradient; the config specs' checks."""

from __future__ import annotations

import numpy as np
import pytest

import nnctl.config.video_specs  # noqa: F401 - registers the specs (until schema imports it)
from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.gradcheck import numeric_gradient
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.layers import build_model
from nnctl.layers.conv import Conv2d
from nnctl.layers.dense import Dense
from nnctl.layers.video import (AvgPool3d, Conv3d, MaxPool3d, Permute, SelectFrame,
                                TimeDistributed)

from .engine import run_layer  # noqa: E402

CPU = get_backend("cpu")
RTOL, ATOL = 1e-10, 1e-12


def run(layer, x: np.ndarray, cotangent=None, params=None):
    """(output, gradients, cotangent): tests/layers/engine.run_layer."""
    return run_layer(layer, x, cotangent, params)


def torch_run(fn, x: np.ndarray, cotangent: np.ndarray, **params):
    torch = pytest.importorskip("torch")
    xt = torch.tensor(x, requires_grad=True)
    ps = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    out = fn(xt, **ps)
    (out * torch.tensor(cotangent)).sum().backward()
    return out.detach().numpy(), {"x": xt.grad.numpy(),
                                  **{k: p.grad.numpy() for k, p in ps.items()}}


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


# ---- conv3d and the 3-D poolings against PyTorch --------------------------------------------

CONV_CASES = [  # (x shape [B, C, T, H, W], layer keywords)
    ((2, 3, 6, 5, 5), {"kernel": 3}),
    ((2, 4, 7, 6, 5), {"kernel": (2, 3, 1), "stride": (2, 1, 2), "padding": (1, 0, 1),
                       "dilation": (1, 2, 1)}),
    ((1, 2, 8, 6, 6), {"kernel": 3, "stride": (3, 2, 1), "padding": (2, 1, 0),
                       "dilation": (2, 1, 2)}),
    ((2, 3, 5, 6, 5), {"kernel": 3, "padding": "same", "dilation": (2, 1, 1)}),
    ((2, 3, 5, 6, 5), {"kernel": (2, 4, 2), "padding": "same"}),  # even spans: odd pad after
    ((2, 4, 6, 5, 5), {"kernel": (3, 1, 3), "groups": 2, "stride": 2}),
    ((2, 6, 4, 4, 4), {"kernel": (2, 1, 1), "groups": 6}),  # depthwise
    ((3, 1, 1, 5, 5), {"kernel": (1, 3, 3), "padding": "valid"}),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note on even kernels
@pytest.mark.parametrize("shape, kw", CONV_CASES)
def test_conv3d_matches_torch(shape, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape)
    probe = Conv3d("c", 6, **kw)
    probe(input_placeholder("x", x.shape, "float64"), False, rng)
    w, b = probe.initial["c.weight"], rng.normal(size=6)
    out, g, cot = run(Conv3d("c", 6, **kw), x, params={"weight": w, "bias": b})
    padding = kw.get("padding", 0)
    ref, rg = torch_run(lambda xt, weight, bias: torch.nn.functional.conv3d(
        xt, weight, bias, stride=kw.get("stride", 1), padding=padding,
        dilation=kw.get("dilation", 1), groups=kw.get("groups", 1)), x, cot, weight=w, bias=b)
    assert out.shape == ref.shape
    close(out, ref)
    for k in ("x", "weight", "bias"):
        close(g[k], rg[k])


def test_conv3d_same_keeps_frames_height_width_and_weight_layout():
    layer = Conv3d("c", 5, (3, 2, 3), padding="same", activation="relu", bias=False)
    out, g, _ = run(layer, np.random.default_rng(0).normal(size=(2, 3, 7, 6, 4)))
    assert out.shape == (2, 5, 7, 6, 4) and out.min() >= 0
    assert g["weight"].shape == (5, 3, 3, 2, 3) and "bias" not in g


def test_conv3d_second_order_by_central_differences():
    """d/dx of <grad_w(sum(conv3d(x, w) * R)), V>: the gradient's own gradient, against
    central differences of the first-order gradient computed by the engine."""
    rng = np.random.default_rng(3)
    x, layer = rng.normal(size=(1, 2, 4, 4, 3)), Conv3d("c", 2, (2, 2, 2), padding=(1, 0, 1),
                                                        stride=(2, 1, 1), bias=False)
    xt = input_placeholder("x", x.shape, "float64")
    out = layer(xt, False, rng)
    w = layer.params["c.weight"]
    r, v = rng.normal(size=out.shape), rng.normal(size=w.shape)
    (gw,) = grad((out * Tensor(r)).tanh().sum(), [w])
    inner = (gw * Tensor(v)).sum()
    (gx,) = grad(inner, [xt])
    plan = compile_graph([inner, gx], [xt, w], CPU)
    w0 = layer.initial["c.weight"]
    analytic = plan([x, w0])[1]
    numeric = numeric_gradient(lambda a: float(plan([a[0], w0])[0]), [x], 0, 1e-5)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


POOL_CASES = [
    ((2, 3, 6, 6, 4), {"kernel": 2}),
    ((2, 2, 7, 6, 5), {"kernel": (3, 2, 3), "stride": (2, 1, 2), "padding": (1, 1, 1)}),
    ((1, 2, 6, 4, 4), {"kernel": (2, 1, 1)}),                     # time only
    ((1, 2, 3, 6, 6), {"kernel": (1, 3, 3), "stride": (1, 2, 2)}),  # space only
]


@pytest.mark.parametrize("cls, name", [(MaxPool3d, "max_pool3d"), (AvgPool3d, "avg_pool3d")])
@pytest.mark.parametrize("shape, kw", POOL_CASES)
def test_pool3d_matches_torch(cls, name, shape, kw):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).normal(size=shape)
    out, g, cot = run(cls("p", **kw), x)
    fn = getattr(torch.nn.functional, name)
    ref, rg = torch_run(lambda xt: fn(xt, kw["kernel"], kw.get("stride"), kw.get("padding", 0)),
                        x, cot)
    assert out.shape == ref.shape
    close(out, ref)
    close(g["x"], rg["x"])


def test_volume_layers_refuse_other_ranks():
    x = input_placeholder("x", (2, 8, 1, 6, 6)[:4], "float64")
    for layer in (Conv3d("c", 2, 3), MaxPool3d("p", 2)):
        with pytest.raises(ShapeError, match=r"needs input \[batch, channels, frames"):
            layer(x, False, np.random.default_rng(0))


def test_conv3d_kernel_longer_than_the_clip_is_a_shape_error():
    x = input_placeholder("x", (2, 1, 2, 6, 6), "float64")
    with pytest.raises(ShapeError, match=r"frames \(2, padded 2\) are fewer than .* reach 3"):
        Conv3d("c", 2, 3)(x, False, np.random.default_rng(0))


# ---- time_distributed, permute, select_frame -----------------------------------------------

def test_time_distributed_conv2d_is_the_conv_on_each_frame():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 3, 6, 6))  # [B, T, C, H, W]
    td = TimeDistributed("td", Conv2d("td.conv2d", 4, (3, 3), padding="same",
                                      activation="tanh"))
    out, g, cot = run(td, x)
    assert set(td.params) == {"td.conv2d.weight", "td.conv2d.bias"}
    w, b = td.initial["td.conv2d.weight"], td.initial["td.conv2d.bias"]
    assert out.shape == (2, 5, 4, 6, 6)
    gw = np.zeros_like(w)
    for t in range(5):  # the same weights on every frame: the gradient sums over frames
        frame = Conv2d("f", 4, (3, 3), padding="same", activation="tanh")
        o, gf, _ = run(frame, x[:, t], cot[:, t], params={"weight": w, "bias": b})
        close(out[:, t], o)
        close(g["x"][:, t], gf["x"])
        gw += gf["weight"]
    close(g["weight"], gw)


def test_time_distributed_keeps_a_frame_mask_and_builds_once():
    td = TimeDistributed("td", Dense("td.dense", 3))
    x = input_placeholder("x", (4, 6, 5), "float64")
    out = td(x, False, np.random.default_rng(0))
    mask = Tensor(np.ones((4, 6)))
    assert out.shape == (4, 6, 3) and td.output_mask(x, mask, out) is mask
    td(x, False, np.random.default_rng(0))
    assert list(td.params) == ["td.dense.weight", "td.dense.bias"]
    with pytest.raises(ShapeError, match="at least one axis per frame"):
        TimeDistributed("t2", Dense("t2.dense", 3))(input_placeholder("x", (4, 6), "float64"),
                                                   False, np.random.default_rng(0))


def test_permute_and_select_frame():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    out, g, cot = run(Permute("p", [3, 1, 2]), x)
    close(out, x.transpose(0, 3, 1, 2))
    close(g["x"], cot.transpose(0, 2, 3, 1))
    out, g, cot = run(SelectFrame("s", -1), x)
    close(out, x[:, -1])
    expected = np.zeros_like(x)
    expected[:, -1] = cot
    close(g["x"], expected)
    with pytest.raises(ShapeError, match="no frame 3"):
        SelectFrame("s", 3)(input_placeholder("x", x.shape, "float64"), False)
    with pytest.raises(ShapeError, match=r"dims \[2, 1\] reorder 2 axes"):
        Permute("p", [2, 1])(input_placeholder("x", x.shape, "float64"), False)


# ---- config specs ---------------------------------------------------------------------------

def test_specs_parse_and_build(model_spec):
    spec = model_spec("""
layers:
  - permute: [2, 1, 3, 4]
  - conv3d: {filters: 4, kernel: [1, 3, 3], padding: same}
  - avg_pool3d: {kernel: 2, padding: [1, 0, 0]}
  - permute: [2, 1, 3, 4]
  - time_distributed: {layer: {conv2d: {filters: 2, kernel: 3}}}
  - time_distributed: {layer: {flatten: {}}}
  - select_frame: -1
  - dense: {units: 3}
""")
    td = spec.layers[4]
    assert td.layer.kind == "conv2d" and td.layer.kernel == (3, 3)
    assert spec.layers[5].layer.kind == "flatten"
    assert spec.layers[1].kernel == (1, 3, 3) and spec.layers[2].padding == (1, 0, 0)
    model = build_model(spec, np.random.default_rng(0))
    out = model(input_placeholder("x", (2, 4, 1, 6, 6), "float64"))
    assert out.shape == (2, 3)
    assert "time_distributed_4.conv2d.weight" in model.params


@pytest.mark.parametrize("layer, message", [
    ("time_distributed: {layer: {conv2d: {filters: 2, kernel: 3, name: c}}}",
     "time_distributed.layer.conv2d.name: the wrapped layer has no name of its own"),
    ("time_distributed: {layer: {dense: {units: 2, inputs: [input]}}}",
     "the wrapped layer has no inputs of its own"),
    ("time_distributed: {layer: {add: {}}}", "add reads several inputs"),
    ("time_distributed: {layer: {conv9d: {}}}", "unknown layer type 'conv9d'"),
    ("permute: [1, 3]", "expected an order of the axes after the batch axis"),
    ("conv3d: {filters: 4, kernel: [3, 3]}", "a list of three: frames, height, width"),
    ("conv3d: {filters: 4, kernel: 3, stride: 2, padding: same}", "padding 'same' needs stride 1"),
    ("conv3d: {filters: 5, kernel: 3, groups: 2}", "filters (5) must be divisible by groups"),
    ("max_pool3d: {kernel: [2, 2, 2], padding: [0, 2, 0]}", "must be at most half the window"),
])
def test_spec_errors(model_spec, layer, message):
    errors = []
    model_spec(f"layers:\n  - {layer}\n  - dense: {{units: 2}}\n", errors)
    assert any(message in e for e in errors), errors
