"""The audio layers against independent references, in float64.

conv1d and the 1-D poolings against torch.nn.functional (output, and the gradients of the
input and the weights for loss = sum(out * R)); the spectrogram's STFT magnitude against
scipy.signal.ShortTimeFFT; the mel filterbank's defining properties and hand-computed values;
and the gradient through the whole front end by central differences (nnctl.gradcheck)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.config.layer_specs import LAYERS
from nnctl.errors import ShapeError
from nnctl.gradcheck import compare, numeric_gradient
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.layers import build_model
from nnctl.layers.audio import (AvgPool1d, Conv1d, MaxPool1d, Spectrogram, hann_window,
                                hz_to_mel, mel_filterbank, mel_to_hz)

from .engine import run_layer  # noqa: E402

CPU = get_backend("cpu")
RTOL, ATOL = 1e-10, 1e-12


def run(layer, x: np.ndarray, cotangent=None, params=None):
    """(output, gradients): tests/layers/engine.run_layer without the cotangent."""
    return run_layer(layer, x, cotangent, params)[:2]


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


# ---- conv1d and pooling against PyTorch ----------------------------------------------------

CONV_CASES = [  # (x shape, layer keywords)
    ((2, 3, 11), dict(filters=4, kernel=3)),
    ((2, 3, 12), dict(filters=4, kernel=3, stride=2, padding=1)),
    ((1, 2, 13), dict(filters=2, kernel=3, dilation=2, padding=2)),
    ((2, 4, 10), dict(filters=6, kernel=2, groups=2, stride=3)),
    ((2, 4, 9), dict(filters=4, kernel=5, groups=4, padding="same")),  # depthwise, odd span
    ((2, 3, 9), dict(filters=2, kernel=4, padding="same")),     # even span: one more on the right
    ((2, 3, 9), dict(filters=2, kernel=2, dilation=3, padding="same")),  # odd span 3
    ((1, 2, 7), dict(filters=3, kernel=7, padding="valid", bias=False)),
]


@pytest.mark.parametrize("shape, kw", CONV_CASES, ids=[str(i) for i in range(len(CONV_CASES))])
def test_conv1d_matches_torch(shape, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    x = rng.normal(size=shape)
    layer = Conv1d("L", **kw)
    xt = input_placeholder("x", shape, "float64")
    out_shape = layer(xt, False, rng).shape
    w = rng.normal(size=layer.params["L.weight"].shape)
    params = {"weight": w}
    if kw.get("bias", True):
        params["bias"] = rng.normal(size=(kw["filters"],))
    r = rng.normal(size=out_shape)
    ours, our_grads = run(Conv1d("L", **kw), x, r, params)

    def conv(xt, weight, bias=None):
        return torch.nn.functional.conv1d(xt, weight, bias, stride=kw.get("stride", 1),
                                          padding=kw.get("padding", 0),
                                          dilation=kw.get("dilation", 1),
                                          groups=kw.get("groups", 1))
    theirs, their_grads = torch_run(conv, x, r, **params)
    assert ours.shape == theirs.shape
    close(ours, theirs)
    assert set(our_grads) == set(their_grads)
    for key in their_grads:
        close(our_grads[key], their_grads[key])


def test_conv1d_same_keeps_the_length_and_activation_applies():
    x = np.random.default_rng(0).normal(size=(2, 3, 10))
    out, _ = run(Conv1d("L", filters=5, kernel=4, padding="same", activation="relu"), x)
    assert out.shape == (2, 5, 10)
    assert out.min() == 0.0 and out.max() > 0.0


POOL_CASES = [
    ((2, 3, 10), dict(kernel=2)),
    ((2, 3, 11), dict(kernel=3, stride=2, padding=1)),
    ((1, 2, 9), dict(kernel=4, stride=1)),  # overlapping windows
    ((2, 1, 8), dict(kernel=5, stride=3, padding=2)),
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("shape, kw", POOL_CASES, ids=[str(i) for i in range(len(POOL_CASES))])
def test_pool1d_matches_torch(kind, shape, kw):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).normal(size=shape)  # distinct values: no ties for max
    layer = (MaxPool1d if kind == "max" else AvgPool1d)("L", **kw)
    fn = torch.nn.functional.max_pool1d if kind == "max" else torch.nn.functional.avg_pool1d
    expected = fn(torch.tensor(x), kw["kernel"], kw.get("stride"), kw.get("padding", 0))
    r = np.random.default_rng(4).normal(size=tuple(expected.shape))
    ours, our_grads = run(layer, x, r)
    theirs, their_grads = torch_run(
        lambda t: fn(t, kw["kernel"], kw.get("stride"), kw.get("padding", 0)), x, r)
    close(ours, theirs)
    close(our_grads["x"], their_grads["x"])


def test_1d_layers_refuse_other_ranks_and_short_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(ShapeError, match=r"needs input \[batch, channels, length\]"):
        Conv1d("c", filters=2, kernel=3)(input_placeholder("x", (2, 10), "float64"))
    with pytest.raises(ShapeError, match="shorter than the .dilated. kernel's reach 5"):
        Conv1d("c", filters=2, kernel=3, dilation=2)(input_placeholder("x", (2, 1, 4),
                                                                        "float64"), False, rng)
    with pytest.raises(ShapeError, match="shorter than the window 4"):
        MaxPool1d("p", kernel=4)(input_placeholder("x", (2, 1, 3), "float64"))
    with pytest.raises(ShapeError, match=r"input channels \(3\) must be divisible by groups"):
        Conv1d("c", filters=4, kernel=1, groups=2)(input_placeholder("x", (2, 3, 5), "float64"),
                                                   False, rng)


def test_1d_layers_drop_a_time_mask():
    # channels first: a [batch, time] mask describes axis 1, which is channels here
    layer = Conv1d("c", filters=4, kernel=1)
    x = input_placeholder("x", (2, 4, 6), "float64")
    mask = input_placeholder("m", (2, 4), "float64")
    assert layer.output_mask(x, mask, layer(x, False, np.random.default_rng(0))) is None


# ---- the spectrogram against scipy ---------------------------------------------------------

def scipy_stft_magnitude(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| [batch, bins, frames] of the frames x[t*hop : t*hop + n_fft] with the periodic
    Hann window, from scipy.signal.ShortTimeFFT (unscaled). Its slice p covers the samples
    from p*h - n_fft//2; with h = 1 every start exists, and frame t is slice t*hop + n_fft//2."""
    signal = pytest.importorskip("scipy.signal")
    window = signal.get_window("hann", n_fft)  # periodic (fftbins=True), as torch's
    stft = signal.ShortTimeFFT(window, hop=1, fs=1.0, mfft=n_fft, fft_mode="onesided",
                               scale_to=None)
    full = stft.stft(x, axis=-1)  # [batch, bins, slices p_min .. p_max - 1]
    frames = 1 + (x.shape[-1] - n_fft) // hop
    slices = np.arange(frames) * hop + n_fft // 2
    return np.abs(full[..., slices - stft.p_min])


