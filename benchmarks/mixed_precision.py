"""Train a config in float32 and in mixed float16 (train.mixed_precision) with the same seed,
through the trainer, and print both runs' test figures side by side (docs/mixed_precision.md).

    python benchmarks/mixed_precision.py configs/digits_mlp.yaml [--epochs N] [--device cuda]

Each run is `nnctl train CONFIG --set train.mixed_precision=...` without a run folder: the
config's schedule, clipping, early stopping and restore_best all apply, and the overflow
steps skipped by the loss scale are the summary's skipped_batches.
"""

from __future__ import annotations

import argparse
import time

from nnctl.backend import get_backend
from nnctl.config import load_config
from nnctl.train.trainer import Trainer


def train(config_path: str, mixed: str | None, epochs: int | None, device: str) -> dict:
    config = load_config(config_path, [f"train.mixed_precision={mixed or 'null'}"])
    started = time.perf_counter()
    trainer = Trainer(config, get_backend(device), out=None, epochs=epochs)
    summary = trainer.fit()
    return {"mode": mixed or "float32",
            **{k: v for k, v in summary.items() if k.startswith("test_")},
            "weights_epoch": summary.get("weights_epoch"), "steps": summary["global_step"],
            "skipped": summary["skipped_batches"],
            "final_scale": trainer.scaler.scale if trainer.scaler is not None else None,
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
