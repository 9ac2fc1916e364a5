"""Fused elementwise kernels against the unfused ops: the LSTM cell's gate arithmetic
c' = sigmoid(f) * c + sigmoid(i) * tanh(g), float32, on a small and a large shape.

    python benchmarks/fused_elementwise.py [--repeats 50]

Rows: the ops' forward one by one (each allocates its result, as the plan did), the ops'
forward_into into preallocated buffers, the fused program on NumPy ufuncs (the JIT off), and
the numba kernel, serial and parallel (prange over the outer loop). Median microseconds per
call; also numba's import time and the first call's compile (or cache load) time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from nnctl.compile.fusion import fuse_elementwise  # noqa: E402
from nnctl.compile.kernels.numpy_eval import numpy_kernel  # noqa: E402
from nnctl.graph.ir import Graph  # noqa: E402
from nnctl.graph.tensor import input_placeholder  # noqa: E402
from nnctl.ops.registry import REGISTRY  # noqa: E402


def median_us(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


CHAINS = {
    "lstm": lambda f, i, g, c: f.sigmoid() * c + i.sigmoid() * g.tanh(),
    # arithmetic only (an SGD-momentum-like update): memory-bound, no libm call
    "arith": lambda f, i, g, c: (f * 0.9 + i * 0.1) * g - c * 0.01,
}


def case(shape, repeats: int, dtype="float32", chain="lstm") -> dict:
    f, i, g, c = (input_placeholder(n, shape, dtype) for n in "figc")
    y = CHAINS[chain](f, i, g, c)
    graph = Graph([y.node])
    fused = fuse_elementwise(graph).outputs[0]
    rng = np.random.default_rng(0)
    feeds = {t.node: rng.standard_normal(shape).astype(dtype) for t in (f, i, g, c)}
    ops = [n for n in graph.nodes if not n.is_leaf]

    for n in graph.nodes:
        if n.op == "constant":
            feeds[n] = np.asarray(n.value, dtype=n.aval.dtype)

    def unfused():
        values = dict(feeds)
        for n in ops:
            values[n] = REGISTRY[n.op].forward(np, *[values[a] for a in n.inputs], **n.attrs)
        return values[ops[-1]]

    buffers = {n: np.empty(shape, dtype) for n in ops}

    def unfused_into():
        values = dict(feeds)
        for n in ops:
            values[n] = REGISTRY[n.op].forward_into(np, buffers[n],
                                                   *[values[a] for a in n.inputs], **n.attrs)
        return values[ops[-1]]

    program = fused.attrs["program"]
    ins = [feeds[n] for n in fused.inputs]
    out = np.empty(shape, dtype)
    evaluator = numpy_kernel(program, np)
    rows = {"unfused ops (allocating)": median_us(unfused, repeats),
            "unfused ops, forward_into": median_us(unfused_into, repeats),
            "fused, NumPy ufuncs": median_us(lambda: evaluator(out, *ins), repeats)}
    expected = unfused()
    t = time.perf_counter()
    import numba  # noqa: F401
    import_s = time.perf_counter() - t
    from nnctl.compile.kernels.numba_cpu import numba_kernel
    kernel = numba_kernel(program)
    collapsed = [a.reshape(-1) for a in ins]
    flat = out.reshape(-1)
    t = time.perf_counter()
    kernel.serial(flat, *collapsed)
    first_s = time.perf_counter() - t
    t = time.perf_counter()
    kernel.parallel(flat, *collapsed)
    first_parallel_s = time.perf_counter() - t
    rows["fused, numba serial"] = median_us(lambda: kernel.serial(flat, *collapsed), repeats)
    rows["fused, numba parallel"] = median_us(lambda: kernel.parallel(flat, *collapsed), repeats)
    rows["fused, numba (kernel(), picks by size)"] = median_us(lambda: kernel(out, *ins), repeats)
    assert np.allclose(out, expected, rtol=1e-5, atol=1e-5)
    return {"rows": rows, "numba import s": import_s, "first serial call s": first_s,
            "first parallel call s": first_parallel_s, "fused ops": len(ops)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--chains", default="lstm,arith")
    parser.add_argument("--dtypes", default="float32,float64")
    args = parser.parse_args()
    import numba
    print(f"numpy {np.__version__}, numba {numba.__version__}, {os.cpu_count()} CPUs, "
          f"numba threads {numba.get_num_threads()}")
    for chain, dtype, shape in [(c, d, s) for c in args.chains.split(",")
                                for d in args.dtypes.split(",") for s in ((32, 128), (4096, 512))]:
        result = case(shape, args.repeats if shape[0] < 1000 else max(5, args.repeats // 5),
                      dtype, chain)
        print(f"\n{chain} [{shape[0]}, {shape[1]}] {dtype}, {result['fused ops']} ops fused")
        base = result["rows"]["unfused ops (allocating)"]
        for name, us in result["rows"].items():
            print(f"  {name:40s} {us:10.1f} us   x{base / us:5.2f}")
        print(f"  first calls: serial {result['first serial call s']:.2f} s, parallel "
              f"{result['first parallel call s']:.2f} s (compile or cache load)")


if __name__ == "__main__":
    main()
