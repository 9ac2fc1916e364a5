"""Resource traps in checkpoints and weights: a FIFO must not hang, a declared 3 GiB member must
fail before any allocation, a crash's leftover temp files are cleaned up on resume, and a file
that is no NPZ at all is called that (not "pickled data")."""

import io
import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import numpy.lib.format as npy
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.errors import DataError
from nnctl.train.run_dir import load_weights

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SPIRALS = CONFIGS / "spirals.yaml"
GIB3 = 3 * 2 ** 30


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def resume(run: Path):
    return cli("train", SPIRALS, "--epochs", "2", "--no-progress", "--resume", run)


def assert_one_line(result, *fragments: str) -> str:
    err = result.stderr
    assert result.exit_code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def npy_header(shape, descr="<f4") -> bytes:
    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False,
                                        "shape": shape})
    return buffer.getvalue()


def patch_declared_size(path: Path, member: str, size: int, compressed: int | None = None):
    """Set a member's sizes in the zip's central directory (what readers trust), in place."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        offset = z.start_dir
    while data[offset:offset + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, offset + 28)
        name = data[offset + 46:offset + 46 + name_len].decode()
        if name == member:
            if compressed is not None:
                struct.pack_into("<I", data, offset + 20, compressed)
            struct.pack_into("<I", data, offset + 24, size)
        offset += 46 + name_len + extra_len + comment_len
    path.write_bytes(bytes(data))


def rewrite(path: Path, replace: dict[str, bytes]) -> None:
    """The archive with some members' raw bytes replaced (stored, uncompressed)."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    members.update(replace)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, raw in members.items():
            z.writestr(name, raw)


# ---- not a regular file -----------------------------------------------------------------------

