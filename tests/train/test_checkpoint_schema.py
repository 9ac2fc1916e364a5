"""Hand-made or damaged checkpoints: a valid zip with a matching config fingerprint, but metadata
or arrays that do not fit. Each must be one `error:` line naming the checkpoint and the field,
exit 2, before any of it is used (the run folder is left as it was)."""

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnctl.cli.app import app
from nnctl.train.checkpoint import differences

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SPIRALS = CONFIGS / "spirals.yaml"  # Adam on three dense layers: 22 steps per epoch, 1 second


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def read(run: Path) -> tuple[dict, dict]:
    with np.load(run / "checkpoint.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays.pop("__meta__").tobytes())
    return arrays, meta


def write(run: Path, arrays: dict, meta, raw_meta: np.ndarray | None = None) -> None:
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8) if raw_meta is None \
        else raw_meta
    np.savez(run / "checkpoint.npz", **arrays, __meta__=blob)


def resume(run: Path):
    return cli("train", SPIRALS, "--epochs", "3", "--no-progress", "--resume", run)


def assert_refused(run: Path, *fragments: str) -> str:
    before = (run / "metrics.jsonl").read_bytes()
    result = resume(run)
    err = result.stderr
    assert result.exit_code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"error: {run / 'checkpoint.npz'}: "), err
    for fragment in fragments:
        assert fragment in err, err
    assert (run / "metrics.jsonl").read_bytes() == before  # nothing was used or rewritten
    return err


MT19937 = np.random.MT19937(1).state
MT19937["state"]["key"] = MT19937["state"]["key"].tolist()


