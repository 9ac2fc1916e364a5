"""Augmenter: shifts move pixels with zero fill, flips mirror, noise has the asked std; seeded,
vectorised, never touching its input, keeping the dtype."""

import numpy as np
import pytest

from nnctl.data import Augmenter


def _rng(seed=0):
    return np.random.default_rng(seed)


def _shift_ref(img, dy, dx):
    """Reference: a loop, pixel by pixel."""
    out = np.zeros_like(img)
    h, w = img.shape[-2:]
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[..., i, j] = img[..., i - dy, j - dx]
    return out


def test_enabled():
    assert not Augmenter().enabled
    assert Augmenter(shift=1, image_shape=(8, 8)).enabled
    assert Augmenter(flip=True, image_shape=(8, 8)).enabled
    assert Augmenter(noise=0.1).enabled


def test_disabled_returns_a_copy():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = Augmenter()(x, _rng())
    np.testing.assert_array_equal(x, y)
    assert y is not x and not np.shares_memory(x, y)


def test_shift_moves_a_single_pixel_as_drawn():
    # One lit pixel per image: where it lands gives each sample's offset; compare with the
    # same offsets drawn from the same seed.
    n, s = 200, 2
    x = np.zeros((n, 7, 7), np.float32)
    x[:, 3, 3] = 1.0
    out = Augmenter(shift=s)(x, _rng(5))
    dy, dx = _rng(5).integers(-s, s + 1, size=(2, n))
    for k in range(n):
        ys, xs = np.nonzero(out[k])
        assert (ys.tolist(), xs.tolist()) == ([3 + dy[k]], [3 + dx[k]])
    # every offset in [-2, 2]^2 occurs, independently per sample
    assert len({(a, b) for a, b in zip(dy, dx)}) == (2 * s + 1) ** 2


def test_shift_matches_reference_with_zero_fill():
    n, s = 50, 3
    x = _rng(1).integers(1, 100, size=(n, 2, 5, 6)).astype(np.int32)  # (N, C, H, W), no zeros
    out = Augmenter(shift=s)(x, _rng(2))
    dy, dx = _rng(2).integers(-s, s + 1, size=(2, n))
    for k in range(n):
        np.testing.assert_array_equal(out[k], _shift_ref(x[k], dy[k], dx[k]))
    # pixels shifted out are gone and the uncovered ones are zero-filled
    assert (out == 0).any()


def test_shift_known_image_flat_features():
    # 3x3 image, flat like digits; with shift=1 and a seed find a sample moved down-right.
    img = np.arange(1, 10, dtype=np.float32)  # [[1,2,3],[4,5,6],[7,8,9]]
    x = np.tile(img, (100, 1))
    out = Augmenter(shift=1, image_shape=(3, 3))(x, _rng(0))
    dy, dx = _rng(0).integers(-1, 2, size=(2, 100))
    k = int(np.flatnonzero((dy == 1) & (dx == 1))[0])
    assert out[k].reshape(3, 3).tolist() == [[0, 0, 0], [0, 1, 2], [0, 4, 5]]
    k = int(np.flatnonzero((dy == -1) & (dx == 0))[0])
    assert out[k].reshape(3, 3).tolist() == [[4, 5, 6], [7, 8, 9], [0, 0, 0]]
    k = int(np.flatnonzero((dy == 0) & (dx == 0))[0])
    assert out[k].tolist() == img.tolist()
    assert out.shape == (100, 9)


def test_shift_larger_than_image():
    x = np.ones((30, 2, 2), np.float32)
    out = Augmenter(shift=5)(x, _rng())
    assert out.shape == x.shape and set(np.unique(out)) <= {0.0, 1.0}


def test_flip_mirrors_about_half():
    n = 1000
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    x = np.broadcast_to(img, (n, 3, 4)).copy()
    out = Augmenter(flip=True)(x, _rng(3))
    mirrored = np.array([np.array_equal(o, img[:, ::-1]) for o in out])
    same = np.array([np.array_equal(o, img) for o in out])
    assert (mirrored ^ same).all()
    assert 400 < mirrored.sum() < 600
    np.testing.assert_array_equal(mirrored, _rng(3).random(n) < 0.5)


