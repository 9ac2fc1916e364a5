"""Weights under PyTorch's names and layouts, and back (docs/export.md, "Weights").

A model's parameters and layer state, keyed `layer.param` as nnctl names them, become the
state dict of the equivalent torch.nn modules, one module per layer under the layer's name:

    dense        weight [in, out] -> Linear.weight [out, in] (transposed), bias
    conv1d/2d/3d weight [out, in/groups, k...], bias: Conv1d/2d/3d, the same layout
    batch_norm   gamma, beta, running_mean, running_var -> BatchNorm weight, bias,
                 running_mean, running_var (+ num_batches_tracked 0)
    layer_norm   gamma, beta -> LayerNorm weight, bias
    embedding    table -> Embedding.weight
    rnn/lstm/gru l{k}.weight_x [in, gates*units] -> weight_ih_l{k} (transposed), weight_h ->
                 weight_hh_l{k}; l{k}.bias -> bias_ih_l{k} with bias_hh_l{k} zero (gru: its
                 n-gate part is l{k}.bias_h), same gate order

Other layers keep nnctl's names and layouts. Importing adds torch's two recurrent biases
into nnctl's one (exact: both sit inside the same sum), so any torch state dict of the
equivalent modules loads.
"""

from __future__ import annotations

import re

import numpy as np

from nnctl.errors import DataError

RECURRENT = ("rnn", "lstm", "gru")
RENAMED = {  # kind: {nnctl local name: torch local name}, layouts equal
    "batch_norm": {"gamma": "weight", "beta": "bias", "running_mean": "running_mean",
                   "running_var": "running_var"},
    "layer_norm": {"gamma": "weight", "beta": "bias"},
    "embedding": {"table": "weight"},
}


def layer_kinds(model_spec) -> dict[str, str]:
    """Each layer name's kind (a shared layer's parameters carry the original's name)."""
    return {name: spec.kind for name, spec in zip(model_spec.layer_names(), model_spec.layers)}


def to_torch(kinds: dict[str, str], weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """nnctl's weights (params and states by full name) as a PyTorch state dict."""
    out: dict[str, np.ndarray] = {}
    for full, array in weights.items():
        layer, _, local = full.partition(".")
        kind = kinds.get(layer)
        if kind == "dense" and local == "weight":
            out[full] = np.ascontiguousarray(array.T)
        elif kind in RENAMED and local in RENAMED[kind]:
            out[f"{layer}.{RENAMED[kind][local]}"] = array
        elif kind in RECURRENT:
            out.update(_recurrent_to_torch(layer, kind, local, array, weights))
        else:
            out[full] = array
    for layer, kind in kinds.items():
        if kind == "batch_norm" and f"{layer}.running_mean" in weights:
            out[f"{layer}.num_batches_tracked"] = np.array(0, dtype=np.int64)
    return out


def _recurrent_to_torch(layer, kind, local, array, weights) -> dict[str, np.ndarray]:
    m = re.fullmatch(r"l(\d+)\.(weight_x|weight_h|bias|bias_h)", local)
    if m is None:
        return {f"{layer}.{local}": array}
    k, what = m.group(1), m.group(2)
    if what == "weight_x":
        return {f"{layer}.weight_ih_l{k}": np.ascontiguousarray(array.T)}
    if what == "weight_h":
        return {f"{layer}.weight_hh_l{k}": np.ascontiguousarray(array.T)}
    if what == "bias_h":
        return {}  # folded into bias_hh below
    hh = np.zeros_like(array)
    if kind == "gru":
        units = len(array) // 3
        hh[2 * units:] = weights.get(f"{layer}.l{k}.bias_h", 0.0)
    return {f"{layer}.bias_ih_l{k}": array, f"{layer}.bias_hh_l{k}": hh}


def from_torch(kinds: dict[str, str], state: dict[str, np.ndarray],
               expected: dict[str, tuple], where: str) -> dict[str, np.ndarray]:
    """A PyTorch state dict of the equivalent modules as nnctl's weights, each checked
    against the `expected` shapes (by nnctl's full name). A missing or misshapen entry is one
    DataError naming it and its torch name."""
    out = {}
    for full, shape in expected.items():
        layer, _, local = full.partition(".")
        kind = kinds.get(layer)
        value, name = _from_torch_one(layer, kind, local, state, shape)
        if value is None:
            raise DataError(f"no {name} for {full} (expected shape {list(shape)}); the file "
                            f"has {_some(state)}", path=where)
        if tuple(value.shape) != tuple(shape):
            flip = name.endswith(".weight") and kind == "dense" or "_l" in name and \
                "weight_" in name  # shown in torch's layout, as the file holds it
            theirs, ours = (value.shape[::-1], shape[::-1]) if flip else (value.shape, shape)
            raise DataError(f"{name} has shape {list(theirs)}; {full} needs {list(ours)} "
                            "in torch's layout (docs/export.md)", path=where)
        out[full] = value
    return out


def _from_torch_one(layer, kind, local, state, shape):
    get = state.get
    if kind == "dense" and local == "weight":
        name = f"{layer}.weight"
        return (None if get(name) is None else np.ascontiguousarray(get(name).T)), name
    if kind in RENAMED and local in RENAMED[kind]:
        name = f"{layer}.{RENAMED[kind][local]}"
        return get(name), name
    if kind in RECURRENT:
        m = re.fullmatch(r"l(\d+)\.(weight_x|weight_h|bias|bias_h)", local)
        if m is not None:
            k, what = m.group(1), m.group(2)
            if what in ("weight_x", "weight_h"):
                name = f"{layer}.weight_{'ih' if what == 'weight_x' else 'hh'}_l{k}"
                return (None if get(name) is None else np.ascontiguousarray(get(name).T)), name
            ih, hh = get(f"{layer}.bias_ih_l{k}"), get(f"{layer}.bias_hh_l{k}")
            name = f"{layer}.bias_ih_l{k} / bias_hh_l{k}"
            if ih is None or hh is None:
                return None, name
            if kind != "gru":
                return ih + hh, name
            units = len(ih) // 3
            if what == "bias_h":
                return hh[2 * units:], name
            return ih + np.concatenate([hh[:2 * units], np.zeros(units, hh.dtype)]), name
    name = f"{layer}.{local}"
    return get(name), name


def _some(state: dict) -> str:
    names = sorted(state)
    return ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "") \
        if names else "no arrays"


def read_state(path) -> dict[str, np.ndarray]:
    """A state dict from .safetensors (safetensors' NumPy API, no pickle) or .npz
    (allow_pickle=False)."""
    from pathlib import Path
    p = Path(path)
    if not p.is_file():
        raise DataError("no such file (expected .safetensors or .npz weights)", path=str(p))
    if p.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError:
            from nnctl.extras import install_hint
            raise DataError("reading .safetensors needs safetensors: "
                            + install_hint("weights", "safetensors"), path=str(p)) from None
        try:
            return dict(load_file(str(p)))
        except Exception as err:
            raise DataError(f"not a readable safetensors file ({type(err).__name__}: {err})",
                            path=str(p)) from None
    try:
        with np.load(p, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as err:
        raise DataError(f"not a readable .npz of arrays ({type(err).__name__}: {err})",
                        path=str(p)) from None
