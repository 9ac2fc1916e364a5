"""The benchmarks' GPU mode (benchmarks/gpu.py, `run.py --device cuda`), without a GPU: its
options, its one-line failure where there is no GPU, its tables, JSON and acceptance lines
from a made-up result, that the timing waits for the device where it must (stand-in steps and
a stand-in clock), and the whole mode run on the CPU (nnctl on the strict backend, PyTorch on
its CPU device), so that its first GPU run is not the first run of its code."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import gpu  # noqa: E402
import impl_nnctl  # noqa: E402
import impl_torch  # noqa: E402
import run as bench_run  # noqa: E402

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_CUPY = importlib.util.find_spec("cupy") is not None


def script(*args, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=BENCH.parent)


# ---- options ------------------------------------------------------------------------------

def test_defaults_and_quick():
    args = gpu.parse_args([])
    assert args.device == "cuda" and args.case_list == list(gpu.CASE_NAMES)
    assert (args.samples_n, args.warmup_n, args.target_s) == (7, 20, 0.25)
    assert args.batch is None and not (args.read_loss or args.no_torch or args.torch_compile)
    quick = gpu.parse_args(["--quick", "--cases", "cnn, mlp_digits", "--batch", "32"])
    assert (quick.samples_n, quick.warmup_n, quick.target_s) == (3, 3, 0.05)
    assert quick.case_list == ["cnn", "mlp_digits"] and quick.batch == 32
    assert gpu.parse_args(["--warmup", "0", "--samples", "2"]).warmup_n == 0
    # every workload has a GPU batch, and the digits' split has room for the MLP's
    assert set(gpu.GPU_BATCH) == set(gpu.CASE_NAMES) and gpu.GPU_BATCH["mlp_digits"] <= 1257


@pytest.mark.parametrize("argv,message", [
    (["--cases", "resnet"], "unknown case 'resnet'"),
    (["--batch", "0"], "--batch: expected a positive integer"),
    (["--samples", "-1"], "--samples: expected a positive integer"),
    (["--cases", ","], "--cases: no workload named"),
    (["--threads", "2"], "unrecognized arguments: --threads"),  # a CPU runner's option
    (["--device", "cpu"], "invalid choice: 'cpu'"),
])
def test_bad_options_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        gpu.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_run_py_hands_device_cuda_to_the_gpu_mode(monkeypatch):
    seen = []
    monkeypatch.setattr(gpu, "main", lambda argv: seen.append(list(argv)) or 7)
    assert bench_run.main(["--device", "cuda", "--cases", "cnn"]) == 7
    assert bench_run.main(["--cases", "cnn", "--device=cuda"]) == 7
    assert seen == [["--device", "cuda", "--cases", "cnn"], ["--cases", "cnn", "--device=cuda"]]
    assert not bench_run.wants_gpu(["--device", "cpu"]) and not bench_run.wants_gpu([])
    assert bench_run.parse_args(["--device", "cpu"]).device == "cpu"
    with pytest.raises(SystemExit):
        bench_run.parse_args(["--device", "tpu"])


# ---- no GPU: one line, exit 2 -------------------------------------------------------------

@pytest.mark.parametrize("error", [
    "BackendError", "RuntimeError"])  # nnctl's own refusal; a CuPy that cannot start
def test_without_a_gpu_one_line_and_exit_2(error, monkeypatch, capsys):
    import nnctl.backend
    from nnctl.errors import BackendError

    def refuse(device):
        assert device == "cuda"
        if error == "BackendError":
            raise BackendError("--device cuda needs CuPy on a machine with an NVIDIA GPU: "
                               "pip install cupy-cuda12x")
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device\nis detected")

    monkeypatch.setattr(nnctl.backend, "get_backend", refuse)
    assert gpu.main(["--cases", "cnn", "--json", "never.json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: GPU mode: ")
    assert ("needs CuPy" if error == "BackendError" else "CuPy could not start") in err
    assert not Path("never.json").exists()


@pytest.mark.skipif(HAVE_CUPY, reason="CuPy is installed: this machine may have a GPU")
@pytest.mark.parametrize("entry", [["run.py", "--device", "cuda"], ["gpu.py"]])
def test_without_cupy_the_scripts_say_so_in_one_line(entry):
    proc = script(BENCH / entry[0], *entry[1:], timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "needs CuPy" in proc.stderr


# ---- timing waits for the device ----------------------------------------------------------

class Log(list):
    def clock(self):
        self.append(("clock",))
        return float(sum(1 for e in self if e[0] == "run"))  # 1 s per step queued so far


class FakeStep:
    """Queues 'steps' without waiting; sync and read are the only waits."""

    def __init__(self, label, log, losses=None):
        self.label, self.log, self.losses = label, log, losses

    def run(self, i):
        self.log.append(("run", self.label, i))
        return ("loss", self.label, i)

    def read(self, loss):
        self.log.append(("read", self.label))
        return self.losses[loss[2]] if self.losses else 1.0

    def sync(self):
        self.log.append(("sync", self.label))


def windows(log):
    """The timed windows: (events between two clock reads, the event before each read)."""
    clocks = [k for k, e in enumerate(log) if e == ("clock",)]
    assert len(clocks) % 2 == 0
    return [(log[a + 1:b], log[a - 1], log[b - 1]) for a, b in zip(clocks[::2], clocks[1::2])]


def test_timed_run_waits_before_starting_and_before_stopping_the_clock():
    log = Log()
    step = FakeStep("nnctl", log)
    seconds, loss = gpu.timed_run(step, 5, 4, False, log.clock)
    assert log == [("sync", "nnctl"), ("clock",)] + [("run", "nnctl", i) for i in range(5, 9)] \
        + [("sync", "nnctl"), ("clock",)]
    assert seconds == 4.0 and loss == ("loss", "nnctl", 8)  # the loss stays on the device
    log.clear()
    _, loss = gpu.timed_run(step, 0, 2, True, log.clock)  # --read-loss: a wait every step
    assert [e[0] for e in log] == ["sync", "clock", "run", "read", "run", "read", "sync", "clock"]
    assert loss == 1.0


def test_every_sample_is_timed_between_two_device_waits_and_interleaved():
    log = Log()
    steps = {label: FakeStep(label, log) for label in ("nnctl", "nnctl-captured", "torch")}
    times, counts = gpu.time_steps("mlp_digits", steps, warmup=2, samples=3, repeats=4,
                                   target_s=0.25, clock=log.clock, rewarm=1)
    assert counts == {label: 4 for label in steps}
    assert all(len(ms) == 3 and all(v == 1000.0 for v in ms) for ms in times.values())
    spans = windows(log)
    assert len(spans) == 3 + 3 * 3  # the per-step estimate of each, then 3 samples each
    for inside, before, last in spans:
        label = inside[0][1]
        assert before == ("sync", label) and last == ("sync", label)  # waits around the clock
        runs = [e for e in inside if e[0] == "run"]
        assert all(e[1] == label for e in runs) and len(runs) in (3, 4)
        assert not any(e[0] == "read" for e in inside)  # the loss is read after the clock
    # interleaved: the samples go nnctl, nnctl-captured, torch, nnctl, ...
    order = [inside[0][1] for inside, _, _ in spans[3:]]
    assert order == ["nnctl", "nnctl-captured", "torch"] * 3
    # every step index is used once per implementation, after the checked ones
    for label in steps:
        idx = [e[2] for e in log if e[0] == "run" and e[1] == label]
        assert idx == list(range(gpu.CHECK_STEPS, gpu.CHECK_STEPS + len(idx)))


def test_steps_per_sample_follow_the_target_and_a_nan_loss_stops():
    log = Log()
    step = FakeStep("torch", log)
    _, counts = gpu.time_steps("cnn", {"torch": step}, 0, 1, None, target_s=10.0,
                               clock=log.clock)
    assert counts == {"torch": 10}  # 1 s per step (the stand-in clock), ~10 s per sample
    step.losses = {i: math.nan for i in range(100)}
    with pytest.raises(SystemExit, match="cnn/torch: the loss became nan"):
        gpu.time_steps("cnn", {"torch": step}, 0, 1, 2, 0.25, clock=log.clock)


def test_build_and_check_waits_for_the_first_step_and_compares_the_losses():
    log = Log()
    good = [2.30, 2.10, 1.90]
    case = SimpleNamespace(name="cnn")
    factories = {"nnctl": lambda c: FakeStep("nnctl", log, good),
                 "nnctl-captured": lambda c: FakeStep("nnctl-captured", log, [2.30, 2.5, 1.9]),
                 "torch": lambda c: FakeStep("torch", log, [x * (1 + 1e-5) for x in good]),
                 "torch-compile": lambda c: (_ for _ in ()).throw(RuntimeError("no triton"))}
    steps, startup, check, skipped = gpu.build_and_check(case, factories, log.clock)
    # the time to the first step stops only once the device has finished it
    first = log[:log.index(("clock",), 1) + 1]
    assert first[-3:] == [("run", "nnctl", 0), ("sync", "nnctl"), ("clock",)]
    assert set(steps) == {"nnctl", "torch"} and set(startup) == {"nnctl", "torch"}
    assert check["losses"]["nnctl"] == good and check["max_rel_diff"]["torch"] < 1e-4
    assert "differ from nnctl's" in skipped["nnctl-captured"]  # an optional variant: left out
    assert skipped["torch-compile"] == "RuntimeError: no triton"
    factories["torch"] = lambda c: FakeStep("torch", log, [2.3, 2.2, 1.9])
    with pytest.raises(SystemExit, match="torch's losses .* differ from nnctl's"):
        gpu.build_and_check(case, factories, log.clock)


def test_nnctl_waits_for_the_whole_device():
    calls = []
    device = SimpleNamespace(synchronize=lambda: calls.append("device"))
    cuda = SimpleNamespace(Device=lambda: device)
    backend = SimpleNamespace(xp=SimpleNamespace(cuda=cuda),
                              synchronize=lambda: calls.append("stream"))
    impl_nnctl.device_sync(backend)
    assert calls == ["device"]  # every stream: a captured graph may run on its own
    backend.xp = SimpleNamespace()  # an array module without CUDA (NumPy, the strict one)
    impl_nnctl.device_sync(backend)
    assert calls == ["device", "stream"]
    step = impl_nnctl.NnctlDeviceStep.__new__(impl_nnctl.NnctlDeviceStep)
    step.backend = SimpleNamespace(xp=SimpleNamespace(cuda=cuda), synchronize=None)
    step.sync()
    assert calls[-1] == "device"


def test_torch_waits_for_a_cuda_device_only():
    calls = []
    torch = SimpleNamespace(cuda=SimpleNamespace(synchronize=lambda d: calls.append(d)))
    cuda, cpu = SimpleNamespace(type="cuda"), SimpleNamespace(type="cpu")
    impl_torch.device_sync(torch, cuda)
    impl_torch.device_sync(torch, cpu)
    assert calls == [cuda]
    step = impl_torch.TorchDeviceStep.__new__(impl_torch.TorchDeviceStep)
    step.torch, step.device = torch, cuda
    step.sync()
    assert calls == [cuda, cuda]


def test_torch_without_cuda_is_named():
    assert "not importable" in impl_torch.cuda_unavailable(None)
    cpu_build = SimpleNamespace(__version__="2.13.0+cpu", version=SimpleNamespace(cuda=None),
                                cuda=SimpleNamespace(is_available=lambda: False))
    assert "a CPU-only build" in impl_torch.cuda_unavailable(cpu_build)


# ---- the report from a made-up result -----------------------------------------------------

def timing(ms):
    return {"median_ms": ms, "min_ms": ms, "max_ms": ms, "steps_per_sample": 10,
            "samples_ms": [ms]}


def fake_payload(captured=True):
    results = []
    for name, nn, cap, torch in (("mlp_digits", 0.30, 0.08, 0.10), ("cnn", 2.0, None, 1.0),
                                 ("transformer", 1.2, 1.0, 1.0)):
        t = {"nnctl": timing(nn), "torch": timing(torch)}
        skipped = {}
        if cap is not None and captured:
            t["nnctl-captured"] = timing(cap)
        elif cap is None:
            skipped["nnctl-captured"] = "its ops cross_entropy cannot be captured"
        results.append({"case": name, "description": name, "batch": gpu.GPU_BATCH[name],
                        "params": 1000, "timing": t, "ratios": gpu.ratios(t),
                        "check": {"max_rel_diff": {"torch": 1e-7}},
                        "startup": {"nnctl": {"first_step_s": 1.5, "graph_s": 0.01,
                                              "compile_s": 0.2, "planned_bytes": 3 * 2**20},
                                    "torch": {"first_step_s": 0.5}},
                        "skipped": skipped})
    notes = {} if captured else {"nnctl-captured": "left out (--no-capture)"}
    return {"mode": "gpu", "environment": {"gpu": "NVIDIA H200", "cuda_runtime": 12080,
                                           "cuda_driver": 12080, "cupy": "13.6.0",
                                           "torch": "2.8.0", "torch_cuda": "12.8",
                                           "cudnn": 91002},
            "cases": [r["case"] for r in results], "method": {"read_loss": False},
            "notes": notes, "results": results}


def test_the_tables_from_a_made_up_result():
    text = gpu.markdown(fake_payload())
    lines = text.splitlines()
    assert lines[0] == ("GPU: NVIDIA H200, CUDA runtime 12080, driver 12080, cupy 13.6.0, "
                        "torch 2.8.0 (CUDA 12.8, cuDNN 91002)")
    assert "| workload | batch | nnctl | nnctl-captured | torch | nnctl/torch | " \
           "nnctl-captured/torch |" in lines
    assert "| mlp_digits | 1024 | 0.300 | 0.080 | 0.100 | 3.00 | 0.80 |" in lines
    assert "| cnn | 256 | 2.000 | - | 1.000 | 2.00 | - |" in lines
    assert "| cnn | 1.50 / - / 0.50 | 0.010 | 0.200 | 3.0 |" in lines
    assert "- cnn: nnctl-captured left out: its ops cross_entropy cannot be captured" in lines
    assert "the loss left on the device" in text


def test_acceptance_prefers_the_captured_step_and_says_when_it_did_not_run():
    rows = gpu.acceptance(fake_payload())
    assert [ok for ok, _ in rows] == [True, False, True]
    assert rows[0][1] == ("PASS mlp_digits: nnctl-captured 0.080 ms / torch 0.100 ms = 0.80 "
                          "(wanted <= 1)")
    assert rows[1][1].startswith("FAIL cnn: nnctl 2.000 ms / torch 1.000 ms = 2.00 "
                                 "(wanted <= 1.5); the eager step: nnctl-captured did not run")
    assert "cannot be captured" in rows[1][1]
    eager = gpu.acceptance(fake_payload(captured=False))
    assert eager[0][1].startswith("FAIL mlp_digits: nnctl 0.300 ms") and \
        "(left out (--no-capture))" in eager[0][1]
    partial = fake_payload()
    del partial["results"][2]  # the run stopped before the transformer
    assert gpu.acceptance(partial)[2] == (False, "FAIL transformer: no result (not run, or the "
                                                 "run stopped before it); wanted nnctl / torch "
                                                 "<= 1.5")
    del partial["results"][0]["timing"]["torch"]
    assert "no PyTorch CUDA timing" in gpu.acceptance(partial)[0][1]
    stand_in = fake_payload()
    stand_in["environment"]["stand_in"] = "CPU stand-in"
    assert gpu.acceptance(stand_in) == [(False, "FAIL acceptance: these results are a CPU "
                                                "stand-in, not a GPU run")]


def test_accept_reads_the_json_and_exits_1_on_a_failure(tmp_path, capsys):
    path = tmp_path / "gpu.json"
    gpu.write_json(str(path), fake_payload())
    assert json.loads(path.read_text())["results"][0]["case"] == "mlp_digits"
    assert not path.with_name("gpu.json.tmp").exists()
    assert gpu.main(["--accept", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["PASS", "FAIL", "PASS"]
    passing = fake_payload()
    passing["results"] = [passing["results"][0], passing["results"][2]]
    passing["results"].insert(1, dict(passing["results"][1], case="cnn"))
    gpu.write_json(str(path), passing)
    assert gpu.main(["--accept", str(path)]) == 0
    capsys.readouterr()
    assert gpu.main(["--accept", str(tmp_path / "missing.json")]) == 1
    assert capsys.readouterr().out.startswith("FAIL acceptance: no benchmark results in ")


# ---- the whole mode on the CPU ------------------------------------------------------------

def test_the_gpu_mode_runs_on_a_cpu_stand_in(tmp_path):
    """Every workload through the GPU mode's code: nnctl's device step on the strict backend
    (CuPy's rule: no implicit device-to-NumPy conversion), PyTorch's device step on its CPU
    device, the losses checked against each other, timed, tabled and written."""
    out, md = tmp_path / "gpu.json", tmp_path / "gpu.md"
    flags = [] if HAVE_TORCH else ["--no-torch"]
    proc = script(BENCH / "gpu.py", "--cpu-stand-in", "--batch", "8", "--samples", "1",
                  "--repeats", "2", "--warmup", "1", "--json", out, "--markdown", md, *flags)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["environment"]["stand_in"] and payload["method"]["read_loss"] is False
    assert [r["case"] for r in payload["results"]] == list(gpu.CASE_NAMES)
    expected = {"nnctl", "torch"} if HAVE_TORCH else {"nnctl"}
    assert "nnctl-captured" in payload["notes"] or all(
        "nnctl-captured" in r["skipped"] or "nnctl-captured" in r["timing"]
        for r in payload["results"])
    for r in payload["results"]:
        assert expected <= set(r["timing"]) and r["batch"] == 8
        assert all(t["median_ms"] > 0 and t["steps_per_sample"] == 2 for t in r["timing"].values())
        losses = r["check"]["losses"]
        assert len(losses["nnctl"]) == 3 and all(math.isfinite(v) for v in losses["nnctl"])
        assert all(v <= gpu.RTOL for v in r["check"]["max_rel_diff"].values())
        if HAVE_TORCH:
            assert r["ratios"]["nnctl/torch"] > 0
    assert md.read_text().startswith("GPU: CPU stand-in (tests): not a GPU run")
    assert "FAIL acceptance: these results are a CPU stand-in" in proc.stdout


# ---- the captured variant -----------------------------------------------------------------

def test_why_the_captured_variant_cannot_run(monkeypatch):
    from nnctl.backend.strict import StrictBackend
    monkeypatch.setitem(sys.modules, "nnctl.train.capture", None)  # not in this checkout
    assert "not in this checkout" in impl_nnctl.capture_unavailable(StrictBackend())
    with pytest.raises(impl_nnctl.CaptureUnavailable, match="not in this checkout"):
        impl_nnctl.NnctlCapturedStep(SimpleNamespace(), StrictBackend())
    monkeypatch.setitem(sys.modules, "nnctl.train.capture",
                        SimpleNamespace(StepGraphs=object))
    no_capture = SimpleNamespace(name="odd", xp=None)
    assert impl_nnctl.capture_unavailable(no_capture) == "the odd backend has no capture()"


@pytest.fixture
def mlp_case():
    from workloads import Case
    with tempfile.TemporaryDirectory() as tmp:
        yield Case("mlp_digits", Path(tmp), 8)


def test_a_backend_that_cannot_capture_leaves_the_variant_out(mlp_case):
    pytest.importorskip("nnctl.train.capture")
    from nnctl.backend.strict import StrictBackend
    with pytest.raises(impl_nnctl.CaptureUnavailable):
        impl_nnctl.NnctlCapturedStep(mlp_case, StrictBackend())


def test_the_captured_step_replays_the_eager_steps(mlp_case, monkeypatch):
    """On the recording backend (capture as CUDA does it, on the CPU): the graph is captured in
    the constructor, the weights start again from the initial ones, and each launch on a new
    batch gives the eager step's loss. The optimizer's host half here refills a device array
    of scalars from the host every step, as the GPU's fused update does: a capture refuses
    that, so the variant must call begin_step outside the graph."""
    pytest.importorskip("nnctl.train.capture")
    recording = pytest.importorskip("nnctl.backend.recording")
    from nnctl.backend.strict import StrictBackend
    from nnctl.compile.plan import ExecutionPlan
    from nnctl.optim import SGD
    # the plumbing under test is the benchmark's, not the op table's capture marks
    monkeypatch.setattr(ExecutionPlan, "capturable", property(lambda self: True), raising=False)
    original = SGD.begin_step

    def begin_with_refill(self, params):
        c = self.__dict__.get("_c")
        if c is None:
            c = self._c = self.xp.zeros(2, dtype="float32")
        self._fill(c, (self.lr, 0.0))  # a host-to-device copy on a device array
        return original(self, params)

    monkeypatch.setattr(SGD, "begin_step", begin_with_refill)
    eager = impl_nnctl.NnctlDeviceStep(mlp_case, StrictBackend())
    captured = impl_nnctl.NnctlCapturedStep(mlp_case, recording.RecordingBackend())
    assert captured.graphs.captures == 1
    want = [eager.read(eager.run(i)) for i in range(6)]
    got = [captured.read(captured.run(i)) for i in range(6)]
    assert got == want and captured.graphs.launches == 1 + 6
    np.testing.assert_array_equal(captured.backend.to_host(captured.params[0]),
                                  eager.backend.to_host(eager.params[0]))
