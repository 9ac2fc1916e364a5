"""The crf layer: log Z against enumeration of every tag path, Viterbi against the brute-force
argmax, the loss, its gradient and Viterbi against torchcrf (pytorch-crf 0.7.2) in float64,
finite differences, padding, and the BIO constraints."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nnctl.autodiff import grad
from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.errors import ShapeError
from nnctl.gradcheck import numeric_gradient
from nnctl.graph.tensor import input_placeholder
from nnctl.layers.crf import CRF, FORBIDDEN, bio_forbidden

CPU = get_backend("cpu")
BIO_TAGS = ["O", "B-NP", "I-NP", "B-VP", "I-VP"]
MASK = np.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=np.float64)


def make_case(seed: int, batch: int = 3, steps: int = 4, k: int = 5, constraints="none"):
    """A crf built on float64 emissions [batch, steps, k] with random (not initial) weights,
    and a compiled plan: feeds (emissions, tags, mask, *params) -> (nll, log Z, score,
    d nll / d emissions, d nll / d each param)."""
    rng = np.random.default_rng(seed)
    layer = CRF("crf_1", constraints, BIO_TAGS[:k] if constraints == "bio" else None)
    em = input_placeholder("em", (batch, steps, k), "float64")
    tags = input_placeholder("tags", (batch, steps), "int64")
    mask = input_placeholder("mask", (batch, steps), "float64")
    layer(em, False, rng)
    params = list(layer.params.values())
    nll = layer.nll(em, tags, mask)
    outs = [nll, layer.log_partition(em, mask), layer.path_score(em, tags, mask),
            *grad(nll, [em, *params])]
    plan = compile_graph(outs, [em, tags, mask, *params], CPU)
    weights = {name: rng.normal(size=p.shape) for name, p in layer.params.items()}
    emissions = rng.normal(size=(batch, steps, k)) * 2.0
    gold = rng.integers(0, k, size=(batch, steps))
    return layer, plan, weights, emissions, gold


def run(plan, layer, weights, emissions, gold, mask):
    out = plan([emissions, gold, mask, *[weights[n] for n in layer.params]])
    return out[0], out[1], out[2], out[3], dict(zip(layer.params, out[4:]))


def constrained(layer, weights):
    """(transitions, start, end) with the layer's constant penalties added."""
    trans = weights["crf_1.transitions"].copy()
    start = weights["crf_1.start"].copy()
    if layer.constraints == "bio":
        forbidden, first = bio_forbidden(layer.tags)
        trans += np.where(forbidden, FORBIDDEN, 0.0)
        start += np.where(first, FORBIDDEN, 0.0)
    return trans, start, weights["crf_1.end"]


def path_scores(em, n, trans, start, end):
    """{path: score} of every tag path over the first n steps of one sequence."""
    k = em.shape[-1]
    out = {}
    for path in itertools.product(range(k), repeat=n):
        s = start[path[0]] + end[path[-1]] + sum(em[t, path[t]] for t in range(n))
        out[path] = s + sum(trans[path[t - 1], path[t]] for t in range(1, n))
    return out


@pytest.mark.parametrize("constraints", ["none", "bio"])
@pytest.mark.parametrize("masked", [False, True])
def test_log_z_score_and_viterbi_match_enumeration(constraints, masked):
    layer, plan, w, em, gold = make_case(1, constraints=constraints)
    mask = MASK if masked else np.ones_like(MASK)
    nll, log_z, score, _, _ = run(plan, layer, w, em, gold, mask)
    best = layer.decode(em, mask if masked else None, w)
    trans, start, end = constrained(layer, w)
    for b in range(len(em)):
        n = int(mask[b].sum())
        scores = path_scores(em[b], n, trans, start, end)
        values = np.array(list(scores.values()))
        top = values.max()
        assert log_z[b] == pytest.approx(float(top + np.log(np.exp(values - top).sum())),
                                         rel=1e-10)
        assert score[b] == pytest.approx(float(scores[tuple(gold[b, :n])]), rel=1e-10)
        assert tuple(best[b, :n]) == max(scores, key=scores.get)
        assert (best[b, n:] == 0).all()
    assert nll == pytest.approx(float((log_z - score).mean()), rel=1e-12)


def test_bio_constraints_shape_the_paths():
    forbidden, first = bio_forbidden(BIO_TAGS)
    names = {(a, b) for i, a in enumerate(BIO_TAGS) for j, b in enumerate(BIO_TAGS)
             if forbidden[i, j]}
    assert names == {("O", "I-NP"), ("O", "I-VP"), ("B-VP", "I-NP"), ("I-VP", "I-NP"),
                     ("B-NP", "I-VP"), ("I-NP", "I-VP")}
    assert first.tolist() == [False, False, True, False, True]
    # emissions that want I-VP right after B-NP, and I-NP first: decoding must not obey them
    layer = CRF("crf_1", "bio", BIO_TAGS)
    zeros = {f"crf_1.{p}": np.zeros(s) for p, s in
             (("transitions", (5, 5)), ("start", (5,)), ("end", (5,)))}
    em = np.full((1, 2, 5), -1.0)
    em[0, 0, [2, 1]] = [3.0, 2.0]   # I-NP (forbidden first), then B-NP
    em[0, 1, [4, 2]] = [3.0, 2.5]   # I-VP (forbidden after B-NP), then I-NP
    assert layer.decode(em, None, zeros).tolist() == [[1, 2]]
    assert CRF("crf_1").decode(em, None, zeros).tolist() == [[2, 4]]


