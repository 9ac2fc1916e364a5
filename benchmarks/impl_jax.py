"""The training steps in JAX on the CPU: the loss written with jax.numpy / lax, gradients by
jax.value_and_grad, the SGD update in the same function, and the whole step compiled by
jax.jit (ahead of time: `.lower(...).compile()`, timed as the compile time), with the
parameters donated so XLA may update them in place. The loss is read back with float()
every step. This is the compiled-graph peer of nnctl's plan.
"""

from __future__ import annotations

import time

import numpy as np

HINT = 'pip install "jax[cpu]"'


def import_jax():
    try:
        import jax
        return jax
    except Exception:
        return None


def loss_fn(jax, name):
    jnp, lax = jax.numpy, jax.lax

    def xent(logits, y):
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def dense(p, name, h):
        return h @ p[f"{name}.weight"] + p[f"{name}.bias"]

    def mlp(p, x, y):
        h = jax.nn.relu(dense(p, "h1", x))
        h = jax.nn.relu(dense(p, "h2", h))
        return xent(dense(p, "out", h), y)

    def conv_relu_pool(p, name, x):
        z = lax.conv_general_dilated(x, p[f"{name}.weight"], (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        z = jax.nn.relu(z + p[f"{name}.bias"][None, :, None, None])
        return lax.reduce_window(z, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def cnn(p, x, y):
        h = conv_relu_pool(p, "c2", conv_relu_pool(p, "c1", x))
        return xent(dense(p, "out", h.reshape(h.shape[0], -1)), y)

    def lstm(p, x, y):
        wx, wh, b = p["rnn.l0.weight_x"], p["rnn.l0.weight_h"], p["rnn.l0.bias"]
        n, _, _ = x.shape
        u = wh.shape[0]
        xw = jnp.einsum("ntf,fg->tng", x, wx) + b  # all steps' input projections: one GEMM

        def cell(carry, xw_t):
            h, c = carry
            z = xw_t + h @ wh
            i, f = jax.nn.sigmoid(z[:, :u]), jax.nn.sigmoid(z[:, u:2 * u])
            g, o = jnp.tanh(z[:, 2 * u:3 * u]), jax.nn.sigmoid(z[:, 3 * u:])
            c = f * c + i * g
            return (o * jnp.tanh(c), c), None

        zeros = jnp.zeros((n, u), x.dtype)
        (h, _), _ = lax.scan(cell, (zeros, zeros), xw)
        return xent(dense(p, "out", h), y)

    def layer_norm(x, g, b, eps=1e-5):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) * lax.rsqrt(var + eps) * g + b

    def transformer(p, x, y):
        n, t, d = x.shape
        heads, dh = 4, d // 4

        def proj(c):
            z = x @ p[f"enc.attn.weight_{c}"] + p[f"enc.attn.bias_{c}"]
            return z.reshape(n, t, heads, dh).transpose(0, 2, 1, 3)

        q, k, v = proj("q"), proj("k"), proj("v")
        att = jax.nn.softmax(q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh).astype(np.float32), -1)
        o = (att @ v).transpose(0, 2, 1, 3).reshape(n, t, d)
        a = o @ p["enc.attn.weight_o"] + p["enc.attn.bias_o"]
        h = layer_norm(x + a, p["enc.norm1.gamma"], p["enc.norm1.beta"])
        f = jax.nn.relu(dense(p, "enc.ff1", h))
        h = layer_norm(h + dense(p, "enc.ff2", f), p["enc.norm2.gamma"], p["enc.norm2.beta"])
        return xent(dense(p, "out", h.mean(axis=1)), y)

    return {"mlp_digits": mlp, "mlp_784": mlp, "cnn": cnn, "lstm": lstm,
            "transformer": transformer}[name]


class JaxStep:
    label = "jax"

    def __init__(self, case):
        jax = import_jax()
        jnp = jax.numpy
        lr = np.float32(case.lr)
        value_and_grad = jax.value_and_grad(loss_fn(jax, case.name))

        def step(p, x, y):
            loss, g = value_and_grad(p, x, y)
            return jax.tree_util.tree_map(lambda a, b: a - lr * b, p, g), loss

        self.params = {k: jnp.asarray(v) for k, v in case.weights().items()}
        x0, y0 = case.batches[0]
        t0 = time.perf_counter()
        self.step = jax.jit(step, donate_argnums=0).lower(self.params, x0, y0).compile()
        self.compile_s = time.perf_counter() - t0
        self.jnp = jnp
        self.cache: dict = {}

    def arrays(self, x, y):
        key = (id(x), id(y))
        if key not in self.cache:  # on the device once, like torch.from_numpy's shared memory
            self.cache[key] = (self.jnp.asarray(x), self.jnp.asarray(y))
        return self.cache[key]

    def __call__(self, x, y) -> float:
        self.params, loss = self.step(self.params, *self.arrays(x, y))
        return float(loss)
