"""A counter-based random generator for the device: Philox4x32-10.

Why not CuPy's own generator: `cupy.random.default_rng` keeps one cuRAND XORWOW state per
launch thread on the device (about 120 MB), which a checkpoint cannot hold, and it cannot
be put back to where a run stopped. A counter-based generator has no such state: value i of
a stream is a pure function of (key, i) (Salmon et al., "Parallel random numbers: as easy
as 1, 2, 3", SC 2011; the generator of JAX and of PyTorch's CUDA dropout). So
- the whole state is the key and a 64-bit block counter, 16 bytes, saved in every
  checkpoint: a resumed GPU run draws exactly the masks an uninterrupted one draws;
- each GPU thread computes its own value from its index, with no shared state, so a draw is
  one kernel whose result does not depend on the launch shape;
- the counter lives in a 4-word device array that the draw kernel reads and a one-thread
  kernel advances, so a captured CUDA graph (nnctl/train/capture.py) draws fresh masks on
  every replay; the host reads it back only when a checkpoint is written.

The same function is written twice, side by side: `philox_blocks` in NumPy (the CPU path,
the strict test backend and the reference) and `DEVICE_SOURCE` in CUDA C. Both are checked
against Random123's published known-answer vectors, and the CUDA text is compiled for the
host and compared with NumPy value for value (tests/backend/test_philox.py).

Layout: block b (0, 1, 2, ...) of a stream is Philox4x32-10 of counter (b mod 2^32, b div
2^32, 0, 0) under the key, giving four 32-bit words. float32 value i takes word i mod 4 of
block counter + i div 4, as (w >> 8) * 2^-24: 24 random bits, every float32 multiple of
2^-24 in [0, 1) equally likely. float64 value i takes words (2j, 2j+1) of block
counter + i div 2 (j = i mod 2) as x = hi << 32 | lo and (x >> 11) * 2^-53, NumPy's
conversion of 64 random bits.
"""

from __future__ import annotations

import numpy as np

NAME = "Philox4x32-10"
ROUNDS = 10
M0, M1 = 0xD2511F53, 0xCD9E8D57          # the round multipliers
W0, W1 = 0x9E3779B9, 0xBB67AE85          # the key bumps (golden ratio, sqrt(3) - 1)
_MASK = np.uint64(0xFFFFFFFF)
_PER_BLOCK = {"float32": 4, "float64": 2}


def philox_blocks(counters: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 of 128-bit counters [n, 4] (uint32 words, word 0 lowest) under the
    2-word key: [n, 4] uint32. Every product is exact in uint64."""
    c = [counters[:, j].astype(np.uint64) for j in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for r in range(ROUNDS):
        if r:
            k0, k1 = (k0 + np.uint64(W0)) & _MASK, (k1 + np.uint64(W1)) & _MASK
        p0, p1 = np.uint64(M0) * c[0], np.uint64(M1) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & _MASK,
             (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & _MASK]
    return np.stack(c, axis=1).astype(np.uint32)


def uniform(key: tuple[int, int], counter: int, n: int, dtype: str) -> np.ndarray:
    """n values in [0, 1) of `dtype` from block `counter` on (see the layout above)."""
    per = _PER_BLOCK[dtype]
    blocks = np.arange(counter, counter + -(-n // per), dtype=np.uint64)
    counters = np.zeros((len(blocks), 4), dtype=np.uint32)
    counters[:, 0] = (blocks & _MASK).astype(np.uint32)
    counters[:, 1] = (blocks >> np.uint64(32)).astype(np.uint32)
    words = philox_blocks(counters, key).reshape(-1)
    if dtype == "float32":
        return ((words[:n] >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24))
    pairs = words[:2 * n].astype(np.uint64).reshape(-1, 2)
    x = (pairs[:, 1] << np.uint64(32)) | pairs[:, 0]
    return (x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def blocks_for(n: int, dtype: str) -> int:
    """How far a draw of n values of `dtype` moves the counter."""
    return -(-n // _PER_BLOCK[dtype])


def seed_key(seed) -> tuple[int, int]:
    """The key of an int seed or a SeedSequence: two words from NumPy's SeedSequence (so
    nearby seeds give unrelated keys)."""
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    k0, k1 = sequence.generate_state(2, dtype=np.uint32)
    return int(k0), int(k1)


# ---- the device kernel ------------------------------------------------------------------------
# One thread per value: it computes the block its value lies in and keeps its word. The
# state s = [k0, k1, counter low, counter high] is read from device memory (not passed as a
# scalar), so a captured graph reads the counter as it stands at each replay.
ROUND_BODY = """
    unsigned int c0 = (unsigned int)(b & 0xFFFFFFFFull), c1 = (unsigned int)(b >> 32);
    unsigned int c2 = 0u, c3 = 0u, k0 = s[0], k1 = s[1];
    for (int r = 0; r < 10; r++) {
        if (r) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        unsigned long long p0 = 0xD2511F53ull * (unsigned long long)c0;
        unsigned long long p1 = 0xCD9E8D57ull * (unsigned long long)c2;
        unsigned int n0 = (unsigned int)(p1 >> 32) ^ c1 ^ k0;
        unsigned int n2 = (unsigned int)(p0 >> 32) ^ c3 ^ k1;
        c1 = (unsigned int)p1; c3 = (unsigned int)p0; c0 = n0; c2 = n2;
    }
    unsigned int w[4] = {c0, c1, c2, c3};
