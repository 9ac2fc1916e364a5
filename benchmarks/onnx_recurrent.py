"""How to export recurrent layers to ONNX, decided by measurement: one model's LSTM exported
as its unrolled ops (`nnctl export-graph ... --recurrent unrolled`) and as one ONNX `LSTM`
node (`--recurrent nodes`, the default), both run in ONNX Runtime on the CPU, interleaved,
median of many calls; the outputs are compared too.

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


def exports(length: int, units: int):
    """nnctl's two exports of one lstm + dense model on [B, length, 2] inputs (the same
    weights): (recurrent layers unrolled into ops, one ONNX LSTM node)."""
    from nnctl.backend import get_backend
    from nnctl.config import load_config
    from nnctl.export.inference import LAYERWISE_PASSES, inference_graph
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
    graph = inference_graph(trainer, LAYERWISE_PASSES)
    return to_onnx(graph, recurrent_nodes=False), to_onnx(graph, recurrent_nodes=True)


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
    unrolled, fused = exports(args.length, args.units)
    for name, model in (("--recurrent unrolled", unrolled), ("--recurrent nodes", fused)):
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
    outs = [session.run(None, {"x": x})[0] for session, _ in sessions.values()]
    print(f"  ratio unrolled / LSTM node: {a / b:.2f}; outputs differ by at most "
          f"{float(np.abs(outs[0] - outs[1]).max()):.1e}")


if __name__ == "__main__":
    main()
