"""Bad numbers in data files (issue 8, points 7, 8, 9, 12): class labels out of any sensible
range, labels beyond int64, data contents kept out of messages, float64 kept float64."""

import numpy as np
import pytest

from nnctl.data import Normalizer, load_csv, load_npz
from nnctl.errors import DataError


def write_csv(path, label_cells, header="a,b,label"):
    rows = [header] + [f"{i * 0.5},{i * 0.25},{cell}" for i, cell in enumerate(label_cells)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("big", [str(10**30), str(2**63 + 5), str(2**64 + 1), "1000000000"])
def test_csv_huge_integer_label_names_file_and_line(tmp_path, big):
    path = write_csv(tmp_path / "d.csv", ["0", "1", "0", big, "1", "0"])
    with pytest.raises(DataError) as e:
        load_csv(path, "label")
    msg = str(e.value)
    # the label sits on line 5 (header, then rows 0..3)
    assert msg.startswith(f"{path}: line 5: class label {big}")
    assert "3 distinct labels" in msg and "\n" not in msg


def test_csv_huge_negative_label_is_refused_not_wrapped(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["0", "1", f"-{2**64}", "1"])
    with pytest.raises(DataError, match=r"line 4: class label -1844674407370955161\d is negative"):
        load_csv(path, "label")


def test_csv_moderate_labels_still_load_exactly(tmp_path):
    # 1,000 classes with only a few present is allowed: the unused classes cost little
    path = write_csv(tmp_path / "d.csv", ["0", "1", "999", "7"])
    ds = load_csv(path, "label")
    assert ds.y.tolist() == [0, 1, 999, 7] and ds.y.dtype == np.int64
    assert ds.num_classes == 1000
    with pytest.raises(DataError, match="line 4: class label 1004 implies 1,005 classes"):
        load_csv(write_csv(tmp_path / "e.csv", ["0", "1", "1004", "7"]), "label")


def test_npz_label_of_a_billion_is_refused_before_any_model(tmp_path):
    y = np.array([0, 1, 10**9, 1, 0], dtype=np.int64)
    np.savez(tmp_path / "d.npz", x=np.zeros((5, 3), np.float32), y=y)
    with pytest.raises(DataError) as e:
        load_npz(tmp_path / "d.npz")
    msg = str(e.value)
    assert "class label 1000000000 at index 2" in msg
    assert "1,000,000,001 classes" in msg and "3 distinct labels" in msg


def test_npz_uint64_label_beyond_int64_is_refused(tmp_path):
    y = np.array([0, 1, 2**64 - 1], dtype=np.uint64)
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2), np.float32), y=y)
    with pytest.raises(DataError, match="class label 18446744073709551615 at index 2"):
        load_npz(tmp_path / "d.npz")


# ---- point 9: messages quote data only as much as needed ----------------------------------

SHADOW_HASH = "$6$rounds=656000$" + "Q" * 86


def test_wrong_label_column_does_not_print_the_first_row(tmp_path):
    fields = ["root", SHADOW_HASH, "19000", "0", "99999", "7"] + [f"x{i}" for i in range(40)]
    path = tmp_path / "shadow.csv"
    path.write_text(",".join(fields) + "\n" + ",".join(["1"] * len(fields)) + "\n")
    with pytest.raises(DataError) as e:
        load_csv(path, "labell", header=True)
    msg = str(e.value)
    assert SHADOW_HASH not in msg and SHADOW_HASH[:30] not in msg
    assert "x39" not in msg and "and 38 more" in msg  # column names capped
    assert len(msg) < 400


def test_bad_cell_is_quoted_short(tmp_path):
    cell = "secret" * 50
    path = tmp_path / "d.csv"
    path.write_text(f"1,2,0\n3,{cell},1\n")
    with pytest.raises(DataError) as e:
        load_csv(path)
    msg = str(e.value)
    assert "line 2, column 2:" in msg and "is not a number" in msg
    assert cell not in msg and len(msg) < 200


def test_header_with_newline_stays_on_one_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('"a\nb",c,label\n1,2,0\n3,4,1\n')
    with pytest.raises(DataError) as e:
        load_csv(path, "lable")
    assert "\n" not in str(e.value) and "a\\nb" in str(e.value)


def test_npz_member_list_is_capped(tmp_path):
    np.savez(tmp_path / "d.npz", **{f"k{i}": np.zeros(1) for i in range(200)})
    with pytest.raises(DataError) as e:
        load_npz(tmp_path / "d.npz")
    msg = str(e.value)
    assert "'k0'" in msg and "'k199'" not in msg and "more" in msg


# ---- point 12: float64 data stays float64 until the run's dtype is applied ----------------

def test_csv_keeps_float64_precision(tmp_path):
    value = 0.1 + 2**-40  # not representable in float32
    path = tmp_path / "d.csv"
    path.write_text(f"{value!r},{value!r}\n1.0,2.0\n")
    ds = load_csv(path, header=False, dtype="float64")
    assert ds.x.dtype == np.float64 and ds.x[0, 0] == value
    assert ds.y.dtype == np.float64 and ds.y[0] == value


def test_npz_keeps_float64_precision(tmp_path):
    x = np.array([[0.1 + 2**-40], [1.0]])
    np.savez(tmp_path / "d.npz", x=x, y=x[:, 0])
    ds = load_npz(tmp_path / "d.npz", dtype="float64")
    assert ds.x.dtype == np.float64 and ds.x[0, 0] == x[0, 0] and ds.y[0] == x[0, 0]


def test_npz_float32_stays_float32(tmp_path):
    x = np.array([[1.5], [2.5]], np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    assert load_npz(tmp_path / "d.npz").x.dtype == np.float32


def test_npz_float64_too_large_for_float32_loads_in_a_float64_run(tmp_path):
    x = np.array([[1e300], [1.0]])
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 1]))
    assert load_npz(tmp_path / "d.npz", dtype="float64").x[0, 0] == 1e300
    with pytest.raises(DataError, match="NaN or Inf"):
        load_npz(tmp_path / "d.npz")


def test_csv_target_too_large_for_float32_names_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,0.5\n2,1e39\n")
    with pytest.raises(DataError, match=r"line 2: label '1e39' does not fit in float32"):
        load_csv(path)
    assert load_csv(path, dtype="float64").y[1] == 1e39


def test_normalizer_apply_keeps_float64():
    x = np.array([[0.1 + 2**-40], [0.3], [0.7]])
    norm = Normalizer.fit(x, "standard")
    out = norm.apply(x)
    assert out.dtype == np.float64
    assert out[0, 0] == (x[0, 0] - norm.offset[0]) / norm.scale[0]


def test_idx_label_far_beyond_the_others_is_refused(tmp_path):
    from nnctl.data import load_idx, write_idx
    write_idx(tmp_path / "img", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "lab", np.array([0, 1, 2_000_000_000], np.int32))
    with pytest.raises(DataError, match="label 2000000000 at index 2 implies 2,000,000,001"):
        load_idx(tmp_path / "img", tmp_path / "lab")
    x = np.array([[[0.1 + 2**-40]]] * 2)
    write_idx(tmp_path / "img64", x)
    write_idx(tmp_path / "lab2", np.array([0, 1], np.uint8))
    assert load_idx(tmp_path / "img64", tmp_path / "lab2", dtype="float64").x[0, 0] == x[0, 0, 0]
