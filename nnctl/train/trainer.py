"""Trainer.fit(): build the training step once, compile it, run it over mini-batches.

Per epoch: shuffled mini-batches through the compiled plan, an optimizer step, validation;
at the end, test metrics. Progress goes out as events; the run folder gets the record.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from pathlib import Path

import numpy as np

from nnctl.backend import Backend
from nnctl.compile import compile_graph
from nnctl.config import Config
from nnctl.data import batch_indices
from nnctl.errors import NnctlError, TrainingError
from nnctl.optim import make_optimizer
from nnctl.step import prepare, seed_streams, vocabulary
from nnctl.train.events import TrainerEvents
from nnctl.train.metrics import MetricSums
from nnctl.train.run_dir import RunDir


class Interrupted(NnctlError):
    """Training stopped by Ctrl-C; the run folder holds the last completed step's weights."""

    exit_code = 130


class Trainer:
    def __init__(self, config: Config, backend: Backend, events: TrainerEvents | None = None,
                 out: Path | None = Path("runs"), epochs: int | None = None,
                 seed: int | None = None):
        # Command-line overrides replace the config's values, so the resolved config saved in
        # the run folder is the one that actually ran.
        if seed is not None:
            config = dataclasses.replace(config, spec=dataclasses.replace(config.spec, seed=seed))
        if epochs is not None:
            config = dataclasses.replace(config, spec=dataclasses.replace(
                config.spec, train=dataclasses.replace(config.spec.train, epochs=epochs)))
        self.config, self.backend = config, backend
        self.events = events or TrainerEvents()
        self.spec = config.spec
        self.epochs = self.spec.train.epochs
        self.seed = self.spec.seed
        self.out = out
        streams = seed_streams(self.seed)
        self.splits, self.builder = prepare(config)
        self.shuffle_rng = np.random.default_rng(streams["shuffle"])
        self.dropout_rng = backend.rng(streams["dropout"])
        xp = backend.xp
        initial = self.builder.model.initial
        self.param_names = list(self.builder.params)
        self.params = [backend.asarray(initial[n]) for n in self.param_names]
        self.state_names = list(self.builder.states)  # running statistics, not trained
        self.states = [backend.asarray(initial[n]) for n in self.state_names]
        self.optimizer = make_optimizer(self.spec.optimizer, xp)
        self.classification = self.splits.num_classes is not None
        self.device_data = {name: (backend.asarray(s.x), backend.asarray(s.y))
                            for name, s in (("train", self.splits.train), ("val", self.splits.val),
                                            ("test", self.splits.test))}
        self._stop_requested = False
        self._train_plans: dict = {}
        self._eval_plans: dict = {}

    # ---- plans, compiled once per batch size ---------------------------------------------------
    def train_plan(self, batch: int):
        if batch not in self._train_plans:
            outputs, feeds = self.builder.training_step(batch)
            self._train_plans[batch] = compile_graph(outputs, feeds, self.backend,
                                                     rng=self.dropout_rng)
        return self._train_plans[batch]

    def eval_plan(self, batch: int):
        if batch not in self._eval_plans:
            outputs, feeds = self.builder.evaluation_step(batch)
            self._eval_plans[batch] = compile_graph(outputs, feeds, self.backend)
        return self._eval_plans[batch]

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        run = RunDir.create(self.out, self.config.name) if self.out is not None else None
        self.run = run
        if run:
            run.write_config(self.config.resolved())
            run.write_json("normalizer.json", self.splits.normalizer.to_dict())
            vocab = vocabulary(self.config)
            if vocab is not None:  # text models need it to encode prompts and decode samples
                run.write_json("vocab.json", vocab.to_dict())
        batch = self.spec.train.batch_size
        n_train = len(self.splits.train)
        steps = math.ceil(n_train / batch)
        plan = self.train_plan(min(batch, n_train))
        self.events.on_train_start({
            "run_dir": str(run.path) if run else None, "epochs": self.epochs,
            "steps_per_epoch": steps, "device": self.backend.name,
            "params": int(sum(p.size for p in self.params)),
            "samples": {k: len(getattr(self.splits, k)) for k in ("train", "val", "test")},
            "plan_steps": len(plan), "plan_peak_bytes": plan.peak_bytes,
            "passes": plan.pass_stats,
        })
        status, error, history = "completed", None, []
        started = time.perf_counter()
        try:
            # NOTE: overflow is caught by the finite-loss check each step; NumPy's own
            # warnings would only bury that one clear message
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                    self._deferred_interrupt():
                self._epochs(run, history, steps)
        except KeyboardInterrupt:
            status = "interrupted"
        except TrainingError as err:
            status, error = "failed", str(err)
            if run:
                error += f"; {run.path} keeps the weights from before that step"
        summary = {"status": status, "config": self.config.name, "seed": self.seed,
                   "device": self.backend.name, "epochs_completed": len(history),
                   "train_seconds": round(time.perf_counter() - started, 3)}
        if error:
            summary["error"] = error
        if status == "completed":
            summary.update(self.evaluate("test"))
            if history:
                summary.update({k: v for k, v in history[-1].items() if k.startswith("val_")})
        if run:
            run.save_weights(self.weights())
            summary["run_dir"] = str(run.path)
            run.write_json("summary.json", summary)
        self.events.on_train_end(summary)
        if status == "interrupted":
            raise Interrupted("interrupted: the run folder keeps the weights of the last "
                              f"completed step{' in ' + str(run.path) if run else ''}")
        if status == "failed":
            raise TrainingError(error)
        return summary

    @contextlib.contextmanager
    def _deferred_interrupt(self):
        """The first Ctrl-C stops training after the current step (so the saved weights are
        never half-updated); a second one stops at once."""
        self._stop_requested = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _epochs(self, run: RunDir | None, history: list, steps: int) -> None:
        for epoch in range(1, self.epochs + 1):
            record = self.train_epoch(epoch, steps)
            history.append(record)
            if run:
                run.append_metrics(record)
            self.events.on_epoch_end(record)

    def train_epoch(self, epoch: int, steps: int) -> dict:
        xs, ys = self.device_data["train"]
        sums = MetricSums(self.backend.xp, self.spec.metrics, self.classification)
        n_train = len(self.splits.train)
        self.events.on_epoch_start(epoch, steps)
        started = time.perf_counter()
        order = batch_indices(n_train, self.spec.train.batch_size, self.spec.train.shuffle,
                              self.shuffle_rng)
        n_params = len(self.params)
        for step, idx in enumerate(order, 1):
            if self.backend.name != "cpu":
                idx = self.backend.asarray(idx)
            xb, yb = xs[idx], ys[idx]
            outs = self.train_plan(len(idx))([xb, yb, *self.params, *self.states])
            loss = float(outs[0])
            if not math.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss} at epoch {epoch}, step {step}; lower "
                    f"optimizer.lr or check the data")
            self.optimizer.step(self.params, outs[2:2 + n_params])
            self.states = outs[2 + n_params:]
            if self._stop_requested:
                raise KeyboardInterrupt
            sums.update(loss, outs[1], yb)
            elapsed = time.perf_counter() - started
            self.events.on_step(epoch, step, steps, sums.loss / sums.n, sums.headline,
                                sums.n / max(elapsed, 1e-9))
        self.backend.synchronize()
        seconds = time.perf_counter() - started
        record = {"epoch": epoch, **sums.result("train")}
        record.update(self.evaluate("val"))
        record.update({"seconds": round(seconds, 4),
                       "samples_per_s": round(sums.n / max(seconds, 1e-9), 1)})
        return record

    def evaluate(self, split: str) -> dict:
        xs, ys = self.device_data[split]
        n = len(ys)
        if n == 0:
            return {}
        sums = MetricSums(self.backend.xp, self.spec.metrics, self.classification)
        size = self.spec.train.eval_batch_size
        for start in range(0, n, size):
            xb, yb = xs[start:start + size], ys[start:start + size]
            loss, out = self.eval_plan(len(yb))([xb, yb, *self.params, *self.states])
            sums.update(float(loss), out, yb)
        return sums.result(split)

    def weights(self) -> dict[str, np.ndarray]:
        names, arrays = self.param_names + self.state_names, self.params + self.states
        return {n: self.backend.to_host(a) for n, a in zip(names, arrays)}
