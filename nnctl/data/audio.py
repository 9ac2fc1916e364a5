"""Audio data kinds: a folder of WAV clips (one subfolder per class) and an .npz of clips.

Both give x float [N, samples] in [-1, 1] (one clip per row, every clip the same length) and
int64 class labels y, with info["sample_rate"] (Hz) and info["labels"] (class names) shared
by every split. WAV files are read with the standard library's `wave`: PCM, mono, 8, 16, 24
or 32 bits. Every problem with a file is one DataError naming that file.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

from nnctl.data.dataset import Dataset
from nnctl.data.kinds import register_loader
from nnctl.data.loaders import load_npz
from nnctl.errors import DataError, capped

# full scale of each PCM sample width (bytes): samples become floats in [-1, 1)
_FULL_SCALE = {1: 128.0, 2: 32768.0, 3: 8388608.0, 4: 2147483648.0}


def read_wav(path: Path, sample_rate: int) -> np.ndarray:
    """A mono PCM WAV file's samples as float64 in [-1, 1); a file at another sample rate,
    with more than one channel, or not a PCM WAV at all is a DataError naming it."""
    where = str(path)
    try:
        with wave.open(str(path), "rb") as w:
            channels, width = w.getnchannels(), w.getsampwidth()
            rate, frames = w.getframerate(), w.getnframes()
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as err:
        raise DataError(f"not a PCM WAV file ({err}); expected mono PCM audio", path=where) \
            from None
    except OSError as err:
        raise DataError(f"cannot read: {err.strerror or err}", path=where) from None
    if rate != sample_rate:
        raise DataError(f"sample rate {rate} Hz, expected {sample_rate} Hz (resample it, or "
                        "set data.sample_rate)", path=where)
    if channels != 1:
        raise DataError(f"{channels} channels, expected mono (mix it down to one channel)",
                        path=where)
    if width not in _FULL_SCALE:
        raise DataError(f"{8 * width}-bit samples; expected 8, 16, 24 or 32-bit PCM",
                        path=where)
    if len(raw) != frames * width:
        raise DataError(f"truncated: the header promises {frames} samples, the file holds "
                        f"{len(raw) // width}", path=where)
    return _pcm_to_float(raw, width)


def _pcm_to_float(raw: bytes, width: int) -> np.ndarray:
    if width == 1:  # 8-bit WAV is unsigned, centred on 128
        ints = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 128
    elif width == 3:  # little-endian 24-bit: sign-extend from the top byte
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int64)
        ints = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        ints = ints - ((ints & 0x800000) << 1)
    else:
        ints = np.frombuffer(raw, dtype={2: "<i2", 4: "<i4"}[width]).astype(np.int64)
    return ints / _FULL_SCALE[width]


def fit_length(clip: np.ndarray, samples: int) -> np.ndarray:
    """The clip padded with zeros (silence) at the end, or cut after `samples` samples."""
    if len(clip) >= samples:
        return clip[:samples]
    return np.concatenate([clip, np.zeros(samples - len(clip), dtype=clip.dtype)])


def load_wav_folder(folder: str | Path, sample_rate: int, duration: float | None = None,
                    dtype: str = "float32") -> Dataset:
    """Clips from `folder/<class>/*.wav`: classes are the subfolders in sorted order (label i
    is the i-th name, in info["labels"]); files not ending in .wav are ignored. Each clip is
    padded with zeros at the end or cut to round(duration * sample_rate) samples (default:
    the longest clip's length)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError("no such folder; expected a folder with one subfolder of WAV files "
                        "per class", path=str(root))
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError("no class subfolders; expected one subfolder of WAV files per class "
                        "(e.g. dog/1.wav, cat/1.wav)", path=str(root))
    clips, labels = [], []
    for label, sub in enumerate(classes):
        files = sorted(p for p in sub.iterdir()
                       if p.suffix.lower() == ".wav" and not p.name.startswith("."))
        if not files:
            others = [p.name for p in sub.iterdir()]
            found = f" (it holds {capped(others)})" if others else ""
            raise DataError(f"no .wav files in this class folder{found}; every class needs "
                            "at least one clip", path=str(sub))
        for f in files:
            if not f.is_file():
                raise DataError("not a regular file; expected a WAV clip", path=str(f))
            clips.append(read_wav(f, sample_rate))
            labels.append(label)
    if len(classes) < 2:
        raise DataError(f"only one class subfolder ({classes[0].name}); a classifier needs "
                        "at least two", path=str(root))
    if duration is not None:
        samples = round(duration * sample_rate)
        if samples < 1:
            raise DataError(f"duration {duration:g} s is less than one sample at "
                            f"{sample_rate} Hz", path=str(root))
    else:
        samples = max(len(c) for c in clips)
    if samples == 0:
        raise DataError("every clip is empty (0 samples)", path=str(root))
    x = np.stack([fit_length(c, samples) for c in clips]).astype(dtype)
    info = {"sample_rate": int(sample_rate), "labels": [c.name for c in classes]}
    return Dataset(x, np.asarray(labels, dtype=np.int64), root.name, info=info)


def load_audio_npz(path: str | Path, x_key: str = "x", y_key: str = "y",
                   sample_rate: int | None = None, dtype: str = "float32") -> Dataset:
    """Clips x [N, samples] (floats in [-1, 1]) and class labels y from an .npz; the sample
    rate is `sample_rate`, or else the file's scalar array 'sample_rate'."""
    where = str(path)
    data = load_npz(path, x_key, y_key, dtype=dtype)  # every generic check on the file
    if data.num_classes is None:
        raise DataError(f"labels '{y_key}' are {data.y.dtype}; expected integer class labels",
                        path=where)
    if data.x.ndim != 2:
        raise DataError(f"array '{x_key}' has shape {list(data.x.shape)}; expected clips "
                        "[N, samples]", path=where)
    peak = float(np.abs(data.x).max()) if data.x.size else 0.0
    if peak > 1.0 + 1e-6:
        raise DataError(f"array '{x_key}' reaches {peak:g}; expected audio in [-1, 1] (divide "
                        "16-bit samples by 32768)", path=where)
    if sample_rate is None:
        sample_rate = _stored_rate(path)
    info = {"sample_rate": int(sample_rate), "labels": [str(i) for i in range(data.num_classes)]}
    return Dataset(data.x, data.y, data.name, info=info)


def _stored_rate(path) -> int:
    with np.load(path, allow_pickle=False) as npz:
        if "sample_rate" not in npz.files:
            raise DataError("no sample rate: the file has no 'sample_rate' array; set "
                            "data.sample_rate", path=str(path))
        rate = npz["sample_rate"]
    if rate.size != 1 or rate.dtype.kind not in "iuf":
        raise DataError(f"'sample_rate' is {rate.dtype} of shape {list(rate.shape)}; expected "
                        "one number (Hz)", path=str(path))
    value = float(rate.reshape(()))
    if not (math.isfinite(value) and value > 0 and value == int(value)):
        raise DataError(f"'sample_rate' is {value:g}; expected a positive whole number of Hz",
                        path=str(path))
    return int(value)


@register_loader("wav_folder")
def _wav_folder(spec, seed: int, dtype: str) -> Dataset:
    return load_wav_folder(spec.path, spec.sample_rate, spec.duration, dtype)


@register_loader("audio_npz")
def _audio_npz(spec, seed: int, dtype: str) -> Dataset:
    return load_audio_npz(spec.path, spec.x_key, spec.y_key, spec.sample_rate, dtype)
