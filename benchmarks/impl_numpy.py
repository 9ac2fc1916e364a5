"""The training steps written by hand in NumPy: forward, softmax cross-entropy, manual backward
(no gradient for the input batch, as in nnctl's graph), and plain SGD in place. float32
throughout. Written the way a careful person would, not tuned to the last microsecond:
the convolution is im2col + one GEMM (NHWC inside, so the columns are contiguous), the LSTM
projects all time steps' inputs with one GEMM, the attention heads are batched matmuls.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

F32 = np.float32


def softmax_xent(logits, y):
    """Mean cross-entropy and its gradient with respect to the logits."""
    n = logits.shape[0]
    rows = np.arange(n)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1)
    loss = float(np.mean(np.log(s) - z[rows, y]))
    e /= s[:, None]
    e[rows, y] -= 1.0
    e *= F32(1.0 / n)
    return loss, e


class NumpyStep:
    label = "numpy"

    def __init__(self, case):
        self.lr = F32(case.lr)
        self.p = case.weights()
        self.kind = case.name
        self.prepare()

    def prepare(self):
        pass

    def sgd(self, grads: dict) -> None:
        lr = self.lr
        for k, g in grads.items():
            g *= lr  # g is this step's own array
            self.p[k] -= g

    def __call__(self, x, y) -> float:
        loss, grads = self.loss_and_grads(x, y)
        self.sgd(grads)
        return loss


class MLPStep(NumpyStep):
    layers = ("h1", "h2", "out")

    def loss_and_grads(self, x, y):
        p, hs = self.p, [x]
        h = x
        for i, name in enumerate(self.layers):
            z = h @ p[f"{name}.weight"]
            z += p[f"{name}.bias"]
            if i < len(self.layers) - 1:
                np.maximum(z, 0, out=z)
            hs.append(z)
            h = z
        loss, d = softmax_xent(h, y)
        grads = {}
        for i in range(len(self.layers) - 1, -1, -1):
            name = self.layers[i]
            grads[f"{name}.weight"] = hs[i].T @ d
            grads[f"{name}.bias"] = d.sum(axis=0)
            if i > 0:
                d = d @ p[f"{name}.weight"].T
                d *= hs[i] > 0  # relu of the layer below
        return loss, grads


def im2col(x, k=3, pad=1):
    """x [N, H, W, C] (NHWC) -> columns [N*H*W, C*k*k] in (C, kh, kw) order, stride 1."""
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    win = sliding_window_view(xp, (k, k), axis=(1, 2))  # [N, H, W, C, k, k], a view
    return win.reshape(n * h * w, c * k * k)  # the one copy


def col2im(cols, shape, k=3, pad=1):
    """Adjoint of im2col: cols [N*H*W, C*k*k] -> dx [N, H, W, C] by k*k strided adds."""
    n, h, w, c = shape
    cols = cols.reshape(n, h, w, c, k, k)
    dxp = np.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=cols.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, i:i + h, j:j + w, :] += cols[:, :, :, :, i, j]
    return dxp[:, pad:pad + h, pad:pad + w, :]


def maxpool2(x):
    """x [N, H, W, C] -> (y [N, H/2, W/2, C], mask of the maxima [N, H/2, 2, W/2, 2, C])."""
    n, h, w, c = x.shape
    v = x.reshape(n, h // 2, 2, w // 2, 2, c)
    y = v.max(axis=(2, 4))
    # Ties only happen between zeros after the relu, whose gradient relu drops anyway.
    mask = v == y[:, :, None, :, None, :]
    return y, mask


class CNNStep(NumpyStep):
    """NHWC inside; the dense weight's rows are permuted once from nnctl's (C, H, W) flatten
    order to (H, W, C), and its gradient back."""

    def prepare(self):
        p = self.p
        self.w1 = p["c1.weight"].reshape(16, -1).T.copy()  # [C*9, F], (C, kh, kw) rows
        self.w2 = p["c2.weight"].reshape(32, -1).T.copy()
        w = p["out.weight"].reshape(32, 7, 7, 10).transpose(1, 2, 0, 3)
        self.wd = np.ascontiguousarray(w.reshape(7 * 7 * 32, 10))
        self.params = {"c1.weight": self.w1, "c1.bias": p["c1.bias"], "c2.weight": self.w2,
                       "c2.bias": p["c2.bias"], "out.weight": self.wd, "out.bias": p["out.bias"]}

    def loss_and_grads(self, x, y):
        n = x.shape[0]
        x = x.reshape(n, 28, 28, 1)  # C = 1: NCHW and NHWC are the same bytes
        c1 = im2col(x)                                   # [N*784, 9]
        z1 = c1 @ self.w1
        z1 += self.params["c1.bias"]
        np.maximum(z1, 0, out=z1)
        a1, m1 = maxpool2(z1.reshape(n, 28, 28, 16))     # [N, 14, 14, 16]
        c2 = im2col(a1)                                  # [N*196, 144]
        z2 = c2 @ self.w2
        z2 += self.params["c2.bias"]
        np.maximum(z2, 0, out=z2)
        a2, m2 = maxpool2(z2.reshape(n, 14, 14, 32))     # [N, 7, 7, 32]
        flat = a2.reshape(n, -1)
        logits = flat @ self.wd
        logits += self.params["out.bias"]
        loss, d = softmax_xent(logits, y)
        g = {"out.weight": flat.T @ d, "out.bias": d.sum(axis=0)}
        d = (d @ self.wd.T).reshape(n, 7, 1, 7, 1, 32)
        dz2 = (m2 * d).reshape(n * 196, 32)              # unpool
        dz2 *= z2 > 0                                    # relu
        g["c2.weight"] = c2.T @ dz2
        g["c2.bias"] = dz2.sum(axis=0)
        da1 = col2im(dz2 @ self.w2.T, (n, 14, 14, 16)).reshape(n, 7 * 2, 7 * 2, 16)
        da1 = da1.reshape(n, 14, 1, 14, 1, 16)
        dz1 = (m1 * da1).reshape(n * 784, 16)
        dz1 *= z1 > 0
        g["c1.weight"] = c1.T @ dz1
        g["c1.bias"] = dz1.sum(axis=0)
        return loss, g

    def sgd(self, grads):
        lr = self.lr
        for k, g in grads.items():
            g *= lr
            self.params[k] -= g


def sigmoid(x, out=None):
    out = np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1
    np.reciprocal(out, out=out)
    return out


class LSTMStep(NumpyStep):
    """Gates side by side (i, f, g, o) as nnctl and PyTorch; backpropagation through time."""

    def loss_and_grads(self, x, y):
        p = self.p
        wx, wh, b = p["rnn.l0.weight_x"], p["rnn.l0.weight_h"], p["rnn.l0.bias"]
        n, steps, feat = x.shape
        u = wh.shape[0]
        xw = (x.reshape(n * steps, feat) @ wx).reshape(n, steps, 4 * u)
        xw += b
        acts = np.empty((steps, n, 4 * u), F32)    # i, f, g, o after their nonlinearity
        cs = np.empty((steps, n, u), F32)
        tcs = np.empty((steps, n, u), F32)
        hs = np.zeros((steps + 1, n, u), F32)      # hs[t] is h_(t-1); hs[0] = 0
        c = np.zeros((n, u), F32)
        for t in range(steps):
            z = xw[:, t] + hs[t] @ wh if t else xw[:, t].copy()
            a = acts[t]
            sigmoid(z[:, :2 * u], out=a[:, :2 * u])
            np.tanh(z[:, 2 * u:3 * u], out=a[:, 2 * u:3 * u])
            sigmoid(z[:, 3 * u:], out=a[:, 3 * u:])
            c = a[:, u:2 * u] * c + a[:, :u] * a[:, 2 * u:3 * u]
            cs[t] = c
            np.tanh(c, out=tcs[t])
            np.multiply(a[:, 3 * u:], tcs[t], out=hs[t + 1])
        h = hs[steps]
        logits = h @ p["out.weight"]
        logits += p["out.bias"]
        loss, d = softmax_xent(logits, y)
        g = {"out.weight": h.T @ d, "out.bias": d.sum(axis=0)}
        dh = d @ p["out.weight"].T
        dc = np.zeros((n, u), F32)
        dz = np.empty((steps, n, 4 * u), F32)
        for t in range(steps - 1, -1, -1):
            a = acts[t]
            i, f, gg, o = a[:, :u], a[:, u:2 * u], a[:, 2 * u:3 * u], a[:, 3 * u:]
            tc = tcs[t]
            dc += dh * o * (1 - tc * tc)
            dzt = dz[t]
            np.multiply(dh * tc, o * (1 - o), out=dzt[:, 3 * u:])           # o
            np.multiply(dc * gg, i * (1 - i), out=dzt[:, :u])               # i
            np.multiply(dc * i, 1 - gg * gg, out=dzt[:, 2 * u:3 * u])       # g
            if t:
                np.multiply(dc * cs[t - 1], f * (1 - f), out=dzt[:, u:2 * u])  # f
                dh = dzt @ wh.T
                dc *= f
            else:
                dzt[:, u:2 * u] = 0  # c_(-1) = 0
        dz_flat = dz.transpose(1, 0, 2).reshape(n * steps, 4 * u)  # [N*T, 4u], like x's rows
        g["rnn.l0.weight_x"] = x.reshape(n * steps, feat).T @ dz_flat
        g["rnn.l0.weight_h"] = hs[:steps].reshape(steps * n, u).T @ dz.reshape(steps * n, 4 * u)
        g["rnn.l0.bias"] = dz_flat.sum(axis=0)
        return loss, g


def layer_norm(x, gamma, beta, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + F32(eps))
    xhat = xc * rstd
    return xhat * gamma + beta, (xhat, rstd)


def layer_norm_back(dy, gamma, saved):
    xhat, rstd = saved
    d = dy.shape[-1]
    dxhat = dy * gamma
    dx = dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True)
    dx *= rstd
    rows = dy.reshape(-1, d)
    return dx, (rows * xhat.reshape(-1, d)).sum(0), rows.sum(0)


class TransformerStep(NumpyStep):
    heads = 4

    def prepare(self):
        p = self.p
        # q, k, v side by side: one GEMM for the three projections (a hand-written choice)
        p["wqkv"] = np.concatenate([p.pop(f"enc.attn.weight_{c}") for c in "qkv"], axis=1)
        p["bqkv"] = np.concatenate([p.pop(f"enc.attn.bias_{c}") for c in "qkv"])

    def loss_and_grads(self, x, y):
        p = self.p
        n, t, dm = x.shape
        hds, dh = self.heads, dm // self.heads
        scale = F32(1.0 / np.sqrt(dh))
        x2 = x.reshape(n * t, dm)
        qkv = x2 @ p["wqkv"]
        qkv += p["bqkv"]
        qkv = qkv.reshape(n, t, 3, hds, dh).transpose(2, 0, 3, 1, 4)  # [3, N, H, T, dh]
        q, k, v = qkv[0], qkv[1], qkv[2]
        s = q @ k.transpose(0, 1, 3, 2)
        s *= scale
        s -= s.max(-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(-1, keepdims=True)
        att = s                                                       # [N, H, T, T]
        o = (att @ v).transpose(0, 2, 1, 3).reshape(n * t, dm)
        a = o @ p["enc.attn.weight_o"]
        a += p["enc.attn.bias_o"]
        a += x2
        y1, ln1 = layer_norm(a, p["enc.norm1.gamma"], p["enc.norm1.beta"])
        f1 = y1 @ p["enc.ff1.weight"]
        f1 += p["enc.ff1.bias"]
        np.maximum(f1, 0, out=f1)
        f2 = f1 @ p["enc.ff2.weight"]
        f2 += p["enc.ff2.bias"]
        f2 += y1
        y2, ln2 = layer_norm(f2, p["enc.norm2.gamma"], p["enc.norm2.beta"])
        pooled = y2.reshape(n, t, dm).mean(axis=1)
        logits = pooled @ p["out.weight"]
        logits += p["out.bias"]
        loss, d = softmax_xent(logits, y)
        g = {"out.weight": pooled.T @ d, "out.bias": d.sum(axis=0)}
        dpool = (d @ p["out.weight"].T) * F32(1.0 / t)
        dy2 = np.broadcast_to(dpool[:, None, :], (n, t, dm)).reshape(n * t, dm)
        dr2, g["enc.norm2.gamma"], g["enc.norm2.beta"] = layer_norm_back(
            dy2, p["enc.norm2.gamma"], ln2)
        g["enc.ff2.weight"] = f1.T @ dr2
        g["enc.ff2.bias"] = dr2.sum(0)
        df1 = dr2 @ p["enc.ff2.weight"].T
        df1 *= f1 > 0
        g["enc.ff1.weight"] = y1.T @ df1
        g["enc.ff1.bias"] = df1.sum(0)
        dy1 = df1 @ p["enc.ff1.weight"].T
        dy1 += dr2
        da, g["enc.norm1.gamma"], g["enc.norm1.beta"] = layer_norm_back(
            dy1, p["enc.norm1.gamma"], ln1)
        g["enc.attn.weight_o"] = o.T @ da
        g["enc.attn.bias_o"] = da.sum(0)
        do = (da @ p["enc.attn.weight_o"].T).reshape(n, t, hds, dh).transpose(0, 2, 1, 3)
        dqkv = np.empty((3, n, hds, t, dh), F32)
        np.matmul(att.transpose(0, 1, 3, 2), do, out=dqkv[2])        # dv
        datt = do @ v.transpose(0, 1, 3, 2)
        datt -= (datt * att).sum(-1, keepdims=True)
        datt *= att
        datt *= scale                                                  # d scores
        np.matmul(datt, k, out=dqkv[0])                                # dq
        np.matmul(datt.transpose(0, 1, 3, 2), q, out=dqkv[1])          # dk
        dqkv = dqkv.transpose(1, 3, 0, 2, 4).reshape(n * t, 3 * dm)
        g["wqkv"] = x2.T @ dqkv
        g["bqkv"] = dqkv.sum(0)
        return loss, g


STEPS = {"mlp_digits": MLPStep, "mlp_784": MLPStep, "cnn": CNNStep, "lstm": LSTMStep,
         "transformer": TransformerStep}


def make(case):
    return STEPS[case.name](case)
