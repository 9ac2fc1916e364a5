"""Config specs of the audio layers (conv1d, max_pool1d, avg_pool1d, spectrogram) and data
kinds (wav_folder, audio_npz), registered into the vocabulary. Their loaders live in
nnctl.data.audio (config sits below data in the layering, so it cannot import them; the
nnctl.data package imports that module, which registers them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from nnctl.config.layer_specs import (ACTIVATIONS, INITS, LayerSpec, positive,
                                      register_layer_spec)
from nnctl.config.schema import _DataCommon, register_dataset_spec
from nnctl.config.validate import (Context, Invalid, boolean, choice, field, got, integer, number,
                                   one_of, optional, string)

non_negative = integer(min=0, what="an integer >= 0")
_hz = number(0.0, what="a frequency in Hz >= 0")


def _power(v, path, ctx):
    if v in (1, 2) and not isinstance(v, bool):
        return int(v)
    raise Invalid(f"expected 1 (magnitude) or 2 (power), got {got(v)}")


# ---- layers ------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Conv1dSpec(LayerSpec):
    kind: ClassVar[str] = "conv1d"
    filters: int = field(positive, doc="output channels")
    kernel: int = field(positive, doc="taps of each filter")
    stride: int = field(positive, 1, "step between windows")
    padding: int | str = field(one_of(choice("same", "valid"), non_negative,
                                      what="'same', 'valid', or a padding >= 0"),
                               0, "zeros added on each side; 'same' keeps the length")
    dilation: int = field(positive, 1, "spacing of the kernel's taps")
    groups: int = field(positive, 1, "split channels into groups (depthwise: groups = channels)")
    activation: str = field(choice(*ACTIVATIONS), "linear", "applied after the convolution")
    init: str = field(choice(*INITS), "auto", "weight initialiser")
    bias: bool = field(boolean, True, "add a learned bias per filter")

    def validate(self, path, ctx: Context) -> None:
        if self.padding == "same" and self.stride != 1:
            ctx.error(path + ("padding",), "padding 'same' needs stride 1")
        if self.filters % self.groups:
            ctx.error(path + ("groups",), f"filters ({self.filters}) must be divisible by "
                                          f"groups ({self.groups})")


@dataclass(frozen=True, kw_only=True)
class Pool1dSpec(LayerSpec):
    shorthand: ClassVar[str] = "kernel"
    kernel: int = field(positive, doc="window length")
    stride: int | None = field(optional(positive), None,
                               "step between windows (default: the window length)")
    padding: int = field(non_negative, 0, "padding on each side")

    def validate(self, path, ctx: Context) -> None:
        if self.padding * 2 > self.kernel:  # else a window could hold padding only
            ctx.error(path + ("padding",), f"padding ({self.padding}) must be at most half "
                                           f"the window ({self.kernel})")


@dataclass(frozen=True, kw_only=True)
class MaxPool1dSpec(Pool1dSpec):
    kind: ClassVar[str] = "max_pool1d"


@dataclass(frozen=True, kw_only=True)
class AvgPool1dSpec(Pool1dSpec):
    kind: ClassVar[str] = "avg_pool1d"


@dataclass(frozen=True, kw_only=True)
class SpectrogramSpec(LayerSpec):
    kind: ClassVar[str] = "spectrogram"
    n_fft: int = field(integer(min=2, what="an integer >= 2"), doc="samples per frame")
    hop: int = field(positive, doc="samples between frame starts")
    mels: int | None = field(optional(positive), None,
                             "mel bands (HTK scale, triangles of peak 1); null: the "
                             "n_fft / 2 + 1 linear frequency bins")
    log: bool = field(boolean, True, "take log(S + eps)")
    eps: float = field(number(0.0, low_open=True), 1e-6, "added before the log")
    power: int = field(_power, 2, "1: magnitude |X|, 2: power |X|^2")
    fmin: float = field(_hz, 0.0, "lowest frequency of the mel filterbank (Hz)")
    fmax: float | None = field(optional(_hz), None,
                               "highest frequency of the mel filterbank (Hz); null: half the "
                               "sample rate")
    layout: str = field(choice("channels", "time"), "channels",
                        "output [batch, features, frames] (channels: for conv1d) or "
                        "[batch, frames, features] (time: for a recurrent layer)")
    sample_rate: int | None = field(optional(positive), None,
                                    "the audio's sample rate (Hz); null: the data's")

    def validate(self, path, ctx: Context) -> None:
        if self.fmax is not None and self.fmin >= self.fmax:
            ctx.error(path + ("fmin",), f"fmin ({self.fmin:g}) must be below fmax "
                                        f"({self.fmax:g})")


for _spec in (Conv1dSpec, MaxPool1dSpec, AvgPool1dSpec, SpectrogramSpec):
    register_layer_spec(_spec)


# ---- data --------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class WavFolderData(_DataCommon):
    dataset: str = field(string, "wav_folder", "a folder of WAV clips, one subfolder per class")
    path: str = field(string, doc="the folder; a relative path is relative to the config file")
    sample_rate: int = field(positive, doc="the clips' sample rate (Hz); a clip at another "
                             "rate is an error")
    duration: float | None = field(optional(number(0.0, low_open=True)), None,
                                   "seconds per clip: shorter clips are padded with zeros at "
                                   "the end, longer ones cut; null: the longest clip's")
    # raw audio: per-feature scaling would rescale each sample position on its own
    normalize: str = field(choice("standard", "minmax", "none"), "none",
                           "feature scaling fitted on the training split (none for audio)")

    FILE_KEYS: ClassVar[tuple[str, ...]] = ()  # path is a folder, checked below

    def validate(self, path, ctx: Context) -> None:
        folder = ctx.base_dir / self.path
        if not folder.is_dir():
            where = "" if Path(self.path).is_absolute() else " (relative to the config file)"
            what = "not a folder" if folder.exists() else "no such folder"
            ctx.error(path + ("path",), f"{what}: {self.path}{where}")


@dataclass(frozen=True, kw_only=True)
class AudioNpzData(_DataCommon):
    dataset: str = field(string, "audio_npz", "an .npz of raw audio clips and their labels")
    path: str = field(string, doc="the file; a relative path is relative to the config file")
    x_key: str = field(string, "x", "array of clips [N, samples], floats in [-1, 1]")
    y_key: str = field(string, "y", "array of class labels [N]")
    sample_rate: int | None = field(optional(positive), None,
                                    "the clips' sample rate (Hz); null: the file's "
                                    "'sample_rate' array")
    normalize: str = field(choice("standard", "minmax", "none"), "none",
                           "feature scaling fitted on the training split (none for audio)")


register_dataset_spec(WavFolderData)
register_dataset_spec(AudioNpzData)
