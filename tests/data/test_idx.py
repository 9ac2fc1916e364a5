"""read_idx / write_idx / load_idx: round trips of every IDX type, plain and gzip, and a
one-line DataError naming the file for every malformed one."""

import gzip
import struct

import numpy as np
import pytest

from nnctl.data import Dataset, idx, load_idx, read_idx, write_idx
from nnctl.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D,
         np.float64: 0x0E}


def _sample(dtype, shape=(3, 4, 5)):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:  # the full range, extremes included, to catch sign/endian slips
        a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        a.flat[0], a.flat[1] = info.min, info.max
        return a
    return (rng.standard_normal(shape) * 1e3).astype(dtype)


def _raw(path, data: bytes, gz: bool = False):
    if gz:
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _header(code, dims):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def _error(path, match):
    with pytest.raises(DataError, match=match) as e:
        read_idx(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path) + ": ")
    return msg


# ---- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_every_dtype(tmp_path, dtype, gz):
    a = _sample(dtype)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, a)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == gz
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == a.shape
    np.testing.assert_array_equal(a, b)
    assert b.flags.writeable


@pytest.mark.parametrize("shape", [(7,), (2, 3), (1, 1, 1, 1), (0,), (2, 0, 3)])
def test_round_trip_shapes(tmp_path, shape):
    a = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape)
    write_idx(tmp_path / "a", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), a)


def test_write_layout_is_big_endian_idx(tmp_path):
    write_idx(tmp_path / "a", np.array([[1, 2, 3], [4, 5, 256]], dtype=np.int16))
    assert (tmp_path / "a").read_bytes() == (
        b"\x00\x00\x0b\x02" + b"\x00\x00\x00\x02" + b"\x00\x00\x00\x03"
        + b"\x00\x01\x00\x02\x00\x03\x00\x04\x00\x05\x01\x00")


def test_read_hand_written_file(tmp_path):
    data = _header(0x0D, [2, 2]) + struct.pack(">4f", 1.5, -2.0, 0.0, 3.25)
    a = read_idx(_raw(tmp_path / "f.idx", data))
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, [[1.5, -2.0], [0.0, 3.25]])


def test_gzip_detected_by_magic_not_name(tmp_path):
    a = _sample(np.int32)
    write_idx(tmp_path / "a.gz", a)
    (tmp_path / "a.gz").rename(tmp_path / "renamed.idx")
    np.testing.assert_array_equal(read_idx(tmp_path / "renamed.idx"), a)
    # and a plain file named .gz reads as plain
    write_idx(tmp_path / "plain", a)
    (tmp_path / "plain").rename(tmp_path / "plain.gz")
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), a)


def test_gzip_output_is_reproducible(tmp_path):
    a = _sample(np.uint8)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "b.gz", a)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_write_accepts_non_native_and_non_contiguous(tmp_path):
    a = np.arange(12, dtype=">i4").reshape(3, 4)[:, ::2]
    write_idx(tmp_path / "a", a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), a)
    write_idx(tmp_path / "b", [[1.0, 2.0]])  # a list: float64
    assert read_idx(tmp_path / "b").dtype == np.float64


@pytest.mark.parametrize("bad", [np.zeros(3, np.int64), np.zeros(3, np.float16),
                                 np.zeros(3, bool), np.zeros(3, np.uint16),
                                 np.zeros(3, np.complex64), np.array(["a"]), np.float32(1.0)])
def test_write_rejects_what_idx_cannot_hold(tmp_path, bad):
    with pytest.raises(ValueError, match="IDX"):
        write_idx(tmp_path / "a", bad)
    assert not (tmp_path / "a").exists()


# ---- malformed files -----------------------------------------------------------------------

def test_missing_file(tmp_path):
    _error(tmp_path / "nope.idx", "no such file; expected an IDX file")


def test_directory(tmp_path):
    _error(tmp_path, "not a regular file")


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_empty(tmp_path, gz):
    _error(_raw(tmp_path / "e", b"", gz), "empty file" if not gz else "truncated header")


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_bad_magic(tmp_path, gz):
    msg = _error(_raw(tmp_path / "m", b"PK\x03\x04" + bytes(20), gz), "bad magic bytes")
    assert "50 4b 03 04" in msg and "expected an IDX file" in msg


