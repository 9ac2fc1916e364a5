"""The CUDA backend: CuPy. The only module that imports cupy, and only when asked for."""

from __future__ import annotations

from nnctl.backend.base import Backend
from nnctl.errors import BackendError


class CupyBackend(Backend):
    name = "cuda"
    defers_reads = True

    def __init__(self):
        try:
            import cupy
        except ImportError:
            from nnctl.extras import install_hint
            raise BackendError("--device cuda needs CuPy on a machine with an NVIDIA GPU: "
                               + install_hint("cuda", "cupy-cuda12x")) from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as err:  # CuPy raises its own CUDARuntimeError without a driver
            raise BackendError(f"--device cuda: no usable CUDA GPU ({err}); "
                               "use --device cpu") from None
        if count == 0:
            raise BackendError("--device cuda: CuPy found no CUDA GPU; use --device cpu")
        self.xp = cupy

    def rng(self, seed):
        # not cupy.random.default_rng: its state is ~120 MB of cuRAND states that no
        # checkpoint can hold; Philox's is 16 bytes, so a GPU resume draws the same masks
        from nnctl.backend.philox import PhiloxGenerator
        return PhiloxGenerator(self.xp, seed)

    def asarray(self, host_array, dtype=None):
        return self.xp.asarray(host_array, dtype=dtype)

    def to_host(self, array):
        return self.xp.asnumpy(array)

    def synchronize(self) -> None:
        self.xp.cuda.Stream.null.synchronize()

    def capture(self, fn) -> "CudaGraph":
        """`fn()` captured with CuPy's stream capture (Stream.begin_capture/end_capture).

        - On a non-blocking stream of its own: CuPy cannot capture the legacy default
          stream. The default capture mode is CuPy's, relaxed, so that the memory pool may
          still cudaMalloc while a stream captures.
        - What `fn` allocates comes from a memory pool of the graph's own, which the graph
          keeps. CuPy's pool hands a freed block to the next allocation at once, with no
          notion of a graph that will write it again later: a temporary of the capture
          freed into the shared pool could become another array's memory between launches,
          and each launch would overwrite it. A pool used by this capture only is reused
          only within it, in stream order, which the graph preserves.
        - CuPy refuses a host<->device copy while a stream captures (RuntimeError); CUDA
          invalidates the capture on a sync. Either ends the capture, discarded, and the
          error propagates: nothing of `fn` ran."""
        cuda = self.xp.cuda
        stream = self.__dict__.get("_capture_stream")
        if stream is None:
            stream = self._capture_stream = cuda.Stream(non_blocking=True)
        pool = cuda.MemoryPool()
        with stream, cuda.using_allocator(pool.malloc):
            stream.begin_capture()
            try:
                result = fn()
            except BaseException:
                try:
                    stream.end_capture()
                except Exception:  # an invalidated capture: there is no graph to keep
                    pass
                raise
            graph = stream.end_capture()
        return CudaGraph(graph, pool, result, cuda)


class CudaGraph:
    """A captured step: `launch()` replays it on the current stream, after the work queued
    there (the copies into its static buffers), before what comes next (reading `result`).
    It keeps the memory pool its capture allocated from, so the addresses its kernels
    write stay its own."""

    def __init__(self, graph, pool, result, cuda):
        self.graph, self.pool, self.result, self._cuda = graph, pool, result, cuda

    def launch(self) -> None:
        self.graph.launch(self._cuda.get_current_stream())
