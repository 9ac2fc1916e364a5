"""Audio layers: 1-D convolution and pooling on [batch, channels, length], and a spectrogram
front end that turns raw samples into (log-)mel or linear-frequency features.

Everything is built from existing elementary ops (reshape, pad, conv2d, the 2-D poolings,
take, matmul, sqrt, log), so every gradient comes from autodiff and export-graph draws each
step. The 1-D layers view [B, C, L] as a one-row image [B, C, 1, L]; the spectrogram gathers
its frames with `take` and multiplies them by constant windowed DFT and mel matrices.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import ShapeError
from nnctl.graph import Tensor, apply
from nnctl.layers.activation import ACTIVATIONS
from nnctl.layers.base import Layer, register_layer, require_float_input
from nnctl.layers.dense import resolve_init


def _need_signal(layer: Layer, x: Tensor) -> None:
    if x.ndim != 3:
        raise ShapeError(f"{layer.kind} needs input [batch, channels, length], got "
                         f"{list(x.shape)}; a spectrogram layer (layout: channels) or a "
                         "reshape layer such as 'reshape: [1, 8000]' makes one", scope=layer.name)
    require_float_input(layer, x)


def _as_image(x: Tensor) -> Tensor:
    """[B, C, L] -> [B, C, 1, L]: a one-row image, so the 2-D ops do the 1-D work."""
    return x.reshape(x.shape[0], x.shape[1], 1, x.shape[2])


def _as_signal(y: Tensor) -> Tensor:
    return y.reshape(y.shape[0], y.shape[1], y.shape[3])


class _ChannelsFirst(Layer):
    """A layer on [batch, channels, length]: time is the last axis, so a [batch, time] padding
    mask (which describes axis 1) does not apply to its output."""

    def output_mask(self, x, mask, out):
        return None


@register_layer
class Conv1d(_ChannelsFirst):
    """y[b, f, t] = act(bias[f] + sum over c in f's group, j < kernel of
    w[f, c, j] * x_padded[b, c, t*stride + j*dilation]), as torch.nn.functional.conv1d.

    Weights are [filters, channels / groups, kernel] (PyTorch's layout). padding 'same' (stride
    1) pads dilation*(kernel-1) zeros in all, the odd one on the right as PyTorch does, so the
    output keeps the input's length; 'valid' pads nothing."""

    kind = "conv1d"

    def __init__(self, name, filters, kernel, stride=1, padding=0, dilation=1, groups=1,
                 activation="linear", init="auto", bias=True):
        super().__init__(name)
        self.filters, self.kernel, self.stride = filters, kernel, stride
        self.padding, self.dilation, self.groups = padding, dilation, groups
        self.activation, self.init, self.bias = activation, resolve_init(init, activation), bias

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.filters, spec.kernel, spec.stride, spec.padding, spec.dilation,
                   spec.groups, spec.activation, spec.init, spec.bias)

    def _pads(self) -> tuple[int, int]:
        """Zeros before and after the signal."""
        if self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            span = self.dilation * (self.kernel - 1)
            return (span // 2, span - span // 2)
        return (self.padding, self.padding)

    def build(self, x: Tensor, rng) -> None:
        _need_signal(self, x)
        channels = x.shape[1]
        if channels % self.groups:
            raise ShapeError(f"input channels ({channels}) must be divisible by groups "
                             f"({self.groups})", scope=self.name)
        per_group = channels // self.groups
        fan_in, fan_out = per_group * self.kernel, self.filters // self.groups * self.kernel
        self.w = self.add_param("weight", (self.filters, per_group, self.kernel), self.init,
                                rng, x.dtype, fan=(fan_in, fan_out))
        self.b = (self.add_param("bias", (self.filters,), "zeros", rng, x.dtype)
                  if self.bias else None)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        _need_signal(self, x)
        before, after = self._pads()
        if before != after:  # 'same' with an even span: conv2d pads symmetrically, so pad here
            x, before = x.pad(((0, 0), (0, 0), (before, after))), 0
        reach = self.dilation * (self.kernel - 1) + 1
        if x.shape[2] + 2 * before < reach:
            raise ShapeError(f"the input's length {x.shape[2]} (padded: {x.shape[2] + 2 * before})"
                             f" is shorter than the (dilated) kernel's reach {reach}",
                             scope=self.name)
        w = self.w.reshape(self.filters, self.w.shape[1], 1, self.kernel)
        y = apply("conv2d", _as_image(x), w, stride=(1, self.stride), padding=(0, before),
                  dilation=(1, self.dilation), groups=self.groups)
        y = _as_signal(y)
        if self.b is not None:
            y = y + self.b.reshape(1, self.filters, 1)
        return ACTIVATIONS[self.activation](y)


class _Pool1d(_ChannelsFirst):
    op = ""

    def __init__(self, name, kernel, stride=None, padding=0):
        super().__init__(name)
        self.kernel, self.padding = kernel, padding
        self.stride = stride or kernel

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.kernel, spec.stride, spec.padding)

    def forward(self, x: Tensor, training: bool) -> Tensor:
        _need_signal(self, x)
        if x.shape[2] + 2 * self.padding < self.kernel:
            raise ShapeError(f"the input's length {x.shape[2]} (padded: "
                             f"{x.shape[2] + 2 * self.padding}) is shorter than the window "
                             f"{self.kernel}", scope=self.name)
        y = apply(self.op, _as_image(x), kernel=(1, self.kernel), stride=(1, self.stride),
                  padding=(0, self.padding))
        return _as_signal(y)


