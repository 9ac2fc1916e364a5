"""Audio data kinds: WAV folders and audio NPZ files, their bad inputs (one DataError naming
the file; exit 2 through `nnctl train`), and the shipped DTMF set and its generator."""

from __future__ import annotations

import importlib.util
import json
import wave
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import nnctl.data.audio  # noqa: F401  (registers wav_folder and audio_npz)
from nnctl.cli.app import app
from nnctl.data.audio import load_audio_npz, load_wav_folder, read_wav
from nnctl.data.kinds import LOADERS
from nnctl.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
DTMF = ROOT / "datasets" / "dtmf"


def write_wav(path: Path, ints, rate=8000, channels=1, width=2) -> Path:
    """A PCM WAV of the integer samples `ints` (interleaved when channels > 1)."""
    ints = np.asarray(ints, dtype=np.int64)
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    elif width == 3:
        b = (ints & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
        raw = b.tobytes()
    else:
        raw = ints.astype({2: "<i2", 4: "<i4"}[width]).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


# ---- reading WAV files ------------------------------------------------------------------

@pytest.mark.parametrize("width, ints, scale", [
    (1, [-128, -1, 0, 5, 127], 128.0),
    (2, [-32768, -1, 0, 1234, 32767], 32768.0),
    (3, [-8388608, -70000, -1, 0, 65536, 8388607], 8388608.0),
    (4, [-2147483648, -5, 0, 99999, 2147483647], 2147483648.0),
])
def test_pcm_widths_become_floats_in_minus_one_to_one(tmp_path, width, ints, scale):
    path = write_wav(tmp_path / "a.wav", ints, width=width)
    got = read_wav(path, 8000)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.array(ints) / scale)


def make_folder(root: Path, spec: dict) -> Path:
    """spec: class name -> list of sample lists (one WAV each)."""
    for name, clips in spec.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, clip in enumerate(clips):
            write_wav(root / name / f"{i}.wav", clip)
    return root


def test_wav_folder_classes_labels_and_lengths(tmp_path):
    root = make_folder(tmp_path / "set", {
        "zebra": [[100, 200, 300]], "ant": [[1, 2], [3, 4, 5, 6, 7]], "moth": [[9]]})
    (root / "ant" / "notes.txt").write_text("ignored")
    data = load_wav_folder(root, 8000, dtype="float64")
    assert data.info == {"sample_rate": 8000, "labels": ["ant", "moth", "zebra"]}
    np.testing.assert_array_equal(data.y, [0, 0, 1, 2])
    assert data.y.dtype == np.int64 and data.x.dtype == np.float64
    # default length: the longest clip (5); shorter ones padded with zeros at the end
    np.testing.assert_array_equal(data.x * 32768, [[1, 2, 0, 0, 0], [3, 4, 5, 6, 7],
                                                   [9, 0, 0, 0, 0], [100, 200, 300, 0, 0]])
    # a duration: 3 samples at 1000 Hz... every clip padded or cut to round(d * rate)
    rated = make_folder(tmp_path / "r", {"a": [list(range(1, 8))], "b": [[5]]})
    for path in rated.rglob("*.wav"):
        write_wav(path, read_wav(path, 8000) * 32768, rate=1000)
    cut = load_wav_folder(rated, 1000, duration=0.003, dtype="float64")
    np.testing.assert_array_equal(cut.x * 32768, [[1, 2, 3], [5, 0, 0]])
    assert cut.x.shape == (2, 3)


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_wrong_sample_rate_names_the_file(tmp_path):
    root = make_folder(tmp_path / "set", {"a": [[1, 2]], "b": [[3]]})
    bad = write_wav(root / "b" / "x.wav", [1, 2, 3], rate=16000)
    text = error_of(load_wav_folder, root, 8000)
    assert text == (f"{bad}: sample rate 16000 Hz, expected 8000 Hz (resample it, or set "
                    "data.sample_rate)")


def test_stereo_file_names_the_file(tmp_path):
    root = make_folder(tmp_path / "set", {"a": [[1, 2]], "b": [[3]]})
    bad = write_wav(root / "a" / "st.wav", [1, 2, 3, 4], channels=2)
    assert error_of(load_wav_folder, root, 8000) == (
        f"{bad}: 2 channels, expected mono (mix it down to one channel)")