def set_path(doc: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        doc = doc[key]
    if value is DELETE:
        del doc[last]
    else:
        doc[last] = value


DELETE = object()

META_CASES = [  # (key path in the metadata, hostile value, what the message must say)
    ("epoch", DELETE, "epoch: missing"),
    ("epoch", "2", "epoch: expected an integer"),
    ("epoch", 2.0, "epoch: expected an integer"),
    ("epoch", True, "epoch: expected an integer"),
    ("epoch", -7, "epoch: expected an integer from 1 to 2, got -7"),
    ("epoch", 0, "epoch: expected an integer from 1 to 2, got 0"),
    ("epoch", 10 ** 30, "epoch: expected an integer from 1 to 2"),
    ("step_in_epoch", 1e9, "step_in_epoch: expected an integer"),
    ("step_in_epoch", 10 ** 9, "step_in_epoch: expected an integer from 0 to 22"),
    ("step_in_epoch", -1, "step_in_epoch: expected an integer from 0 to 22"),
    ("global_step", 7, "global_step: expected global_step + skipped = 22"),
    ("global_step", None, "global_step: expected an integer"),
    ("skipped", -3, "skipped: expected an integer >= 0"),
    ("shuffle_state", MT19937, "shuffle_state: expected a PCG64 generator state"),
    ("shuffle_state", "PCG64", "shuffle_state: expected a PCG64 generator state"),
    ("shuffle_state.state.state", -1, "shuffle_state: expected a PCG64 generator state"),
    ("shuffle_state.state.inc", 1.5, "shuffle_state: expected a PCG64 generator state"),
    ("augment_state.has_uint32", True, "augment_state: expected a PCG64 generator state"),
    ("augment_state.uinteger", 2 ** 40, "augment_state: expected a PCG64 generator state"),
    ("augment_state.extra", 1, "augment_state: expected a PCG64 generator state"),
    ("dropout_state", [1, 2],
     "dropout_state: expected a PCG64 or Philox4x32-10 generator state"),
    ("loss_scale", {"scale": -1.0, "good_steps": 0}, "loss_scale: expected null or {scale"),
    ("loss_scale", {"scale": 8.0, "good_steps": 1.5}, "loss_scale: expected null or {scale"),
    ("loss_scale", [65536.0], "loss_scale: expected null or {scale"),
    ("partial", {"n": 3}, "partial: expected null or the sums of"),
    ("best", "good", "best: expected null or a number"),
    ("bad_epochs", -1, "bad_epochs: expected an integer from 0 to 1"),
    ("bad_epochs", 5, "bad_epochs: expected an integer from 0 to 1"),
    ("config", [1], "config: expected a mapping"),
    ("config_fingerprint", 12, "config_fingerprint: expected"),
    ("format_version", "1", "checkpoint format '1' is not the supported format 1"),
    ("nnctl_version", {"x": 1}, "nnctl_version: expected a string"),
    ("injected", "rm -rf /", "injected: unknown field"),
]


@pytest.mark.parametrize("key, value, message", META_CASES,
                         ids=[f"{k}={str(v)[:20]}" for k, v, _ in META_CASES])
def test_hostile_metadata_is_one_line_exit_2(run, key, value, message):
    arrays, meta = read(run)
    set_path(meta, key, value)
    write(run, arrays, meta)
    assert_refused(run, message)


def mid_epoch(run: Path) -> tuple[dict, dict]:
    """The checkpoint as if interrupted after step 5 of epoch 2 (partial sums present)."""
    arrays, meta = read(run)
    arrays["optim/step"] = np.array(27, np.int64)
    meta.update(step_in_epoch=5, global_step=27, partial={
        "xp": None, "metrics": ["accuracy"], "classification": True, "n": 160, "weight": 160,
        "loss": 100.0, "correct": 80, "positions": 160, "abs_err": 0.0, "sq_err": 0.0})
    return arrays, meta


@pytest.mark.parametrize("field, value, message", [
    ("n", 1.5, "partial.n: expected an integer"),
    ("n", 10 ** 6, "partial.n: expected an integer from 0 to 160"),
    ("correct", 161, "partial.correct: expected an integer from 0 to 160"),
    ("loss", "x", "partial.loss: expected a finite number"),
    ("loss", float("nan"), "partial.loss: expected a finite number"),
    ("metrics", ["mae"], "partial.metrics: expected ['accuracy']"),
    ("classification", False, "partial.classification: expected True"),
    ("evil", 1, "partial: expected null or the sums of"),
])
def test_hostile_partial_sums_are_refused(run, field, value, message):
    arrays, meta = mid_epoch(run)
    meta["partial"][field] = value
    write(run, arrays, meta)
    assert_refused(run, message)


def test_partial_sums_missing_mid_epoch_are_refused(run):
    arrays, meta = mid_epoch(run)
    meta["partial"] = None
    write(run, arrays, meta)
    assert_refused(run, "partial: expected the sums of the 5 steps done in epoch 2, got None")


def test_a_valid_mid_epoch_checkpoint_resumes(run):
    arrays, meta = mid_epoch(run)
    write(run, arrays, meta)
    result = resume(run)
    assert result.exit_code == 0, result.stderr


ARRAY_CASES = {
    "param shape": (lambda a: a.update({"param/dense_0.weight": np.zeros((3, 64), np.float32)}),
                    ("param/dense_0.weight: expected shape (2, 64) and dtype float32, got shape "
                     "(3, 64) and dtype float32")),
    "param dtype": (lambda a: a.update({"param/dense_0.bias": np.zeros(64, np.float64)}),
                    ("param/dense_0.bias: expected shape (64,) and dtype float32, got shape (64,) "
                     "and dtype float64")),
    "param byte order": (lambda a: a.update({"param/dense_0.bias": np.zeros(64, ">f4")}),
                         "param/dense_0.bias: expected shape (64,) and dtype float32"),
    "param missing": (lambda a: a.pop("param/dense_2.bias"), "param/dense_2.bias: missing"),
    "optim shape": (lambda a: a.update({"optim/m.0": np.zeros((64, 2), np.float32)}),
                    "optim/m.0: expected shape (2, 64) and dtype float32, got shape (64, 2)"),
    "optim dtype": (lambda a: a.update({"optim/v.3": np.zeros(64, np.int32)}),
                    ("optim/v.3: expected shape (64,) and dtype float32, got shape (64,) and "
                     "dtype int32")),
    "optim slot of no parameter": (lambda a: a.update({"optim/m.6": np.zeros(2, np.float32)}),
                                   "optim/m.6: unknown entry"),
    "optim leading zero": (lambda a: a.update({"optim/m.01": a.pop("optim/m.1")}),
                           "optim/m.01: unknown entry"),
    "optim foreign slot": (lambda a: a.update({"optim/velocity.0": a["optim/m.0"]}),
                           "optim/velocity.0: unknown entry"),
    "optim slot incomplete": (lambda a: a.pop("optim/v.4"),
                              "optim/v: expected one array per parameter (0..5), missing 4"),
    "optim step float": (lambda a: a.update({"optim/step": np.array(22.0)}),
                         "optim/step: expected shape () and dtype int64"),
    "optim step vector": (lambda a: a.update({"optim/step": np.array([22])}),
                          "optim/step: expected shape () and dtype int64"),
    "optim step wrong": (lambda a: a.update({"optim/step": np.array(-5)}),
                         "optim/step: expected 22 (global_step), got -5"),
    "optim step missing": (lambda a: a.pop("optim/step"), "optim/step: missing"),
    "unknown entry": (lambda a: a.update({"payload": np.zeros(3)}), "payload: unknown entry"),
    "unknown kind": (lambda a: a.update({"grad/dense_0.bias": np.zeros(64, np.float32)}),
                     "grad/dense_0.bias: unknown entry"),
}


@pytest.mark.parametrize("case", list(ARRAY_CASES))
def test_arrays_that_do_not_fit_the_model_are_refused(run, case):
    mutate, message = ARRAY_CASES[case]
    arrays, meta = read(run)
    mutate(arrays)
    write(run, arrays, meta)
    assert_refused(run, message)


@pytest.mark.parametrize("blob, message", [
    (np.frombuffer(b"[1, 2]", np.uint8), "metadata: expected a JSON object, got a list"),
    (np.frombuffer(b"\xff\xfe", np.uint8), "corrupt checkpoint metadata"),
    (np.zeros(4, np.float32), "__meta__: expected a 1-D uint8 array, got shape (4,) float32"),
    (np.zeros((2, 2), np.uint8), "__meta__: expected a 1-D uint8 array, got shape (2, 2) uint8"),
])
def test_metadata_that_is_not_a_json_document_is_refused(run, blob, message):
    arrays, meta = read(run)
    write(run, arrays, meta, raw_meta=blob)
    assert_refused(run, message)


def test_metadata_member_of_raw_bytes_is_refused(run):
    # np.load hands back `bytes` for a member without an NPY header:
    # AttributeError: 'bytes' object has no attribute 'dtype'
    arrays, meta = read(run)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path = run / "checkpoint.npz"
    path.write_bytes(buffer.getvalue())
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("__meta__.npy", json.dumps(meta).encode())
    assert_refused(run, "member '__meta__': not an .npy array (no NPY header)")


def test_a_weights_file_in_place_of_the_checkpoint_is_refused(run):
    shutil.copy(run / "weights.npz", run / "checkpoint.npz")
    assert_refused(run, "not an nnctl checkpoint (no metadata; a weights file?)")


def test_a_weights_file_given_to_resume_is_refused(run):
    result = cli("train", SPIRALS, "--epochs", "3", "--resume", run / "weights.npz")
    assert result.exit_code == 2, result.stderr
    assert result.stderr == f"error: --resume {run / 'weights.npz'}: not a folder (it is a file)\n"


def test_a_long_or_multiline_value_stays_on_one_short_line(run):
    arrays, meta = read(run)
    meta["nnctl_version"] = ["line\n" * 10_000]
    write(run, arrays, meta)
    err = assert_refused(run, "nnctl_version: expected a string")
    assert len(err) < 300


@pytest.mark.parametrize("a, b, expected", [
    ({"model": {"units": 8}}, {"model": 3}, ["model"]),
    ({"model": 3}, {"model": {"units": 8}}, ["model"]),
    ({"m": {"a": {"b": 1}, "c": 2}}, {"m": {"a": 5, "c": 2}}, ["m.a"]),
    ({"m": {"a": 1}}, {"m": {"a": 1, "b": None}}, ["m.b"]),  # missing is not null
    ({"x": None}, {}, ["x"]),
    ({"x": {}}, {}, ["x"]),
    ({"x": {"y": 1}}, {"x": {"y": 1}}, []),
])
def test_differences_name_keys_that_are_a_mapping_on_one_side_only(a, b, expected):
    assert differences(a, b) == expected


DIGITS = CONFIGS / "digits_mlp.yaml"
DIVERGE = ["--set", "optimizer={name: sgd, lr: 1.0e+30}", "--no-progress"]


@pytest.mark.parametrize("extra", [[], ["--set", "train.on_nonfinite=skip"]],
                         ids=["failed at step 1", "every batch skipped"])
def test_checkpoints_of_failed_runs_pass_the_schema(tmp_path, extra):
    # the state before a failing step (partial sums of zero samples; skipped batches counted
    # apart from global_step) is a valid checkpoint: resuming fails the same way, exit 3
    first = cli("train", DIGITS, *DIVERGE, *extra, "--epochs", "2", "--out", tmp_path)
    assert first.exit_code == 3, first.stderr
    (run,) = tmp_path.iterdir()
    again = cli("train", DIGITS, *DIVERGE, *extra, "--epochs", "2", "--resume", run)
    assert again.exit_code == 3, again.stderr
    assert "checkpoint.npz:" not in again.stderr
