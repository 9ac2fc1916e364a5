"""model_summary(config): a Keras-like description of a config's model, layer by layer.

For each layer in the order the model runs them: its name, type, output shape per sample,
parameter count (trainable parameters plus state) and trainable count. Totals: trainable and
non-trainable (batch norm's running statistics, the model's `states`) counts, parameter bytes
by dtype, and the activation memory of one sample's forward pass.

Activation memory is read from the evaluation-mode forward graph built for a batch of 1: the
sum of the result sizes (`aval.nbytes`, so each node's own dtype) of its op nodes. Leaves
(inputs, parameters, state, constants) are not activations; nor are op nodes whose value is
already known when the graph is built (eager results such as a positional-encoding table,
which compile folds into constants). Each op node is charged to the layer whose scope it was
built in; a nested scope ("enc/enc.attn") belongs to its outermost layer ("enc"). It is the
total a forward pass creates, not the peak: the compiled plan frees values after their last
use, so the peak (`nnctl train` reports it) is lower.
"""

from __future__ import annotations

from collections import defaultdict

from nnctl.config import Config
from nnctl.config.layer_specs import MODEL_INPUT
from nnctl.graph import Graph
from nnctl.step import prepare

OUTSIDE = "(outside layers)"  # op nodes built outside every layer's scope


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _owner(scope: str, names: set[str]) -> str:
    """The top-level layer a node scope belongs to ("enc/enc.attn" and "enc.attn" -> "enc")."""
    if not scope:
        return OUTSIDE
    head = scope.split("/")[0]
    while head not in names and "." in head:
        head = head.rsplit(".", 1)[0]
    return head if head in names else OUTSIDE


def memory_plan(config: Config, builder) -> dict:
    """The compiled plans' memory, known before training: the training step (forward,
    backward, gradients) at train.batch_size and the evaluation step at eval_batch_size.
    Each: the arena's bytes (allocated once), the most bytes alive at once (a lower bound on
    any placement), and what an interpreter allocating every result would peak at."""
    from nnctl.backend import get_backend
    from nnctl.compile import compile_graph

    backend = get_backend("cpu")
    t = config.spec.train
    plans = {}
    for name, (outputs, feeds), batch in (
            ("train", builder.training_step(), t.batch_size),
            ("eval", builder.evaluation_step(), t.eval_batch_size)):
        plan = compile_graph(outputs, feeds, backend, capacity={"B": batch})
        plans[name] = {"batch": batch, **plan.memory_report()}
    return plans


def model_summary(config: Config) -> dict:
    """{"config", "input_shape", "output_shape", "layers": [row...], "totals": {...}} with
    shapes per sample (the batch dimension left out). Each row: name, type, inputs,
    output_shape, params, trainable, non_trainable, activation_bytes."""
    splits, builder = prepare(config)
    model = builder.model
    # A batch-1 evaluation forward, walked as Model.__call__ does, to see each layer's output.
    # The layers are already built (prepare built the training graph), so nothing is drawn.
    feeds = builder.model_feeds(1)
    x = feeds.inputs[MODEL_INPUT]
    values: dict = {}
    out = model(feeds.inputs, False, feeds.masks, trace=values)

    aux = config.spec.aux_losses or ()
    names = set(model.names)
    act = defaultdict(int)
    for node in Graph([out.node, *(values[a.output].node for a in aux)]).op_nodes:
        if node.value is None:
            act[_owner(node.scope, names)] += node.aval.nbytes

    rows = []
    counted: set[int] = set()  # a shared layer's parameters count once, at the original
    for i in model.order:
        layer, name = model.layers[i], model.names[i]
        trainable = states = 0
        if id(layer) not in counted:
            counted.add(id(layer))
            trainable = sum(_size(t.shape) for t in layer.params.values())
            states = sum(_size(t.shape) for t in layer.states.values())
        rows.append({"name": name, "type": layer.kind, "inputs": list(model.inputs[i]),
                     "output_shape": list(values[name].shape[1:]),
                     "params": trainable + states, "trainable": trainable,
                     "non_trainable": states, "activation_bytes": act.pop(name, 0)})

    param_bytes: dict[str, int] = defaultdict(int)
    for t in (*builder.params.values(), *builder.states.values()):
        param_bytes[t.dtype] += t.node.aval.nbytes
    trainable = sum(_size(t.shape) for t in builder.params.values())
    non_trainable = sum(_size(t.shape) for t in builder.states.values())
    activation = sum(r["activation_bytes"] for r in rows) + act.get(OUTSIDE, 0)
    return {
        "memory_plan": memory_plan(config, builder),
        "config": config.name,
        "input_shape": list(x.shape[1:]), "input_dtype": x.dtype,
        "inputs": {name: {"shape": list(t.shape[1:]), "dtype": t.dtype}
                   for name, t in feeds.inputs.items()},
        "output_shape": list(out.shape[1:]),
        "outputs": [{"name": model.names[model.output], "shape": list(out.shape[1:]),
                     "loss": config.spec.loss.name, "target": "y", "weight": 1.0}] +
                   [{"name": a.output, "shape": list(values[a.output].shape[1:]),
                     "loss": a.loss.name, "target": a.target, "weight": a.weight} for a in aux],
        "layers": rows,
        "totals": {"params": trainable + non_trainable, "trainable": trainable,
                   "non_trainable": non_trainable,
                   "param_bytes": dict(sorted(param_bytes.items())),
                   "param_bytes_total": sum(param_bytes.values()),
                   "activation_bytes_per_sample": activation,
                   "activation_bytes_outside_layers": act.get(OUTSIDE, 0)},
    }
