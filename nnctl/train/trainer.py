"""Trainer.fit(): build the training step once, compile it, run it over mini-batches.

Per epoch: shuffled (optionally augmented) mini-batches through the compiled plan, gradient
clipping, an optimizer step at the scheduled learning rate, validation, a checkpoint, the best
weights by the monitored metric, and early stopping; at the end, test metrics. A run resumed
from its checkpoint continues bit for bit: the checkpoint holds the weights, optimizer and
random-generator states, and the position inside the epoch. Progress goes out as events.
"""

from __future__ import annotations

import contextlib
import importlib.util
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
from nnctl.config.schema import VERIFICATION_LOSSES, loss_family
from nnctl.data import batch_indices
from nnctl.data.batching import batch_arrays, batch_steps, bucket_batches
from nnctl.distributed import SINGLE, Communicator, ShardedDraws, shard
from nnctl.errors import ConfigError, NnctlError, TrainingError, UsageError
from nnctl.optim import make_optimizer
from nnctl.optim.clip import clip_grad_norm, clip_grad_value
from nnctl.optim.schedules import make_schedule, with_warmup
from nnctl.ops import collective
from nnctl.ops.pool import argmax_in_graph
from nnctl.step import (RECALL_METRICS, comparison_layer, layer_location, make_augmenter,
                        prepare, seed_streams, vocabulary)
from nnctl.train import checkpoint as ckpt
from nnctl.train.checkpoint_schema import CheckpointSchema
from nnctl.train.capture import StepGraphs
from nnctl.train.device_steps import DeviceSteps, clip_on_device
from nnctl.train.loss_scale import found_inf
from nnctl.train.divergence import DivergenceWatch
from nnctl.train.events import TrainerEvents
from nnctl.train.preflight import check_memory
from nnctl.metrics import ClassificationTotals, RegressionTotals
from nnctl.train.metrics import MetricSums, MultiLabelTotals, SpanTotals
from nnctl.train.run_dir import (RunDir, RunLock, WriteError, check_writable_folder,
                                 parse_run_name)

MAXIMISED = {"accuracy", "top5_accuracy", "precision_macro", "recall_macro", "f1_macro", "r2",
             "subset_accuracy", "precision_micro", "recall_micro", "f1_micro",
             "span_f1", "exact_match", "bleu", "verification_accuracy", "roc_auc"}
# metrics of sequences decoded by search (sequence to sequence), not of the teacher-forced
# scores: nnctl.train.translate computes them
# steps between the host's reads of a device run's figures, when train.log_every is 0: the
# progress display moves every READ_EVERY steps (nnctl/train/device_steps.py)
READ_EVERY = 50
DECODED_METRICS = ("exact_match", "char_error_rate", "bleu")


def data_info(info: dict) -> dict:
    """The JSON form of what every split shares (Dataset.info)."""
    out = {}
    for key, value in info.items():
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        out[key] = value
    return out


class PeerFailure(TrainingError):
    """Another rank of a data-parallel run failed in this step; this rank stops with it."""


class Interrupted(NnctlError):
    """Training stopped by Ctrl-C or SIGTERM after a whole step; a checkpoint was written."""

    exit_code = 130