@register_layer
class MaxPool1d(_Pool1d):
    """y[b, c, t] = max of x[b, c, t*stride - padding + j] over j < kernel (padding never
    wins: it counts as -inf), as torch.nn.functional.max_pool1d."""

    kind = "max_pool1d"
    op = "max_pool2d"


@register_layer
class AvgPool1d(_Pool1d):
    """y[b, c, t] = (1/kernel) sum over j < kernel of x[b, c, t*stride - padding + j], padding
    counted as zeros (torch.nn.functional.avg_pool1d with count_include_pad=True)."""

    kind = "avg_pool1d"
    op = "avg_pool2d"


# ---- the spectrogram front end -----------------------------------------------------------

def hann_window(n: int) -> np.ndarray:
    """The periodic Hann window w[k] = 0.5 - 0.5 cos(2 pi k / n), as torch.hann_window and
    scipy.signal.get_window('hann', n) (periodic, for spectral analysis)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def dft_matrices(n_fft: int, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windowed DFT bases [n_fft, n_fft // 2 + 1]: frame @ cos = Re X[k], frame @ sin = Im X[k],
    X[k] = sum_n w[n] frame[n] e^{-2 pi i k n / n_fft} (numpy's rfft of the windowed frame)."""
    n = np.arange(n_fft)[:, None]
    k = np.arange(n_fft // 2 + 1)[None, :]
    # (k n) mod n_fft first: the angle stays in [0, 2 pi) and exact in float64 for any size
    angle = 2.0 * np.pi * ((k * n) % n_fft) / n_fft
    return window[:, None] * np.cos(angle), -window[:, None] * np.sin(angle)


def hz_to_mel(f):
    """The HTK mel scale: m = 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, mels: int, sample_rate: float, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """[n_fft // 2 + 1, mels] triangular filters on the HTK mel scale, peak 1 (no area
    normalisation), as torchaudio's melscale_fbanks(norm=None, mel_scale='htk').

    mels + 2 points m_0 < ... < m_{mels+1} equally spaced in mel from fmin to fmax (default
    sample_rate / 2) become frequencies f_i; filter i rises linearly from 0 at f_{i} to 1 at
    f_{i+1} and falls back to 0 at f_{i+2}, evaluated at the FFT bins' frequencies
    k * sample_rate / n_fft."""
    fmax = sample_rate / 2.0 if fmax is None else fmax
    bins = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


@register_layer
class Spectrogram(Layer):
    """Short-time spectrum of raw audio [batch, samples] (or [batch, 1, samples]).

    Frame t is x[t*hop : t*hop + n_fft] (no centre padding, torch.stft's center=False), so
    there are 1 + (samples - n_fft) // hop frames. With the periodic Hann window w,
    X[t, k] = sum_n w[n] x[t*hop + n] e^{-2 pi i k n / n_fft} for k = 0 .. n_fft/2, and
    S = |X|^2 = Re^2 + Im^2 (power 2) or S = sqrt(Re^2 + Im^2 + 1e-12) (power 1: the tiny term
    keeps the gradient finite at a silent bin). With mels, S @ M for the HTK mel filterbank M
    [bins, mels] between fmin and fmax; with log, log(S + eps). Output [batch, features,
    frames] (layout 'channels', for conv1d) or [batch, frames, features] (layout 'time').

    Frames are gathered with `take` at a constant index array and multiplied by constant
    windowed cosine and sine matrices (matmul): no parameters, every op differentiable."""

    kind = "spectrogram"
    TINY = 1e-12  # under the magnitude's square root

    def __init__(self, name, n_fft, hop, mels=None, log=True, power=2, fmin=0.0, fmax=None,
                 eps=1e-6, layout="channels", sample_rate=None):
        super().__init__(name)
        self.n_fft, self.hop, self.mels, self.log, self.power = n_fft, hop, mels, log, power
        self.fmin, self.fmax, self.eps, self.layout = fmin, fmax, eps, layout
        self.sample_rate = sample_rate
        if mels is not None:
            if sample_rate is None:
                raise ShapeError("a mel filterbank needs the audio's sample rate: the data "
                                 "gives none (set sample_rate on this layer)", scope=name)
            top = sample_rate / 2.0 if fmax is None else fmax
            if top > sample_rate / 2.0:
                raise ShapeError(f"fmax {fmax:g} Hz is above the Nyquist frequency "
                                 f"{sample_rate / 2:g} Hz of {sample_rate:g} Hz audio",
                                 scope=name)
            if not fmin < top:
                raise ShapeError(f"fmin {fmin:g} Hz must be below fmax {top:g} Hz", scope=name)

    @classmethod
    def from_spec(cls, spec, name, hints):
        rate = spec.sample_rate if spec.sample_rate is not None else hints.get("sample_rate")
        return cls(name, spec.n_fft, spec.hop, spec.mels, spec.log, spec.power, spec.fmin,
                   spec.fmax, spec.eps, spec.layout, rate)

    @property
    def features(self) -> int:
        return self.n_fft // 2 + 1 if self.mels is None else self.mels

    def forward(self, x: Tensor, training: bool) -> Tensor:
        if x.ndim == 3 and x.shape[1] == 1:
            x = x.reshape(x.shape[0], x.shape[2])
        if x.ndim != 2:
            raise ShapeError(f"spectrogram needs raw audio [batch, samples] or [batch, 1, "
                             f"samples], got {list(x.shape)}", scope=self.name)
        require_float_input(self, x)
        samples = x.shape[1]
        if samples < self.n_fft:
            raise ShapeError(f"clips of {samples} samples are shorter than one frame "
                             f"(n_fft {self.n_fft})", scope=self.name)
        frames = 1 + (samples - self.n_fft) // self.hop
        index = np.arange(frames)[:, None] * self.hop + np.arange(self.n_fft)[None, :]
        # take gathers rows: samples first, [S, B] -> [frames, n_fft, B] -> [B, frames, n_fft]
        framed = x.T.take(Tensor(index.astype(np.int64))).transpose(2, 0, 1)
        cos, sin = dft_matrices(self.n_fft, hann_window(self.n_fft))
        re = framed @ Tensor(cos.astype(x.dtype))
        im = framed @ Tensor(sin.astype(x.dtype))
        s = re * re + im * im
        if self.power == 1:
            s = (s + self.TINY).sqrt()
        if self.mels is not None:
            bank = mel_filterbank(self.n_fft, self.mels, self.sample_rate, self.fmin, self.fmax)
            s = s @ Tensor(bank.astype(x.dtype))
        if self.log:
            s = (s + self.eps).log()
        return s.transpose(0, 2, 1) if self.layout == "channels" else s

    def output_mask(self, x, mask, out):
        return None  # frames are not samples: a sample mask does not describe them
