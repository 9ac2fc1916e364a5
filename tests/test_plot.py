"""plot_run: PNG curves from metrics.jsonl, the confusion matrix, and clean errors."""

import json
import sys

import pytest

from nnctl.errors import DataError, UsageError
from nnctl.plot import curves, plot_run, read_metrics

PNG = b"\x89PNG\r\n\x1a\n"

RECORDS = [
    {"epoch": 1, "train_loss": 1.2, "train_accuracy": 0.6, "val_loss": 0.9,
     "val_accuracy": 0.7, "train_bits_per_char": 1.7, "seconds": 0.5, "samples_per_s": 900.0},
    {"epoch": 2, "train_loss": 0.8, "train_accuracy": 0.75, "val_loss": 0.7,
     "val_accuracy": 0.78, "train_bits_per_char": 1.2, "seconds": 0.4, "samples_per_s": 950.0},
]


def make_run(tmp_path, records=RECORDS, confusion=None):
    run = tmp_path / "digits_mlp-20250101-000000"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if confusion is not None:
        (run / "confusion.json").write_text(json.dumps(confusion))
    return run


def test_curves_pair_train_and_val_and_skip_timings():
    c = curves(RECORDS)
    assert list(c) == ["loss", "accuracy", "bits_per_char"]
    assert c["loss"]["train"] == ([1, 2], [1.2, 0.8])
    assert c["accuracy"]["val"] == ([1, 2], [0.7, 0.78])
    assert set(c["bits_per_char"]) == {"train"}


def test_plot_run_writes_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    run = make_run(tmp_path)
    written = plot_run(run)
    assert [p.name for p in written] == ["loss.png", "accuracy.png", "bits_per_char.png"]
    for p in written:
        assert p.parent == run / "plots" and p.read_bytes()[:8] == PNG
    assert not [p for p in (run / "plots").iterdir() if p.suffix != ".png"]  # no temp files
    assert plot_run(run) == written  # drawing again replaces the files


def test_confusion_png_when_the_run_has_one(tmp_path):
    pytest.importorskip("matplotlib")
    run = make_run(tmp_path, confusion={"labels": ["0", "1", "2"],
                                        "matrix": [[5, 1, 0], [0, 6, 0], [1, 0, 4]]})
    written = plot_run(run)
    assert written[-1] == run / "plots" / "confusion.png"
    assert written[-1].read_bytes()[:8] == PNG


def test_missing_metrics_is_a_clean_data_error(tmp_path):
    with pytest.raises(DataError, match="no metrics.jsonl"):
        plot_run(tmp_path)
    with pytest.raises(DataError, match="not a run folder"):
        plot_run(tmp_path / "nowhere")
    assert DataError.exit_code == 2


def test_bad_files_are_data_errors(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 1.0}\n{oops\n')
    with pytest.raises(DataError, match="line 2: not JSON"):
        read_metrics(run)
    (run / "metrics.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no epochs recorded"):
        read_metrics(run)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train_loss": 1.0}\n')
    (run / "confusion.json").write_text('{"labels": ["a", "b"], "matrix": [[1, 2]]}')
    with pytest.raises(DataError, match="confusion.json"):
        plot_run(run)


def test_without_matplotlib_a_usage_error(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    hint = r"pip install matplotlib \(the nnctl\[plot\] extra; in a source checkout: " \
        r"pip install -e '\.\[plot\]'\)"
    with pytest.raises(UsageError, match=hint) as info:
        plot_run(run)
    assert info.value.exit_code == 2
    assert not (run / "plots").exists()
