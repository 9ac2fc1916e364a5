"""The IDX file format (the one MNIST ships in), plain or gzip-compressed.

Layout: magic bytes 00 00 <type code> <ndim>, then ndim big-endian uint32 dimensions, then the
elements, big-endian, row-major. Type codes: 08 uint8, 09 int8, 0B int16, 0C int32, 0D float32,
0E float64. A gzip file (magic 1f 8b) is decompressed on the fly, whatever its name.

Every problem with a file is a one-line DataError naming the file. Sizes are checked against
the header before anything is allocated: a plain file must hold exactly the bytes the header
promises, and a gzip stream is read in bounded chunks, so a header that claims more data than
the file has fails with "truncated" instead of allocating what it claims.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from nnctl.data.dataset import Dataset, check_class_labels
from nnctl.errors import DataError

_GZIP_MAGIC = b"\x1f\x8b"
# type code -> big-endian dtype
_CODE_TO_DTYPE = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_NAME_TO_CODE = {np.dtype(dt.name): code for code, dt in _CODE_TO_DTYPE.items()}
_SUPPORTED = "uint8, int8, int16, int32, float32, float64"
# Deflate cannot expand one compressed byte to more than 1032 bytes, so a gzip file of S bytes
# cannot hold more than about 1032 * S bytes: a quick, allocation-free sanity check.
_MAX_DEFLATE_RATIO = 1032
_CHUNK = 1 << 24  # gzip data is read 16 MiB at a time, never as one header-sized buffer
_EXPECTED = "an IDX file (magic 00 00 <type> <ndim>, optionally gzip-compressed)"


def _hex(b: bytes) -> str:
    return " ".join(f"{c:02x}" for c in b) or "nothing"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a native-byte-order array."""
    p = Path(path)
    where = str(p)
    if not p.exists():
        raise DataError(f"no such file; expected {_EXPECTED}", path=where)
    if not p.is_file():
        raise DataError(f"not a regular file; expected {_EXPECTED}", path=where)
    try:
        file_size = p.stat().st_size
        if file_size == 0:
            raise DataError(f"empty file (0 bytes); expected {_EXPECTED}", path=where)
        with open(p, "rb") as raw:
            compressed = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            if compressed:
                with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                    return _read_stream(gz, where, None, file_size)
            return _read_stream(raw, where, file_size, file_size)
    except DataError:
        raise
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataError(f"corrupt or truncated gzip data: {type(e).__name__}: {e}",
                        path=where) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", path=where) from None


def _read_exact(f, n: int) -> bytes:
    """Up to n bytes (fewer only at the end of the stream); for headers, which are small."""
    out = b""
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _read_stream(f, where: str, plain_size: int | None, file_size: int) -> np.ndarray:
    gz = " (after gzip decompression)" if plain_size is None else ""
    magic = _read_exact(f, 4)
    if len(magic) < 4:
        raise DataError(f"truncated header: {len(magic)} byte(s){gz}; expected at least 4 "
                        f"(magic 00 00 <type> <ndim>)", path=where)
    if magic[:2] != b"\x00\x00":
        raise DataError(f"bad magic bytes {_hex(magic)}{gz}; expected {_EXPECTED}", path=where)
    code, ndim = magic[2], magic[3]
    if code not in _CODE_TO_DTYPE:
        known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise DataError(f"unknown IDX type code 0x{code:02X}; expected one of {known} "
                        f"({_SUPPORTED})", path=where)
    if ndim == 0:
        raise DataError("header gives 0 dimensions; expected at least 1", path=where)
    header_size = 4 + 4 * ndim
    raw_dims = _read_exact(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"truncated header: {4 + len(raw_dims)} byte(s){gz}; expected "
                        f"{header_size} for {ndim} dimension(s)", path=where)
    dims = struct.unpack(f">{ndim}I", raw_dims)
    dtype = _CODE_TO_DTYPE[code]
    count = 1
    for d in dims:
        count *= d  # Python int: no overflow, however large the header's claim
    expected = count * dtype.itemsize
    shape = "x".join(str(d) for d in dims)
    what = f"{shape} {dtype.name} needs {expected} bytes of data"

    if plain_size is not None:
        actual = plain_size - header_size
        if actual != expected:
            problem = "truncated" if actual < expected else "trailing bytes"
            raise DataError(f"{problem}: header says {what}, the file has {actual}",
                            path=where)
        buf = bytearray(expected)
        if f.readinto(buf) != expected:  # the file shrank under us
            raise DataError(f"truncated: header says {what}, could not read them all",
                            path=where)
    else:
        if expected > _MAX_DEFLATE_RATIO * file_size:
            raise DataError(f"truncated: header says {what}, more than a {file_size}-byte "
                            "gzip file can hold", path=where)
        buf = bytearray()
        while len(buf) < expected:
            chunk = f.read(min(_CHUNK, expected - len(buf)))
            if not chunk:
                break
            buf += chunk
        if len(buf) < expected:
            raise DataError(f"truncated: header says {what}, the file has {len(buf)} "
                            "(after gzip decompression)", path=where)
        if f.read(1):
            raise DataError(f"trailing bytes: header says {what}, the file has more "
                            "(after gzip decompression)", path=where)

    arr = np.frombuffer(buf, dtype=dtype)  # a bytearray: the array is writable, no copy
    if not dtype.isnative:
        arr.byteswap(inplace=True)
        arr = arr.view(dtype.newbyteorder("="))
    return arr.reshape(dims)


