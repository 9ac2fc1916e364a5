"""model_summary: per-layer shapes and counts, totals, memory, read from the model and graph."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from nnctl.backend import get_backend
from nnctl.config import load_config
from nnctl.step import prepare
from nnctl.summary import _owner, model_summary
from nnctl.train.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write_mlp(tmp_path, **train):
    """An MLP 784 -> 128 (relu) -> 10 on a generated npz of 784 features, 10 classes."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.random((200, 784), dtype=np.float32),
             y=np.arange(200) % 10)
    path = tmp_path / "mlp.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"dataset": "npz", "path": "data.npz"},
        "model": {"layers": [{"dense": {"units": 128, "activation": "relu"}},
                             {"dense": {"units": 10}}]},
        "loss": "cross_entropy",
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"epochs": 1, "batch_size": 32, **train},
    }))
    return path


def test_mlp_784_128_10(tmp_path):
    s = model_summary(load_config(write_mlp(tmp_path)))
    assert s["config"] == "mlp" and s["input_shape"] == [784] and s["output_shape"] == [10]
    rows = s["layers"]
    assert [(r["name"], r["type"], r["output_shape"], r["params"], r["trainable"])
            for r in rows] == [("dense_0", "dense", [128], 100_480, 100_480),
                               ("dense_1", "dense", [10], 1_290, 1_290)]
    assert rows[1]["inputs"] == ["dense_0"] and rows[0]["inputs"] == ["input"]
    t = s["totals"]
    assert (t["params"], t["trainable"], t["non_trainable"]) == (101_770, 101_770, 0)
    assert t["param_bytes"] == {"float32": 101_770 * 4} == {"float32": t["param_bytes_total"]}
    # one sample, float32: x W, + b, relu (128 each), then x W, + b (10 each)
    assert [r["activation_bytes"] for r in rows] == [3 * 128 * 4, 2 * 10 * 4]
    assert t["activation_bytes_per_sample"] == 4 * (3 * 128 + 2 * 10)


def test_float64_doubles_the_bytes(tmp_path):
    t = model_summary(load_config(write_mlp(tmp_path, dtype="float64")))["totals"]
    assert t["param_bytes"] == {"float64": 101_770 * 8}
    assert t["activation_bytes_per_sample"] == 8 * (3 * 128 + 2 * 10)


def test_digits_cnn_totals_match_the_saved_weights(tmp_path):
    config = load_config(CONFIGS / "digits_cnn.yaml")
    s = model_summary(config)
    t = s["totals"]
    # a 1-epoch run saves every parameter and every state (running statistics)
    trainer = Trainer(config, get_backend("cpu"), out=tmp_path, epochs=1)
    trainer.fit()
    (run,) = tmp_path.iterdir()
    with np.load(run / "weights.npz") as w:
        sizes = {k: w[k].size for k in w.files}
        nbytes = sum(w[k].nbytes for k in w.files)
    assert t["params"] == sum(sizes.values()) == 31_146
    assert t["non_trainable"] == sum(v for k, v in sizes.items()
                                     if k.endswith(("running_mean", "running_var"))) == 256
    assert t["param_bytes_total"] == nbytes
    assert sum(r["params"] for r in s["layers"]) == t["params"]
    assert sum(r["non_trainable"] for r in s["layers"]) == t["non_trainable"]
    _, builder = prepare(config)
    assert t["params"] == sum(a.size for a in builder.model.initial.values())
    shapes = {r["name"]: r["output_shape"] for r in s["layers"]}
    assert shapes["reshape_0"] == [1, 8, 8] and shapes["conv2d_1"] == [32, 8, 8]
    assert shapes["max_pool2d_11"] == [64, 2, 2] and shapes["flatten_12"] == [256]
    assert s["layers"][-1]["output_shape"] == [10]
    assert t["activation_bytes_per_sample"] == sum(r["activation_bytes"] for r in s["layers"])
    assert t["activation_bytes_outside_layers"] == 0


def test_residual_dag_and_nested_transformer_scopes():
    s = model_summary(load_config(CONFIGS / "digits_residual.yaml"))
    by_name = {r["name"]: r for r in s["layers"]}
    assert by_name["residual"]["inputs"] == ["stem", "branch_out"]
    assert by_name["residual"]["activation_bytes"] == 128 * 4  # one add
    s = model_summary(load_config(CONFIGS / "chars_transformer.yaml"))
    blocks = [r for r in s["layers"] if r["type"] == "transformer_encoder"]
    # the attention, norm and feed-forward sub-layers are charged to their block
    assert blocks and all(r["activation_bytes"] > 0 and r["params"] > 0 for r in blocks)
    assert s["totals"]["activation_bytes_outside_layers"] == 0
    assert s["layers"][-1]["output_shape"] == s["output_shape"]


@pytest.mark.parametrize("scope,owner", [("enc", "enc"), ("enc/enc.attn", "enc"),
                                         ("enc.attn", "enc"), ("", "(outside layers)"),
                                         ("other", "(outside layers)")])
def test_nested_scopes_belong_to_the_outer_layer(scope, owner):
    assert _owner(scope, {"enc", "dense_1"}) == owner
