"""Benchmark one training step (forward + backward + Adam update) of an MLP, three ways:

  nnctl   the trainer's own path: prepare(config) -> StepBuilder.training_step(batch) ->
          compile_graph(..., get_backend("cpu")) -> plan([x, y, *params]), then
          make_optimizer(spec.optimizer, xp).step(params, grads)   (see nnctl/train/trainer.py)
  numpy   the same step written by hand in NumPy (forward, softmax cross-entropy, manual
          backward, Adam), float32
  torch   PyTorch on the CPU: nn.Linear/ReLU/Dropout, F.cross_entropy, loss.backward(),
          torch.optim.Adam, float32, as many intra-op threads as NumPy's BLAS uses

All three start from nnctl's initial weights, run on the same pre-sliced batches, read the
loss back as a Python float every step (as the trainer does) and are timed interleaved:
warm-up steps, then N samples of R steps each; the median ms/step is reported, with the
ratios nnctl/numpy and nnctl/torch. Before timing, a few steps of each are run from the same
weights (and the same dropout masks) and their losses are compared, so the three compute the
same thing.

    python benchmarks/run.py                 # full run
    python benchmarks/run.py --quick         # a fast smoke run
    python benchmarks/run.py --json out.json # also save the results
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from nnctl.backend import get_backend  # noqa: E402
from nnctl.compile import compile_graph  # noqa: E402
from nnctl.config import config_from, load_config, load_yaml_text  # noqa: E402
from nnctl.layers import Activation, Dense, Dropout  # noqa: E402
from nnctl.optim import make_optimizer  # noqa: E402
from nnctl.step import prepare, seed_streams  # noqa: E402

TORCH_HINT = "pip install torch==2.13.0   (a CPU build; never plain `pip install torch`)"

# The bigger synthetic case: 784-256-256-10, batch 128, no dropout, data from a temp .npz.
SYNTHETIC_YAML = """\
seed: 0
data:
  dataset: npz
  path: {path}
  split: {{val: 0.1, test: 0.1}}
  normalize: standard
model:
  layers:
    - dense: {{units: 256, activation: relu}}
    - dense: {{units: 256, activation: relu}}
    - dense: {{units: 10}}
loss: cross_entropy
optimizer:
  name: adam
  lr: 0.001
train:
  epochs: 1
  batch_size: 128