class Trainer:
    def __init__(self, config: Config, backend: Backend, events: TrainerEvents | None = None,
                 out: Path | None = Path("runs"), epochs: int | None = None,
                 seed: int | None = None, resume: Path | None = None,
                 comm: Communicator = SINGLE):
        # Command-line overrides replace the config's values, so the resolved config saved in
        # the run folder is the one that actually ran.
        if seed is not None:
            config = dataclasses.replace(config, spec=dataclasses.replace(config.spec, seed=seed))
        if epochs is not None:
            config = dataclasses.replace(config, spec=dataclasses.replace(
                config.spec, train=dataclasses.replace(config.spec.train, epochs=epochs)))
        self.config, self.backend = config, backend
        # data-parallel: every rank builds the same graphs; layers that need the whole
        # global batch (batch norm) reduce over the ranks (nnctl/ops/collective.py)
        self.comm = comm
        collective.set_communicator(comm)
        if not comm.is_root:
            out = None  # only rank 0 writes the run folder
        # the name runs are filed under; a resumed run keeps its folder's, even when its
        # config comes from the folder's own config.yaml
        self.config_name = config.name
        self.events = events or TrainerEvents()
        self.spec = config.spec
        self.epochs = self.spec.train.epochs
        self.seed = self.spec.seed
        self.out = out
        streams = seed_streams(self.seed)
        # the memory pre-flight runs before any parameter is drawn (host memory: CPU runs)
        self.splits, self.builder = prepare(
            config, check=check_memory if backend.name == "cpu" else None)
        self.shuffle_rng = np.random.default_rng(streams["shuffle"])
        self.augment_rng = np.random.default_rng(streams["augment"])
        self.dropout_rng = backend.rng(streams["dropout"])
        # what the training plan draws dropout masks from: with several ranks, each draws
        # the global batch's masks from the one stream and keeps its rows
        self._plan_rng = ShardedDraws(self.dropout_rng) if comm.size > 1 else self.dropout_rng
        self._plan_collectives = False  # whether the training plan meets the other ranks
        initial = dict(self.builder.model.initial)
        if self.spec.train.init_from is not None and resume is None:
            initial.update(self._weights_from(self.spec.train.init_from, initial))
        self.param_names = list(self.builder.params)
        self.params = [backend.asarray(initial[n]) for n in self.param_names]
        self.state_names = list(self.builder.states)  # running statistics, not trained
        self.states = [backend.asarray(initial[n]) for n in self.state_names]
        self.optimizer = make_optimizer(self.spec.optimizer, backend.xp)
        # mixed precision (docs/mixed_precision.md): float16 compute from these float32
        # weights, with a dynamic loss scale fed last to every training plan
        self.mixed = self.spec.train.mixed_precision
        self.scaler = None
        if self.mixed:
            from nnctl.train.loss_scale import DeviceLossScaler, LossScaler
            self.scaler = (DeviceLossScaler if self._defers_reads() else LossScaler)(backend.xp)
        self._amp_feeds = [self.scaler.scale_feed] if self.scaler is not None else []
        self.classification = self.splits.num_classes is not None
        self.multilabel = loss_family(self.spec.loss.name) == "multilabel"
        self.device_data = {name: (backend.asarray(s.x), backend.asarray(s.y))
                            for name, s in (("train", self.splits.train), ("val", self.splits.val),
                                            ("test", self.splits.test))}
        self.augmenter = make_augmenter(config, self.splits)
        t = self.spec.train
        self.steps_per_epoch = math.ceil(len(self.splits.train) / t.batch_size)
        self.schedule = self._schedule()
        self.divergence = DivergenceWatch(t.divergence)
        # progress, saved in checkpoints
        self.epoch, self.step_in_epoch, self.global_step = 1, 0, 0
        self.epoch_start_shuffle_state = self.shuffle_rng.bit_generator.state
        self.partial: MetricSums | None = None
        self.best, self.bad_epochs, self.skipped = None, 0, 0
        # the epoch of the best monitored value, and a host copy of its weights, which end the
        # run when train.restore_best is on
        self.best_epoch: int | None = None
        self.best_weights: dict[str, np.ndarray] | None = None
        self._stop_requested = self._clean_stop = False
        self.resume_command = None  # how to resume, as the CLI was called (for the message)
        self.confusion = None
        # compiled plans by the padded lengths of a batch (() for fixed-size data)
        self._train_plans: dict = {}
        self._eval_plans: dict = {}
        self._forward_plans: dict = {}
        self._embedding_plan, self._embedding_cosine = None, False
        self._device_steps: DeviceSteps | None = None  # made at the first deferred epoch
        self._graphs: StepGraphs | None = None  # the captured steps (nnctl/train/capture.py)
        self._static_rows: dict = {}  # batch size -> the static index buffer a graph reads
        feeds = self.builder.feeds(1)
        # where the mask of the labels is among a batch's arrays (None: every label counts)
        self.label_mask_at = next((i for i, t in enumerate(feeds.data) if t is feeds.y_mask),
                                  None)
        out_layer = self.builder.model.layers[self.builder.model.output]
        # an output layer that decodes its scores (a CRF's Viterbi) predicts for the metrics
        self.decoder = getattr(out_layer, "decode", None)
        self.run: RunDir | None = None
        self.resume_dir = resume
        self.lock: RunLock | None = None
        self.checkpointed: tuple[int, int] | None = None  # (epoch, step) of the last checkpoint
        if resume is None and out:  # before any work that a failing write would lose
            check_writable_folder(out, "--out")
        if resume is not None:
            if comm.is_root:
                check_writable_folder(resume, "--resume")
                self.lock = RunLock(resume).acquire()
            try:
                self._restore(resume)  # rank 0 reads it and broadcasts it to the others
            except BaseException:
                self.release()
                raise
            self.checkpointed = (self.epoch, self.step_in_epoch)
        if comm.size > 1:
            self._check_shards()
            # rank 0's weights everywhere (identical already: same seed or same checkpoint)
            comm.bcast_arrays_(self.params + self.states)

    # ---- set-up helpers ---------------------------------------------------------------------
    def _schedule(self):
        s, t = self.spec.train.schedule, self.spec.train
        params = {k: v for k, v in dataclasses.asdict(s).items()
                  if k not in ("name", "warmup_epochs") and v is not None}
        total = self.steps_per_epoch * t.epochs
        schedule = make_schedule(s.name, self.spec.optimizer.lr, self.steps_per_epoch, total,
                                 **params)
        warmup = round(s.warmup_epochs * self.steps_per_epoch)
        return with_warmup(schedule, warmup) if warmup else schedule

    def _weights_from(self, file: str, initial: dict) -> dict:
        """train.init_from: a PyTorch state dict (nnctl.torch_weights) as this model's
        starting parameters and layer state, every one present with its shape."""
        from pathlib import Path

        from nnctl.torch_weights import from_torch, layer_kinds, read_state
        path = Path(file)
        if not path.is_absolute() and self.config.path is not None:
            path = Path(self.config.path).parent / path
        names = list(self.builder.params) + list(self.builder.states)
        expected = {n: tuple(initial[n].shape) for n in names}
        weights = from_torch(layer_kinds(self.spec.model), read_state(path), expected,
                             str(path))
        return {n: np.asarray(w, dtype=initial[n].dtype) for n, w in weights.items()}

    def _monitor_key(self, record: dict) -> str:
        key = self.spec.train.monitor
        if key not in record:
            raise self.config.error(("train", "monitor"), f"'{key}' is not a reported metric; "
                                    f"expected one of: {', '.join(sorted(record))}")
        return key

    # ---- plans: compiled once, each serving every batch size ------------------------------------
    def train_plan(self, steps: tuple = None):
        """The training step's plan for batches padded to `steps` (default: the longest)."""
        key = self.splits.full_steps() if steps is None else tuple(steps)
        if key not in self._train_plans:
            # on the GPU, max pooling's backward reuses the forward's window argmax
            # (nnctl/ops/pool.py); the CPU's fused loops are faster without it
            with argmax_in_graph(True) if self.backend.name == "cuda" else \
                    contextlib.nullcontext():
                outputs, feeds = self.builder.training_step(
                    steps=key, scaled=self.comm.size > 1, mixed=self.mixed)
            self._train_plans[key] = compile_graph(
                outputs, feeds, self.backend, rng=self._plan_rng,
                capacity={"B": min(self.spec.train.batch_size, max(len(self.splits.train), 1))},
                jit=self._jit())
        return self._train_plans[key]

    def eval_plan(self, steps: tuple = None):
        key = self.splits.full_steps() if steps is None else tuple(steps)
        if key not in self._eval_plans:
            outputs, feeds = self.builder.evaluation_step(steps=key, mixed=self.mixed)
            self._eval_plans[key] = compile_graph(
                outputs, feeds, self.backend, capacity={"B": self.spec.train.eval_batch_size},
                jit=self._jit())
        return self._eval_plans[key]

    def _jit(self):
        """Every plan of a run uses the first one's JIT decision (made on its size)."""
        first = next(iter(self._train_plans.values()), None)
        return first.jit if first is not None else "auto"

    def batches(self, split: str, batch_size: int, shuffle: bool, rng=None) -> list:
        """Index arrays over a split: length-bucketed for padded sequences."""
        data = getattr(self.splits, split)
        if self.splits.padded:
            return bucket_batches(data.x_len, batch_size, shuffle, rng)
        return list(batch_indices(len(data), batch_size, shuffle, rng))

    def batch_feeds(self, split: str, idx, device_idx=None) -> tuple[list, tuple]:
        """(the data arrays of a batch on the device, in feed order; its padded lengths).
        `device_idx`: the batch's indices already on the device (a slice of the epoch's
        order, uploaded once), for data sets that live on the device whole."""
        data = getattr(self.splits, split)
        extra = self.builder.extra_names
        if not self.splits.padded and not extra:
            xs, ys = self.device_data[split]
            if device_idx is None:
                device_idx = idx if self.backend.name == "cpu" else self.backend.asarray(idx)
            return [xs[device_idx], ys[device_idx]], ()
        multiple = self.spec.train.pad_multiple
        arrays = batch_arrays(data, idx, multiple, self.spec.train.dtype, extra)
        return [self.backend.asarray(a) for a in arrays], batch_steps(data, idx, multiple)

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        try:
            return self._fit()
        finally:
            self.release()

    def release(self) -> None:
        """Let another process train in the run folder."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _fit(self) -> dict:
        run = self.run or (RunDir.create(self.out, self.config.name) if self.out else None)
        self.run = run
        if run and self.lock is None:
            self.lock = RunLock(run.path).acquire()
        if run:
            run.write_config(self.config.resolved())  # on resume: train.epochs may have grown
        if run and self.resume_dir is None:
            run.write_json("normalizer.json", self.splits.normalizer.to_dict())
            vocab = vocabulary(self.config)
            if vocab is not None:  # text models need it to encode prompts and decode samples
                run.write_json("vocab.json", vocab.to_dict())
            info = data_info(self.splits.info)
            if info:  # vocabularies, tag and label names, the sample rate: how data was read
                run.write_json("data.json", info)
        plan = self.train_plan()
        self.events.on_train_start({
            "run_dir": str(run.path) if run else None, "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch, "device": self.backend.name,
            "params": int(sum(p.size for p in self.params)),
            "samples": {k: len(getattr(self.splits, k)) for k in ("train", "val", "test")},
            "plan_steps": len(plan), "plan_peak_bytes": plan.peak_bytes,
            "passes": plan.pass_stats, "resumed_at": (self.epoch, self.step_in_epoch)
            if self.resume_dir else None,
        })
        if run and run.metrics_warning:
            self.events.on_warning(run.metrics_warning + "; the log was rewritten clean")
        status, error, write_failure, diverged = "completed", None, None, False
        started = time.perf_counter()
        try:
            # NOTE: overflow is caught by the finite checks each step; NumPy's own warnings
            # would only bury that one clear message
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                    self._deferred_interrupt():
                status = self._epochs()
        except KeyboardInterrupt:
            status = "interrupted"
            if run and self._clean_stop:  # a second signal may have cut a step in half
                write_failure = self._try_checkpoint()
        except TrainingError as err:
            status, error, diverged = "failed", str(err), True
            failed_as = type(err)  # PeerFailure stays one (the CLI lets its rank exit quietly)
            if run:  # the failing step changed nothing: this is the state before it
                write_failure = self._try_checkpoint()
                if write_failure is None:
                    error += f"; the last good state is in {run.path / 'checkpoint.npz'}"
        except WriteError as err:  # a full disk or a vanished mount: the run folder says how far
            status, write_failure = "failed", err
        if write_failure is not None:
            error = (f"{error}; " if error else "") + str(write_failure) + self._resume_hint()
        summary = {"status": status, "config": self.config_name, "seed": self.seed,
                   "device": self.backend.name, "epochs_completed": self.epoch - 1,
                   "global_step": self.global_step, "skipped_batches": self.skipped,
                   "train_seconds": round(time.perf_counter() - started, 3)}
        if error:
            summary["error"] = error
        if status in ("completed", "early_stopped"):
            summary["weights_epoch"] = self._keep_best_weights()
            summary.update(self.evaluate("test"))
            if self.best is not None:
                summary[f"best_{self.spec.train.monitor}"] = self.best
                summary["best_epoch"] = self.best_epoch
        if run:
            summary["run_dir"] = str(run.path)
            # after a failed write the disk may still be full: these are best effort, and the
            # first failure is the one reported
            with contextlib.suppress(*((WriteError,) if write_failure else ())):
                run.save_weights(self.weights())
            if status in ("completed", "early_stopped") and self.confusion is not None:
                names = self.class_names()
                run.write_json("confusion.json", {"split": "test",
                                                  "labels": list(range(len(self.confusion))),
                                                  **({"names": names} if names else {}),
                                                  "matrix": self.confusion.tolist()})
            with contextlib.suppress(*((WriteError,) if write_failure else ())):
                run.write_json("summary.json", summary)
            if status in ("completed", "early_stopped"):
                summary["plots"] = self._plots(run)
        self.events.on_train_end(summary)
        if write_failure is not None and not diverged:
            # the write failed first, or while stopping: the state on disk is older than
            # what the interrupt message would say
            raise write_failure.with_hint(self._resume_hint())
        if status == "interrupted":
            if not self._clean_stop:
                raise Interrupted("stopped at once (second signal); the last checkpoint is from "
                                  "the end of the last finished epoch" if run else "stopped")
            where = interruption_point(self.epoch, self.step_in_epoch, self.steps_per_epoch)
            command = self.resume_command or f"nnctl train {self.config.path}"
            hint = f"; resume with: {command} --resume {run.path}" if run else ""
            raise Interrupted(f"interrupted after {where}{hint}")
        if status == "failed":
            raise (failed_as if diverged else TrainingError)(error)
        return summary

    def _try_checkpoint(self) -> WriteError | None:
        """Checkpoint on the way out; a failed write is returned, so the summary still gets
        written and the error names the checkpoint that is left."""
        try:
            self.save_checkpoint()
        except WriteError as err:
            return err
        return None

    def _resume_hint(self) -> str:
        """Where the last checkpoint stands and the command that continues from it."""
        if self.run is None:
            return ""
        if self.checkpointed is None:
            return "; no checkpoint was written yet: train again once the cause is fixed"
        epoch, step = self.checkpointed
        when = f"the end of epoch {epoch - 1}" if step == 0 else f"epoch {epoch}, step {step}"
        command = self.resume_command or f"nnctl train {self.config.path}"
        return (f"; the last checkpoint ({self.run.path / 'checkpoint.npz'}) is from {when}; "
                f"fix the cause and resume with: {command} --resume {self.run.path}")

    @contextlib.contextmanager
    def _deferred_interrupt(self):
        """The first Ctrl-C or SIGTERM stops training after the current step (so the saved
        weights are never half-updated); a second one stops at once."""
        self._stop_requested = False
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True

        # a hang-up (the terminal closed) stops cleanly too, checkpointed and resumable;
        # unless it is ignored already (nohup): then the run goes on, as the user asked
        stops = [signal.SIGINT, signal.SIGTERM]
        if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
            stops.append(signal.SIGHUP)
        if self.comm.size > 1 and hasattr(signal, "SIGUSR1"):
            # MPI launchers kill the ranks soon after forwarding SIGINT or SIGTERM, but pass
            # SIGUSR1 on and wait: how `nnctl train --ranks N` stops a run (distributed.md)
            stops.append(signal.SIGUSR1)
        previous = {s: signal.signal(s, request_stop) for s in stops}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _epochs(self) -> str:
        monitor = None
        while self.epoch <= self.epochs:
            record, seconds = self.train_epoch()
            if self.run:  # timings stay out of the record: same seed, same bytes
                self.run.append_metrics(record)
            samples = self.partial.n if self.partial else 0
            self.events.on_epoch_end(dict(record, seconds=round(seconds, 4),
                                          samples_per_s=round(samples / max(seconds, 1e-9), 1)))
            monitor = monitor or self._monitor_key(record)
            improved = self._track_best(record[monitor])
            if improved:
                self.best_epoch = record["epoch"]
                if self.spec.train.restore_best:  # a copy: the optimizer updates in place
                    self.best_weights = {k: np.array(v, copy=True)
                                         for k, v in self.weights().items()}
            self.epoch += 1
            self.step_in_epoch, self.partial = 0, None
            self.epoch_start_shuffle_state = self.shuffle_rng.bit_generator.state
            if self.run:
                if improved:
                    self.run.save_best(self.best_weights or self.weights(),
                                       {"epoch": record["epoch"], monitor: record[monitor]})
                self.save_checkpoint()
            patience = self.spec.train.patience
            if patience and self.bad_epochs >= patience:
                self.events.on_early_stop({
                    "epoch": record["epoch"], "monitor": monitor, "patience": patience,
                    "best": self.best, "best_epoch": self.best_epoch,
                    "restore_best": self._restores_best()})
                return "early_stopped"
        return "completed"

    def _restores_best(self) -> bool:
        """Whether the run ends on the best epoch's weights: train.restore_best, and those
        weights are known (a resumed run whose best.npz is gone ends on its last weights)."""
        return self.spec.train.restore_best and self.best_weights is not None

    def _keep_best_weights(self) -> int:
        """Put the best epoch's weights in place for the test metrics and weights.npz (where
        train.restore_best asks: Keras's restore_best_weights, Lightning's ckpt_path="best");
        the epoch the weights are from. The checkpoint keeps the last epoch's state, so a
        resumed run trains on from where it stopped."""
        last = self.epoch - 1
        if self.spec.train.restore_best and self.best is not None and self.best_weights is None:
            self.events.on_warning(f"{self.run.path / 'best.npz' if self.run else 'best.npz'} "
                                   "could not be read back: the test metrics and weights.npz "
                                   f"are from the last epoch ({last})")
        if not self._restores_best() or self.best_epoch == last:
            return last
        names = self.param_names + self.state_names
        for name, target in zip(names, self.params + self.states):
            target[...] = self.backend.asarray(self.best_weights[name])
        return self.best_epoch

    def _track_best(self, value: float) -> bool:
        maximise = self.spec.train.monitor.partition("_")[2] in MAXIMISED
        if self.best is None or (value > self.best if maximise else value < self.best):
            self.best, self.bad_epochs = value, 0
            return True
        self.bad_epochs += 1
        return False

    def train_epoch(self) -> tuple[dict, float]:
        t = self.spec.train
        source = self.splits.info.get("comparison")
        if source is not None and source.online:  # comparator rows drawn afresh per epoch
            embedding = None
            if source.mines:
                embedding = self.embed(source.samples("train")[0])
            self.splits.train = source.redraw(self.splits.train, self.epoch, embedding)
        host_x = self.splits.train.x
        sums = self.partial or MetricSums(self.backend.xp, self.spec.metrics, self.classification,
                                          self.multilabel)
        self.partial = sums
        n_params = len(self.params)
        self.events.on_epoch_start(self.epoch, self.steps_per_epoch)
        started = time.perf_counter()
        # the epoch's order comes from the generator's state at the epoch's start, so a run
        # resumed mid-epoch replays the same order and skips the batches already done
        self.shuffle_rng.bit_generator.state = self.epoch_start_shuffle_state
        order = self.batches("train", t.batch_size, t.shuffle, self.shuffle_rng)
        if self._defers_reads():
            self._deferred_steps(order, host_x, sums, started)
        for step, idx in enumerate(order, 1):
            if step <= self.step_in_epoch:
                continue
            augment_state = self.augment_rng.bit_generator.state if self.augmenter else None
            if self.comm.size > 1:
                outs, yb, mask, local_loss, loss, grads, plan, feeds, rng_state = \
                    self._step_across_ranks(idx, host_x, step)
            else:
                data, mask, plan, rng_state = self._train_batch(idx, host_x)
                yb = data[1]
                feeds = [*data, *self.params, *self.states, *self._amp_feeds]
                outs = plan.run(feeds)  # views into the plan's arena, used before the next step
                loss, grads = float(outs[0]), outs[2:2 + n_params]
                local_loss = loss
            raw = grads
            grads, norm = self._clip(grads)
            if self.scaler is not None and math.isfinite(loss):
                # a float16 overflow in the scaled backward pass: the scale halves and the
                # step is skipped (an overflow at the smallest scale fails as below)
                inf = not math.isfinite(norm) if t.clip_value is None else \
                    bool(found_inf(self.backend.xp, raw))
                if not self.scaler.update(inf) and not self.scaler.exhausted:
                    self.skipped += 1
                    self.step_in_epoch = step
                    continue
            if not (math.isfinite(loss) and math.isfinite(norm)):
                if t.on_nonfinite == "skip":
                    self.skipped += 1
                    self.step_in_epoch = step
                    continue
                message = self._nonfinite_message(plan, feeds, rng_state, loss, step)
                self._rewind_streams(rng_state, augment_state)
                raise TrainingError(message)
            try:
                self.divergence.check(loss, self.epoch, step)  # before the update, as for a NaN
            except TrainingError:
                self._rewind_streams(rng_state, augment_state)
                raise
            self.optimizer.lr = self.schedule(self.global_step)
            self.optimizer.step(self.params, grads)
            for state, new in zip(self.states, outs[2 + n_params:]):
                state[...] = new
            self.global_step += 1
            self.step_in_epoch = step
            if local_loss is not None:  # (None: a rank with no sample in this batch)
                sums.update(local_loss, outs[1], yb, mask)
            elapsed = time.perf_counter() - started
            self.events.on_step(self.epoch, step, len(order),
                                sums.loss / max(sums.weight, 1), sums.headline,
                                sums.n * self.comm.size / max(elapsed, 1e-9))
            if self._stop_requested:
                self._clean_stop = True
                raise KeyboardInterrupt
        if self.comm.size > 1:
            sums.reduce(self.comm)  # the epoch's figures over every rank's shards
        if sums.n == 0:
            raise TrainingError(f"every batch of epoch {self.epoch} had a non-finite loss or "
                                "gradient; lower optimizer.lr or check the data")
        self.backend.synchronize()
        record = {"epoch": self.epoch, **sums.result("train")}
        record.update(self.evaluate("val"))
        record["lr"] = self.schedule(max(self.global_step - 1, 0))
        return record, time.perf_counter() - started

    # ---- steps decided on the device (nnctl/train/device_steps.py) -------------------------
    def _defers_reads(self) -> bool:
        """Whether this run's steps are checked on the device and read once per interval: on
        a backend where a read waits for the device (CuPy), on one process, unless a
        non-finite step is to be skipped (which needs its answer before the next step: one
        read per step, as PyTorch's GradScaler makes)."""
        return (self.backend.defers_reads and self.comm.size == 1
                and self.spec.train.on_nonfinite != "skip")

    def _deferred_steps(self, order: list, host_x, sums, started: float) -> None:
        """The epoch's remaining steps with no host read inside a step. Every `interval`
        steps (train.log_every, else READ_EVERY), at the end of the epoch and before a stop,
        the host reads the interval once (`_settle`): progress, and a failed step reported
        as the CPU trainer reports it, the weights those before it.

        Where the batch is gathered on the device (fixed-size data, no augmentation) and the
        optimizer updates with device kernels, the step is also captured as a CUDA graph
        after its first run and replayed (train.cuda_graphs; nnctl/train/capture.py): the
        host then copies the batch's indices into a static buffer, fills the optimizer's
        scalars and launches the graph."""
        t, xp = self.spec.train, self.backend.xp
        device = self._device_steps
        if device is None:
            device = self._device_steps = DeviceSteps(xp, t.divergence, self.spec.metrics)
            self.optimizer.prepare(self.params)  # no state is made inside a guarded step
            self._graphs = StepGraphs(self.backend, t.cuda_graphs and self.optimizer.on_gpu)
        interval = t.log_every or READ_EVERY
        device.start(self.epoch, self.step_in_epoch, self.divergence)
        # the epoch's order goes to the device once; each step takes its slice there
        on_device = not (self.splits.padded or self.builder.extra_names) and len(order)
        if on_device:
            flat = self.backend.asarray(np.concatenate(order))
            ends = np.cumsum([len(idx) for idx in order])
        split_update = self.optimizer.on_gpu  # begin_step on the host, the kernels in the step
        pending: list = []  # (step, batch, dropout snapshot, augment state) since the read
        step = self.step_in_epoch
        while step < len(order):
            step += 1
            idx = order[step - 1]
            augment_state = self.augment_rng.bit_generator.state if self.augmenter else None
            rows = flat[ends[step - 1] - len(idx):ends[step - 1]] if on_device else None
            self.optimizer.lr = self.schedule(self.global_step)
            if split_update:
                self.optimizer.begin_step(self.params)
            if on_device and self.augmenter is None:
                # the batch gathered inside the step from a static index buffer, so the
                # step can be captured: one graph per batch size
                key = len(idx)
                static = self._static_rows.get(key)
                if static is None:
                    static = self._static_rows[key] = xp.empty(len(idx), dtype=rows.dtype)
                xp.copyto(static, rows)
                plan, rng_state = self.train_plan(()), self._rng_snapshot()
                xs, ys = self.device_data["train"]
                self._graphs.run(key, lambda: self._device_step(
                    plan, [xs[static], ys[static]], None, split_update), plan)
                for notice in self._graphs.notices():
                    self.events.on_warning(notice)
            else:
                data, mask, plan, rng_state = self._train_batch(idx, host_x, device_idx=rows)
                self._device_step(plan, data, mask, split_update)
            pending.append((step, idx, rng_state, augment_state))
            self.global_step += 1
            self.step_in_epoch = step
            if len(pending) >= interval or step == len(order) or self._stop_requested:
                self._settle(pending, host_x, sums, len(order), started)
                pending = []
                device.start(self.epoch, self.step_in_epoch, self.divergence)
                step = self.step_in_epoch  # (an overflow rewinds to just after its step)
            if self._stop_requested:
                self._clean_stop = True
                raise KeyboardInterrupt

    def _device_step(self, plan, data: list, mask, split_update: bool):
        """One training step on the device, decided there (DeviceSteps): the plan, the clip,
        the guard, the guarded update and layer states, the step's sums. Reads nothing on
        the host and changes nothing on it, so it can be captured; returns the guard."""
        t, xp = self.spec.train, self.backend.xp
        n_params = len(self.params)
        outs = plan.run([*data, *self.params, *self.states, *self._amp_feeds])
        grads = raw = outs[2:2 + n_params]
        if t.clip_value is not None:
            grads = clip_grad_value(xp, grads, t.clip_value)
        grads, norm = clip_on_device(
            xp, grads, t.clip_norm if t.clip_norm is not None else math.inf)
        overflow = None
        if self.scaler is not None:  # (the host path's overflow rule, decided on the device)
            inf = ~xp.isfinite(norm) if t.clip_value is None else found_inf(xp, raw)
            healthy = self._device_steps.healthy()  # later steps of a failed interval rerun
            overflow = self.scaler.overflow(outs[0], inf) & healthy
            self.scaler.update(overflow, active=healthy)
            norm = xp.where(overflow, 0.0, norm)  # skipped, not failed (check's overflow)
        ok = self._device_steps.check(outs[0], norm, overflow)
        if split_update:
            self.optimizer.update_params(self.params, grads, apply=ok)
        else:
            self.optimizer.step(self.params, grads, apply=ok)
        keep = ok == 0
        for state, new in zip(self.states, outs[2 + n_params:]):
            xp.copyto(state, xp.where(keep, state, new))
        self._device_steps.add(ok, outs[0], outs[1], data[1], mask, self.classification,
                               self.multilabel)
        return ok

    def _settle(self, pending: list, host_x, sums, steps: int, started: float) -> None:
        """Read the interval's device figures once. A failed step rewinds the counters, the
        optimizer's step count and the data streams to just before it (the guard left the
        weights there) and raises the CPU trainer's error."""
        failure = self._device_steps.settle(self.backend.to_host, sums, self.divergence)
        if failure is not None:
            # the failed (or skipped) step and the no-ops after it updated nothing: they leave
            # the step counts
            step, loss, kind = failure
            undone = self.step_in_epoch - step + 1
            self.global_step -= undone
            self.optimizer.steps -= undone
        if failure is not None and kind == "overflow":
            # a float16 overflow (mixed precision): skipped and counted, as on the host; the
            # steps after it run again from just after it
            self.skipped += 1
            self.step_in_epoch = step
            if step < pending[-1][0]:
                _, _, rng_state, augment_state = pending[step + 1 - pending[0][0]]
                self._rewind_streams(rng_state, augment_state)
        elif failure is not None:
            self.step_in_epoch = step - 1
            _, idx, rng_state, augment_state = pending[step - pending[0][0]]
            if kind == "diverged":
                message = self.divergence.message(loss, self.epoch, step)
            else:  # the failed step again, from the same weights, masks and augmentation
                self._rewind_streams(rng_state, augment_state)
                data, _, plan, _ = self._train_batch(idx, host_x)
                message = self._nonfinite_message(
                    plan, [*data, *self.params, *self.states, *self._amp_feeds], rng_state,
                    loss, step)
            self._rewind_streams(rng_state, augment_state)
            raise TrainingError(message)
        elapsed = time.perf_counter() - started
        self.events.on_step(self.epoch, self.step_in_epoch, steps,
                            sums.loss / max(sums.weight, 1), sums.headline,
                            sums.n / max(elapsed, 1e-9))

    def _train_batch(self, idx, host_x, rows=None, before: int = 0, device_idx=None):
        """(the device arrays of training samples `rows` of the global batch `idx` (default:
        all of it) in feed order, the label mask or None, the plan for their padded length,
        the dropout stream's state before the step). Augmentation draws for the whole global
        batch, so its stream advances as on one process whatever the rows."""
        rows = idx if rows is None else rows
        data, steps = self.batch_feeds("train", rows, device_idx)
        if self.augmenter is not None:
            batch = self.augmenter(host_x[idx], self.augment_rng)
            data[0] = self.backend.asarray(batch if rows is idx else
                                           batch[before:before + len(rows)])
        mask = data[self.label_mask_at] if self.label_mask_at is not None else None
        return data, mask, self.train_plan(steps), self._rng_snapshot()

    def _rewind_streams(self, rng_state, augment_state) -> None:
        """Put the dropout and augmentation streams back to where they stood before a failed
        step, so that the checkpoint written on the way out resumes with that very step."""
        if augment_state is not None:
            self.augment_rng.bit_generator.state = augment_state
        if rng_state is not None:
            self._rng_restore(rng_state)

    def _rng_snapshot(self):
        """The dropout stream's position before a step, to replay its masks: a device copy of
        Philox's 16 bytes on the GPU (no sync), the generator's state dict on the CPU."""
        snapshot = getattr(self.dropout_rng, "snapshot", None)
        return snapshot() if snapshot is not None else self.dropout_rng.bit_generator.state

    def _rng_restore(self, snapshot) -> None:
        restore = getattr(self.dropout_rng, "restore", None)
        if restore is not None:
            restore(snapshot)
        else:
            self.dropout_rng.bit_generator.state = snapshot

    # ---- data-parallel steps (nnctl/distributed.py) ----------------------------------------
    def _loss_weight(self, idx) -> float:
        """What the loss of these training samples is a mean over: their real label steps
        (padded labels), their class weights (loss.class_weights), else their count."""
        data = self.splits.train
        if self.label_mask_at is not None:
            lengths = data.y_len if data.y_len is not None else data.x_len
            return float(np.asarray(lengths)[idx].sum())
        weights = self.builder.class_weights
        if weights is not None:
            return float(weights[np.asarray(data.y)[idx]].sum())
        return float(len(idx))

    def _check_shards(self) -> None:
        """Every rank needs a sample of every global batch where the forward pass reduces
        over the ranks (synchronised batch norm): a config error before training if not."""
        size, t = self.comm.size, self.spec.train
        if t.batch_size < size:
            raise self.config.error(("train", "batch_size"), f"{t.batch_size} is smaller than "
                                    f"the {size} ranks: each rank takes a share of every "
                                    "batch (the global batch); use a batch of at least one "
                                    "sample per rank")
        last = len(self.splits.train) % t.batch_size
        collectives = any(n.op == "allreduce_sum" for n in self.train_plan().graph.nodes)
        self._plan_collectives = collectives
        if collectives and 0 < last < size:
            raise self.config.error(("train", "batch_size"), f"the last batch of each epoch "
                                    f"has {last} sample(s) for {size} ranks, and batch norm "
                                    "synchronised over the ranks needs one on each; choose a "
                                    f"batch size that leaves 0 or at least {size} of the "
                                    f"{len(self.splits.train)} training samples over")

    def _stop_if_failed(self, failed: float, failure, step: int) -> None:
        """After an Allreduce of the ranks' failure flags: every rank raises together, the
        failing ones their own error (marked with where, for the CLI), the others
        PeerFailure."""
        if failed <= 0:
            return
        if failure is not None:
            failure.nnctl_step = (self.comm.rank, self.epoch, step)
            raise failure
        raise PeerFailure(f"{int(failed)} other rank(s) failed at epoch {self.epoch}, step "
                          f"{step}; their message says why")

    def _step_across_ranks(self, idx, host_x, step: int):
        """One global batch on this rank's shard, then one Allreduce of the weighted
        gradients, the loss and the ranks' stop and failure flags: every rank leaves with
        the global batch's gradients, or all raise together."""
        comm, n_params = self.comm, len(self.params)
        local, before = shard(idx, comm.rank, comm.size)
        real = len(local) > 0
        if not real:  # a stand-in sample that adds nothing (scale 0; no collective layers)
            local, before = idx[:1], 0
        total = self._loss_weight(idx)
        mine = self._loss_weight(local) if real else 0.0
        failure, outs, plan, feeds, rng_state, yb, mask = None, None, None, None, None, None, \
            None
        try:
            data, mask, plan, rng_state = self._train_batch(idx, host_x, local, before)
            yb = data[1]
            self._plan_rng.set_shard(before, len(local), len(idx))
            scale = self.backend.asarray(np.asarray(mine / total if total else 0.0,
                                                    dtype=self.spec.train.dtype))
            feeds = [*data, *self.params, *self.states, scale, *self._amp_feeds]
        except Exception as err:  # raised after an Allreduce, so no rank waits for this one
            failure = err
        if self._plan_collectives:
            # the plan itself meets the other ranks (synchronised batch norm): all run it,
            # or none does
            flag = np.array([0.0 if failure is None else 1.0])
            comm.allreduce_(flag)
            self._stop_if_failed(flag[0], failure, step)
        if failure is None:
            try:
                outs = plan.run(feeds)
            except Exception as err:
                if self._plan_collectives:
                    raise  # between two collectives: the CLI ends the whole job
                failure = err
        sizes = [int(p.size) for p in self.params]
        buffer = getattr(self, "_comm_buffer", None)
        if buffer is None:  # one contiguous buffer: on the GPU for NCCL, else on the host
            xp = self.backend.xp if comm.backend == "nccl" else np
            buffer = self._comm_buffer = xp.zeros(sum(sizes) + 3, dtype=self.spec.train.dtype)
        buffer[:] = 0.0
        if failure is None:
            offset = 0
            for g, n in zip(outs[2:2 + n_params], sizes):
                buffer[offset:offset + n] = (g if comm.backend == "nccl"
                                             else self.backend.to_host(g)).reshape(-1)
                offset += n
            buffer[-3] = float(outs[0])  # this rank's share of the global batch's loss
        buffer[-2] = 1.0 if self._stop_requested else 0.0
        buffer[-1] = 0.0 if failure is None else 1.0
        comm.allreduce_(buffer)
        self._stop_if_failed(float(buffer[-1]), failure, step)
        if buffer[-2] > 0:
            self._stop_requested = True  # every rank stops after this same step
        grads, offset = [], 0
        for p, n in zip(self.params, sizes):
            grads.append(self.backend.asarray(buffer[offset:offset + n].reshape(p.shape)))
            offset += n
        local_loss = float(outs[0]) * total / mine if mine else None
        return outs, yb, mask, local_loss, float(buffer[-3]), grads, plan, feeds, rng_state

    @staticmethod
    def _plots(run: RunDir) -> list[str]:
        """Curves (and the confusion matrix) as PNG, where matplotlib is installed."""
        if importlib.util.find_spec("matplotlib") is None:
            return []
        from nnctl.plot import plot_run
        try:
            return [str(p) for p in plot_run(run.path)]
        except NnctlError:  # plots are a convenience: never fail a finished run over them
            return []

    def _clip(self, grads):
        t, xp = self.spec.train, self.backend.xp
        if t.clip_value is not None:
            grads = clip_grad_value(xp, grads, t.clip_value)
        # an infinite limit measures the global norm (one device sync) and clips nothing
        return clip_grad_norm(xp, grads, t.clip_norm if t.clip_norm is not None else math.inf)

    def _nonfinite_message(self, plan, feeds, rng_state, loss, step) -> str:
        what = f"the loss became {loss}" if not math.isfinite(loss) else \
            "the gradients became non-finite"
        origin = ""
        if rng_state is not None:
            self._rng_restore(rng_state)  # replay the same dropout masks
        node = plan.first_nonfinite(feeds)
        if node is not None:
            layer = node.scope.split("/")[0] if node.scope else ""
            where = layer_location(self.config, layer) if layer else None
            origin = f"; the first NaN/Inf came from op '{node.op}'" + \
                (f" in layer '{layer}'" if layer else "") + (f" ({where})" if where else "")
        return (f"{what} at epoch {self.epoch}, step {step}{origin}; lower optimizer.lr, clip "
                f"gradients (train.clip_norm), check the data, or set train.on_nonfinite: skip")

    def evaluate(self, split: str, decoded: bool | None = None, beam: int = 1) -> dict:
        """Loss and the config's metrics on a split, with the current weights; the confusion
        matrix of a classifier is kept in `self.confusion`. Padded positions count nowhere;
        an output layer with a decoder (a CRF) predicts by decoding. Metrics of decoded
        sequences (exact match, character error rate, BLEU: sequence-to-sequence) take a
        search per sample, so they are computed where `decoded` asks (default: the test
        split)."""
        self.confusion = None
        data = getattr(self.splits, split)
        if len(data) == 0:
            return {}
        metrics = self.spec.metrics
        sums = MetricSums(self.backend.xp, metrics, self.classification, self.multilabel)
        if self.classification:
            totals = ClassificationTotals(self.splits.num_classes)
        elif self.multilabel:
            totals = MultiLabelTotals()
        elif self.spec.loss.name in VERIFICATION_LOSSES:
            from nnctl.comparator_metrics import VerificationTotals
            totals = VerificationTotals()
        else:
            totals = RegressionTotals()
        to_host = self.backend.to_host
        weights = self.weights() if self.decoder is not None else None
        spans = SpanTotals(self.splits.info.get("tags")) if "span_f1" in metrics else None
        aux_names = aux_loss_names(self.spec.aux_losses or ())
        aux_sums = [0.0] * len(aux_names)
        for idx in self.batches(split, self.spec.train.eval_batch_size, False):
            arrays, steps = self.batch_feeds(split, idx)
            loss, out, *terms = self.eval_plan(steps).run([*arrays, *self.params, *self.states])
            for k, term in enumerate(terms):  # batch means, weighted by the batch's samples
                aux_sums[k] += float(term) * len(idx)
            yb = arrays[1]
            mask = arrays[self.label_mask_at] if self.label_mask_at is not None else None
            sums.update(float(loss), out, yb, mask)
            host_out, host_y = to_host(out), to_host(yb)
            host_mask = None if mask is None else to_host(mask) > 0
            pred = self.decoder(host_out, host_mask, weights) if self.decoder else None
            if spans is not None:
                spans.update(host_y, pred if pred is not None else host_out.argmax(-1),
                             host_mask)
            if host_mask is not None:  # only the real steps are labelled examples
                host_out, host_y = host_out[host_mask], host_y[host_mask]
                pred = None if pred is None else pred[host_mask]
            if pred is not None:
                totals.update(host_out, host_y, pred)
            else:
                totals.update(host_out, host_y)
        self.confusion = getattr(totals, "confusion", None)
        wanted_recall = [m for m in metrics if m in RECALL_METRICS]
        if wanted_recall:  # retrieval among the split's own source samples
            x, labels = self.splits.info["comparison"].samples(split)
            ks = [RECALL_METRICS[m] for m in wanted_recall]
            from nnctl.comparator_metrics import recall_at_k
            recall = recall_at_k(self.embed(x), labels, ks)
            totals_extra = {f"{split}_recall_at_{k}": v for k, v in recall.items()}
        else:
            totals_extra = {}
        result = {f"{split}_loss": sums.result(split)[f"{split}_loss"]}
        result.update({f"{split}_{name}_loss": total / len(data)
                       for name, total in zip(aux_names, aux_sums)})
        everything = {**sums.result(split), **totals.result(split), **totals_extra}
        if spans is not None:
            everything[f"{split}_span_f1"] = spans.f1()
        if self.decoder is not None:  # the running accuracy counted argmax; decoded counts
            everything.pop(f"{split}_accuracy", None)
            everything.update(totals.result(split))
        result.update({f"{split}_{m}": everything[f"{split}_{m}"] for m in metrics
                       if f"{split}_{m}" in everything})
        wanted = [m for m in metrics if m in DECODED_METRICS]
        if wanted and (decoded if decoded is not None else split == "test"):
            from nnctl.train.translate import decoded_metrics
            result.update(decoded_metrics(self, split, wanted, beam=beam))
        return result

    def class_names(self) -> list[str] | None:
        """The names of the classes where the data has them (tags, label names)."""
        info = self.splits.info
        names = info.get("tags") or info.get("labels")
        return [str(n) for n in names] if names is not None else None

    def forward_arrays(self, arrays: list) -> np.ndarray:
        """The model's output on the host for a batch of host arrays in feed order without
        the labels: [x], or for padded sequences [x, x_mask] (+ [decoder_input, y_mask] for
        sequence pairs); evaluation mode. A plan is compiled per padded length and kept."""
        return self.backend.to_host(self.forward_on_device(arrays))

    def forward_on_device(self, arrays: list):
        """`forward_arrays`, its output left on the device (host or device arrays in)."""
        if self.splits.padded:
            steps = (arrays[0].shape[1],) + ((arrays[2].shape[1],) if self.splits.pairs else ())
        else:
            steps = ()
        plan = self._forward_plans.get(steps)
        if plan is None:
            outputs, feeds = self.builder.forward_step(steps=steps)
            plan = self._forward_plans[steps] = compile_graph(
                outputs, feeds, self.backend, capacity={"B": max(len(arrays[0]), 1)},
                jit=self._jit())
        device = [self.backend.asarray(a) for a in arrays]
        (out,) = plan([*device, *self.params, *self.states])
        return out

    def embed(self, x: np.ndarray) -> np.ndarray:
        """A comparator's embedding of samples x on the host (evaluation mode, in batches of
        eval_batch_size): the first input of its comparison layer, L2-normalised where that
        layer's metric is cosine, so that Euclidean order is the metric's order."""
        if self._embedding_plan is None:
            spec, layer = comparison_layer(self.config)
            outputs, feeds = self.builder.embedding_step(layer)
            self._embedding_plan = compile_graph(
                outputs, feeds, self.backend, capacity={"B": self.spec.train.eval_batch_size},
                jit=self._jit())
            self._embedding_cosine = getattr(spec, "metric", None) == "cosine"
        size = self.spec.train.eval_batch_size
        parts = []
        for start in range(0, len(x), size):
            xb = self.backend.asarray(x[start:start + size])
            (out,) = self._embedding_plan([xb, *self.params, *self.states])
            parts.append(np.array(self.backend.to_host(out), np.float64))
        e = np.concatenate(parts) if parts else np.zeros((0, 1))
        e = e.reshape(len(e), -1)
        if self._embedding_cosine:
            e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        return e

    def forward(self, xb):
        """The model's output for a batch of inputs (evaluation mode, no labels needed)."""
        return self.forward_arrays([xb])

    def weights(self) -> dict[str, np.ndarray]:
        names, arrays = self.param_names + self.state_names, self.params + self.states
        return {n: self.backend.to_host(a) for n, a in zip(names, arrays)}

    # ---- checkpoints -----------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        to_host = self.backend.to_host
        arrays = {f"param/{n}": to_host(a) for n, a in zip(self.param_names, self.params)}
        arrays.update({f"state/{n}": to_host(a) for n, a in zip(self.state_names, self.states)})
        arrays.update({f"optim/{k}": v for k, v in self.optimizer.state_dict(to_host).items()})
        partial = self.partial
        meta = {
            "config": self.config.resolved(),
            "config_fingerprint": ckpt.fingerprint(self.config.resolved()),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "shuffle_state": self.epoch_start_shuffle_state,
            "augment_state": self.augment_rng.bit_generator.state,
            # on the GPU, Philox's key and counter (nnctl/backend/philox.py): 16 bytes
            "dropout_state": self.dropout_rng.bit_generator.state,
            "partial": vars(partial) | {"xp": None} if partial is not None else None,
            "best": self.best, "bad_epochs": self.bad_epochs, "skipped": self.skipped,
            "divergence": self.divergence.state_dict(),
            "loss_scale": self.scaler.state_dict() if self.scaler is not None else None,
        }
        ckpt.save_checkpoint(self.run.path / "checkpoint.npz", arrays, meta)
        self.checkpointed = (self.epoch, self.step_in_epoch)

    def _read_checkpoint(self, run_dir: Path) -> tuple[dict, dict]:
        """(arrays, meta) of the run's checkpoint, validated whole against this model and
        config before any of it is used."""
        path = run_dir / "checkpoint.npz"
        schema = CheckpointSchema.for_trainer(self)
        arrays, meta = ckpt.load_checkpoint(path, schema.limits())
        resolved = self.config.resolved()
        if meta.get("config_fingerprint") != ckpt.fingerprint(resolved):
            changed = ckpt.differences(ckpt.comparable(meta.get("config", {})),
                                       ckpt.comparable(resolved))
            raise ConfigError(f"cannot resume {run_dir}: its config differs in "
                              f"{', '.join(changed[:6]) or 'its structure'}; only train.epochs, "
                              "train.threads, train.divergence, train.restore_best, logging, "
                              "tune and distributed may change when resuming",
                              file=str(self.config.path))
        schema.validate(path, arrays, meta)  # the whole checkpoint, before any of it is used
        ckpt.remove_leftover_temps(run_dir)  # a crash's partial writes (we hold the lock)
        return arrays, meta

    def _restore(self, run_dir: Path) -> None:
        """Continue from the run's checkpoint. In a data-parallel run rank 0 reads and checks
        it and broadcasts it: the other ranks need no access to the run folder."""
        loaded = self._read_checkpoint(run_dir) if self.comm.is_root else None
        if self.comm.size > 1:
            loaded = self.comm.bcast(loaded)
        arrays, meta = loaded
        groups = ckpt.split_arrays(arrays)
        asarray = self.backend.asarray
        for names, target, kind in ((self.param_names, self.params, "param"),
                                    (self.state_names, self.states, "state")):
            for i, name in enumerate(names):
                target[i] = asarray(groups[kind][name])
        self.optimizer.load_state_dict(groups["optim"], asarray)
        self.epoch, self.step_in_epoch = meta["epoch"], meta["step_in_epoch"]
        self.global_step = meta["global_step"]
        self.epoch_start_shuffle_state = meta["shuffle_state"]
        self.augment_rng.bit_generator.state = meta["augment_state"]
        if meta.get("dropout_state"):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                # (a state of the other device's generator: the stream starts afresh)
                self.dropout_rng.bit_generator.state = meta["dropout_state"]
        if meta.get("partial"):
            self.partial = MetricSums(self.backend.xp, self.spec.metrics, self.classification,
                                      self.multilabel)
            for key, value in meta["partial"].items():
                if key != "xp":
                    setattr(self.partial, key, value)
        self.best, self.bad_epochs = meta.get("best"), meta.get("bad_epochs", 0)
        if self.best is not None and self.comm.is_root:
            self._restore_best(run_dir)
        self.skipped = meta.get("skipped", 0)
        self.divergence.load_state_dict(meta.get("divergence"))
        if self.scaler is not None and meta.get("loss_scale"):
            self.scaler.load_state_dict(meta["loss_scale"])
        if self.epoch > self.epochs:
            raise UsageError(f"{run_dir} already finished epoch {self.epoch - 1} of "
                             f"{self.epochs}; pass --epochs N (N > {self.epoch - 1}) to train "
                             "for longer")
        if not self.comm.is_root:
            return  # only rank 0 touches the run folder
        self.run = RunDir(run_dir)
        self.run.truncate_metrics(self.epoch - 1)
        parsed = parse_run_name(Path(run_dir).resolve().name)
        if parsed is not None:
            self.config_name = parsed[0]

    def _restore_best(self, run_dir: Path) -> None:
        """The best epoch so far and (for train.restore_best) its weights, from best.json and
        best.npz: the checkpoint holds only the best value. A best epoch the checkpoint has
        not reached (a crash between the two writes) is trained again and rewritten."""
        from nnctl.train.run_dir import load_weights, read_best
        info = read_best(run_dir)
        epoch = info.get("epoch") if info else None
        if not isinstance(epoch, int) or not 1 <= epoch < self.epoch:
            return
        self.best_epoch = epoch
        if self.spec.train.restore_best and (run_dir / "best.npz").exists():
            weights = load_weights(run_dir / "best.npz")
            if set(weights) == set(self.param_names + self.state_names):
                self.best_weights = weights


def aux_loss_names(aux_losses) -> list[str]:
    """The name each aux_losses term is reported under ({split}_{name}_loss): its output
    layer, with the target added where two terms score one output."""
    outputs = [a.output for a in aux_losses]
    return [a.output if outputs.count(a.output) == 1 else f"{a.output}_{a.target}"
            for a in aux_losses]


def interruption_point(epoch: int, step: int, steps: int) -> str:
    """Where a run stopped, saying which epochs are complete: 'epoch 2, step 33 of 45
    (1 epoch complete)' or 'epoch 2, step 45 of 45 (2 epochs complete)'."""
    done = epoch if step >= steps else epoch - 1
    complete = "no epoch complete" if done == 0 else \
        f"{done} epoch{'s' if done > 1 else ''} complete"
    return f"epoch {epoch}, step {step} of {steps} ({complete})"
