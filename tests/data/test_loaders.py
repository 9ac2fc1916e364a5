"""load_digits, load_npz, load_csv: values on success, one-line DataError on every bad file."""

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nnctl.data import DATASETS_DIR, load_csv, load_digits, load_npz
from nnctl.errors import DataError

REPO = Path(__file__).resolve().parents[2]


# ---- shipped digits ------------------------------------------------------------------------

def test_datasets_dir_points_at_repo_datasets():
    if "NNCTL_DATASETS" not in os.environ:
        assert DATASETS_DIR == REPO / "datasets"
    assert (DATASETS_DIR / "digits.npz").is_file()


def test_digits_file_itself():
    with np.load(REPO / "datasets" / "digits.npz", allow_pickle=False) as f:
        assert sorted(f.files) == ["x", "y"]
        x, y = f["x"], f["y"]
    assert x.dtype == np.uint8 and x.shape == (1797, 64)
    assert y.dtype == np.int64 and y.shape == (1797,)
    assert x.min() == 0 and x.max() == 16
    counts = np.bincount(y)
    assert len(counts) == 10 and counts.sum() == 1797
    assert counts.min() >= 174 and counts.max() <= 183
    assert counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_load_digits():
    ds = load_digits()
    assert ds.name == "digits" and len(ds) == 1797
    assert ds.x.dtype == np.float32 and ds.x.shape == (1797, 64)
    assert ds.y.dtype == np.int64 and ds.num_classes == 10
    assert ds.x.min() == 0.0 and ds.x.max() == 16.0
    np.testing.assert_array_equal(ds.x, np.round(ds.x))  # grey levels unchanged, not scaled
    # The first UCI digit is a zero; its top row of pixels is well known.
    assert ds.y[0] == 0
    assert ds.x[0, :8].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


def test_load_digits_env_override(monkeypatch, tmp_path):
    np.savez_compressed(tmp_path / "digits.npz", x=np.zeros((3, 64), np.uint8),
                        y=np.array([0, 1, 2]))
    monkeypatch.setenv("NNCTL_DATASETS", str(tmp_path))
    ds = load_digits()
    assert len(ds) == 3 and ds.name == "digits"
    monkeypatch.setenv("NNCTL_DATASETS", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="no such file; expected the shipped digits"):
        load_digits()


def test_load_digits_wrong_shape(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 10)), y=np.array([0, 1, 2]))
    with pytest.raises(DataError, match=r"expected digits with x of shape \(N, 64\)"):
        load_digits(tmp_path / "d.npz")


# ---- npz -----------------------------------------------------------------------------------

def test_npz_roundtrip(tmp_path):
    x = np.arange(24, dtype=np.float64).reshape(4, 2, 3)
    y = np.array([2, 0, 1, 2], dtype=np.uint8)
    np.savez_compressed(tmp_path / "a.npz", x=x, y=y)
    ds = load_npz(tmp_path / "a.npz")
    assert ds.name == "a" and ds.x.dtype == np.float32 and ds.x.shape == (4, 2, 3)
    np.testing.assert_array_equal(ds.x, x.astype(np.float32))
    assert ds.y.dtype == np.int64 and ds.y.tolist() == [2, 0, 1, 2] and ds.num_classes == 3


def test_npz_custom_keys_and_float_targets(tmp_path):
    np.savez(tmp_path / "r.npz", inputs=np.ones((3, 2), np.int32),
             targets=np.array([[0.5, 1], [1.5, 2], [2.5, 3]]))
    ds = load_npz(str(tmp_path / "r.npz"), x_key="inputs", y_key="targets")
    assert ds.y.dtype == np.float32 and ds.y.shape == (3, 2) and ds.num_classes is None
    assert ds.x.dtype == np.float32 and ds.x.tolist() == [[1, 1]] * 3


def test_npz_1d_x_becomes_one_feature(tmp_path):
    np.savez(tmp_path / "s.npz", x=np.array([1.0, 2.0]), y=np.array([0, 1]))
    assert load_npz(tmp_path / "s.npz").x.shape == (2, 1)


