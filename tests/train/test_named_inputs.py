"""Named model inputs the data supplies (Dataset.extra, `model.inputs`): fed in order, trimmed
with the padded steps where info["trim"] says so, and the config mistakes around them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nnctl.backend import get_backend
from nnctl.config import load_config
from nnctl.config.schema import DATASETS, _DataCommon, register_dataset_spec
from nnctl.config.validate import field, string
from nnctl.data.batching import batch_arrays
from nnctl.data.dataset import Dataset
from nnctl.data.kinds import LOADERS, register_loader
from nnctl.errors import ConfigError
from nnctl.train.trainer import Trainer


@dataclass(frozen=True, kw_only=True)
class TwoViews(_DataCommon):
    dataset: str = field(string, "test_two_views", "x and a second view; test only")
    normalize: str = field(string, "none", "")


@dataclass(frozen=True, kw_only=True)
class Linked(_DataCommon):
    dataset: str = field(string, "test_linked", "padded items with links; test only")
    normalize: str = field(string, "none", "")


def load_two_views(spec, seed, dtype):
    """The class is the sign of x[0] + other[0]: neither view alone tells it."""
    rng = np.random.default_rng(seed)
    x, other = rng.normal(size=(300, 3)), rng.normal(size=(300, 3))
    y = (x[:, 0] + other[:, 0] > 0).astype(np.int64)
    return Dataset(x, y, "two_views", extra={"other": other})


def load_linked(spec, seed, dtype):
    """Items padded to 9 with a link matrix [9, 9]: the class is whether item 0 links to any
    other (the features are noise)."""
    rng = np.random.default_rng(seed)
    n, width = 200, 9
    lengths = rng.integers(3, width + 1, n)
    x = np.zeros((n, width, 2))
    links = np.zeros((n, width, width))
    y = np.zeros(n, np.int64)
    for i, k in enumerate(lengths):
        x[i, :k] = rng.normal(size=(k, 2))
        if i % 2:
            j = rng.integers(1, k)
            links[i, 0, j] = links[i, j, 0] = 1.0
            y[i] = 1
    return Dataset(x, y, "linked", x_len=lengths, extra={"links": links},
                   info={"trim": {"links": (1, 2)}})


@pytest.fixture(autouse=True, scope="module")
def kinds():
    for spec, fn in ((TwoViews, load_two_views), (Linked, load_linked)):
        register_dataset_spec(spec)
        register_loader(spec.__dataclass_fields__["dataset"].default)(fn)
    yield
    for name in ("test_two_views", "test_linked"):
        DATASETS.pop(name, None)
        LOADERS.pop(name, None)


TWO_VIEWS = """\
seed: 0
data: {dataset: test_two_views, split: {val: 0.2, test: 0.2}}
model:
  inputs: [other]
  layers:
    - concat: {inputs: [input, other]}
    - dense: {units: 16, activation: tanh}
    - dense: {units: classes}
