"""Recurrent layers (rnn, lstm, gru) as ONNX's own RNN, LSTM and GRU nodes.

nnctl unrolls a recurrent layer into its gate equations over time; exported op by op, that is
hundreds of small ONNX nodes, which ONNX Runtime runs 1.1-1.4x slower than one fused LSTM node
at batch 64 and 4.5x slower at batch 1 (benchmarks/onnx_recurrent.py, docs/onnx.md). So each
recurrent layer's region of the graph (the nodes in its scope) is recognised and written as
one node per stacked layer, with the weights rearranged into ONNX's layout:

- gates: nnctl keeps PyTorch's order side by side in `weight_x` [features, gates * units]
  (lstm i, f, g, o; gru r, z, n); ONNX wants W [gates * units, features] in its order
  (lstm i, o, f, c; gru z, r, h);
- biases: nnctl's one bias per gate is ONNX's Wb with Rb = 0, except gru's b_hn, which is
  Rb's h part (ONNX's linear_before_reset = 1 is PyTorch's and nnctl's GRU);
- padding: the mask's row sums are `sequence_lens`. ONNX then stops each sequence's state at
  its end, as nnctl does; its outputs past the end are zeros where nnctl repeats the last
  state, so with return_sequences those positions are filled with the last state (a Where).
  The mask must be ones then zeros (what padding makes); the export's runtime check compares
  every position.
- an initial state (a second input) is `initial_h` (and `initial_c` for an lstm state of
  2 * units), given to every stacked layer as nnctl does.

A region that does not look exactly like this (an input that is neither sequence, state nor
mask, or two outputs) is left to the op-by-op mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.graph.ir import Node
from nnctl.ops.registry import Dim

GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn": [0]}  # ONNX's order, by nnctl's
ONNX_OP = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


@dataclass
class Region:
    layer: object              # nnctl.layers.recurrent.Recurrent
    nodes: set                 # the layer's op nodes
    output: Node               # the one node read outside the layer
    sequence: Node             # [B, T, F], or what reshapes to it (a flatten folded in)
    steps_features: tuple      # (T, F)
    state: Node | None         # [B, units] or [B, 2 * units] (lstm)
    mask: Node | None          # [B, T], ones then zeros


def find_regions(graph, layers: dict) -> dict[Node, Region]:
    """output node -> Region, for every recurrent layer of `layers` whose region of `graph`
    (nnctl.graph.ir.Graph) has the expected shape."""
    by_scope: dict[str, set] = {}
    for node in graph.nodes:
        if not node.is_leaf and node.scope:
            by_scope.setdefault(node.scope.split("/")[0], set()).add(node)
    users = graph.users
    regions = {}
    for name, layer in layers.items():
        if getattr(layer, "kind", None) not in ONNX_OP or name not in by_scope:
            continue
        region = _region(layer, by_scope[name], users, set(graph.outputs))
        if region is not None:
            regions[region.output] = region
    return regions


def _region(layer, nodes: set, users: dict, outputs: set) -> Region | None:
    exits = [n for n in nodes if n in outputs or any(u not in nodes for u in users[n])]
    external = {i for n in nodes for i in n.inputs
                if i not in nodes and i.op not in ("parameter", "constant")}
    sequences = [i for i in external if len(i.aval.shape) != 2]
    if len(exits) != 1 or len(sequences) != 1:
        return None
    seq = sequences[0]
    if len(seq.aval.shape) == 3:
        steps, features = seq.aval.shape[1:]
    else:  # a reshape of [B, T, ...] to [B*T, F] folded into the layer's own reshape
        readers = [u for u in users[seq] if u in nodes]
        rows = readers[0].aval.shape[0] if readers else None
        if not readers or any(u.op != "reshape" or u.aval.shape != readers[0].aval.shape
                              for u in readers) or len(readers[0].aval.shape) != 2 or \
                not isinstance(rows, Dim):
            return None
        steps, features = rows.coef, readers[0].aval.shape[1]  # rows: B * T
    units = layer.units
    want = (units,) if not layer.return_sequences else (steps, units)
    if tuple(exits[0].aval.shape[1:]) != want:
        return None
    state = mask = None
    for node in external - {seq}:
        if len(node.aval.shape) != 2 or not node.aval.dtype.startswith("float"):
            return None
        readers = [u for u in users[node] if u in nodes]
        slices_of_one_step = all(u.op == "getitem" and u.aval.shape[1:] == (1,)
                                 for u in readers)
        if node.aval.shape[1] == steps and slices_of_one_step and mask is None:
            mask = node
        elif node.aval.shape[1] in layer.state_widths() and state is None:
            state = node
        else:
            return None
    if state is not None and state.aval.shape[1] == steps == units and mask is None:
        return None  # a [B, T] input that could be either: leave it to the op mapping
    return Region(layer, nodes, exits[0], seq, (steps, features), state, mask)


def onnx_weights(kind: str, weights: dict, prefix: str, units: int, bias: bool):
    """(W, R, B or None) of stacked layer `prefix` (name.l{k}) in ONNX's layout, float32."""
    order = GATE_ORDER[kind]

    def rows(matrix):  # [in, gates * units] -> [gates * units, in], gates in ONNX's order
        t = np.asarray(matrix, np.float64).T
        return np.concatenate([t[g * units:(g + 1) * units] for g in order])[None]

    w, r = rows(weights[f"{prefix}.weight_x"]), rows(weights[f"{prefix}.weight_h"])
    if not bias:
        return w.astype(np.float32), r.astype(np.float32), None
    b = np.asarray(weights[f"{prefix}.bias"], np.float64)
    wb = np.concatenate([b[g * units:(g + 1) * units] for g in order])
    rb = np.zeros_like(wb)
    if kind == "gru":
        rb[2 * units:] = np.asarray(weights[f"{prefix}.bias_h"], np.float64)  # ONNX's h gate
    return w.astype(np.float32), r.astype(np.float32), \
        np.concatenate([wb, rb])[None].astype(np.float32)


