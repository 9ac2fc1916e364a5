"""Synthesize the shipped DTMF data set: telephone key tones in noise, as WAV clips.

    python datasets/make_dtmf.py [--out datasets/dtmf] [--per-key 40] [--seed 9]

Each of the 12 keys (0-9, *, #) sounds two sine tones at once, one from the low group
(697, 770, 852, 941 Hz: the keypad's row) and one from the high group (1209, 1336, 1477 Hz:
its column), the dual-tone multi-frequency signalling of ITU-T Q.23. Each clip is 0.24 s of
8000 Hz mono 16-bit PCM in which the key sounds once, with what makes it a task rather than
a lookup:

- timing: the tone starts anywhere in the first 0.12 s and lasts 40 to 110 ms (Q.24's
  shortest valid tone is 40 ms), with 5 ms raised-cosine edges;
- level: a random amplitude and a random "twist" between the two tones (up to +-4 dB);
- frequency: each tone off its nominal frequency by up to +-1.5% (what Q.24 lets a receiver
  accept), and a random phase;
- noise: white Gaussian noise at a signal-to-noise ratio from -8 to +8 dB over the tone, and
  a mains-like hum (50 or 60 Hz and its harmonics) of random level.

Every random draw comes from one seeded generator, so the same seed writes the same files
(bit for bit). The output is CC0: generated, no recording involved.
"""

from __future__ import annotations

import argparse
import wave
from pathlib import Path

import numpy as np

RATE = 8000
SECONDS = 0.24
LOW = (697.0, 770.0, 852.0, 941.0)
HIGH = (1209.0, 1336.0, 1477.0)
KEYS = {  # folder name -> (row, column) on the keypad
    "key_1": (0, 0), "key_2": (0, 1), "key_3": (0, 2),
    "key_4": (1, 0), "key_5": (1, 1), "key_6": (1, 2),
    "key_7": (2, 0), "key_8": (2, 1), "key_9": (2, 2),
    "key_star": (3, 0), "key_0": (3, 1), "key_hash": (3, 2),
}


def tone_clip(row: int, col: int, rng: np.random.Generator) -> np.ndarray:
    """One 0.24 s clip of the key at (row, col), float64 in [-1, 1]."""
    n = round(RATE * SECONDS)
    t = np.arange(n) / RATE
    length = rng.uniform(0.040, 0.110)
    start = rng.uniform(0.0, min(0.12, SECONDS - length))
    edge = 0.005
    # the tone's envelope: 0 outside, 1 inside, raised-cosine ramps of 5 ms at both ends
    inside = np.clip(np.minimum(t - start, start + length - t) / edge, 0.0, 1.0)
    envelope = 0.5 - 0.5 * np.cos(np.pi * inside)
    twist = 10 ** (rng.uniform(-4, 4) / 20)
    tones = np.zeros(n)
    for freq, level in ((LOW[row], 1.0), (HIGH[col], twist)):
        f = freq * (1 + rng.uniform(-0.015, 0.015))
        tones += level * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    signal = tones * envelope
    on = envelope > 0.5
    power = float(np.mean(signal[on] ** 2))
    snr_db = rng.uniform(-8.0, 8.0)
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), n)
    mains = rng.choice([50.0, 60.0])
    hum = sum(rng.uniform(0, 0.5) * np.sqrt(power) * np.sin(2 * np.pi * k * mains * t
                                                            + rng.uniform(0, 2 * np.pi))
              for k in (1, 2, 3))
    clip = signal + noise + hum
    # a random level, with headroom: the loudest sample lands between 0.1 and 0.9
    return clip * rng.uniform(0.1, 0.9) / np.max(np.abs(clip))


def write_wav(path: Path, clip: np.ndarray) -> None:
    pcm = np.round(np.clip(clip, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "dtmf")
    parser.add_argument("--per-key", type=int, default=40)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for key, (row, col) in KEYS.items():  # one generator, keys in a fixed order
        folder = args.out / key
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.wav"):
            old.unlink()
        for i in range(args.per_key):
            write_wav(folder / f"{i:02d}.wav", tone_clip(row, col, rng))
    print(f"wrote {len(KEYS) * args.per_key} clips to {args.out}")


if __name__ == "__main__":
    main()
