"""The training steps in PyTorch (CPU build), eager mode, float32: nn modules, F.cross_entropy,
loss.backward(), torch.optim.SGD, loss.item() (the loss read back every step, as nnctl's
trainer does). Weights are copied from nnctl's initial arrays (transposed where PyTorch keeps
[out, in]). `torch.from_numpy` shares the batch arrays, so feeding costs no copy.

The GPU mode (gpu.py) uses `TorchDeviceStep`: the same model code moved to a device
(`device="cuda"`; `device="cpu"` runs the very same code on the CPU, which the tests do), the
batches copied there once, `run(i)` queues a step and returns the loss on the device without
waiting (no `.item()`), `read` copies a loss to the host and `sync` waits for the device
(`torch.cuda.synchronize`). `compile=True` wraps the model in `torch.compile`.
"""

from __future__ import annotations

import numpy as np

HINT = "pip install torch==2.13.0   (the CPU build; never plain `pip install torch`)"
CUDA_HINT = ("the GPU mode needs PyTorch's CUDA build on a machine with an NVIDIA GPU "
             "(on Linux x86-64, plain `pip install torch` installs it)")


def import_torch():
    try:
        import torch
        return torch
    except Exception:  # ImportError, or a broken install
        return None


def _t(torch, a, transpose=False):
    a = np.ascontiguousarray(a.T if transpose else a)
    return torch.from_numpy(a.copy())


def linear(torch, w, b):
    lin = torch.nn.Linear(w.shape[0], w.shape[1])
    with torch.no_grad():
        lin.weight.copy_(_t(torch, w, True))
        lin.bias.copy_(_t(torch, b))
    return lin


def build_model(torch, case):
    nn = torch.nn
    p = case.initial
    if case.name in ("mlp_digits", "mlp_784"):
        return nn.Sequential(linear(torch, p["h1.weight"], p["h1.bias"]), nn.ReLU(),
                             linear(torch, p["h2.weight"], p["h2.bias"]), nn.ReLU(),
                             linear(torch, p["out.weight"], p["out.bias"]))
    if case.name == "cnn":
        convs = []
        for name, cin, cout in (("c1", 1, 16), ("c2", 16, 32)):
            conv = nn.Conv2d(cin, cout, 3, padding=1)
            with torch.no_grad():
                conv.weight.copy_(_t(torch, p[f"{name}.weight"]))
                conv.bias.copy_(_t(torch, p[f"{name}.bias"]))
            convs.append(conv)
        return nn.Sequential(convs[0], nn.ReLU(), nn.MaxPool2d(2), convs[1], nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(),
                             linear(torch, p["out.weight"], p["out.bias"]))
    if case.name == "lstm":
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = nn.LSTM(32, 128, batch_first=True)
                with torch.no_grad():
                    self.rnn.weight_ih_l0.copy_(_t(torch, p["rnn.l0.weight_x"], True))
                    self.rnn.weight_hh_l0.copy_(_t(torch, p["rnn.l0.weight_h"], True))
                    self.rnn.bias_ih_l0.copy_(_t(torch, p["rnn.l0.bias"]))
                    self.rnn.bias_hh_l0.zero_()  # nnctl keeps one bias per gate
                self.out = linear(torch, p["out.weight"], p["out.bias"])

            def forward(self, x):
                _, (h, _) = self.rnn(x)
                return self.out(h[-1])
        return Net()
    if case.name == "transformer":
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.enc = nn.TransformerEncoderLayer(128, 4, dim_feedforward=256, dropout=0.0,
                                                      batch_first=True, norm_first=False)
                e = self.enc
                with torch.no_grad():
                    e.self_attn.in_proj_weight.copy_(torch.cat(
                        [_t(torch, p[f"enc.attn.weight_{c}"], True) for c in "qkv"]))
                    e.self_attn.in_proj_bias.copy_(torch.cat(
                        [_t(torch, p[f"enc.attn.bias_{c}"]) for c in "qkv"]))
                    e.self_attn.out_proj.weight.copy_(_t(torch, p["enc.attn.weight_o"], True))
                    e.self_attn.out_proj.bias.copy_(_t(torch, p["enc.attn.bias_o"]))
                    for k in ("1", "2"):
                        getattr(e, f"linear{k}").weight.copy_(
                            _t(torch, p[f"enc.ff{k}.weight"], True))
                        getattr(e, f"linear{k}").bias.copy_(_t(torch, p[f"enc.ff{k}.bias"]))
                        getattr(e, f"norm{k}").weight.copy_(_t(torch, p[f"enc.norm{k}.gamma"]))
                        getattr(e, f"norm{k}").bias.copy_(_t(torch, p[f"enc.norm{k}.beta"]))
                self.out = linear(torch, p["out.weight"], p["out.bias"])

            def forward(self, x):
                return self.out(self.enc(x).mean(dim=1))
        return Net()
    raise ValueError(case.name)


class TorchStep:
    label = "torch"

    def __init__(self, case):
        torch = self.torch = import_torch()
        self.F = torch.nn.functional
        self.model = build_model(torch, case).float().train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=case.lr)
        self.cache: dict = {}

    def tensors(self, x, y):
        key = (id(x), id(y))
        if key not in self.cache:
            self.cache[key] = (self.torch.from_numpy(x), self.torch.from_numpy(y))
        return self.cache[key]

    def __call__(self, x, y) -> float:
        xt, yt = self.tensors(x, y)
        self.opt.zero_grad(set_to_none=True)
        loss = self.F.cross_entropy(self.model(xt), yt)
        loss.backward()
        self.opt.step()
        return loss.item()


def cuda_unavailable(torch) -> str | None:
    """Why PyTorch cannot run on the GPU here (None: it can)."""
    if torch is None:
        return "not importable; " + CUDA_HINT
    if not torch.cuda.is_available():
        build = torch.version.cuda
        return (f"PyTorch {torch.__version__} sees no CUDA GPU "
                f"({'a CPU-only build' if build is None else f'built for CUDA {build}'}); "
                + CUDA_HINT)
    return None


def configure_cuda(torch) -> dict:
    """float32 as nnctl computes it (no TF32 in matmuls or convolutions: CuPy uses none by
    default), cuDNN free to pick its fastest algorithms for the fixed shapes; returns the
    settings for the report."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    return {"matmul_allow_tf32": False, "cudnn_allow_tf32": False, "cudnn_benchmark": True}


def device_sync(torch, device) -> None:
    """Wait for everything queued on a CUDA device (device-wide); nothing to wait for on the
    CPU, whose eager ops finish before they return."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TorchDeviceStep:
    label = "torch"

    def __init__(self, case, device="cuda", compile: bool = False, torch=None):
        torch = self.torch = torch or import_torch()
        self.F = torch.nn.functional
        self.device = torch.device(device)
        model = build_model(torch, case).float().train().to(self.device)
        self.opt = torch.optim.SGD(model.parameters(), lr=case.lr)
        self.model = torch.compile(model) if compile else model
        if compile:
            self.label = "torch-compile"
        # copied once, outside any timing (nnctl's batches are on the device too)
        self.batches = [(torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device))
                        for x, y in case.batches]

    def run(self, i: int):
        x, y = self.batches[i % len(self.batches)]
        self.opt.zero_grad(set_to_none=True)
        loss = self.F.cross_entropy(self.model(x), y)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def read(self, loss) -> float:
        return loss.item()  # a synchronising device-to-host copy on CUDA

    def sync(self) -> None:
        device_sync(self.torch, self.device)
