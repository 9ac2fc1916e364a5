"""Optimizers update parameter arrays in place with the backend's array module.

They run outside the graph: the compiled plan returns gradients, the optimizer applies them.
Gradients are only read, never written (a plan may return read-only broadcast views).
Parameter i of `step(params, grads)` must be the same array on every step: per-parameter
state is keyed by that position.

`lr` is a plain attribute, read on every step, so a schedule sets it before each step.
`state_dict(to_host)` and `load_state_dict(state, asarray)` save and restore the step count
and every per-parameter state array, so a resumed run continues bit for bit.
"""

from __future__ import annotations


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

    def step(self, params: list, grads: list) -> None:
        self.steps += 1
        wd = self.weight_decay
        for i, (p, g) in enumerate(zip(params, grads)):
            if wd:
                if self.decoupled_weight_decay:
                    p *= 1 - self.lr * wd  # as torch.optim.AdamW, before the update
                else:
                    g = g + wd * p  # L2 penalty (1/2) wd |p|^2 folded into the gradient
            self.update(i, p, g)

    def update(self, i: int, p, g) -> None:
        raise NotImplementedError

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