loss: cross_entropy
optimizer: {name: adam, lr: 0.02}
train: {epochs: 15, batch_size: 32, dtype: float64}
"""


def config(tmp_path: Path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_config(path)


def test_a_second_input_is_fed_and_learned_from(tmp_path):
    trainer = Trainer(config(tmp_path, TWO_VIEWS), get_backend("cpu"), out=None)
    assert trainer.builder.extra_names == ("other",)
    summary = trainer.fit()
    assert summary["test_accuracy"] > 0.9  # the sum of both views: neither alone is enough


def test_an_extra_input_is_trimmed_with_the_padded_steps(tmp_path):
    text = TWO_VIEWS.replace("test_two_views", "test_linked").replace("""\
  inputs: [other]
  layers:
    - concat: {inputs: [input, other]}""", """\
  inputs: [links]
  layers:
    - reshape: {shape: [1, 1], inputs: [links], name: keep}
    - dense: {units: 4, inputs: [input], name: feats}
    - sequence_pool: {mode: mean}""").replace("    - dense: {units: 16, activation: tanh}\n", "")
    # (a model whose weights depend on the padded length: only built at the longest, here
    # to see the feeds; the graph layers read such inputs in a length-free way)
    text = text.replace("""\
    - reshape: {shape: [1, 1], inputs: [links], name: keep}
    - dense: {units: 4, inputs: [input], name: feats}
    - sequence_pool: {mode: mean}""", """\
    - dense: {units: 4, inputs: [links], name: per_item}
    - sequence_pool: {mode: max}""")
    cfg = config(tmp_path, text)
    trainer = Trainer(cfg, get_backend("cpu"), out=None)
    data = trainer.splits.train
    idx = np.argsort(data.x_len)[:8]  # the shortest items: a short padded batch
    arrays = batch_arrays(data, idx, 1, "float64", ("links",))
    x, y, mask, links = arrays
    steps = int(data.x_len[idx].max())
    assert x.shape[1] == mask.shape[1] == steps
    assert links.shape == (8, steps, steps)
    assert np.array_equal(links, data.extra["links"][idx][:, :steps, :steps])
    feeds = trainer.builder.feeds(4, (steps,))
    assert feeds.inputs["links"].shape == (4, steps, steps)
    assert [t.node.name for t in feeds.data][-1] == "links"  # extras come last, as batched


@pytest.mark.parametrize("model, message", [
    ("  inputs: [missing]\n  layers:\n    - dense: {units: classes, inputs: [missing]}\n",
     "c.yaml:4: model.inputs[0]: the data has no input 'missing' (its further inputs: other)"),
    ("  inputs: [other]\n  layers:\n    - dense: {units: classes}\n",
     "model.inputs[0]: no layer reads input 'other'"),
    ("  inputs: [input]\n  layers:\n    - dense: {units: classes}\n",
     "model.inputs[0]: 'input' is a model input already"),
    ("  layers:\n    - dense: {units: classes, inputs: [other]}\n",
     "model.layers[0].dense.inputs[0]: unknown layer 'other'"),
])
def test_mistakes_about_named_inputs_are_one_line(tmp_path, model, message):
    text = "seed: 0\ndata: {dataset: test_two_views}\nmodel:\n" + model + \
        "loss: cross_entropy\noptimizer: sgd\ntrain: {epochs: 1}\n"
    with pytest.raises(ConfigError) as info:
        Trainer(config(tmp_path, text), get_backend("cpu"), out=None)
    text = str(info.value)
    assert message in text and "\n" not in text, text


def test_an_npz_supplies_further_inputs_by_array_name(tmp_path):
    rng = np.random.default_rng(1)
    x, other = rng.normal(size=(200, 3)), rng.normal(size=(200, 3))
    y = (x[:, 0] + other[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "views.npz", x=x, y=y, other=other)
    text = TWO_VIEWS.replace("{dataset: test_two_views,",
                             "{dataset: npz, path: views.npz, inputs: [other], normalize: none,")
    trainer = Trainer(config(tmp_path, text), get_backend("cpu"), out=None)
    assert trainer.fit()["test_accuracy"] > 0.85
    np.savez(tmp_path / "views.npz", x=x, y=y, other=other[:10])
    with pytest.raises(ConfigError, match="array 'other' has shape \\[10, 3\\]; expected one row "
                                          "per sample \\(200\\)"):
        Trainer(config(tmp_path, text), get_backend("cpu"), out=None)


def test_predict_reads_the_further_inputs_from_the_npz(tmp_path):
    from nnctl.train.inference import predict_run
    text = TWO_VIEWS.replace("epochs: 15", "epochs: 2")
    trainer = Trainer(config(tmp_path, text), get_backend("cpu"), out=tmp_path / "runs")
    trainer.fit()
    (run,) = (tmp_path / "runs").iterdir()
    rng = np.random.default_rng(5)
    x, other = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    np.savez(tmp_path / "new.npz", x=x, other=other)
    assert predict_run(run, tmp_path / "new.npz", tmp_path / "p.npz", get_backend("cpu")) == 7
    with np.load(tmp_path / "p.npz") as p:
        probabilities = p["probabilities"]
    expected = trainer.forward_arrays([x, other])
    z = np.exp(expected - expected.max(-1, keepdims=True))
    assert np.allclose(probabilities, z / z.sum(-1, keepdims=True), rtol=1e-12)
    np.savez(tmp_path / "bad.npz", x=x)
    from nnctl.errors import DataError
    with pytest.raises(DataError, match="expected an array named 'other'"):
        predict_run(run, tmp_path / "bad.npz", tmp_path / "p2.npz", get_backend("cpu"))


SIAMESE = TWO_VIEWS.replace("""\
    - concat: {inputs: [input, other]}
    - dense: {units: 16, activation: tanh}
""", """\
    - dense: {units: 8, activation: tanh, name: left, inputs: [input]}
    - dense: {units: 8, activation: tanh, name: right, inputs: [other], shares: left}
    - add: {inputs: [left, right]}
""")


def test_a_shared_layer_is_one_set_of_parameters_with_both_paths_gradients(tmp_path):
    from nnctl.gradcheck import check_model
    cfg = config(tmp_path, SIAMESE)
    trainer = Trainer(cfg, get_backend("cpu"), out=None)
    assert trainer.param_names == ["left.weight", "left.bias", "dense_3.weight", "dense_3.bias"]
    # the sum of both views through one tower: learnable, and only with the shared weights
    assert trainer.fit()["test_accuracy"] > 0.9
    assert all(row.passed for row in check_model(cfg))  # both paths' gradients add up


@pytest.mark.parametrize("layer, message", [
    ("{units: 8, name: right, inputs: [other], shares: lefty}", "unknown layer 'lefty'"),
    ("{units: 9, name: right, inputs: [other], shares: left}",
     "settings differ from 'left' in units"),
    ("{units: 8, name: right, inputs: [other], shares: right}",
     "a layer cannot share its own parameters"),
])
def test_sharing_mistakes_are_one_line(tmp_path, layer, message):
    text = SIAMESE.replace("{units: 8, activation: tanh, name: right, inputs: [other], "
                           "shares: left}", layer.replace("}", ", activation: tanh}"))
    with pytest.raises(ConfigError) as info:
        config(tmp_path, text)
    assert message in str(info.value) and "model.layers[1].dense.shares" in str(info.value)