@pytest.mark.parametrize("n_fft, hop, samples", [(16, 4, 64), (32, 8, 100), (15, 5, 61)])
def test_stft_magnitude_matches_scipy(n_fft, hop, samples):
    x = np.random.default_rng(5).uniform(-1, 1, size=(3, samples))
    expected = scipy_stft_magnitude(x, n_fft, hop)
    ours, _ = run(Spectrogram("s", n_fft, hop, log=False, power=1), x)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
    power, _ = run(Spectrogram("s", n_fft, hop, log=False, power=2), x)
    np.testing.assert_allclose(power, expected ** 2, rtol=1e-10, atol=1e-12)


def test_hann_window_is_torchs_periodic_window():
    torch = pytest.importorskip("torch")
    for n in (8, 15, 256):
        np.testing.assert_allclose(hann_window(n), torch.hann_window(n, dtype=torch.float64)
                                   .numpy(), rtol=0, atol=1e-15)


def test_spectrogram_layouts_log_mel_and_a_pure_tone():
    rate, n_fft, hop = 8000, 256, 128
    t = np.arange(2000) / rate
    x = np.stack([np.sin(2 * np.pi * 1000.0 * t), np.zeros_like(t)])
    lin, _ = run(Spectrogram("s", n_fft, hop, log=False, layout="time"), x)
    assert lin.shape == (2, 1 + (2000 - 256) // 128, 129)
    # 1000 Hz is bin 1000 * 256 / 8000 = 32 exactly
    assert np.all(lin[0].argmax(-1) == 32)
    # a Hann-windowed full-scale sine at a bin centre: |X| = n_fft / 4, power (n_fft / 4)^2
    np.testing.assert_allclose(lin[0, :, 32], (n_fft / 4) ** 2, rtol=1e-9)
    logmel, _ = run(Spectrogram("s", n_fft, hop, mels=20, log=True, eps=1e-6,
                                sample_rate=rate), x)
    assert logmel.shape == (2, 20, lin.shape[1])
    bank = mel_filterbank(n_fft, 20, rate)
    np.testing.assert_allclose(logmel, np.log(lin @ bank + 1e-6).transpose(0, 2, 1),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(logmel[1], np.log(1e-6))  # silence: log(eps)


def test_spectrogram_accepts_one_channel_and_refuses_the_rest():
    x = np.random.default_rng(0).normal(size=(2, 1, 40))
    out, grads = run(Spectrogram("s", 8, 4, log=False), x)
    assert out.shape == (2, 5, 9) and grads["x"].shape == (2, 1, 40)
    with pytest.raises(ShapeError, match="shorter than one frame"):
        Spectrogram("s", 64, 4)(input_placeholder("x", (2, 40), "float64"))
    with pytest.raises(ShapeError, match=r"raw audio \[batch, samples\]"):
        Spectrogram("s", 8, 4)(input_placeholder("x", (2, 2, 40), "float64"))
    with pytest.raises(ShapeError, match="needs the audio's sample rate"):
        Spectrogram("s", 8, 4, mels=4)
    with pytest.raises(ShapeError, match="above the Nyquist frequency 4000 Hz"):
        Spectrogram("s", 8, 4, mels=4, sample_rate=8000, fmax=5000)


# ---- the mel filterbank ---------------------------------------------------------------------

def test_mel_scale_is_htk():
    assert hz_to_mel(700.0) == pytest.approx(2595.0 * np.log10(2.0), rel=1e-15)
    assert hz_to_mel(1000.0) == pytest.approx(999.98553, abs=1e-4)  # HTK's ~1000 mel at 1 kHz
    f = np.array([0.0, 123.4, 4000.0, 11025.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, rtol=1e-13, atol=1e-10)


def test_mel_filterbank_triangles():
    n_fft, mels, rate, fmin, fmax = 512, 10, 16000, 100.0, 7000.0
    bank = mel_filterbank(n_fft, mels, rate, fmin, fmax)
    assert bank.shape == (257, 10)
    freqs = np.arange(257) * rate / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), mels + 2))
    for i in range(mels):
        lo, c, hi = edges[i], edges[i + 1], edges[i + 2]
        col = bank[:, i]
        # zero outside (lo, hi), within [0, 1], peaking next to the centre
        assert np.all(col[(freqs <= lo) | (freqs >= hi)] == 0.0)
        assert col.max() <= 1.0 and col.min() >= 0.0
        peak = freqs[col.argmax()]
        assert abs(peak - c) <= rate / n_fft
        # piecewise linear: exact values at each bin inside
        inside = (freqs > lo) & (freqs < hi)
        want = np.where(freqs <= c, (freqs - lo) / (c - lo), (hi - freqs) / (hi - c))
        np.testing.assert_allclose(col[inside], want[inside], rtol=1e-13)
    # the centres rise evenly in mel
    np.testing.assert_allclose(np.diff(hz_to_mel(edges)), (hz_to_mel(fmax) - hz_to_mel(fmin))
                               / (mels + 1), rtol=1e-12)