def test_npy_is_bad_magic(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    _error(tmp_path / "a.npy", "bad magic bytes 93 4e 55 4d")


@pytest.mark.parametrize("code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_unknown_type_code(tmp_path, code):
    msg = _error(_raw(tmp_path / "t", _header(code, [1]) + b"\x00" * 8),
                 f"unknown IDX type code 0x{code:02X}")
    assert "0x08" in msg and "uint8" in msg


def test_zero_dimensions(tmp_path):
    _error(_raw(tmp_path / "z", b"\x00\x00\x08\x00\x05"), "0 dimensions")


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_truncated_header(tmp_path, gz):
    _error(_raw(tmp_path / "h", b"\x00\x00", gz), r"truncated header: 2 byte")
    _error(_raw(tmp_path / "h", _header(0x08, [2, 3])[:9], gz),
           r"truncated header: 9 byte\(s\).*expected 12 for 2 dimension")


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_truncated_data(tmp_path, gz):
    data = _header(0x0C, [2, 3]) + bytes(4 * 6 - 5)
    msg = _error(_raw(tmp_path / "d", data, gz), "truncated: header says 2x3 int32 needs 24 bytes")
    assert "the file has 19" in msg


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_trailing_data(tmp_path, gz):
    data = _header(0x08, [4]) + bytes(5)
    _error(_raw(tmp_path / "d", data, gz), "trailing bytes: header says 4 uint8 needs 4 bytes")


def test_huge_header_is_refused_not_allocated(tmp_path):
    # 10^6 x 10^6 float64: 8 TB claimed by a 20-byte file
    path = _raw(tmp_path / "huge", _header(0x0E, [10 ** 6, 10 ** 6]) + bytes(8))
    msg = _error(path, "truncated: header says 1000000x1000000 float64 needs 8000000000000")
    assert "the file has 8" in msg


def test_huge_header_in_gzip_is_refused_not_allocated(tmp_path, monkeypatch):
    # More than deflate can expand the file to (about 1032:1): refused at once.
    path = _raw(tmp_path / "huge.gz", _header(0x08, [2 ** 32 - 1] * 3) + bytes(8), gz=True)
    _error(path, "more than a .*-byte gzip file can hold")
    # Within that bound: read in bounded chunks (small here, to take several), then refused.
    monkeypatch.setattr(idx, "_CHUNK", 1000)
    n = 100_000
    data = np.random.default_rng(0).integers(0, 256, n).astype(np.uint8).tobytes()
    path = _raw(tmp_path / "big.gz", _header(0x08, [n, 2]) + data, gz=True)
    _error(path, f"truncated: header says {n}x2 uint8 needs {n * 2} bytes of data, the file has "
                 f"{n} \\(after gzip decompression\\)")


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(_header(0x08, [100]) + bytes(range(100)))
    _error(_raw(tmp_path / "c", good[:-12]), "corrupt or truncated gzip data")
    _error(_raw(tmp_path / "c", good[:10] + b"\xff" * 20 + good[30:]),
           "corrupt or truncated gzip data")


# ---- load_idx ------------------------------------------------------------------------------

def _mnist_like(tmp_path, n=5, h=4, w=3, gz=True, label_dtype=np.uint8):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(n, h, w)).astype(np.uint8)
    labels = rng.integers(0, 10, size=n).astype(label_dtype)
    ext = ".gz" if gz else ""
    ip, lp = tmp_path / f"train-images-idx3-ubyte{ext}", tmp_path / f"train-labels-idx1-ubyte{ext}"
    write_idx(ip, images)
    write_idx(lp, labels)
    return ip, lp, images, labels


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_load_idx(tmp_path, gz):
    ip, lp, images, labels = _mnist_like(tmp_path, gz=gz)
    ds = load_idx(ip, lp)
    assert isinstance(ds, Dataset) and len(ds) == 5
    assert ds.name == "train-images-idx3-ubyte"
    assert ds.x.dtype == np.float32 and ds.x.shape == (5, 12)
    assert ds.y.dtype == np.int64 and ds.y.shape == (5,)
    np.testing.assert_array_equal(ds.x, images.reshape(5, 12))  # 0..255 kept, row-major
    np.testing.assert_array_equal(ds.y, labels)
    assert ds.x.max() > 1  # not scaled: the normaliser's job


def test_load_idx_other_types(tmp_path):
    write_idx(tmp_path / "i", np.linspace(0, 1, 2 * 3 * 2 * 2).reshape(2, 3, 2, 2))
    write_idx(tmp_path / "l", np.array([3, 0], np.int32))
    ds = load_idx(tmp_path / "i", tmp_path / "l")
    assert ds.x.shape == (2, 12) and ds.x.dtype == np.float32
    assert ds.y.tolist() == [3, 0] and ds.num_classes == 4


def test_load_idx_count_mismatch(tmp_path):
    ip, lp, *_ = _mnist_like(tmp_path)
    write_idx(lp, np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="has 4 labels but .* has 5 images") as e:
        load_idx(ip, lp)
    assert str(e.value).startswith(str(lp)) and str(ip) in str(e.value)


def test_load_idx_labels_not_1d(tmp_path):
    ip, lp, *_ = _mnist_like(tmp_path)
    write_idx(lp, np.zeros((5, 1), np.uint8))
    with pytest.raises(DataError, match=r"labels have shape \(5, 1\); expected a 1-D"):
        load_idx(ip, lp)


def test_load_idx_images_1d(tmp_path):
    ip, lp, *_ = _mnist_like(tmp_path)
    write_idx(ip, np.zeros(5, np.uint8))
    with pytest.raises(DataError, match=r"images have shape \(5,\); expected \(N, H, W\)"):
        load_idx(ip, lp)


def test_load_idx_empty(tmp_path):
    write_idx(tmp_path / "i", np.zeros((0, 28, 28), np.uint8))
    write_idx(tmp_path / "l", np.zeros(0, np.uint8))
    with pytest.raises(DataError, match="empty: no images"):
        load_idx(tmp_path / "i", tmp_path / "l")
    write_idx(tmp_path / "i", np.zeros((2, 0, 28), np.uint8))
    write_idx(tmp_path / "l", np.zeros(2, np.uint8))
    with pytest.raises(DataError, match="empty images"):
        load_idx(tmp_path / "i", tmp_path / "l")


def test_load_idx_bad_labels(tmp_path):
    ip, lp, *_ = _mnist_like(tmp_path)
    write_idx(lp, np.array([0, 1, -2, 3, 4], np.int8))
    with pytest.raises(DataError, match="label -2 at index 2 is negative"):
        load_idx(ip, lp)
    write_idx(lp, np.zeros(5, np.float32))
    with pytest.raises(DataError, match="labels are float32; expected integer"):
        load_idx(ip, lp)


def test_load_idx_non_finite_images(tmp_path):
    x = np.zeros((3, 2, 2), np.float64)
    x[1, 0, 0] = np.nan
    x[2, 1, 1] = 1e300  # finite float64, inf as float32
    write_idx(tmp_path / "i", x)
    write_idx(tmp_path / "l", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="NaN or Inf in 2 sample.*first at index 1"):
        load_idx(tmp_path / "i", tmp_path / "l")


def test_load_idx_missing_or_malformed_files(tmp_path):
    ip, lp, *_ = _mnist_like(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        load_idx(ip, tmp_path / "missing")
    with pytest.raises(DataError, match="truncated"):
        load_idx(_raw(tmp_path / "bad", _header(0x08, [5, 4, 3]) + bytes(10)), lp)


def test_code_table_matches_spec(tmp_path):
    for dtype, code in CODES.items():
        write_idx(tmp_path / "a", np.zeros(1, dtype))
        assert (tmp_path / "a").read_bytes()[:4] == bytes([0, 0, code, 1])
