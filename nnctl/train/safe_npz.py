"""Reading an NPZ archive that may be hostile: no code, no hang, no memory beyond what it declares.

np.load would unpickle nothing (allow_pickle=False), but it opens a FIFO and blocks forever,
allocates whatever shape an .npy header claims before reading a byte of data, returns raw bytes
for a member that is not an .npy file, and calls a 1-byte file "pickled data". So the archive
is read here step by step, each step refusing what does not fit:
  1. the path must be a regular file (opened non-blocking, then fstat: no race with a swap);
  2. the zip directory's declared sizes are checked against the caller's limits before any
     member is read (a 3 GiB member fails at once);
  3. each member's .npy header must describe exactly the bytes the member holds, and no
     Python objects, before its data is read.
"""

from __future__ import annotations

import math
import os
import reprlib
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.lib.format as npy

from nnctl.errors import DataError

# an .npy header is at most 64 KiB (format 1.0's length field); numpy reads at most 10,000
HEADER_MAX = 65_536 + 16
# zlib's deflate cannot expand data more than about 1032 times: a larger declared size is a lie
DEFLATE_MAX_RATIO = 1100
_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"))


@dataclass(frozen=True)
class NpzLimits:
    """The most an archive may declare; None: no limit beyond the archive's own consistency."""

    member_bytes: int | None = None
    total_bytes: int | None = None
    members: int | None = None


def brief(value, limit: int = 60) -> str:
    """A value for a one-line message: repr (newlines escaped), cut to about `limit` chars."""
    shortener = reprlib.Repr()  # (keyword arguments only from Python 3.12)
    shortener.maxlevel, shortener.maxdict, shortener.maxlist = 2, 3, 3
    shortener.maxtuple, shortener.maxset = 3, 3
    shortener.maxstring = shortener.maxlong = shortener.maxother = limit
    short = shortener.repr(value)
    return short if len(short) <= limit + 10 else short[:limit] + "..."


def cut(text: str, limit: int = 60) -> str:
    """Text known to be one line (a dtype, a shape), cut to about `limit` characters."""
    return text if len(text) <= limit else text[:limit] + "..."


def size_text(n: int) -> str:
    for unit, scale in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= scale:
            return f"{n:,} bytes ({n / scale:.1f} {unit})"
    return f"{n:,} byte{'s' if n != 1 else ''}"


NO_LIMITS = NpzLimits()


def read_npz(path: Path, what: str, limits: NpzLimits = NO_LIMITS) -> dict[str, np.ndarray]:
    """Every array of the NPZ file at `path`; a DataError naming `what` the file should have
    been for anything else."""
    with open_regular(path, what) as f:
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise DataError(f"unreadable {what}: not an NPZ (zip) archive "
                            f"({size_text(os.fstat(f.fileno()).st_size)}; {brief(str(err))})",
                            path=str(path)) from None
        with archive:
            infos = _checked_directory(archive, path, what, limits)
            return {name: _read_member(archive, info, name, path, what)
                    for name, info in infos.items()}


def open_regular(path: Path, what: str):
    """`path` opened for reading, if it is a regular file: a FIFO is refused, not waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(f"no such {what}", path=str(path)) from None
    except OSError as err:
        raise DataError(f"cannot read {what} ({err.strerror or err})", path=str(path)) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a file")
        raise DataError(f"not a regular file ({kind}); expected the {what} file",
                        path=str(path))
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _checked_directory(archive: zipfile.ZipFile, path: Path, what: str,
                       limits: NpzLimits) -> dict[str, zipfile.ZipInfo]:
    """{array name: member} after checking every declared size, before reading any data."""
    def refuse(message: str) -> DataError:
        return DataError(f"unreadable {what}: {message}", path=str(path))

    infos = archive.infolist()
    if limits.members is not None and len(infos) > limits.members:
        raise refuse(f"{len(infos):,} members, more than the {limits.members:,} expected")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if name == info.filename or name in members:
            raise refuse(f"member {brief(info.filename)} is not one .npy array "
                         "(not ending in .npy, or named twice)")
        _check_declared(info, limits, refuse)
        total += info.file_size
        members[name] = info
    if limits.total_bytes is not None and total > limits.total_bytes:
        raise refuse(f"its members declare {size_text(total)} in all, more than the "
                     f"{size_text(limits.total_bytes)} expected")
    return members


def _check_declared(info: zipfile.ZipInfo, limits: NpzLimits, refuse) -> None:
    name, size = brief(info.filename), info.file_size
    if limits.member_bytes is not None and size > limits.member_bytes:
        raise refuse(f"member {name} declares {size_text(size)}, more than the "
                     f"{size_text(limits.member_bytes)} expected at most")
    stored = info.compress_type == zipfile.ZIP_STORED
    deflated = info.compress_type == zipfile.ZIP_DEFLATED  # (bzip2 and lzma can expand more)
    if (stored and size != info.compress_size) or \
            (deflated and size > max(info.compress_size, 1) * DEFLATE_MAX_RATIO):
        raise refuse(f"member {name} declares {size_text(size)} from "
                     f"{size_text(info.compress_size)} of data, which cannot hold that")


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, path: Path,
                 what: str) -> np.ndarray:
    where = f"unreadable {what}: member {brief(name)}"
    try:
        with archive.open(info) as member:
            _check_header(member, info)
        with archive.open(info) as member:  # numpy reads it again, now known to fit
            return npy.read_array(member, allow_pickle=False)
    except _Refused as err:
        raise DataError(f"{where}: {err}", path=str(path)) from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError,
            RuntimeError) as err:  # a bad CRC, a cut stream, an unknown compression...
        raise DataError(f"{where}: {type(err).__name__}: {brief(str(err))}",
                        path=str(path)) from None


class _Refused(Exception):
    pass


def _check_header(member, info: zipfile.ZipInfo) -> None:
    """The member's .npy header describes plain data of exactly the member's declared size."""
    try:
        version = npy.read_magic(member)
    except ValueError:
        raise _Refused("not an .npy array (no NPY header)") from None
    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    if version not in readers:
        raise _Refused(f"unsupported .npy format version {version}")
    try:
        shape, _, dtype = readers[version](member)
    except ValueError as err:
        raise _Refused(f"bad .npy header ({brief(str(err))})") from None
    if dtype.hasobject:
        raise _Refused(f"holds Python objects (dtype {cut(str(dtype))}), which would have "
                       "to be unpickled; refused")
    data = math.prod(shape) * dtype.itemsize  # Python ints: a hostile shape cannot overflow
    header = member.tell() if member.seekable() else None
    if header is None or header > HEADER_MAX or header + data != info.file_size:
        raise _Refused(f"its header declares shape {cut(str(shape))} of {cut(str(dtype))} "
                       f"({size_text(data)}) but the member holds "
                       f"{size_text(max(info.file_size - (header or 0), 0))} of data")