def test_not_a_wav_file_names_the_file(tmp_path):
    root = make_folder(tmp_path / "set", {"a": [[1, 2]], "b": [[3]]})
    bad = root / "b" / "fake.wav"
    bad.write_bytes(b"ID3\x03 this is an mp3, honest")
    text = error_of(load_wav_folder, root, 8000)
    assert text.startswith(f"{bad}: not a PCM WAV file (")
    assert text.endswith("expected mono PCM audio")
    # a WAV of float samples (format 3) is not PCM for the wave module either
    head = bytearray((root / "a" / "0.wav").read_bytes())
    head[20:22] = (3).to_bytes(2, "little")
    (root / "a" / "0.wav").write_bytes(bytes(head))
    bad.unlink()
    assert "0.wav: not a PCM WAV file (unknown format: 3)" in error_of(load_wav_folder, root,
                                                                       8000)


def test_truncated_wav_names_the_file(tmp_path):
    root = make_folder(tmp_path / "set", {"a": [[1, 2, 3, 4]], "b": [[3]]})
    path = root / "a" / "0.wav"
    path.write_bytes(path.read_bytes()[:-3])  # header says 4 samples; 2.5 remain
    assert error_of(load_wav_folder, root, 8000) == (
        f"{path}: truncated: the header promises 4 samples, the file holds 2")


def test_empty_class_folder_no_classes_and_one_class(tmp_path):
    root = make_folder(tmp_path / "set", {"a": [[1, 2]], "b": [[3]]})
    (root / "c").mkdir()
    (root / "c" / "readme.md").write_text("x")
    assert error_of(load_wav_folder, root, 8000) == (
        f"{root / 'c'}: no .wav files in this class folder (it holds readme.md); every class "
        "needs at least one clip")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "loose.wav").write_bytes(b"")
    assert error_of(load_wav_folder, empty, 8000).startswith(f"{empty}: no class subfolders")
    one = make_folder(tmp_path / "one", {"only": [[1]]})
    assert "only one class subfolder (only)" in error_of(load_wav_folder, one, 8000)
    assert error_of(load_wav_folder, tmp_path / "missing", 8000).startswith(
        f"{tmp_path / 'missing'}: no such folder")


# ---- audio NPZ ----------------------------------------------------------------------------

def test_audio_npz_rate_from_the_file_or_the_spec(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, size=(6, 50))
    path = tmp_path / "a.npz"
    np.savez(path, x=x, y=np.array([0, 1, 2, 0, 1, 2]), sample_rate=np.array(16000))
    data = load_audio_npz(path, dtype="float64")
    assert data.info == {"sample_rate": 16000, "labels": ["0", "1", "2"]}
    np.testing.assert_array_equal(data.x, x)
    assert load_audio_npz(path, sample_rate=8000).info["sample_rate"] == 8000
    np.savez(path, x=x, y=np.arange(6) % 2)
    assert error_of(load_audio_npz, path) == (
        f"{path}: no sample rate: the file has no 'sample_rate' array; set data.sample_rate")
    np.savez(path, x=x * 40000, y=np.arange(6) % 2, sample_rate=8000)
    assert "expected audio in [-1, 1] (divide 16-bit samples by 32768)" in \
        error_of(load_audio_npz, path)
    np.savez(path, x=x.reshape(6, 5, 10), y=np.arange(6) % 2, sample_rate=8000)
    assert "has shape [6, 5, 10]; expected clips [N, samples]" in error_of(load_audio_npz, path)
    np.savez(path, x=x, y=np.arange(6) * 0.5, sample_rate=8000)
    assert "expected integer class labels" in error_of(load_audio_npz, path)
    np.savez(path, x=x, y=np.arange(6) % 2, sample_rate=np.array([8000, 16000]))
    assert "expected one number (Hz)" in error_of(load_audio_npz, path)


# ---- through the CLI: exit 2 and one line naming the file -----------------------------------

CONFIG = """\
seed: 0
data: {{dataset: wav_folder, path: {path}, sample_rate: 8000, split: {{val: 0.2, test: 0.2}}}}
model:
  layers:
    - spectrogram: {{n_fft: 8, hop: 4, mels: 3}}
    - flatten: {{}}
    - dense: {{units: classes}}
loss: cross_entropy
optimizer: {{name: adam, lr: 0.01}}
train: {{epochs: 1, batch_size: 4}}
"""


