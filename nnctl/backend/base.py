"""The Backend interface: the array module, a seeded RNG and host<->device transfers.

A backend is chosen once per run; the compiled plan hands its `xp` to every op's forward.
"""

from __future__ import annotations

from typing import Any


class Backend:
    """What an ExecutionPlan and the trainer need from a device."""

    name: str = ""
    xp: Any = None

    def rng(self, seed):
        """A new random generator on this device, seeded by an int or a SeedSequence."""
        raise NotImplementedError

    def asarray(self, host_array, dtype: str | None = None):
        """Move a host (NumPy) array to this device."""
        raise NotImplementedError

    def to_host(self, array):
        """A NumPy copy of a device array."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the CPU); needed for honest timings."""

    def bernoulli(self, rng, shape, p: float, dtype: str):
        """A 0/1 array of `shape`, 1 with probability p, drawn from `rng`."""
        return (rng.random(shape, dtype="float32") < p).astype(dtype)

    def bernoulli_into(self, rng, out, p: float):
        """`bernoulli` written into `out` (no new array in steady state): the same draws from
        the same generator state, so masks match `bernoulli`'s bit for bit."""
        xp = self.xp
        if str(out.dtype) == "float32" and out.flags.c_contiguous:
            rng.random(dtype="float32", out=out)
            xp.less(out, p, out=out)
            return out
        scratch = self._scratch.get(out.shape) if hasattr(self, "_scratch") else None
        if scratch is None:
            self._scratch = getattr(self, "_scratch", {})
            scratch = self._scratch[out.shape] = xp.empty(out.shape, dtype="float32")
        rng.random(dtype="float32", out=scratch)
        xp.less(scratch, p, out=out, casting="unsafe")
        return out

    def __repr__(self) -> str:
        return f"<{self.name} backend>"