def test_flip_channels_and_flat():
    img = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)  # (C, H, W)
    x = np.tile(img.reshape(-1), (64, 1))
    out = Augmenter(flip=True, image_shape=(2, 2, 3))(x, _rng(4)).reshape(64, 2, 2, 3)
    flipped = _rng(4).random(64) < 0.5
    for k in range(64):
        np.testing.assert_array_equal(out[k], img[:, :, ::-1] if flipped[k] else img)


def test_noise_std():
    x = np.full((2000, 64), 3.0, np.float32)
    out = Augmenter(noise=0.5)(x, _rng())
    d = (out - x).astype(np.float64)
    assert abs(d.mean()) < 0.01
    assert abs(d.std() - 0.5) < 0.01
    # no image view needed for noise, any feature shape works
    seq = np.zeros((10, 5, 2), np.float64)
    assert Augmenter(noise=1.0)(seq, _rng()).shape == (10, 5, 2)


def test_noise_needs_float():
    with pytest.raises(ValueError, match="noise needs float features"):
        Augmenter(noise=0.1)(np.zeros((2, 3), np.int64), _rng())


def test_all_together_deterministic_and_seed_dependent():
    aug = Augmenter(shift=2, flip=True, noise=0.1, image_shape=(8, 8))
    x = _rng(9).standard_normal((32, 64)).astype(np.float32)
    a, b = aug(x, _rng(7)), aug(x, _rng(7))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, aug(x, _rng(8)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.uint8, np.int32])
def test_dtype_and_shape_preserved_input_untouched(dtype):
    x = _rng(0).integers(0, 17, size=(16, 64)).astype(dtype)
    before = x.copy()
    noise = 0.2 if np.issubdtype(dtype, np.floating) else 0.0
    out = Augmenter(shift=1, flip=True, noise=noise, image_shape=(8, 8))(x, _rng())
    assert out.dtype == x.dtype and out.shape == x.shape
    np.testing.assert_array_equal(x, before)
    assert not np.shares_memory(out, x)


def test_read_only_input():
    x = np.ones((4, 3, 3), np.float32)
    x.setflags(write=False)
    out = Augmenter(shift=1, flip=True, noise=0.1)(x, _rng())
    assert out.flags.writeable


def test_empty_batch():
    x = np.zeros((0, 64), np.float32)
    assert Augmenter(shift=1, image_shape=(8, 8))(x, _rng()).shape == (0, 64)


def test_shift_or_flip_on_flat_features_without_image_shape():
    x = np.zeros((4, 64), np.float32)
    for aug in (Augmenter(shift=1), Augmenter(flip=True)):
        with pytest.raises(ValueError, match=r"pass image_shape=\(H, W\)"):
            aug(x, _rng())


def test_image_shape_must_fit():
    with pytest.raises(ValueError, match=r"image_shape \(7, 7\) has 49 values but each sample"):
        Augmenter(shift=1, image_shape=(7, 7))(np.zeros((2, 64), np.float32), _rng())


@pytest.mark.parametrize("kwargs", [dict(shift=-1), dict(shift=1.5), dict(shift=True),
                                    dict(flip="yes"), dict(noise=-0.1), dict(noise=float("nan")),
                                    dict(noise="0.1"), dict(image_shape=(8,)),
                                    dict(image_shape=(1, 2, 3, 4)), dict(image_shape=(8, 0)),
                                    dict(image_shape=(8.0, 8)), dict(image_shape=8)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        Augmenter(**kwargs)


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        Augmenter(noise=0.1)(np.zeros((2, 2), np.float32), np.random.RandomState(0))


def test_repr():
    assert repr(Augmenter(shift=2, image_shape=[8, 8])) == (
        "Augmenter(shift=2, flip=False, noise=0.0, image_shape=(8, 8))")
