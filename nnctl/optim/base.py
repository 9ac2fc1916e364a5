"""Optimizers update parameter arrays in place with the backend's array module.

They run outside the graph: the compiled plan returns gradients, the optimizer applies them.
Gradients are only read, never written (a plan may return read-only broadcast views).
Parameter i of `step(params, grads)` must be the same array on every step: per-parameter
state is keyed by that position.

`lr` is a plain attribute, read on every step, so a schedule sets it before each step.
`state_dict(to_host)` and `load_state_dict(state, asarray)` save and restore the step count
and every per-parameter state array, so a resumed run continues bit for bit.

Two paths compute the same update. With the JIT on (`nnctl.jit.enabled()` when the optimizer
is made) and NumPy arrays, each parameter is updated by one fused numba kernel
(`nnctl/optim/kernels.py`, imported on the first step): one pass over the parameter, its
gradient and its state, weight decay included, and no allocation in steady state. Otherwise
(`NNCTL_JIT=0`, numba not installed, CuPy) the subclass's `update` does it with the array
module's in-place ufuncs. The kernels repeat `update`'s operations in the same order and
precision, so the paths agree to float round-off. A parameter the kernels cannot take (a
gradient of another dtype, state loaded in another dtype) goes the NumPy way on its own.

A third form draws the update: `update_graph(p, g, state, step)` writes the same equations
with Tensor ops, next to `update` in each subclass, so `nnctl export-graph --optimizer` can
show the nodes a step adds after the gradients (tests/optim/test_update_graph.py evaluates
them eagerly against `update` and the kernels). It is never on the training path.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np

from nnctl import jit as _jit

if TYPE_CHECKING:  # the graph is imported only by graph_step: training never needs it
    from nnctl.graph.tensor import Tensor

_FLOATS = ("float32", "float64")


class Optimizer:
    #: names of the per-parameter state dicts (index -> array), saved as "<slot>.<index>"
    slots: tuple[str, ...] = ()
    #: True: weight decay shrinks the weights (AdamW); False: L2 added to the gradient
    decoupled_weight_decay = False

    def __init__(self, xp, lr: float, weight_decay: float = 0.0):
        self.xp, self.lr, self.weight_decay = xp, lr, weight_decay
        self.steps = 0
        for slot in self.slots:
            setattr(self, slot, {})
        self.scratch: dict[int, object] = {}  # one preallocated work array per parameter
        #: fused kernels: numba's for NumPy arrays (decided here; numba is imported on the
        #: first step), one CUDA kernel per parameter for CuPy's (cuda_kernels.py)
        self.on_gpu = getattr(xp, "__name__", "") == "cupy"
        self.jit = (_jit.enabled() and getattr(xp, "__name__", "") == "numpy") or self.on_gpu
        self._kernels = None  # the nnctl.optim.kernels module, once loaded
        self._fused: dict[int, list] = {}  # i -> [p, flat p or None, flat states, first]
        self._coef: dict[object, object] = {}  # dtype -> the kernels' scalars in that dtype

    def prepare(self, params: list) -> None:
        """Make every parameter's state now, as its first update would (zeros; Adagrad's
        initial accumulator; SGD's velocity, which starts from zero and so becomes the first
        gradient, as `update` makes it). A guarded step (`step(..., apply=)`) then never
        makes state inside a step it may not apply."""
        for i, p in enumerate(params):
            self.fused_state(i, p)

    def step(self, params: list, grads: list, apply=None) -> None:
        """One update. `apply`: None, or a 0-d device array, 1 to update and 0 to leave every
        parameter and state exactly as it is, decided on the device (nnctl/train/
        device_steps.py), so the host never waits to learn whether a step was finite. The
        step count moves on either way: whoever reads the flag later sets it back."""
        if apply is not None and not self.on_gpu:
            self._guarded_step(params, grads, apply)
            return
        self.begin_step(params)
        self.update_params(params, grads, apply)

    def begin_step(self, params: list) -> None:
        """The host half of `step`: the step count, and the fused kernels' scalars (learning
        rate, bias corrections) written into their small device arrays. Kept apart from
        `update_params` so that a captured CUDA graph (nnctl/train/capture.py), which may
        copy nothing from the host, holds only the device half."""
        self.steps += 1
        if self.jit and self._kernels is None and not self.on_gpu and \
                sum(p.size for p in params) < _jit.MIN_TOTAL:
            # a model this small is updated by NumPy: numba's start-up (about a second per
            # process) would cost more than its kernels save (the two paths are bit-equal)
            self.jit = False
        if self.jit:
            wd = self.weight_decay
            decoupled = bool(wd) and self.decoupled_weight_decay
            # c[DECAY] multiplies p (exactly 1 unless decoupled); c[WD] is the L2 coefficient
            self._values = (1 - self.lr * wd if decoupled else 1.0,
                            wd if bool(wd) and not decoupled else 0.0, *self.coefficients())
            for c in self._coef.values():
                self._fill(c, self._values)

    def update_params(self, params: list, grads: list, apply=None) -> None:
        """The device half of `step`, after `begin_step`: every parameter updated in place
        (on the GPU, under the guard `apply`)."""
        if self.on_gpu and self.jit:
            self._gpu_guard = apply
        if self.jit:
            self._fused_step(params, grads)
            return
        for i, (p, g) in enumerate(zip(params, grads)):
            self._update(i, p, g)

    def _guarded_step(self, params: list, grads: list, apply) -> None:
        """`apply` on a host array module: the update, its arrays put back where the flag is
        0 (the GPU's kernels test the flag instead)."""
        with self._undone_unless(apply, range(len(params)), params):
            self.step(params, grads)

    def _update_one(self, i: int, p, g) -> None:
        """`_update` for a parameter the GPU kernels cannot take, under this step's guard."""
        guard = getattr(self, "_gpu_guard", None) if self.on_gpu else None
        if guard is None:
            self._update(i, p, g)
            return
        with self._undone_unless(guard, [i], [p]):
            self._update(i, p, g)

    @contextlib.contextmanager
    def _undone_unless(self, apply, indices, params):
        """Parameters `params` (numbered `indices`) and their state as they were before the
        block wherever the 0-d flag `apply` is 0: a copy of each, put back after."""
        states = [getattr(self, slot) for slot in self.slots]
        kept = [(p, p.copy()) for p in params] + \
            [(s[i], s[i].copy()) for s in states for i in indices if i in s]
        yield
        undo = apply == 0
        for array, before in kept:
            self.xp.copyto(array, before, where=undo)

    def _update(self, i: int, p, g) -> None:
        """The array-module path for one parameter: weight decay, then `update`."""
        wd = self.weight_decay
        if wd:
            if self.decoupled_weight_decay:
                p *= 1 - self.lr * wd  # as torch.optim.AdamW, before the update
            else:
                g = g + wd * p  # L2 penalty (1/2) wd |p|^2 folded into the gradient
        self.update(i, p, g)

    def update(self, i: int, p, g) -> None:
        raise NotImplementedError

    # -- the update as graph nodes ---------------------------------------------------------

    @property
    def graph_name(self) -> str:
        """The optimizer's name in drawn graphs: "adam", "sgd", ..."""
        return type(self).__name__.lower()

    def graph_slots(self) -> tuple[str, ...]:
        """The slots a parameter has state in under these options (SGD without momentum
        keeps none)."""
        return self.slots

    def update_graph(self, p: Tensor, g: Tensor, state: dict[str, Tensor],
                     step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Step `step` (1 for the first) as Tensor ops: the new parameter and the new state
        (slot -> Tensor) from parameter `p`, gradient `g` and the state before the step.
        State that `update` makes on the first step starts as it does there (zeros; Adagrad's
        initial_accumulator_value; SGD's velocity is zero, so mu v + g copies g)."""
        raise NotImplementedError

    def decay_graph(self, p: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        """Weight decay as `_update` applies it, on Tensors: the (p, g) the update proper
        reads."""
        wd = self.weight_decay
        if wd:
            if self.decoupled_weight_decay:
                p = p * (1 - self.lr * wd)
            else:
                g = g + wd * p
        return p, g

    def graph_step(self, name: str, p: Tensor, g: Tensor,
                   step: int = 1) -> tuple[Tensor, dict[str, Tensor]]:
        """`update_graph` for parameter `name`, its ops in the scope "<optimizer>/<name>" and
        its state before the step as inputs named "<optimizer>.<slot>[<name>]"."""
        from nnctl.graph.ir import name_scope
        from nnctl.graph.tensor import input_placeholder

        state = {slot: input_placeholder(f"{self.graph_name}.{slot}[{name}]", p.shape,
                                         p.dtype)
                 for slot in self.graph_slots()}
        with name_scope(f"{self.graph_name}/{name}"):
            return self.update_graph(p, g, state, step)

    # -- the fused path --------------------------------------------------------------------

    def coefficients(self) -> tuple[float, ...]:
        """This step's scalars for the kernel, after the weight-decay ones (kernels.FIRST on)."""
        raise NotImplementedError

    def fused_state(self, i: int, p) -> tuple[tuple, bool]:
        """Parameter i's state arrays in the kernel's order, made if missing, and whether
        they were just made (SGD starts its velocity from the gradient)."""
        raise NotImplementedError

    def fused(self, kernels, p, g, states: tuple, c, l2: bool, parallel: bool,
              first: bool) -> None:
        """Call the kernel on flat `p`, `g` and `states`, with the scalars `c`; `l2`: add
        c[WD] p to the gradient."""
        raise NotImplementedError

    def _fused_step(self, params: list, grads: list) -> None:
        k = self._kernels
        if k is None and self.on_gpu:
            from nnctl.optim.cuda_kernels import CudaKernels
            k = self._kernels = CudaKernels(self.xp)
        if self.on_gpu:
            k.guard(getattr(self, "_gpu_guard", None))
        elif k is None:
            from nnctl.optim import kernels
            k = self._kernels = kernels
        wd = self.weight_decay
        l2 = bool(wd) and not self.decoupled_weight_decay
        values = self._values  # filled into every dtype's array by begin_step
        for i, (p, g) in enumerate(zip(params, grads)):
            if g.dtype != p.dtype or g.shape != p.shape:
                self._update_one(i, p, g)
                continue
            entry = self._fused.get(i)
            if entry is None or entry[0] is not p:
                entry = self._fused_entry(i, p)
            pf = entry[1]
            if pf is None:
                self._update_one(i, p, g)
                continue
            if g.flags.c_contiguous:
                gf = g if g.ndim == 1 else g.reshape(-1)
            else:  # a broadcast or strided view: one copy into this parameter's work array
                t = self._scratch(i, p)
                self.xp.copyto(t, g)
                gf = t.reshape(-1)
            c = self._coef.get(p.dtype)
            if c is None:
                c = self._coef[p.dtype] = self.xp.empty(len(values), dtype=p.dtype)
                self._fill(c, values)
            self.fused(k, pf, gf, entry[2], c, l2,
                       _jit.parallel_pays(pf.size), entry[3])
            entry[3] = False

    @staticmethod
    def _fill(c, values) -> None:
        # one element at a time: each Python float rounded to c's dtype as NumPy rounds a
        # scalar next to an array of that dtype, and no temporary array
        if not isinstance(c, np.ndarray):  # on the device: rounded on the host, one copy
            c.set(np.array(values, dtype=c.dtype))
            return
        for j, x in enumerate(values):
            c[j] = x

    def _fused_entry(self, i: int, p):
        """[p, flat p, flat states, first]; flat p is None where the kernels cannot take p."""
        entry = [p, None, (), False]
        if p.dtype.name in _FLOATS and p.flags.c_contiguous and \
                getattr(p.flags, "writeable", True):  # (CuPy's arrays have no such flag)
            # missing state is made here: zeros, as `update` makes it, or SGD's velocity, its
            # only state, which the kernel (never `update`) then sets from this gradient
            states, first = self.fused_state(i, p)
            if all(s.dtype == p.dtype and s.shape == p.shape and s.flags.c_contiguous
                   and getattr(s.flags, "writeable", True) for s in states):
                entry = [p, p.reshape(-1), tuple(s.reshape(-1) for s in states), first]
        self._fused[i] = entry
        return entry

    def _scratch(self, i: int, p):
        t = self.scratch.get(i)
        if t is None:
            t = self.scratch[i] = self.xp.empty_like(p)
        return t

    def state_dict(self, to_host) -> dict:
        """Host copies of the state: "step" (0-d int64) and "<slot>.<index>" arrays."""
        import numpy

        state = {"step": numpy.array(self.steps, dtype=numpy.int64)}
        for slot in self.slots:
            for i, array in sorted(getattr(self, slot).items()):
                # copied: NumPy's to_host returns the live array, which later steps overwrite
                state[f"{slot}.{i}"] = numpy.array(to_host(array), copy=True)
        return state

    def load_state_dict(self, state: dict, asarray) -> None:
        """Restore what state_dict saved; `asarray` moves a host array to the device."""
        import numpy

        if "step" not in state:
            raise ValueError("optimizer state has no 'step'")
        arrays: dict[str, dict[int, object]] = {slot: {} for slot in self.slots}
        for key, value in state.items():
            if key == "step":
                continue
            slot, _, index = key.partition(".")
            if slot not in arrays or not index.isdigit():
                raise ValueError(f"unexpected entry {key!r} in {type(self).__name__} state "
                                 f"(expected 'step' and {', '.join(s + '.N' for s in self.slots)})")
            # copied on the host first, so the loaded state never aliases the caller's arrays
            arrays[slot][int(index)] = asarray(numpy.array(value, copy=True))
        self.steps = int(state["step"])
        for slot, values in arrays.items():
            setattr(self, slot, values)
        self.scratch = {}
        self._fused = {}
