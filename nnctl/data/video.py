"""Video data kinds: frame stacks from an .npz (`frames_npz`) and the generated
`moving_shapes` task.

Both give x float [N, frames, channels, height, width] (frames first, so time_distributed
and recurrent layers read it as it is; `permute: [2, 1, 3, 4]` makes conv3d's [N, channels,
frames, height, width]) and int64 class labels y, with the class names in info["labels"].

moving_shapes: a small bright shape (a 2x2 or 3x3 square, a plus, or an L) drifts across
noisy square frames, up, down, left or right, 1..max_speed pixels per frame; the label is the
direction. The frame is a torus (a shape leaving one edge comes back on the opposite one) and
the start position is uniform over the whole frame, so in every frame the shape's position is
uniform whatever the direction, and the shape looks the same at every step: one frame says
nothing about the direction (a single-frame model is at chance, 25%); only the change between
frames does. The config's seed decides every draw.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nnctl.data.dataset import Dataset
from nnctl.data.kinds import register_loader
from nnctl.data.loaders import load_npz
from nnctl.errors import DataError

DIRECTIONS = ("up", "down", "left", "right")
# (row, column) steps of each direction, in DIRECTIONS' order (rows grow downwards)
STEPS = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)], dtype=np.int64)
# the shapes' pixels as (row, column) offsets from their top-left corner
SHAPES = (
    ((0, 0), (0, 1), (1, 0), (1, 1)),                                  # 2x2 square
    tuple((i, j) for i in range(3) for j in range(3)),                 # 3x3 square
    ((0, 1), (1, 0), (1, 1), (1, 2), (2, 1)),                          # plus
    ((0, 0), (1, 0), (2, 0), (2, 1)),                                  # L
)
STREAM = 0x51DE0  # the task's own random stream of the seed, apart from the split's


def make_moving_shapes(samples: int, seed: int, frames: int = 8, size: int = 12,
                       max_speed: int = 2, noise: float = 0.3,
                       dtype: str = "float32") -> Dataset:
    """`samples` clips x [N, frames, 1, size, size] and their direction labels y (index into
    DIRECTIONS), the four directions equally often (up to one clip)."""
    rng = np.random.default_rng([seed, STREAM])
    y = rng.permutation(np.arange(samples) % len(DIRECTIONS)).astype(np.int64)
    shape = rng.integers(len(SHAPES), size=samples)
    speed = rng.integers(1, max_speed + 1, size=samples)
    start = rng.integers(size, size=(samples, 2))
    t = np.arange(frames)
    # top-left corner of the shape in every frame [N, frames, 2], wrapped around the torus
    velocity = speed[:, None] * STEPS[y]  # [N, 2]
    corner = (start[:, None, :] + t[None, :, None] * velocity[:, None, :]) % size
    x = np.zeros((samples, frames, 1, size, size))
    for k, pixels in enumerate(SHAPES):
        n = np.flatnonzero(shape == k)
        for dr, dc in pixels:
            rows = (corner[n, :, 0] + dr) % size
            cols = (corner[n, :, 1] + dc) % size
            x[n[:, None], t[None, :], 0, rows, cols] = 1.0
    x += rng.normal(0.0, noise, size=x.shape)
    return Dataset(x.astype(dtype), y, "moving_shapes", info={"labels": list(DIRECTIONS)})


def _member_dtype(path: Path, key: str) -> np.dtype | None:
    """The dtype in the header of array `key` of an .npz, read without loading (nor
    unpickling) it; None where the file or member cannot be read so (load_npz says why)."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            return read(f)[2]
    except Exception:  # noqa: BLE001 - any failure: load_npz's own checks report it
        return None


def load_frames_npz(path: str | Path, x_key: str = "x", y_key: str = "y",
                    dtype: str = "float32") -> Dataset:
    """Frame stacks x [N, frames, channels, height, width] and class labels y from an .npz.
    Clips of different sizes (an object array), a wrong rank or non-integer labels are one
    DataError naming the file."""
    where = str(path)
    if _member_dtype(Path(path), x_key) == np.dtype(object):
        raise DataError(f"array '{x_key}' holds clips or frames of different sizes (a "
                        "dtype=object array); expected one array [N, frames, channels, height, "
                        "width]: crop or pad every frame to one size", path=where)
    data = load_npz(path, x_key, y_key, dtype=dtype)  # every generic check on the file
    if data.x.ndim != 5:
        hint = (" (one channel? add its axis: x[:, :, None])" if data.x.ndim == 4 else "")
        raise DataError(f"array '{x_key}' has shape {list(data.x.shape)}; expected frame stacks "
                        f"[N, frames, channels, height, width]{hint}", path=where)
    if data.num_classes is None:
        raise DataError(f"labels '{y_key}' are {data.y.dtype}; expected integer class labels",
                        path=where)
    info = {"labels": [str(i) for i in range(data.num_classes)]}
    return Dataset(data.x, data.y, data.name, info=info)


@register_loader("frames_npz")
def _frames_npz(spec, seed: int, dtype: str) -> Dataset:
    return load_frames_npz(spec.path, spec.x_key, spec.y_key, dtype)


@register_loader("moving_shapes")
def _moving_shapes(spec, seed: int, dtype: str) -> Dataset:
    return make_moving_shapes(spec.samples, seed, spec.frames, spec.size, spec.max_speed,
                              spec.noise, dtype)
