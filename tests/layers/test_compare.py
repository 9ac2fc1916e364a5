"""The comparator layers and losses (nnctl.layers.compare) against PyTorch in float64: values
and gradients (reverse-mode AD of our elementary ops vs torch autograd), and the losses
against pytorch-metric-learning where its definitions match."""

from __future__ import annotations

import numpy as np
import pytest

import nnctl.config.schema  # noqa: F401  (the spec tables, before compare_specs registers)
from nnctl.autodiff import grad
from nnctl.errors import ShapeError
from nnctl.graph.tensor import Tensor
from nnctl.layers.compare import (EPS, Difference, Distance, TripletDistance, contrastive_loss,
                                  triplet_loss)

TOL = {"rtol": 1e-10, "atol": 1e-12}
B, D = 7, 5


def embeddings(k, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(B, D)) for _ in range(k)]


def torch_distance(torch, a, b, metric):
    if metric == "euclidean":
        return (((a - b) ** 2).sum(-1, keepdim=True) + EPS).sqrt()
    if metric == "squared_euclidean":
        return ((a - b) ** 2).sum(-1, keepdim=True)
    na = ((a * a).sum(-1, keepdim=True) + EPS).sqrt()
    nb = ((b * b).sum(-1, keepdim=True) + EPS).sqrt()
    return 1 - (a * b).sum(-1, keepdim=True) / (na * nb)


def ours_and_grads(layer, values, seed):
    xs = [Tensor(v) for v in values]
    out = layer(xs, False)
    grads = grad((out * Tensor(seed)).sum(), xs)
    return out.numpy(), [g.numpy() for g in grads]


