"""The memory plan of a config's compiled training step, as data for people and tools.

What `nnctl export-graph CONFIG --memory` prints: the arena's size (allocated once, before
the first step), the most bytes alive at once (no placement can do better), what an
interpreter that allocates every result would peak at, and the buffers themselves: which op
and layer, shape, bytes, offset in the arena, and the steps between which they live.
"""

from __future__ import annotations

from nnctl.config import Config


def memory_plan(config: Config, batch: int | None = None, evaluation: bool = False) -> dict:
    from nnctl.backend import get_backend
    from nnctl.compile import compile_graph
    from nnctl.step import prepare

    _, builder = prepare(config)
    t = config.spec.train
    batch = batch or (t.eval_batch_size if evaluation else t.batch_size)
    outputs, feeds = builder.evaluation_step() if evaluation else builder.training_step()
    plan = compile_graph(outputs, feeds, get_backend("cpu"), capacity={"B": batch})
    m = plan.memory
    rows = []
    for key, offset in sorted(m.offsets.items(), key=lambda kv: (kv[1], str(kv[0]))):
        if key not in m.intervals:
            continue  # written in place into another buffer: listed with that one
        if isinstance(key, tuple):  # ("work", node, k): an op's scratch array
            node, what = key[1], f"scratch of {key[1].op}"
            aval = m.avals[key]
        else:
            node, what, aval = key, key.op, key.aval
        first, last = m.intervals[key]
        sharing = sum(1 for n, o in m.in_place.items() if m.offsets.get(n) == offset
                      and o is not None and n is not key)
        rows.append({"op": what, "layer": node.scope.split("/")[0] if node.scope else "",
                     "shape": [str(d) for d in aval.at(m.capacity).shape],
                     "dtype": aval.dtype, "bytes": m.sizes[key], "offset": offset,
                     "first_step": first, "last_step": last, "in_place_writes": sharing})
    return {"config": config.name, "step": "evaluation" if evaluation else "training",
            "batch": batch, **plan.memory_report(), "buffers_table": rows}