def test_a_bad_wav_through_nnctl_train_exits_2_naming_it(tmp_path):
    rng = np.random.default_rng(0)
    root = make_folder(tmp_path / "clips", {k: [rng.integers(-99, 99, 40) for _ in range(5)]
                                            for k in "abc"})
    bad = write_wav(root / "b" / "loud.wav", rng.integers(-99, 99, 40), rate=44100)
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(path="clips"))
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(runs), "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {config}:2: data: ")
    assert lines[0].endswith(f"{bad.resolve()}: sample rate 44100 Hz, expected 8000 Hz "
                             "(resample it, or set data.sample_rate)")
    assert not runs.exists()
    # fixed, the same config trains, reading the rate from the data (mels need it)
    bad.unlink()
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(runs), "--no-progress"])
    assert result.exit_code == 0, result.output


def test_a_missing_folder_is_a_config_error(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG.format(path="nowhere"))
    result = CliRunner().invoke(app, ["validate", str(config)])
    assert result.exit_code == 2
    assert "data.path: no such folder: nowhere (relative to the config file)" in result.stderr


# ---- the shipped DTMF set ---------------------------------------------------------------------

def test_shipped_dtmf_set():
    assert set(LOADERS) >= {"wav_folder", "audio_npz"}
    data = load_wav_folder(DTMF, 8000, duration=0.24, dtype="float64")
    assert data.x.shape == (480, 1920)
    assert data.info["labels"] == ["key_0", "key_1", "key_2", "key_3", "key_4", "key_5",
                                   "key_6", "key_7", "key_8", "key_9", "key_hash", "key_star"]
    np.testing.assert_array_equal(np.bincount(data.y), [40] * 12)
    assert 0.09 < np.abs(data.x).max(axis=1).min() and np.abs(data.x).max() < 0.91
    # each key's average spectrum peaks at its row and column frequencies (within 1.5% and a
    # bin), and the two strongest bins between 600 and 1600 Hz are those two
    rows, cols = (697, 770, 852, 941), (1209, 1336, 1477)
    keypad = {"key_1": (0, 0), "key_2": (0, 1), "key_3": (0, 2), "key_4": (1, 0),
              "key_5": (1, 1), "key_6": (1, 2), "key_7": (2, 0), "key_8": (2, 1),
              "key_9": (2, 2), "key_star": (3, 0), "key_0": (3, 1), "key_hash": (3, 2)}
    freqs = np.fft.rfftfreq(1920, 1 / 8000)
    band = (freqs > 600) & (freqs < 1600)
    for label, name in enumerate(data.info["labels"]):
        spectrum = (np.abs(np.fft.rfft(data.x[data.y == label], axis=1)) ** 2).mean(0)
        low = freqs[band & (freqs < 1100)][spectrum[band & (freqs < 1100)].argmax()]
        high = freqs[band & (freqs > 1100)][spectrum[band & (freqs > 1100)].argmax()]
        r, c = keypad[name]
        assert abs(low - rows[r]) <= 0.015 * rows[r] + 4.2, (name, low)
        assert abs(high - cols[c]) <= 0.015 * cols[c] + 4.2, (name, high)


def test_make_dtmf_regenerates_the_shipped_files_bit_for_bit(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("make_dtmf", ROOT / "datasets" / "make_dtmf.py")
    make_dtmf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_dtmf)
    monkeypatch.setattr("sys.argv", ["make_dtmf.py", "--out", str(tmp_path)])
    make_dtmf.main()
    shipped = sorted(p.relative_to(DTMF) for p in DTMF.rglob("*.wav"))
    assert shipped == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.wav"))
    assert len(shipped) == 480
    for rel in shipped:
        assert (tmp_path / rel).read_bytes() == (DTMF / rel).read_bytes(), rel


def test_dtmf_config_learns_above_chance(tmp_path):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["train", str(ROOT / "configs" / "dtmf.yaml"), "--out",
                                      str(runs), "--no-progress", "--set", "train.epochs=6"])
    assert result.exit_code == 0, result.output
    summary = json.loads(next(runs.rglob("summary.json")).read_text())
    assert summary["status"] == "completed"
    assert summary["test_accuracy"] > 0.5  # chance is 1/12; 6 epochs reach ~0.8