"""
# the value of element i (a long long), written to `v`, for T = float or double
UNIFORM_BODY = {
    "float32": ("unsigned long long b = ((unsigned long long)s[3] << 32 | s[2]) + i / 4;"
                + ROUND_BODY + "v = (float)(w[i % 4] >> 8) * 5.9604644775390625e-08f;"),
    "float64": ("unsigned long long b = ((unsigned long long)s[3] << 32 | s[2]) + i / 2;"
                + ROUND_BODY + "unsigned long long x = (unsigned long long)w[2 * (i % 2) + 1]"
                " << 32 | w[2 * (i % 2)];\n    v = (double)(x >> 11) * 1.1102230246251565e-16;"),
}
# the one-thread kernel that moves the counter on by a draw's blocks
ADVANCE_BODY = ("unsigned long long c = ((unsigned long long)s[3] << 32 | s[2]) + blocks;\n"
                "s[2] = (unsigned int)(c & 0xFFFFFFFFull); s[3] = (unsigned int)(c >> 32);")


class PhiloxBits:
    """The bit generator's state as NumPy's bit generators show theirs: `state` is a dict
    {"bit_generator": "Philox4x32-10", "key": [k0, k1], "counter": c}, read and set whole
    (checkpoints save it; nnctl/train/checkpoint_schema.py checks it round-trips)."""

    display_name = NAME  # what a refused checkpoint state is said to be expected as

    def __init__(self, seed=0, words=None):
        k0, k1 = seed_key(seed)
        # host words [k0, k1, counter low, counter high], or a device array of them
        self.words = words if words is not None else np.array([k0, k1, 0, 0], np.uint32)
        if words is not None:
            self._set_words(np.array([k0, k1, 0, 0], np.uint32))

    def _host_words(self) -> np.ndarray:
        words = self.words
        return words if isinstance(words, np.ndarray) else words.get()

    def _set_words(self, host: np.ndarray) -> None:
        if isinstance(self.words, np.ndarray):
            self.words[...] = host
        else:
            self.words.set(host)

    @property
    def key(self) -> tuple[int, int]:
        w = self._host_words()
        return int(w[0]), int(w[1])

    @property
    def counter(self) -> int:
        w = self._host_words()
        return int(w[3]) << 32 | int(w[2])

    @property
    def state(self) -> dict:
        w = self._host_words()  # on the device: one 16-byte read, at checkpoints only
        return {"bit_generator": NAME, "key": [int(w[0]), int(w[1])],
                "counter": int(w[3]) << 32 | int(w[2])}

    @state.setter
    def state(self, value: dict) -> None:
        if not isinstance(value, dict) or value.get("bit_generator") != NAME:
            raise ValueError(f"not a {NAME} state: {value!r}")
        key, counter = value["key"], value["counter"]
        if not (isinstance(key, list) and len(key) == 2 and
                all(type(k) is int and 0 <= k < 2 ** 32 for k in key)):
            raise ValueError(f"a {NAME} key is two 32-bit words, got {key!r}")
        if type(counter) is not int or not 0 <= counter < 2 ** 64:
            raise ValueError(f"a {NAME} counter is a 64-bit count, got {counter!r}")
        self._set_words(np.array([key[0], key[1], counter & 0xFFFFFFFF, counter >> 32],
                                 np.uint32))


class PhiloxGenerator:
    """`random(shape, dtype, out)` as NumPy's Generator, from a Philox stream.

    On CuPy a draw is two kernels (the values, then the counter moved on) that never leave
    the device; on any other array module the values are computed by NumPy on the host
    (`uniform`) and copied into `out`."""

    def __init__(self, xp, seed=0):
        self.xp = xp
        self.on_gpu = getattr(xp, "__name__", "") == "cupy"
        words = xp.zeros(4, dtype=np.uint32) if self.on_gpu else None
        self.bit_generator = PhiloxBits(seed, words)
        self._kernels: dict = {}

    def random(self, size=None, dtype="float32", out=None):
        dtype = str(np.dtype(dtype))
        if dtype not in _PER_BLOCK:
            raise TypeError(f"random: dtype must be float32 or float64, got {dtype}")
        if out is None:
            out = self.xp.empty(() if size is None else size, dtype=dtype)
        elif str(out.dtype) != dtype:
            raise TypeError(f"random: out is {out.dtype}, not {dtype}")
        if self.on_gpu:
            self._draw_on_device(out, dtype)
            return out
        bits = self.bit_generator
        values = uniform(bits.key, bits.counter, out.size, dtype).reshape(out.shape)
        words = bits.words
        counter = bits.counter + blocks_for(out.size, dtype)
        words[2], words[3] = counter & 0xFFFFFFFF, counter >> 32
        if isinstance(out, np.ndarray):
            out[...] = values
        else:
            self.xp.copyto(out, self.xp.asarray(values))
        return out

    def snapshot(self):
        """A copy of the state where it lives (a 16-byte device copy on the GPU: no sync),
        for `restore` to go back to (the trainer replays a failed step's masks)."""
        return self.bit_generator.words.copy()

    def restore(self, snapshot) -> None:
        self.bit_generator.words[...] = snapshot

    def _draw_on_device(self, out, dtype: str) -> None:
        xp = self.xp
        kernel = self._kernels.get(dtype)
        if kernel is None:
            # (CuPy's parameter types are NumPy's names: "float" would mean float64)
            kernel = self._kernels[dtype] = (
                xp.ElementwiseKernel("raw uint32 s", f"{dtype} v",
                                     UNIFORM_BODY[dtype], f"nnctl_philox_{dtype}"),
                xp.ElementwiseKernel("uint64 blocks", "raw uint32 s", ADVANCE_BODY,
                                     "nnctl_philox_advance"))
        values, advance = kernel
        target = out if out.flags.c_contiguous else xp.empty(out.shape, dtype=dtype)
        values(self.bit_generator.words, target)
        # one thread: the scalar input broadcasts against nothing, so size=1
        advance(np.uint64(blocks_for(out.size, dtype)), self.bit_generator.words, size=1)
        if target is not out:
            xp.copyto(out, target)