def write_idx(path: str | os.PathLike, array) -> None:
    """Write an array as IDX; gzip-compressed when the path ends with .gz.

    The dtype must be one IDX can hold (uint8, int8, int16, int32, float32, float64); convert
    others first (e.g. int64 labels with .astype(np.uint8))."""
    a = np.asarray(array)
    code = _NAME_TO_CODE.get(np.dtype(a.dtype.name)) if a.dtype.kind in "iuf" else None
    if code is None:
        raise ValueError(f"IDX cannot hold dtype {a.dtype}; convert to one of {_SUPPORTED}")
    if not 1 <= a.ndim <= 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got an array of shape {a.shape}")
    if any(d >= 2 ** 32 for d in a.shape):
        raise ValueError(f"IDX dimensions must be below 2**32, got shape {a.shape}")
    header = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    data = np.ascontiguousarray(a, dtype=_CODE_TO_DTYPE[code]).tobytes()
    p = Path(path)
    if p.name.endswith(".gz"):
        with open(p, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                 mtime=0) as gz:  # mtime=0: reproducible
            gz.write(header)
            gz.write(data)
    else:
        with open(p, "wb") as f:
            f.write(header)
            f.write(data)


def _stem(p: Path) -> str:
    name = p.name[:-3] if p.name.endswith(".gz") else p.name
    return Path(name).stem


def load_idx(images_path: str | os.PathLike, labels_path: str | os.PathLike,
             dtype: str = "float32") -> Dataset:
    """An IDX image file and an IDX label file (MNIST's layout) as a Dataset.

    x: (N, H*W) in `dtype` (the run's train.dtype) -- flattened row-major like digits.npz,
    values unchanged (0..255 for MNIST; scaling is the normaliser's job). y: int64 (N,) class
    labels."""
    ip, lp = Path(images_path), Path(labels_path)
    images = read_idx(ip)
    labels = read_idx(lp)
    if images.ndim < 2:
        raise DataError(f"images have shape {images.shape}; expected (N, H, W) (one image "
                        "per sample)", path=str(ip))
    if images.shape[0] == 0:
        raise DataError(f"empty: no images (shape {images.shape}); expected at least one",
                        path=str(ip))
    if images[0].size == 0:
        raise DataError(f"empty images of shape {images.shape[1:]}; expected at least one "
                        "pixel", path=str(ip))
    if labels.ndim != 1:
        raise DataError(f"labels have shape {labels.shape}; expected a 1-D list (N,) of "
                        "class labels", path=str(lp))
    if len(labels) != len(images):
        raise DataError(f"has {len(labels)} labels but {ip} has {len(images)} images; "
                        "expected one label per image", path=str(lp))
    if labels.dtype.kind not in "iu":
        raise DataError(f"labels are {labels.dtype}; expected integer class labels "
                        "(uint8, int8, int16 or int32)", path=str(lp))
    if labels.min() < 0:
        i = int(np.argmin(labels))
        raise DataError(f"label {int(labels[i])} at index {i} is negative; expected class "
                        "labels 0..K-1", path=str(lp))
    top = int(np.argmax(labels))
    check_class_labels(int(labels[top]), len(np.unique(labels)),
                       f"label {int(labels[top])} at index {top}", str(lp))
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
        x = images.reshape(len(images), -1).astype(dtype)
    if images.dtype.kind == "f":
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise DataError(f"images have NaN or Inf in {int(bad.sum())} sample(s), first at "
                            f"index {int(np.argmax(bad))}; expected finite numbers",
                            path=str(ip))
    return Dataset(x, labels.astype(np.int64), _stem(ip))