def test_mel_filterbank_hand_computed_point():
    # 2 mels over 0..4000 Hz at 8000 Hz, n_fft 8: bins at 0, 1000, 2000, 3000, 4000 Hz.
    bank = mel_filterbank(8, 2, 8000)
    top = 2595 * np.log10(1 + 4000 / 700)
    e1 = 700 * (10 ** (top / 3 / 2595) - 1)       # first centre, ~ 620.7 Hz
    e2 = 700 * (10 ** (2 * top / 3 / 2595) - 1)   # second centre, ~ 1791 Hz
    assert bank[0, 0] == 0.0 and bank[2, 0] == 0.0 and bank[4, 1] == 0.0
    assert 620 < e1 < 621 and 1790 < e2 < 1792
    assert bank[1, 0] == pytest.approx((e2 - 1000) / (e2 - e1), rel=1e-13)
    assert bank[1, 1] == pytest.approx((1000 - e1) / (e2 - e1), rel=1e-13)  # rising
    assert bank[2, 1] == pytest.approx((4000 - 2000) / (4000 - e2), rel=1e-13)  # falling
    assert bank[3, 1] == pytest.approx((4000 - 3000) / (4000 - e2), rel=1e-13)


def test_mel_filterbank_matches_torchaudio_when_installed():
    F = pytest.importorskip("torchaudio.functional")
    ours = mel_filterbank(400, 23, 16000, 20.0, 7600.0)
    theirs = F.melscale_fbanks(201, 20.0, 7600.0, 23, 16000, norm=None, mel_scale="htk")
    np.testing.assert_allclose(ours, theirs.double().numpy(), rtol=1e-5, atol=1e-6)


