"""How to export recurrent layers to ONNX, decided by measurement: nnctl's LSTM exported as
its unrolled ops (what `nnctl export-graph RUN -f onnx` writes) against one ONNX `LSTM` node
of the same sizes, both run in ONNX Runtime on the CPU, interleaved, median of many calls.

    python benchmarks/onnx_recurrent.py [--batch 64] [--length 20] [--units 32] [--repeat 300]

Needs onnx and onnxruntime (the `onnx` extra). Prints the two medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def unrolled_model(length: int, units: int, features: int):
    """nnctl's export of an lstm + dense model on [B, length, features] inputs."""
    from nnctl.backend import get_backend
    from nnctl.config import load_config
    from nnctl.export.inference import inference_graph
    from nnctl.export.onnx_export import to_onnx
    from nnctl.train.trainer import Trainer

    text = (f"seed: 0\ndata: {{dataset: adding, samples: 200, length: {length}, "
            f"normalize: none}}\nmodel:\n  layers:\n    - lstm: {{units: {units}}}\n"
            f"    - dense: {{units: 1}}\nloss: mse\noptimizer: {{name: adam, lr: 0.01}}\n"
            "train: {epochs: 1}\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lstm.yaml"
        path.write_text(text)
        trainer = Trainer(load_config(path), get_backend("cpu"), out=None)
    assert trainer.splits.feature_shape == (length, features), trainer.splits.feature_shape
    return to_onnx(inference_graph(trainer))


def lstm_node_model(length: int, units: int, features: int):
    """One ONNX LSTM node (batch-major input via a Transpose) and the same dense head."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {
        "W": rng.normal(0, 0.1, (1, 4 * units, features)),
        "R": rng.normal(0, 0.1, (1, 4 * units, units)),
        "B": np.zeros((1, 8 * units)),
        "dense_w": rng.normal(0, 0.1, (units, 1)),
        "dense_b": np.zeros((1,)),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["xt", "W", "R", "B"], ["", "h"], hidden_size=units),
        helper.make_node("Squeeze", ["h", "axis0"], ["h2"]),
        helper.make_node("MatMul", ["h2", "dense_w"], ["mm"]),
        helper.make_node("Add", ["mm", "dense_b"], ["output"]),
    ]
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "axis0"))
    graph = helper.make_graph(
        nodes, "lstm_node",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", length, features])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model, full_check=True)
    return model


def main(argv=None) -> None:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=20)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    features = 2  # the adding problem: value and marker per step
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {}
    for name, model in (("unrolled ops (nnctl's export)",
                         unrolled_model(args.length, args.units, features)),
                        ("one ONNX LSTM node", lstm_node_model(args.length, args.units,
                                                               features))):
        sessions[name] = (ort.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"]),
                          len(model.graph.node))
    x = np.random.default_rng(1).random((args.batch, args.length, features), np.float32)
    times = {name: [] for name in sessions}
    for _ in range(10):  # warm-up
        for session, _ in sessions.values():
            session.run(None, {"x": x})
    for _ in range(args.repeat):  # interleaved, so both see the same machine
        for name, (session, _) in sessions.items():
            start = time.perf_counter()
            session.run(None, {"x": x})
            times[name].append(time.perf_counter() - start)
    print(f"ONNX Runtime {ort.__version__}, {args.threads} thread(s), batch {args.batch}, "
          f"length {args.length}, units {args.units}; median of {args.repeat} calls")
    medians = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    for name, (_, nodes) in sessions.items():
        print(f"  {name:32s} {nodes:5d} nodes  {medians[name]:9.1f} us")
    a, b = medians.values()
    print(f"  ratio unrolled / LSTM node: {a / b:.2f}")


if __name__ == "__main__":
    main()