def test_padded_batch_equals_each_sequence_alone():
    layer, plan, w, em, gold = make_case(2, batch=3, steps=4, constraints="bio")
    _, log_z, score, _, _ = run(plan, layer, w, em, gold, MASK)
    for b in range(3):
        n = int(MASK[b].sum())
        alone, aplan, _, _, _ = make_case(2, batch=1, steps=n, constraints="bio")
        _, z1, s1, _, _ = run(aplan, alone, {k.replace("crf_1", "crf_1"): v for k, v in w.items()},
                              em[b:b + 1, :n], gold[b:b + 1, :n], np.ones((1, n)))
        assert z1[0] == pytest.approx(float(log_z[b]), rel=1e-12)
        assert s1[0] == pytest.approx(float(score[b]), rel=1e-12)
    # padded steps' emissions and tags change nothing
    em2, gold2 = em.copy(), gold.copy()
    em2[MASK == 0] = 50.0
    gold2[MASK == 0] = 4
    out, out2 = run(plan, layer, w, em, gold, MASK), run(plan, layer, w, em2, gold2, MASK)
    assert out2[0] == pytest.approx(float(out[0]), rel=1e-12)
    assert np.all(out2[3][MASK == 0] == 0)


def test_gradient_matches_finite_differences():
    layer, plan, w, em, _ = make_case(3, constraints="bio")
    # a gold path BIO allows: a forbidden one scores ~-1e4, whose rounding swamps the
    # differences (the loss itself is checked against enumeration and torchcrf above)
    gold = layer.decode(em + np.random.default_rng(5).normal(size=em.shape), MASK, w)
    names = list(layer.params)
    arrays = [em, *[w[n] for n in names]]

    def loss(a):
        return float(plan([a[0], gold, MASK, *a[1:]])[0])

    _, _, _, d_em, d_params = run(plan, layer, w, em, gold, MASK)
    for i, analytic in enumerate([d_em, *[d_params[n] for n in names]]):
        numeric = numeric_gradient(loss, arrays, i, 1e-6)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    assert np.abs(d_params["crf_1.transitions"]).max() > 1e-3  # the check is not vacuous


def test_wrong_inputs_are_clear_errors():
    with pytest.raises(ShapeError, match="constraints: bio needs the data's tag names"):
        CRF("crf_2", "bio", None)
    with pytest.raises(ShapeError, match="'NN' is not BIO"):
        CRF("crf_2", "bio", ["O", "B-NP", "NN"])
    with pytest.raises(ShapeError, match="unknown constraints 'bioes'"):
        CRF("crf_2", "bioes", BIO_TAGS)
    with pytest.raises(ShapeError, match="5 tags; the layer before the crf needs units"):
        CRF("crf_2", "bio", BIO_TAGS)(input_placeholder("em", (2, 3, 4), "float64"), False,
                                      np.random.default_rng(0))


def test_initial_parameters_are_small_uniform():
    layer = CRF("crf_1")
    layer(input_placeholder("em", (2, 3, 6), "float32"), False, np.random.default_rng(0))
    assert sorted(layer.initial) == ["crf_1.end", "crf_1.start", "crf_1.transitions"]
    t = layer.initial["crf_1.transitions"]
    assert t.shape == (6, 6) and t.dtype == np.float32
    assert 0.05 < np.abs(t).max() < 0.1 and np.abs(t).min() > 0.0


# ---- torchcrf as an independent oracle -------------------------------------------------------

@pytest.mark.parametrize("constraints", ["none", "bio"])
def test_matches_torchcrf(constraints):
    torch = pytest.importorskip("torch")
    torchcrf = pytest.importorskip("torchcrf")
    layer, plan, w, em, gold = make_case(4, batch=3, steps=4, constraints=constraints)
    nll, _, _, d_em, d_params = run(plan, layer, w, em, gold, MASK)
    trans, start, end = constrained(layer, w)  # torchcrf has no constraints: bake them in

    ref = torchcrf.CRF(5, batch_first=True).double()
    with torch.no_grad():
        ref.transitions.copy_(torch.tensor(trans))
        ref.start_transitions.copy_(torch.tensor(start))
        ref.end_transitions.copy_(torch.tensor(end))
    e = torch.tensor(em, requires_grad=True)
    m = torch.tensor(MASK).bool()
    ref_nll = -ref(e, torch.tensor(gold), mask=m, reduction="mean")
    ref_nll.backward()
    assert nll == pytest.approx(ref_nll.item(), rel=1e-10)
    np.testing.assert_allclose(d_em, e.grad.numpy(), rtol=1e-9, atol=1e-12)
    for ours, theirs in (("transitions", ref.transitions), ("start", ref.start_transitions),
                         ("end", ref.end_transitions)):
        # a constant penalty changes no gradient: d/dA of (A + C) is d/d(A + C)
        np.testing.assert_allclose(d_params[f"crf_1.{ours}"], theirs.grad.numpy(),
                                   rtol=1e-9, atol=1e-12)
    best = ref.decode(e.detach(), mask=m)
    ours = layer.decode(em, MASK, w)
    for b, path in enumerate(best):
        assert ours[b, :len(path)].tolist() == path


# ---- from the config -------------------------------------------------------------------------

def test_spec_builds_a_constrained_crf_from_the_data_tags(model_spec):
    from nnctl.layers import build_model
    spec = model_spec("layers:\n  - dense: {units: classes}\n  - crf: {constraints: bio}\n")
    model = build_model(spec, np.random.default_rng(0), {"classes": 5, "tags": BIO_TAGS})
    crf = model.layers[model.output]
    assert isinstance(crf, CRF) and crf.tags == BIO_TAGS
    assert crf.forbidden_start.tolist() == [False, False, True, False, True]
    errors = []
    model_spec("layers:\n  - crf: {constraints: bioes}\n", errors)
    assert errors == ["m.yaml:2: layers[0].crf.constraints: unknown value 'bioes' (did you "
                      "mean 'bio'?)"]
