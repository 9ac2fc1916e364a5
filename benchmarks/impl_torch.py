"""The training steps in PyTorch (CPU build), eager mode, float32: nn modules, F.cross_entropy,
loss.backward(), torch.optim.SGD, loss.item() (the loss read back every step, as nnctl's
trainer does). Weights are copied from nnctl's initial arrays (transposed where PyTorch keeps
[out, in]). `torch.from_numpy` shares the batch arrays, so feeding costs no copy.
"""

from __future__ import annotations

import numpy as np

HINT = "pip install torch==2.13.0   (the CPU build; never plain `pip install torch`)"


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