metrics: [accuracy]
"""


# ---- cases: built through nnctl's own config and step code -------------------------------------

class Case:
    """One model + batch size, with nnctl's splits, step builder and initial weights."""

    def __init__(self, name: str, config, note: str):
        self.name, self.config, self.note = name, config, note
        self.splits, self.builder = prepare(config)
        spec = config.spec
        self.batch = min(spec.train.batch_size, len(self.splits.train))
        self.param_names = list(self.builder.params)
        self.initial = [np.array(self.builder.model.initial[n]) for n in self.param_names]
        self.opt_spec = spec.optimizer
        if spec.optimizer.name != "adam" or spec.optimizer.weight_decay:
            raise SystemExit(f"{name}: the benchmark compares Adam without weight decay")
        if spec.loss.name != "cross_entropy":
            raise SystemExit(f"{name}: the benchmark compares cross_entropy models")
        self.layers = describe_layers(self.builder)
        # Fixed, contiguous batches cycled over (data loading is not part of the step).
        x, y = self.splits.train.x, self.splits.train.y
        n = (len(x) // self.batch) * self.batch
        self.batches = [(np.ascontiguousarray(x[i:i + self.batch]),
                         np.ascontiguousarray(y[i:i + self.batch]))
                        for i in range(0, n, self.batch)]
        self.dropout_seed = seed_streams(spec.seed)["dropout"]

    @property
    def shape(self) -> str:
        dims = [self.splits.feature_shape[0]] + [l[1].shape[1] for l in self.layers
                                                 if l[0] == "dense"]
        drop = [f"dropout {l[1]:g}" for l in self.layers if l[0] == "dropout"]
        return "-".join(map(str, dims)) + (f" ({', '.join(drop)})" if drop else "")

    @property
    def n_params(self) -> int:
        return int(sum(p.size for p in self.initial))


def describe_layers(builder):
    """The model as [("dense", W0, b0 or None, relu?), ("dropout", rate), ("relu",)], with the
    initial arrays, for the hand-written versions. Anything else is not benchmarked."""
    initial = builder.model.initial
    out = []
    for layer in builder.model.layers:
        if isinstance(layer, Dense):
            if layer.activation not in ("relu", "linear"):
                raise SystemExit(f"unsupported activation {layer.activation} in the benchmark")
            b = initial[f"{layer.name}.bias"] if layer.bias else None
            out.append(("dense", initial[f"{layer.name}.weight"], b, layer.activation == "relu"))
        elif isinstance(layer, Dropout):
            if layer.rate:
                out.append(("dropout", float(layer.rate)))
        elif isinstance(layer, Activation) and layer.function in ("relu", "linear"):
            if layer.function == "relu":
                out.append(("relu",))
        else:
            raise SystemExit(f"unsupported layer {layer!r} in the benchmark")
    return out


def digits_case() -> Case:
    config = load_config(ROOT / "configs" / "digits_mlp.yaml")
    return Case("digits_mlp", config, "configs/digits_mlp.yaml as shipped")


def synthetic_case(tmp: Path, samples: int = 4096) -> Case:
    rng = np.random.default_rng(1234)
    centers = rng.normal(size=(10, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=samples).astype(np.int64)
    x = (centers[y] + 2.0 * rng.normal(size=(samples, 784))).astype(np.float32)
    path = tmp / "bench_synthetic.npz"
    np.savez(path, x=x, y=y)
    text = SYNTHETIC_YAML.format(path=json.dumps(str(path)))
    config = config_from(load_yaml_text(text, "benchmarks/bench.yaml"),
                         ROOT / "benchmarks" / "bench.yaml")
    return Case("mlp_784", config, "synthetic 784-256-256-10 (npz, in-memory config)")


# ---- the three implementations ----------------------------------------------------------------

class NnctlStep:
    """Exactly the trainer's per-step work (Trainer.train_plan + train_epoch), without the
    metric bookkeeping: plan([x, y, *params]), float(loss), optimizer.step(params, grads)."""

    label = "nnctl"

    def __init__(self, case: Case, dropout_rng=None):
        self.backend = get_backend("cpu")
        outputs, feeds = case.builder.training_step(case.batch)
        rng = dropout_rng if dropout_rng is not None else self.backend.rng(case.dropout_seed)
        self.plan = compile_graph(outputs, feeds, self.backend, rng=rng)
        self.params = [self.backend.asarray(p.copy()) for p in case.initial]
        self.optimizer = make_optimizer(case.opt_spec, self.backend.xp)
        self.n = len(self.params)

    def __call__(self, x, y) -> float:
        outs = self.plan([x, y, *self.params])
        loss = float(outs[0])
        self.optimizer.step(self.params, outs[2:2 + self.n])
        return loss


class NumpyStep:
    """The same training step by hand, float32 throughout, in-place Adam."""

    label = "numpy"

    def __init__(self, case: Case, dropout_rng=None):
        self.rng = dropout_rng if dropout_rng is not None else np.random.default_rng(
            case.dropout_seed)
        self.layers = []  # ("dense", W, b, relu) | ("dropout", keep) | ("relu",)
        self.params = []
        for layer in case.layers:
            if layer[0] == "dense":
                w = layer[1].astype(np.float32, copy=True)
                b = None if layer[2] is None else layer[2].astype(np.float32, copy=True)
                self.params += [w] + ([b] if b is not None else [])
                self.layers.append(("dense", w, b, layer[3]))
            elif layer[0] == "dropout":
                self.layers.append(("dropout", 1.0 - layer[1]))
            else:
                self.layers.append(layer)
        o = case.opt_spec
        self.lr, self.b1, self.b2, self.eps = o.lr, o.beta1, o.beta2, o.eps
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def __call__(self, x, y) -> float:
        # forward, keeping what the backward pass needs
        h, saved = x, []
        for layer in self.layers:
            kind = layer[0]
            if kind == "dense":
                _, w, b, relu = layer
                z = h @ w
                if b is not None:
                    z += b
                if relu:
                    np.maximum(z, 0, out=z)
                saved.append((h, z))  # the input (for dW) and the output (for relu's mask)
                h = z
            elif kind == "dropout":
                keep = layer[1]
                mask = (self.rng.random(h.shape, dtype=np.float32) < keep).astype(np.float32)
                mask *= np.float32(1.0 / keep)
                saved.append(mask)
                h = h * mask
            else:  # relu
                h = np.maximum(h, 0)
                saved.append(h)
        # softmax cross-entropy, and its gradient with respect to the logits
        n = h.shape[0]
        rows = np.arange(n)
        z = h - h.max(axis=1, keepdims=True)
        e = np.exp(z)
        s = e.sum(axis=1)
        loss = float(np.mean(np.log(s) - z[rows, y]))
        d = e / s[:, None]
        d[rows, y] -= 1.0
        d *= np.float32(1.0 / n)
        # backward; gradients in nnctl's parameter order (layer by layer, weight then bias).
        # Like nnctl's graph (grad of the loss with respect to the parameters only), no
        # gradient is computed for the input batch.
        grads = []
        for i in range(len(self.layers) - 1, -1, -1):
            layer, s = self.layers[i], saved[i]
            kind = layer[0]
            if kind == "dense":
                _, w, b, relu = layer
                h_in, out = s
                if relu:
                    d = d * (out > 0)
                grads[:0] = [h_in.T @ d] + ([d.sum(axis=0)] if b is not None else [])
                if i > 0:
                    d = d @ w.T
            elif kind == "dropout":
                d = d * s
            else:  # relu: s is its output
                d = d * (s > 0)
        self.adam(grads)
        return loss

    def adam(self, grads) -> None:
        self.t += 1
        b1, b2, t = self.b1, self.b2, self.t
        step = np.float32(self.lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t))
        eps = np.float32(self.eps * math.sqrt(1 - b2 ** t))
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= np.float32(b1)
            m += np.float32(1 - b1) * g
            v *= np.float32(b2)
            v += np.float32(1 - b2) * (g * g)
            denom = np.sqrt(v)
            denom += eps
            p -= step * m / denom


def import_torch():
    try:
        import torch
        return torch
    except Exception:  # ImportError, or a broken install
        return None


class TorchStep:
    """PyTorch CPU, float32: module forward, F.cross_entropy, backward, torch.optim.Adam."""

    label = "torch"

    def __init__(self, case: Case, dropout_rng=None):
        torch = import_torch()
        nn, F = torch.nn, torch.nn.functional
        self.torch, self.F = torch, F
        mods = []
        for layer in case.layers:
            if layer[0] == "dense":
                w, b, relu = layer[1], layer[2], layer[3]
                lin = nn.Linear(w.shape[0], w.shape[1], bias=b is not None)
                with torch.no_grad():
                    lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
                    if b is not None:
                        lin.bias.copy_(torch.from_numpy(b))
                mods.append(lin)
                if relu:
                    mods.append(nn.ReLU())
            elif layer[0] == "dropout":
                # The check feeds nnctl's masks; the timed run uses torch's own dropout.
                mods.append(nn.Dropout(layer[1]) if dropout_rng is None
                            else _NumpyMaskDropout(torch, layer[1], dropout_rng))
            else:
                mods.append(nn.ReLU())
        self.model = nn.Sequential(*mods).float().train()
        o = case.opt_spec
        self.opt = torch.optim.Adam(self.model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                                    eps=o.eps)
        self.cache: dict = {}

    def tensors(self, x, y):
        key = (id(x), id(y))
        if key not in self.cache:  # torch.from_numpy shares memory: no copy per step
            self.cache[key] = (self.torch.from_numpy(x), self.torch.from_numpy(y))
        return self.cache[key]

    def __call__(self, x, y) -> float:
        xt, yt = self.tensors(x, y)
        self.opt.zero_grad(set_to_none=True)
        loss = self.F.cross_entropy(self.model(xt), yt)
        loss.backward()
        self.opt.step()
        return loss.item()


class _NumpyMaskDropout:
    """Dropout drawing its mask exactly as nnctl's CPU backend does (for the equality check)."""

    def __new__(cls, torch, rate, rng):
        keep = 1.0 - rate

        class M(torch.nn.Module):
            def forward(self, h):
                mask = (rng.random(tuple(h.shape), dtype=np.float32) < keep).astype(np.float32)
                return h * torch.from_numpy(mask) * (1.0 / keep)

        return M()


# ---- the like-for-like check -----------------------------------------------------------------

def check_same_losses(case: Case, impls, steps: int = 5, rtol: float = 1e-3) -> dict:
    """Run `steps` steps of each implementation from the same weights on the same batches, with
    the same dropout masks (each gets its own generator with the same seed), and compare the
    losses with nnctl's. Raises AssertionError if they differ by more than rtol."""
    losses = {}
    for impl in impls:
        rng = np.random.default_rng(case.dropout_seed)
        step = impl(case, dropout_rng=rng)
        losses[impl.label] = [step(*case.batches[i % len(case.batches)]) for i in range(steps)]
    ref = np.array(losses["nnctl"])
    worst = {}
    for label, vals in losses.items():
        if label == "nnctl":
            continue
        rel = float(np.max(np.abs(np.array(vals) - ref) / np.maximum(np.abs(ref), 1e-6)))
        worst[label] = rel
        assert rel <= rtol, (f"{case.name}: {label}'s losses {vals} differ from nnctl's "
                             f"{list(ref)} (max relative difference {rel:.2e} > {rtol:g})")
    return {"steps": steps, "losses": losses, "max_rel_diff": worst}


# ---- timing ----------------------------------------------------------------------------------

def time_case(case: Case, impls, warmup: int, samples: int, repeats: int | None,
              target_s: float = 0.3, pause: float = 0.3, rewarm: int = 3):
    """Interleaved timing: for each sample, each implementation runs its steps in turn, so slow
    drift of the machine hits all of them alike. Returns (ms/step per sample, steps per sample)
    for each implementation.

    Steps per sample: `repeats`, or if None as many as take about `target_s` seconds, judged
    from the warm-up (at least 20).

    NumPy's OpenBLAS and PyTorch's OpenMP keep separate thread pools whose idle workers spin
    for a while after each call; on a small machine the spinning pool of one library steals
    the cores the other one is computing on. So before each sample the process sleeps for
    `pause` seconds (the other pool's workers go to sleep) and runs `rewarm` untimed steps."""
    steps = {impl.label: impl(case) for impl in impls}
    batches = case.batches
    counts = {}
    for label, step in steps.items():
        for i in range(warmup):
            step(*batches[i % len(batches)])
        t0 = time.perf_counter()
        for i in range(warmup, warmup + 5):
            step(*batches[i % len(batches)])
        per_step = (time.perf_counter() - t0) / 5
        counts[label] = repeats or max(20, min(20000, math.ceil(target_s / max(per_step, 1e-6))))
    times = {label: [] for label in steps}
    cursor = {label: warmup + 5 for label in steps}
    for _ in range(samples):
        for label, step in steps.items():
            if len(steps) > 1 and pause:
                time.sleep(pause)
            for i in range(cursor[label], cursor[label] + rewarm):
                step(*batches[i % len(batches)])
            cursor[label] += rewarm
            start_i, n = cursor[label], counts[label]
            loss = 0.0
            t0 = time.perf_counter()
            for i in range(start_i, start_i + n):
                loss = step(*batches[i % len(batches)])
            elapsed = time.perf_counter() - t0
            cursor[label] += n
            if not math.isfinite(loss):
                raise SystemExit(f"{case.name}/{label}: loss became {loss}")
            times[label].append(elapsed / n * 1e3)
    return times, counts


def summarize(times: dict) -> dict:
    out = {}
    for label, ms in times.items():
        out[label] = {"median_ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms),
                      "samples_ms": [round(v, 5) for v in ms]}
    if "nnctl" in out:
        base = out["nnctl"]["median_ms"]
        for label in out:
            if label != "nnctl":
                out["nnctl"][f"ratio_vs_{label}"] = base / out[label]["median_ms"]
    return out


# ---- environment -----------------------------------------------------------------------------

def environment(torch) -> dict:
    env = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
        "blas": None,
        "threads": None,
    }
    try:
        from threadpoolctl import threadpool_info
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"
                and "numpy" in p.get("filepath", "")] or \
               [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if blas:
            b = blas[0]
            env["blas"] = {k: b.get(k) for k in ("internal_api", "version", "architecture",
                                                  "threading_layer", "num_threads")}
    except ImportError:
        pass
    if torch is not None:
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    return env


def blas_threads(default: int) -> int:
    try:
        from threadpoolctl import threadpool_info
        for p in threadpool_info():
            if p.get("user_api") == "blas":
                return int(p["num_threads"])
    except ImportError:
        pass
    return default


# ---- output ----------------------------------------------------------------------------------

def print_table(results: list[dict], labels: list[str]) -> None:
    headers = ["case", "batch"] + [f"{l} ms" for l in labels] + \
              [f"÷ {l}" for l in labels if l != "nnctl"]
    rows = []
    for r in results:
        t = r["timing"]
        row = [r["case"], str(r["batch"])]
        row += [f"{t[l]['median_ms']:.3f}" for l in labels]
        row += [f"{t['nnctl'][f'ratio_vs_{l}']:.2f}x" for l in labels if l != "nnctl"]
        rows.append(row)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        print("(median ms per training step; ÷ x = nnctl's median / x's)")
        return
    table = Table(title="median ms per training step (forward + backward + Adam); "
                        "÷ x = nnctl's median / x's",
                  title_justify="left")
    for i, h in enumerate(headers):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    Console().print(table)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="a fast run: 3 samples of ~0.05 s each after 5 warm-up steps")
    ap.add_argument("--samples", type=int, help="timed samples per implementation (default 7)")
    ap.add_argument("--repeats", type=int,
                    help="steps per sample (default: as many as take ~0.3 s, ~0.05 s quick)")
    ap.add_argument("--warmup", type=int, help="untimed steps first (default 50)")
    ap.add_argument("--cases", default="digits_mlp,mlp_784",
                    help="comma-separated: digits_mlp, mlp_784")
    ap.add_argument("--threads", type=int,
                    help="BLAS threads for NumPy (via threadpoolctl) and intra-op threads for "
                         "PyTorch (default: as many as NumPy's BLAS already uses)")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args(argv)
    samples = args.samples or (3 if args.quick else 7)
    repeats = args.repeats
    target_s = 0.05 if args.quick else 0.3
    warmup = args.warmup if args.warmup is not None else (5 if args.quick else 50)

    torch = None if args.no_torch else import_torch()
    if args.threads:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            ap.error("--threads needs threadpoolctl (pip install threadpoolctl)")
        # Kept for the whole run: the limiter object restores the old limits when collected.
        main.limiter = threadpool_limits(limits=args.threads, user_api="blas")
    threads = args.threads or blas_threads(os.cpu_count() or 1)
    if torch is not None:
        torch.set_num_threads(threads)
    env = environment(torch)
    env["threads"] = threads
    blas = env["blas"] or {}
    print(f"python {env['python']}, numpy {env['numpy']}, {env['cpu_count']} CPUs, "
          f"{env['platform']}")
    print(f"numpy BLAS: {blas.get('internal_api', '?')} {blas.get('version', '')} "
          f"kernel={blas.get('architecture', '?')} threads={blas.get('num_threads', '?')}; "
          f"OPENBLAS_CORETYPE={env['OPENBLAS_CORETYPE'] or '(unset)'}")
    if torch is not None:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    elif args.no_torch:
        print("torch: left out (--no-torch)")
    else:
        print(f"torch: not importable, skipped. To compare with PyTorch: {TORCH_HINT}")
    per = f"{repeats} steps" if repeats else f"~{target_s:g} s of steps"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 1.0:
        print(f"note: load average {load:.2f} before starting: other processes use the CPUs, "
              "so expect noisy samples (compare the medians and the fastest samples)")
    env["loadavg_1min"] = load
    print(f"method: {warmup} warm-up steps, then {samples} samples x {per} per implementation, "
          f"interleaved; median ms/step\n")

    impls = [NnctlStep, NumpyStep] + ([TorchStep] if torch is not None else [])
    labels = [i.label for i in impls]
    results = []
    with tempfile.TemporaryDirectory(prefix="nnctl-bench-") as tmp:
        makers = {"digits_mlp": digits_case, "mlp_784": lambda: synthetic_case(Path(tmp))}
        for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
            if name not in makers:
                ap.error(f"unknown case {name!r}; choose from {', '.join(makers)}")
            case = makers[name]()
            check = check_same_losses(case, impls)
            diffs = ", ".join(f"{k} {v:.1e}" for k, v in check["max_rel_diff"].items())
            print(f"{case.name}: {case.shape}, batch {case.batch}, {case.n_params:,} params; "
                  f"losses over {check['steps']} steps match nnctl's (max rel diff: {diffs})")
            times, counts = time_case(case, impls, warmup, samples, repeats, target_s)
            timing = summarize(times)
            for label, n in counts.items():
                timing[label]["steps_per_sample"] = n
            results.append({"case": case.name, "note": case.note, "shape": case.shape,
                            "batch": case.batch, "params": case.n_params, "check": check,
                            "timing": timing})
    print()
    print_table(results, labels)
    for r in results:
        spread = ", ".join(f"{l} {r['timing'][l]['min_ms']:.3f}-{r['timing'][l]['max_ms']:.3f}"
                           for l in labels)
        print(f"  {r['case']} range over samples (ms): {spread}")
        mins = r["timing"]["nnctl"]["min_ms"]
        ratios = ", ".join(f"÷ {l} {mins / r['timing'][l]['min_ms']:.2f}x"
                           for l in labels if l != "nnctl")
        if ratios:
            print(f"  {r['case']} ratios of the fastest samples: {ratios}")
    if args.json:
        payload = {"environment": env,
                   "method": {"warmup": warmup, "samples": samples, "repeats": repeats,
                              "target_s_per_sample": None if repeats else target_s,
                              "statistic": "median ms per step"},
                   "results": results}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