@pytest.mark.parametrize("metric", ["euclidean", "squared_euclidean", "cosine"])
def test_distance_matches_torch_values_and_gradients(metric):
    torch = pytest.importorskip("torch")
    a, b = embeddings(2)
    seed = np.random.default_rng(9).normal(size=(B, 1))
    out, (da, db) = ours_and_grads(Distance("d", metric), [a, b], seed)
    assert out.shape == (B, 1)
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (a, b))
    ref = torch_distance(torch, ta, tb, metric)
    (ref * torch.tensor(seed)).sum().backward()
    np.testing.assert_allclose(out, ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(da, ta.grad.numpy(), **TOL)
    np.testing.assert_allclose(db, tb.grad.numpy(), **TOL)
    # and torch's own functions (eps aside: 1e-12 under the root moves nothing at 1e-9)
    ta, tb = torch.tensor(a), torch.tensor(b)
    own = {"euclidean": torch.nn.functional.pairwise_distance(ta, tb, eps=0.0),
           "squared_euclidean": torch.nn.functional.pairwise_distance(ta, tb, eps=0.0) ** 2,
           "cosine": 1 - torch.nn.functional.cosine_similarity(ta, tb)}[metric]
    np.testing.assert_allclose(out[:, 0], own.numpy(), rtol=1e-9)


def test_euclidean_gradient_is_finite_and_zero_for_identical_embeddings():
    a = embeddings(1)[0]
    out, (da, db) = ours_and_grads(Distance("d", "euclidean"), [a, a.copy()], np.ones((B, 1)))
    np.testing.assert_allclose(out, np.sqrt(EPS), rtol=1e-12)
    assert np.all(da == 0) and np.all(db == 0)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_triplet_distance_is_both_pair_distances(metric):
    torch = pytest.importorskip("torch")
    a, p, n = embeddings(3, 1)
    seed = np.random.default_rng(4).normal(size=(B, 2))
    out, grads = ours_and_grads(TripletDistance("t", metric), [a, p, n], seed)
    ts = [torch.tensor(v, requires_grad=True) for v in (a, p, n)]
    ref = torch.cat([torch_distance(torch, ts[0], ts[1], metric),
                     torch_distance(torch, ts[0], ts[2], metric)], dim=-1)
    (ref * torch.tensor(seed)).sum().backward()
    np.testing.assert_allclose(out, ref.detach().numpy(), **TOL)
    for ours, t in zip(grads, ts):
        np.testing.assert_allclose(ours, t.grad.numpy(), **TOL)


def test_difference_is_symmetric_absolute_difference():
    a, b = embeddings(2, 2)
    out, (da, db) = ours_and_grads(Difference("diff"), [a, b], np.ones((B, D)))
    np.testing.assert_array_equal(out, np.abs(a - b))
    np.testing.assert_array_equal(da, np.sign(a - b))
    np.testing.assert_array_equal(db, -np.sign(a - b))


@pytest.mark.parametrize("layer, values, message", [
    (Distance("d"), [np.zeros((2, 3)), np.zeros((2, 4))], "embeddings of one shape"),
    (Distance("d"), [np.zeros((2, 3))] * 3, "distance compares 2 inputs (left, right), got 3"),
    (TripletDistance("t"), [np.zeros((2, 3))] * 2, "compares 3 inputs"),
])
def test_shape_mistakes_name_the_layer(layer, values, message):
    with pytest.raises(ShapeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        layer([Tensor(v) for v in values], False)


# ---- losses -------------------------------------------------------------------------------

def pair_batch(seed=0):
    """Distances around the margin (some pushed pairs inside it, some outside), labels mixed."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.05, 2.0, size=(12, 1))
    y = rng.integers(0, 2, size=12).astype(np.int64)
    y[:2] = [0, 1]
    return d, y


@pytest.mark.parametrize("margin", [0.5, 1.0, 1.5])
def test_contrastive_loss_matches_hand_written_torch(margin):
    torch = pytest.importorskip("torch")
    d, y = pair_batch()
    td = torch.tensor(d, requires_grad=True)
    ty = torch.tensor(y, dtype=torch.float64)
    ref = (ty * td[:, 0] ** 2 + (1 - ty) * torch.clamp(margin - td[:, 0], min=0) ** 2).mean()
    ref.backward()
    dt = Tensor(d)
    loss = contrastive_loss(dt, Tensor(y), margin)
    (g,) = grad(loss, [dt])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(g.numpy(), td.grad.numpy(), **TOL)
    assert ref.item() > 0  # the batch has pairs in both terms
    assert np.count_nonzero(g.numpy()) < len(d)  # and different pairs beyond the margin


@pytest.mark.parametrize("margin", [0.2, 1.0])
def test_triplet_loss_matches_hand_written_torch(margin):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    d = rng.uniform(0.0, 2.0, size=(12, 2))
    td = torch.tensor(d, requires_grad=True)
    ref = torch.clamp(td[:, 0] - td[:, 1] + margin, min=0).mean()
    ref.backward()
    dt = Tensor(d)
    loss = triplet_loss(dt, margin)
    (g,) = grad(loss, [dt])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(g.numpy(), td.grad.numpy(), **TOL)
    assert 0 < np.count_nonzero(g.numpy()) < d.size  # active and inactive triplets


def test_triplet_loss_on_embeddings_matches_pytorch_metric_learning():
    """pml's TripletMarginLoss (LpDistance without its default normalisation of the
    embeddings, reducer "mean over all triplets", swap off) on the explicit triplets
    (a_i, p_i, n_i) is our triplet_distance + triplet_loss.
    Its distance has no eps: our 1e-12 under the root moves the value by ~1e-12 relative."""
    torch = pytest.importorskip("torch")
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances, losses, reducers
    a, p, n = embeddings(3, 5)
    emb = torch.tensor(np.concatenate([a, p, n]), requires_grad=True)
    labels = torch.tensor(np.concatenate([np.arange(B), np.arange(B), B + np.arange(B)]))
    triplets = (torch.arange(B), B + torch.arange(B), 2 * B + torch.arange(B))
    their = losses.TripletMarginLoss(
        margin=0.8, distance=distances.LpDistance(normalize_embeddings=False, p=2),
        reducer=reducers.MeanReducer())
    ref = their(emb, labels, indices_tuple=triplets)
    ref.backward()
    xs = [Tensor(v) for v in (a, p, n)]
    loss = triplet_loss(TripletDistance("t", "euclidean")(xs, False), 0.8)
    grads = grad(loss, xs)
    assert pml.__version__
    assert loss.item() == pytest.approx(ref.item(), rel=1e-9)
    np.testing.assert_allclose(np.concatenate([g.numpy() for g in grads]),
                               emb.grad.numpy(), rtol=1e-7, atol=1e-12)


def test_contrastive_loss_vs_pytorch_metric_learning_where_it_matches():
    """pml's ContrastiveLoss is max(0, d - pos_margin) for positives and max(0, neg_margin - d)
    for negatives, not squared, averaged over the pairs with a nonzero loss
    (AvgNonZeroReducer). Ours squares both terms and averages over all pairs (Hadsell et al.),
    so the losses are not the same function; what is comparable are the per-pair terms: with
    pos_margin 0, neg_margin = our margin and unnormalised euclidean distances, ours is the
    mean over all pairs of pml's per-pair terms squared."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances, losses, reducers
    left, right = embeddings(2, 6)
    same = np.array([1, 0, 1, 0, 0, 1, 0], np.int64)
    right[same == 1] = left[same == 1] + 0.1 * right[same == 1]  # near for same pairs
    emb = torch.tensor(np.concatenate([left, right]))
    labels = torch.tensor(np.arange(2 * B))
    pos = np.flatnonzero(same)
    neg = np.flatnonzero(same == 0)
    indices = (torch.tensor(pos), torch.tensor(B + pos), torch.tensor(neg),
               torch.tensor(B + neg))

    class Keep(reducers.DoNothingReducer):
        pass
    their = losses.ContrastiveLoss(
        pos_margin=0.0, neg_margin=3.0, reducer=Keep(),
        distance=distances.LpDistance(normalize_embeddings=False, p=2))
    terms = their.compute_loss(emb, labels, indices, None, None)
    pml_pos = terms["pos_loss"]["losses"].numpy()
    pml_neg = terms["neg_loss"]["losses"].numpy()
    d = Distance("d", "euclidean")([Tensor(left), Tensor(right)], False)
    ours = contrastive_loss(d, Tensor(same), 3.0).item()
    expected = (np.sum(pml_pos ** 2) + np.sum(pml_neg ** 2)) / B
    assert ours == pytest.approx(float(expected), rel=1e-9)
    # different pairs both inside and beyond the margin; same pairs all count
    assert 0 < np.count_nonzero(pml_neg) < len(neg) and np.all(pml_pos > 0)


# ---- specs --------------------------------------------------------------------------------

@pytest.mark.parametrize("layer, message", [
    ("distance: {inputs: [a, b, c]}", "distance compares two layers (left, right), got 3"),
    ("triplet_distance: {inputs: [a, b]}", "triplet_distance compares three layers"),
    ("distance: {metric: manhattan, inputs: [a, b]}", "metric"),
    ("difference: {inputs: [a]}", "difference reads two layers, got 1"),
])
def test_spec_mistakes_are_config_errors(model_spec, layer, message):
    import nnctl.config.compare_specs  # noqa: F401  (registers the specs)
    errors = []
    model_spec("layers:\n  - dense: {name: a, units: 2, inputs: [input]}\n"
               "  - dense: {name: b, units: 2, inputs: [input]}\n"
               "  - dense: {name: c, units: 2, inputs: [input]}\n"
               f"  - {layer}\n", errors)
    assert any(message in e for e in errors), errors


def test_distance_spec_builds_the_layer_with_its_metric(model_spec):
    import nnctl.config.compare_specs  # noqa: F401
    from nnctl.layers import build_model
    errors = []
    spec = model_spec("layers:\n  - dense: {name: a, units: 3, inputs: [input]}\n"
                      "  - dense: {name: b, units: 3, inputs: [input], shares: a}\n"
                      "  - distance: {metric: cosine, inputs: [a, b]}\n", errors)
    assert errors == []
    model = build_model(spec, np.random.default_rng(0), {"dtype": "float64"})
    layer = model.layers[model.output]
    assert isinstance(layer, Distance) and layer.metric == "cosine"