def npz_error(path, **kw):
    with pytest.raises(DataError) as e:
        load_npz(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


def test_npz_missing_file(tmp_path):
    msg = npz_error(tmp_path / "nope.npz")
    assert "no such file; expected an .npz archive with arrays 'x' and 'y'" in msg


def test_npz_directory(tmp_path):
    assert "not a regular file" in npz_error(tmp_path)


def test_npz_not_a_zip(tmp_path):
    (tmp_path / "t.npz").write_text("hello world")
    assert "not an .npz (zip) archive" in npz_error(tmp_path / "t.npz")
    (tmp_path / "e.npz").write_bytes(b"")
    assert "not an .npz (zip) archive" in npz_error(tmp_path / "e.npz")


def test_npz_single_npy(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(3))
    assert "is a single .npy array" in npz_error(tmp_path / "a.npy")


def test_npz_truncated(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=np.random.default_rng(0).normal(size=(200, 8)),
                        y=np.arange(200))
    data = good.read_bytes()
    (tmp_path / "half.npz").write_bytes(data[: len(data) // 2])
    assert "cannot read as .npz (corrupt or truncated?)" in npz_error(tmp_path / "half.npz")


def test_npz_corrupt_member(tmp_path):
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x=np.random.default_rng(0).normal(size=(200, 8)),
                        y=np.arange(200))
    data = bytearray(good.read_bytes())
    data[200:400] = bytes(200)  # zero out part of x's compressed stream
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    assert "cannot read as .npz (corrupt or truncated?)" in npz_error(tmp_path / "bad.npz")


def test_npz_zip_of_non_npy_member(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("x.npy", "not an array")
        z.writestr("y.npy", "not an array")
    assert "member 'x' is not a .npy array" in npz_error(tmp_path / "z.npz")


def test_npz_object_array_refused(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([1, "a", None], dtype=object), y=np.arange(3))
    msg = npz_error(tmp_path / "o.npz")
    assert "array 'x' holds Python objects (dtype=object)" in msg
    assert "expected a numeric array" in msg


def test_npz_missing_key_lists_keys(tmp_path):
    np.savez(tmp_path / "k.npz", data=np.ones((2, 2)), labels=np.arange(2))
    msg = npz_error(tmp_path / "k.npz")
    assert "no array named 'x'; the file has 'data', 'labels'" in msg
    assert load_npz(tmp_path / "k.npz", x_key="data", y_key="labels").y.tolist() == [0, 1]


def test_npz_length_mismatch(tmp_path):
    np.savez(tmp_path / "m.npz", x=np.ones((3, 2)), y=np.arange(2))
    assert "'x' has 3 samples but 'y' has 2; expected the same number" in npz_error(
        tmp_path / "m.npz")


@pytest.mark.parametrize("x,y,text", [
    (np.array([["a", "b"]]), np.array([0]), "array 'x' has dtype <U1; expected numbers"),
    (np.ones((2, 2)), np.array(["a", "b"]), "array 'y' has dtype <U1; expected numbers"),
    (np.ones((1, 2), np.complex64), np.array([0]), "has dtype complex64"),
])
def test_npz_non_numeric(tmp_path, x, y, text):
    np.savez(tmp_path / "n.npz", x=x, y=y)
    assert text in npz_error(tmp_path / "n.npz")


def test_npz_nan_inf(tmp_path):
    x = np.ones((5, 2))
    x[3, 1] = np.nan
    x[4, 0] = np.inf
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(5))
    assert "array 'x' has NaN or Inf in 2 sample(s), first at index 3" in npz_error(
        tmp_path / "nan.npz")
    # float64 too large for float32 becomes inf after the cast: also refused.
    np.savez(tmp_path / "big.npz", x=np.array([[1e300]]), y=np.array([0]))
    assert "NaN or Inf" in npz_error(tmp_path / "big.npz")


def test_npz_empty(tmp_path):
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 3)), y=np.zeros(0, np.int64))
    assert "no samples (empty arrays)" in npz_error(tmp_path / "e.npz")


def test_npz_negative_labels(tmp_path):
    np.savez(tmp_path / "neg.npz", x=np.ones((2, 1)), y=np.array([-1, 1]))
    assert "include negative value -1; expected class labels 0..K-1" in npz_error(
        tmp_path / "neg.npz")


# ---- csv -----------------------------------------------------------------------------------