def test_a_fifo_checkpoint_is_refused_not_waited_on(run):
    (run / "checkpoint.npz").unlink()
    os.mkfifo(run / "checkpoint.npz")
    try:
        proc = subprocess.run([sys.executable, "-m", "nnctl", "train", str(SPIRALS), "--epochs",
                               "2", "--no-progress", "--resume", str(run)],
                              capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("resuming from a FIFO checkpoint hung")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (f"error: {run / 'checkpoint.npz'}: not a regular file (a FIFO); "
                           "expected the checkpoint file\n")


def test_a_folder_in_place_of_the_checkpoint_is_refused(run):
    (run / "checkpoint.npz").unlink()
    (run / "checkpoint.npz").mkdir()
    assert_one_line(resume(run), "checkpoint.npz: not a regular file (a folder)")


def test_a_fifo_weights_file_is_refused(tmp_path):
    fifo = tmp_path / "weights.npz"
    os.mkfifo(fifo)
    code = ("from nnctl.train.run_dir import load_weights\nfrom pathlib import Path\n"
            f"try:\n    load_weights(Path({str(fifo)!r}))\nexcept Exception as e:\n    print(e)")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                              timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("reading a FIFO as weights hung")
    assert proc.stdout == f"{fifo}: not a regular file (a FIFO); expected the weights file\n"


# ---- sizes declared before reading ------------------------------------------------------------

def test_a_3_gib_member_fails_before_any_allocation(run):
    path = run / "checkpoint.npz"
    header = npy_header((GIB3 // 4,))
    rewrite(path, {"optim/m.2.npy": header})
    patch_declared_size(path, "optim/m.2.npy", len(header) + GIB3, len(header) + GIB3)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        result = resume(run)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_one_line(result, "unreadable checkpoint: member 'optim/m.2.npy' declares "
                            f"{len(header) + GIB3:,} bytes (3.0 GiB), more than the")
    assert peak < 64 * 2 ** 20


def test_an_npy_header_larger_than_its_member_is_refused_without_a_limit(tmp_path):
    # weights are read with no model to bound them: the archive must at least be consistent
    path = tmp_path / "weights.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", npy_header((GIB3 // 4,)) + b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as caught:
            load_weights(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (
        f"{path}: unreadable weights: member 'w': its header declares shape (805306368,) of "
        "float32 (3,221,225,472 bytes (3.0 GiB)) but the member holds 64 bytes of data")
    assert peak < 64 * 2 ** 20


def test_a_declared_size_its_compressed_data_cannot_hold_is_refused(tmp_path):
    path = tmp_path / "weights.npz"
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(1000, np.float32))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("w.npy", buffer.getvalue())
    with zipfile.ZipFile(path) as z:
        compressed = z.getinfo("w.npy").compress_size
    patch_declared_size(path, "w.npy", GIB3)
    with pytest.raises(DataError, match=r"member 'w.npy' declares 3,221,225,472 bytes \(3.0 "
                                        rf"GiB\) from {compressed} bytes of data, which cannot"):
        load_weights(path)


def test_thousands_of_members_are_refused_by_count(run):
    path = run / "checkpoint.npz"
    with zipfile.ZipFile(path, "a") as z:
        for i in range(5000):
            z.writestr(f"junk/{i}.npy", b"")
    assert_one_line(resume(run), "unreadable checkpoint: 5,0")


# ---- what the archive holds -------------------------------------------------------------------

def test_a_one_byte_checkpoint_is_not_called_pickled(run):
    (run / "checkpoint.npz").write_bytes(b"x")
    err = assert_one_line(resume(run), "unreadable checkpoint: not an NPZ (zip) archive "
                                       "(1 byte;")
    assert "pickle" not in err


def test_an_object_array_is_refused_without_unpickling(run):
    path = run / "checkpoint.npz"
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    rewrite(path, {"optim/m.0.npy": buffer.getvalue()})
    assert_one_line(resume(run), "member 'optim/m.0': holds Python objects (dtype object)")


def test_a_member_that_is_not_npy_is_refused(run):
    rewrite(run / "checkpoint.npz", {"notes.txt": b"hello"})
    assert_one_line(resume(run), "member 'notes.txt' is not one .npy array")


def test_a_truncated_member_names_the_member(run):
    path = run / "checkpoint.npz"
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((64, 64), np.float32))
    rewrite(path, {"optim/m.2.npy": buffer.getvalue()[:-100]})
    assert_one_line(resume(run), "member 'optim/m.2': its header declares shape (64, 64) of "
                                 "float32 (16,384 bytes (16.0 KiB)) but the member holds "
                                 "16,284 bytes")


# ---- leftovers of a crash ---------------------------------------------------------------------

def test_leftover_temp_files_are_removed_on_resume(run):
    leftovers = [".checkpoint.npz.k2j_x9ab.tmp", ".weights.npz.abcdefgh.tmp"]
    for name in leftovers:
        (run / name).write_bytes(b"PK\x03\x04 half a checkpoint")
    kept = ["notes.tmp", ".hidden.tmp", "my.checkpoint.npz.abcdefgh.tmp"]
    for name in kept:
        (run / name).write_text("the user's")
    result = resume(run)
    assert result.exit_code == 0, result.stderr
    names = {p.name for p in run.iterdir()}
    assert not names & set(leftovers)
    assert set(kept) <= names
    assert json.loads((run / "summary.json").read_text())["epochs_completed"] == 2


def test_leftovers_stay_when_the_checkpoint_is_refused(run):
    # a refused checkpoint changes nothing in the folder: the user may still want to look
    (run / ".checkpoint.npz.k2j_x9ab.tmp").write_bytes(b"partial")
    (run / "checkpoint.npz").write_bytes(b"x")
    assert resume(run).exit_code == 2
    assert (run / ".checkpoint.npz.k2j_x9ab.tmp").exists()


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_valid_archives_read_as_numpy_reads_them(tmp_path, save):
    arrays = {"w": np.arange(12, dtype=np.float32).reshape(3, 4),
              "f": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
              "empty": np.zeros((0, 5), np.int16), "scalar": np.array(7, np.int64),
              "zeros": np.zeros(100_000, np.float32)}  # deflate's best ratio, still within it
    save(tmp_path / "w.npz", **arrays)
    loaded = load_weights(tmp_path / "w.npz")
    assert list(loaded) == list(arrays)
    for key, array in arrays.items():
        assert loaded[key].dtype == array.dtype and loaded[key].shape == array.shape
        assert np.array_equal(loaded[key], array)
        assert loaded[key].flags.writeable