# ---- the gradient through the whole front end ---------------------------------------------

@pytest.mark.parametrize("power", [1, 2])
def test_front_end_gradient_matches_central_differences(power):
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, size=(2, 24))
    layer = Spectrogram("s", 8, 4, mels=3, log=True, power=power, eps=1e-3, sample_rate=8000)
    r = rng.normal(size=(2, 3, 5))
    out, grads = run(layer, x, r)

    # the same layer's forward, compiled once, for the central differences
    xt = input_placeholder("x", x.shape, "float64")
    loss = (Spectrogram("s", 8, 4, mels=3, log=True, power=power, eps=1e-3,
                        sample_rate=8000)(xt) * Tensor(r)).sum()
    plan = compile_graph([loss], [xt], CPU)

    def f(arrays):
        return float(plan([arrays[0]])[0])
    numeric = numeric_gradient(f, [x.copy()], 0, 1e-6)
    result = compare("spectrogram", f"power {power}", 1, grads["x"], numeric, 1e-6, 1e-5)
    assert result.passed, result.detail


def test_front_end_then_conv1d_and_pool_build_from_a_config(model_spec):
    spec = model_spec("""
layers:
  - spectrogram: {n_fft: 64, hop: 32, mels: 12}
  - conv1d: {filters: 6, kernel: 3, padding: same, activation: relu}
  - max_pool1d: 2
  - avg_pool1d: {kernel: 3, stride: 1, padding: 1}
  - flatten: {}
  - dense: {units: classes}
""")
    assert {"spectrogram", "conv1d", "max_pool1d", "avg_pool1d"} <= set(LAYERS)
    model = build_model(spec, np.random.default_rng(0), {"classes": 4, "sample_rate": 8000})
    out = model(input_placeholder("x", (3, 512), "float64"), False)
    # frames 1 + (512 - 64) // 32 = 15; pooled to 7; 6 filters x 7
    assert out.shape == (3, 4)
    assert model.layers[0].sample_rate == 8000
    assert model.layers[1].params["conv1d_1.weight"].shape == (6, 12, 3)


def test_specs_refuse_bad_keys(model_spec):
    errors = []
    model_spec("""
layers:
  - spectrogram: {n_fft: 64, hop: 32, power: 3}
  - spectrogram: {n_fft: 64, hop: 32, fmin: 500, fmax: 400}
  - conv1d: {filters: 5, kernel: 3, stride: 2, padding: same, groups: 2}
  - max_pool1d: {kernel: 2, padding: 2}
""", errors)
    text = "\n".join(errors)
    assert "expected 1 (magnitude) or 2 (power), got 3" in text
    assert "padding 'same' needs stride 1" in text
    assert "filters (5) must be divisible by groups (2)" in text
    assert "padding (2) must be at most half the window (2)" in text
    assert "fmin (500) must be below fmax (400)" in text
    assert len(errors) == 5


def test_conv1d_same_with_an_even_span_differentiates_on_a_symbolic_batch():
    """'same' padding with an even kernel pads unevenly through the pad op, whose gradient
    once sliced the symbolic batch axis (the trainer's graphs have B, not a number)."""
    from nnctl.graph import input_placeholder
    from nnctl.layers.audio import Conv1d
    from nnctl.ops.registry import Dim
    layer = Conv1d("c", 3, 4, padding="same")
    x = input_placeholder("x", (Dim("B"), 2, 10), "float64")
    y = layer(x, True, np.random.default_rng(0))
    (gx,) = grad(y.sum(), [x])
    assert gx.shape == x.shape
