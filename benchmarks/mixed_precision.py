"""Train a config in float32 and in mixed float16 (train.mixed_precision) with the same seed,
and print both test accuracies: a check of mixed precision end to end until the trainer runs
it (docs/mixed_precision.md).

    python benchmarks/mixed_precision.py configs/digits_mlp.yaml [--epochs N] [--device cpu]

The loop is the trainer's in brief: the config's batches, optimizer and clipping; in mixed
precision the dynamic loss scaler skips a step whose gradients overflow. No schedule, early
stopping or augmentation. Test accuracy is reported at the last epoch and at the epoch of
the best validation accuracy (what train.restore_best reports).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from nnctl.backend import get_backend
from nnctl.compile import compile_graph
from nnctl.config import load_config
from nnctl.data.batching import batch_arrays, batch_steps
from nnctl.data.dataset import batch_indices
from nnctl.optim import make_optimizer
from nnctl.optim.clip import clip_grad_norm
from nnctl.step import prepare, seed_streams
from nnctl.train.loss_scale import LossScaler


def accuracy(backend, builder, splits, plans, split: str, params, states, mixed) -> float:
    data = getattr(splits, split)
    t = builder.config.spec.train
    right = total = 0
    for s in range(0, len(data), t.eval_batch_size):
        idx = np.arange(s, min(s + t.eval_batch_size, len(data)))
        arrays = batch_arrays(data, idx, t.pad_multiple, t.dtype, builder.extra_names)
        steps = batch_steps(data, idx, t.pad_multiple)
        key = ("eval", steps)
        if key not in plans:
            plans[key] = compile_graph(*builder.evaluation_step(steps=steps, mixed=mixed),
                                       backend)
        out = backend.to_host(plans[key]([*map(backend.asarray, arrays), *params, *states])[1])
        y = arrays[1]
        hit = out.argmax(-1) == y
        if len(arrays) > 2 and arrays[2].shape == y.shape:  # a label per step: real ones
            right += int((hit * arrays[2]).sum())
            total += int(arrays[2].sum())
        else:
            right, total = right + int(hit.sum()), total + hit.size
    return right / max(total, 1)


def train(config_path: str, mixed: str | None, epochs: int | None, device: str) -> dict:
    config = load_config(config_path)
    backend = get_backend(device)
    splits, builder = prepare(config)
    t = config.spec.train
    xp = backend.xp
    params = [backend.asarray(builder.model.initial[k]) for k in builder.params]
    states = [backend.asarray(builder.model.initial[k]) for k in builder.states]
    optimizer = make_optimizer(config.spec.optimizer, xp)
    scaler = LossScaler(xp) if mixed else None
    streams = seed_streams(config.spec.seed)
    shuffle = np.random.default_rng(streams["shuffle"])
    plan_rng = backend.rng(streams["dropout"])
    plans: dict = {}
    best = (-1.0, 0.0, 0)
    steps_done = skipped = 0
    started = time.perf_counter()
    for epoch in range(1, (epochs or t.epochs) + 1):
        for idx in batch_indices(len(splits.train), t.batch_size, t.shuffle, shuffle):
            arrays = batch_arrays(splits.train, idx, t.pad_multiple, t.dtype,
                                  builder.extra_names)
            steps = batch_steps(splits.train, idx, t.pad_multiple)
            if steps not in plans:
                plans[steps] = compile_graph(*builder.training_step(steps=steps, mixed=mixed),
                                             backend, rng=plan_rng,
                                             capacity={"B": t.batch_size})
            feeds = [*map(backend.asarray, arrays), *params, *states]
            outs = plans[steps].run(feeds + ([scaler.scale_feed] if mixed else []))
            loss = float(outs[0])
            grads, norm = clip_grad_norm(xp, outs[2:2 + len(params)],
                                         t.clip_norm if t.clip_norm is not None else math.inf)
            if mixed and not scaler.update_from_norm(loss, norm):
                if not math.isfinite(loss):
                    raise RuntimeError(f"the loss became {loss} at epoch {epoch}")
                skipped += 1
                continue
            if not (math.isfinite(loss) and math.isfinite(norm)):
                raise RuntimeError(f"non-finite loss or gradients at epoch {epoch}")
            optimizer.step(params, grads)
            for state, new in zip(states, outs[2 + len(params):]):
                state[...] = new
            steps_done += 1
        val = accuracy(backend, builder, splits, plans, "val", params, states, mixed)
        if val > best[0]:
            best = (val, accuracy(backend, builder, splits, plans, "test", params, states,
                                  mixed), epoch)
    test = accuracy(backend, builder, splits, plans, "test", params, states, mixed)
    return {"mode": mixed or "float32", "test_accuracy": test, "best_val_accuracy": best[0],
            "test_accuracy_at_best_val": best[1], "best_epoch": best[2],
            "steps": steps_done, "skipped": skipped,
            "final_scale": scaler.scale if scaler else None,
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", choices=("float32", "float16"), default=None)
    args = parser.parse_args()
    for mixed in (None, "float16"):
        if args.only and (mixed or "float32") != args.only:
            continue
        print(train(args.config, mixed, args.epochs, args.device), flush=True)


if __name__ == "__main__":
    main()
