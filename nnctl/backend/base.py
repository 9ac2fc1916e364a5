"""The Backend interface: the array module, a seeded RNG and host<->device transfers.

A backend is chosen once per run; the compiled plan hands its `xp` to every op's forward.
"""

from __future__ import annotations

from typing import Any


class CaptureUnsupported(RuntimeError):
    """This backend has no graph capture (Backend.capture): the step runs eagerly."""


class Backend:
    """What an ExecutionPlan and the trainer need from a device."""

    name: str = ""
    xp: Any = None
    #: whether reading a device value makes the host wait for the device (a GPU): the
    #: trainer then decides each step on the device and reads once per interval
    #: (nnctl/train/device_steps.py)
    defers_reads: bool = False

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

    def warm_up(self) -> None:
        """Once per process, before the first plan runs: whatever the device's libraries
        need to reach their steady speed (nothing by default)."""

    def capture(self, fn):
        """`fn()` captured as a graph of device work, as CUDA stream capture records it.

        Returns an object with `launch()`, which re-runs exactly the kernels and device
        copies `fn` issued, on the same arrays, with the arguments they had at capture (a
        Python scalar handed to a kernel is baked in), and `result`, what `fn` returned
        (arrays that every launch writes). Nothing runs during the capture itself: call
        `launch()` for the first step too. So `fn` must read every per-step value from
        device arrays filled before each launch, never read a device value on the host,
        and keep the arrays it reads and writes for as long as the graph is launched
        (nnctl/train/capture.py says how a training step is made so). Raises
        CaptureUnsupported where the device has no graphs (the CPU)."""
        raise CaptureUnsupported(f"the {self.name or type(self).__name__} backend runs each "
                                 "kernel as it is called: it has no graphs to capture")

    def bernoulli(self, rng, shape, p: float, dtype: str):
        """A 0/1 array of `shape`, 1 with probability p, drawn from `rng`."""
        return (rng.random(shape, dtype="float32") < p).astype(dtype)

    def bernoulli_into(self, rng, out, p: float):
        """`bernoulli` written into `out` with no new array in steady state, from the same
        draws (so masks match `bernoulli`'s bit for bit): for r in [0, 1), r < p exactly when
        ceil(p - r) == 1, which needs no boolean temporary (a compare into a float array
        would buffer its cast)."""
        xp = self.xp
        draws = out
        if str(out.dtype) != "float32" or not out.flags.c_contiguous:
            cache = self.__dict__.setdefault("_draws", {})
            draws = cache.get(out.shape)
            if draws is None:
                draws = cache[out.shape] = xp.empty(out.shape, dtype="float32")
        rng.random(dtype="float32", out=draws)
        xp.subtract(xp.float32(p), draws, out=draws)
        xp.ceil(draws, out=draws)
        xp.add(draws, xp.float32(0), out=draws)  # -0.0 (r > p) becomes 0.0
        if draws is not out:
            xp.copyto(out, draws)
        return out

    def __repr__(self) -> str:
        return f"<{self.name} backend>"