def write(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def csv_error(path, **kw):
    with pytest.raises(DataError) as e:
        load_csv(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


def test_csv_roundtrip_with_header_autodetect(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    y = np.array([0, 2, 1, 1, 0, 2])
    lines = ["a,b,c,label"] + [",".join([*(repr(float(v)) for v in r), str(k)])
                               for r, k in zip(x, y)]
    p = write(tmp_path, "\n".join(lines) + "\n")
    ds = load_csv(p)
    assert ds.name == "d" and ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    np.testing.assert_array_equal(ds.x, x)
    assert ds.y.tolist() == y.tolist() and ds.num_classes == 3


def test_csv_no_header_first_label_column_and_blank_lines(tmp_path):
    p = write(tmp_path, "1, 0.5, 2\n\n0, 1.5, 3\n   \n")
    ds = load_csv(p, label_column=0)
    assert ds.y.tolist() == [1, 0] and ds.x.tolist() == [[0.5, 2], [1.5, 3]]


def test_csv_label_by_name_and_float_targets(tmp_path):
    p = write(tmp_path, "target;f1;f2\n0.25;1;2\n1.0;3;4\n")
    ds = load_csv(p, label_column="target", delimiter=";")
    assert ds.y.dtype == np.float32 and ds.y.tolist() == [0.25, 1.0]
    assert ds.x.tolist() == [[1, 2], [3, 4]]


def test_csv_integer_valued_floats_are_targets(tmp_path):
    ds = load_csv(write(tmp_path, "1,3.0\n2,-1.0\n"))
    assert ds.y.dtype == np.float32 and ds.y.tolist() == [3.0, -1.0]


def test_csv_header_forced_and_refused(tmp_path):
    p = write(tmp_path, "1,2,0\n3,4,1\n")
    assert len(load_csv(p, header=True)) == 1
    assert len(load_csv(p, header=False)) == 2
    p2 = write(tmp_path, "x,y,label\n1,2,0\n", "h.csv")
    msg = csv_error(p2, header=False)
    assert "line 1, column 1: 'x' is not a number (if it is a header, pass header=True)" in msg


def test_csv_missing_file(tmp_path):
    assert "no such file; expected a CSV file of numbers" in csv_error(tmp_path / "no.csv")


def test_csv_empty_file(tmp_path):
    assert "empty file" in csv_error(write(tmp_path, "\n\n"))
    assert "has a header but no data rows" in csv_error(write(tmp_path, "a,b\n", "h.csv"))


def test_csv_ragged_row_names_line(tmp_path):
    p = write(tmp_path, "a,b,label\n1,2,0\n\n3,1\n")
    assert "line 4: has 2 columns, expected 3 (as on line 1)" in csv_error(p)


def test_csv_non_numeric_cell(tmp_path):
    p = write(tmp_path, "a,b,label\n1,2,0\n3,abc,1\n")
    assert "line 3, column 2: 'abc' is not a number" in csv_error(p)
    p2 = write(tmp_path, "1,,0\n", "e.csv")
    assert "line 1, column 2: '' is not a number" in csv_error(p2)


def test_csv_unknown_label_column(tmp_path):
    p = write(tmp_path, "a,b,label\n1,2,0\n")
    msg = csv_error(p, label_column="lable")
    assert ("label column 'lable' not found; columns are 'a', 'b', 'label'; did you mean "
            "'label'?") in msg
    assert "label column 3 is out of range; the file has 3 columns" in csv_error(
        p, label_column=3)
    assert "out of range" in csv_error(p, label_column=-4)
    p2 = write(tmp_path, "1,2,0\n", "nh.csv")
    assert "is a name, but the file has no header row" in csv_error(p2, label_column="label")


def test_csv_nan_in_features_and_labels(tmp_path):
    p = write(tmp_path, "1,2,0\n3,nan,1\n")
    assert "line 2: NaN or Inf in a feature column" in csv_error(p)
    p2 = write(tmp_path, "1,2,0\n3,4,inf\n", "l.csv")
    assert "line 2: label is NaN or Inf" in csv_error(p2)


def test_csv_negative_integer_labels(tmp_path):
    p = write(tmp_path, "1,2,0\n3,4,-1\n")
    assert "line 2: class label -1 is negative; expected labels 0..K-1" in csv_error(p)


def test_csv_single_column_and_binary(tmp_path):
    assert "expected at least one feature column" in csv_error(write(tmp_path, "1\n2\n"))
    b = tmp_path / "b.csv"
    b.write_bytes(b"\xff\xfe\x00\x01garbage")
    assert "not a UTF-8 text file" in csv_error(b)