def emit_region(em, region: Region, value, weights: dict) -> str:
    """The ONNX nodes of a recurrent layer; `value(node)` is the ONNX name of an input node.
    Returns the name of the layer's output ([B, units] or [B, T, units])."""
    from onnx import TensorProto

    layer, units = region.layer, region.layer.units
    x = value(region.sequence)
    if len(region.sequence.aval.shape) != 3:
        x = em.add("Reshape", [x, em.shape((Dim(), *region.steps_features))], "sequence")
    x = em.add("Transpose", [x], "time_major", perm=[1, 0, 2])
    lengths = h0 = c0 = ""
    if region.mask is not None:
        total = em.reduce("ReduceSum", value(region.mask), [1], False)
        lengths = em.add("Cast", [total], "sequence_lens", to=TensorProto.INT32)
    if region.state is not None:
        state, axis0 = value(region.state), em.const([0], "int64")
        if layer.kind == "lstm" and region.state.aval.shape[1] == 2 * units:
            ends = ([0], [units]), ([units], [2 * units])
            h, c = (em.add("Slice", [state, em.const(a, "int64"), em.const(b, "int64"),
                                     em.const([1], "int64")]) for a, b in ends)
            c0 = em.add("Unsqueeze", [c, axis0], "initial_c")
        else:
            h = state
        h0 = em.add("Unsqueeze", [h, axis0], "initial_h")
    last = None
    for k in range(layer.num_layers):
        w, r, b = onnx_weights(layer.kind, weights, f"{layer.name}.l{k}", units, layer.bias)
        inputs = [x, em.const(w, "float32"), em.const(r, "float32"),
                  "" if b is None else em.const(b, "float32"), lengths, h0]
        if layer.kind == "lstm":
            inputs.append(c0)
        while inputs[-1] == "":
            inputs.pop()
        attrs = {"hidden_size": units}
        if layer.kind == "gru":
            attrs["linear_before_reset"] = 1
        y, y_h = em.add_outputs(ONNX_OP[layer.kind], inputs, 2, f"{layer.name}_l{k}", **attrs)
        x = em.add("Squeeze", [y, em.const([1], "int64")])    # [T, B, units]
        last = y_h
    last = em.add("Squeeze", [last, em.const([0], "int64")], "last_state")  # [B, units]
    if not layer.return_sequences:
        return last
    out = em.add("Transpose", [x], "batch_major", perm=[1, 0, 2])
    if region.mask is None:
        return out
    # past each sequence's end: the last state, as nnctl's held state
    real = em.add("Unsqueeze", [em.add("Cast", [value(region.mask)], to=TensorProto.BOOL),
                                em.const([2], "int64")])
    held = em.add("Unsqueeze", [last, em.const([1], "int64")])
    return em.add("Where", [real, out, held], "sequence_out")
