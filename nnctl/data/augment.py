"""Host-side batch augmentation for training: random shifts, horizontal flips, gaussian noise.

Everything is vectorised over the batch and drawn from the numpy Generator the caller passes,
so a seeded run augments identically every time. The input batch is never modified.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


class Augmenter:
    """Augment a batch of samples; `aug(x_batch, rng)` returns a new array of x's shape and dtype.

    shift: move each image by up to `shift` pixels up/down and left/right (independent
        uniform integer offsets per sample), filling uncovered pixels with 0.
    flip: mirror each image left-right with probability 0.5.
    noise: add gaussian noise of this standard deviation to every feature, as given (after
        normalisation, when the trainer augments normalised batches). Float features only.
    image_shape: (C, H, W) or (H, W), how to view flat features as images (digits: (8, 8)).
        Without it, a batch of 3 dims is read as (N, H, W) and one of 4 dims as (N, C, H, W).
    Operations run in the order shift, flip, noise.
    """

    def __init__(self, shift: int = 0, flip: bool = False, noise: float = 0.0,
                 image_shape: tuple | None = None):
        if isinstance(shift, bool) or not isinstance(shift, numbers.Integral) or shift < 0:
            raise ValueError(f"shift must be an integer >= 0 (pixels), got {shift!r}")
        if not isinstance(flip, (bool, np.bool_)):
            raise ValueError(f"flip must be true or false, got {flip!r}")
        if (isinstance(noise, bool) or not isinstance(noise, numbers.Real)
                or not math.isfinite(noise) or noise < 0):
            raise ValueError(f"noise must be a finite number >= 0 (a standard deviation), "
                             f"got {noise!r}")
        if image_shape is not None:
            try:
                dims = tuple(image_shape)
            except TypeError:
                dims = None
            if (dims is None or len(dims) not in (2, 3)
                    or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool)
                               and d > 0 for d in dims)):
                raise ValueError(f"image_shape must be (C, H, W) or (H, W) of positive "
                                 f"integers, got {image_shape!r}")
            image_shape = tuple(int(d) for d in dims)
        self.shift = int(shift)
        self.flip = bool(flip)
        self.noise = float(noise)
        self.image_shape = image_shape

    def __repr__(self) -> str:
        return (f"Augmenter(shift={self.shift}, flip={self.flip}, noise={self.noise}, "
                f"image_shape={self.image_shape})")

    @property
    def enabled(self) -> bool:
        """True when calling this changes anything (otherwise it returns a plain copy)."""
        return self.shift > 0 or self.flip or self.noise > 0

    def _images(self, x: np.ndarray) -> tuple[int, int, int]:
        """(C, H, W) to view each sample of x as."""
        if self.image_shape is not None:
            dims = self.image_shape
            if math.prod(x.shape[1:]) != math.prod(dims):
                raise ValueError(f"image_shape {dims} has {math.prod(dims)} values but each "
                                 f"sample has shape {x.shape[1:]} ({math.prod(x.shape[1:])} "
                                 "values)")
        elif x.ndim in (3, 4):
            dims = x.shape[1:]
        else:
            raise ValueError(f"shift and flip need images, but the samples have shape "
                             f"{x.shape[1:]}; pass image_shape=(H, W) or (C, H, W) to say how "
                             "to view flat features (digits: image_shape=(8, 8))")
        return (1, *dims) if len(dims) == 2 else tuple(dims)

    def __call__(self, x_batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        x = np.asarray(x_batch)
        if x.ndim < 2:
            raise ValueError(f"expected a batch of shape (N, features...), got shape {x.shape}")
        if self.noise > 0 and x.dtype.kind != "f":
            raise ValueError(f"noise needs float features, got dtype {x.dtype}")
        out = x.copy()
        n = len(x)
        if n == 0 or not self.enabled:
            return out
        if self.shift > 0 or self.flip:
            c, h, w = self._images(x)
            img = out.reshape(n, c, h, w)
            if self.shift > 0:
                img = _shift(img, self.shift, rng)
            if self.flip:
                mirror = rng.random(n) < 0.5
                img[mirror] = img[mirror, :, :, ::-1]
            out = img.reshape(x.shape)
        if self.noise > 0:
            # float32/float64 draw in their own precision; other floats (float16) via float64
            ndt = out.dtype if out.dtype in (np.float32, np.float64) else np.dtype(np.float64)
            out += (rng.standard_normal(out.shape, dtype=ndt) * ndt.type(self.noise)).astype(
                out.dtype, copy=False)
        return out


def _shift(img: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by its own (dy, dx) in [-s, s]^2 with zero fill: out[i, j] =
    img[i - dy, j - dx]. One gather from a zero-padded copy, no loop over samples."""
    n, _, h, w = img.shape
    dy, dx = rng.integers(-s, s + 1, size=(2, n))
    padded = np.zeros((n, img.shape[1], h + 2 * s, w + 2 * s), dtype=img.dtype)
    padded[:, :, s:s + h, s:s + w] = img
    rows = np.arange(h)[None, :] - dy[:, None] + s  # (n, h), always inside the padding
    cols = np.arange(w)[None, :] - dx[:, None] + s  # (n, w)
    return padded[np.arange(n)[:, None, None, None], np.arange(img.shape[1])[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]
