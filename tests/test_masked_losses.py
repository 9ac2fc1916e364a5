"""The masked cross-entropy (nnctl.step.masked_cross_entropy, StepBuilder's loss on padded
batches): a padded batch's mean over real tokens equals the token-weighted mean of the
sequences' losses computed one at a time without padding, with and without label smoothing,
in value and in gradient (float64, rtol 1e-12); padding gets exactly zero gradient; PyTorch's
cross_entropy (ignore_index, label_smoothing) as the oracle. And the whole chain: a padded
batch through embedding -> lstm -> dense -> masked loss gives the same parameter gradients
as the sequences one at a time.
"""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.config.layer_specs import ModelSpec
from nnctl.config.loader import load_yaml_text
from nnctl.config.validate import Context, parse
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.graph.tensor import Tensor, input_placeholder
from nnctl.layers import build_model
from nnctl.step import masked_cross_entropy

LENGTHS, PADDED, CLASSES = (2, 5, 7), 8, 6
RTOL = 1e-12
CPU = get_backend("cpu")


def mask_of(lengths, steps):
    return (np.arange(steps)[None, :] < np.array(lengths)[:, None]).astype(np.float64)


def padded_scores(seed=0):
    """Scores [3, 8, 6] (junk, large, at padding), labels [3, 8] (PAD = 0 at padding), mask."""
    rng = np.random.default_rng(seed)
    mv = mask_of(LENGTHS, PADDED)
    scores = rng.normal(size=(len(LENGTHS), PADDED, CLASSES)) * 2
    scores[mv == 0] = 40 * rng.normal(size=(int((mv == 0).sum()), CLASSES))
    labels = rng.integers(0, CLASSES, size=mv.shape) * (mv > 0)
    return scores, labels, mv


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_padded_batch_equals_token_weighted_sequences(smoothing):
    scores, labels, mv = padded_scores()
    out = Tensor(scores)
    loss = masked_cross_entropy(out, Tensor(labels), Tensor(mv), smoothing)
    (dout,) = grad(loss, [out])
    dout = dout.numpy()
    total = sum(LENGTHS)
    weighted = 0.0
    for i, n in enumerate(LENGTHS):
        oi = Tensor(scores[i:i + 1, :n])
        li = masked_cross_entropy(oi, Tensor(labels[i:i + 1, :n]), Tensor(np.ones((1, n))),
                                  smoothing)
        (doi,) = grad(li, [oi])
        weighted += n * float(li.numpy()) / total
        # d(padded mean)/d scores = (n / total) * d(sequence mean)/d scores
        np.testing.assert_allclose(dout[i, :n], doi.numpy()[0] * n / total, rtol=RTOL,
                                   atol=1e-17)
        assert np.all(dout[i, n:] == 0.0), "padding must get no gradient"
    assert float(loss.numpy()) == pytest.approx(weighted, rel=RTOL)
    assert weighted > 0.5


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_matches_torch_cross_entropy_with_ignore_index(smoothing):
    torch = pytest.importorskip("torch")
    scores, labels, mv = padded_scores(1)
    out = Tensor(scores)
    loss = masked_cross_entropy(out, Tensor(labels), Tensor(mv), smoothing)
    (dout,) = grad(loss, [out])
    ts = torch.tensor(scores, requires_grad=True)
    target = torch.tensor(np.where(mv > 0, labels, -100))
    tloss = torch.nn.functional.cross_entropy(ts.reshape(-1, CLASSES), target.reshape(-1),
                                              ignore_index=-100, label_smoothing=smoothing)
    tloss.backward()
    assert float(loss.numpy()) == pytest.approx(tloss.item(), rel=1e-13)
    np.testing.assert_allclose(dout.numpy(), ts.grad.numpy(), rtol=1e-12, atol=1e-17)


def test_a_mask_of_ones_is_the_plain_mean():
    scores, labels, _ = padded_scores(2)
    loss = masked_cross_entropy(Tensor(scores), Tensor(labels), Tensor(np.ones(labels.shape)))
    logp = scores - np.log(np.exp(scores - scores.max(-1, keepdims=True)).sum(-1,
                                                                            keepdims=True)) \
        - scores.max(-1, keepdims=True)
    expected = -np.take_along_axis(logp, labels[..., None], -1).mean()
    assert float(loss.numpy()) == pytest.approx(float(expected), rel=1e-13)


TAGGER = """
layers:
  - embedding: {vocab: 9, dim: 3}
  - lstm: {units: 4, return_sequences: true, layers: 2}
  - dense: {units: 6}
"""


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_a_padded_batch_through_a_recurrent_model(smoothing):
    """loss and every parameter gradient of a padded batch = the token-weighted sum over the
    sequences run alone (each with its own mean loss), rtol 1e-12."""
    source = load_yaml_text(TAGGER, "m.yaml")
    ctx = Context(source)
    spec = parse(ModelSpec, source.data, (), ctx)
    assert ctx.errors == []
    model = build_model(spec, np.random.default_rng(0), {"dtype": "float64"})
    rng = np.random.default_rng(3)
    mv = mask_of(LENGTHS, PADDED)
    ids = rng.integers(4, 9, size=mv.shape) * (mv > 0)
    labels = rng.integers(0, CLASSES, size=mv.shape) * (mv > 0)

    x = input_placeholder("x", ids.shape, "int64")
    y = input_placeholder("y", labels.shape, "int64")
    m = input_placeholder("m", mv.shape, "float64")
    out = model(x, False, {"input": m})
    assert model.output_mask is m
    params = list(model.params.values())
    loss = masked_cross_entropy(out, y, m, smoothing)
    pvals = [rng.normal(size=p.shape) * 0.7 for p in params]
    padded = compile_graph([loss, *grad(loss, params)], [x, y, m, *params], CPU)(
        [ids, labels, mv, *pvals])

    total, feeds, vals = None, [], []
    for i, n in enumerate(LENGTHS):
        xi = input_placeholder(f"x{i}", (1, n), "int64")
        yi = input_placeholder(f"y{i}", (1, n), "int64")
        oi = model(xi, False)
        li = masked_cross_entropy(oi, yi, Tensor(np.ones((1, n))), smoothing) * (n / sum(
            LENGTHS))
        total = li if total is None else total + li
        feeds += [xi, yi]
        vals += [ids[i:i + 1, :n], labels[i:i + 1, :n]]
    alone = compile_graph([total, *grad(total, params)], [*feeds, *params], CPU)(
        [*vals, *pvals])
    assert float(padded[0]) == pytest.approx(float(alone[0]), rel=RTOL)
    for name, g, g1 in zip(model.params, padded[1:], alone[1:]):
        assert np.abs(g1).max() > 1e-4, name
        np.testing.assert_allclose(g, g1, rtol=RTOL, atol=1e-15, err_msg=name)
