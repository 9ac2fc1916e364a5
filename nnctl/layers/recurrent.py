"""Recurrent layers (rnn, lstm, gru) built only from gate equations, unrolled over time.

Every gate is the shared guide's recurrent gate g = x_t Wx + h_(t-1) Wh + b. Gates sit side
by side in one weight, in PyTorch's order (lstm: i, f, g, o; gru: r, z, n), so weight_x is
PyTorch's weight_ih transposed.

NOTE: x_t Wx is one matmul per step, not one matmul over [batch, time, features] before the
loop. Slicing that product per step costs more than it saves here: each slice's gradient is a
scatter into zeros of the whole [batch, time, gates * units] (getitem's vjp), so the backward
pass is quadratic in time. Measured on CPU (lstm, batch 32, 32 features, 128 units, forward
and gradients): 42 ms per step instead of 90 ms at 100 steps, 13 ms instead of 21 ms at 32.

Parameters of stacked layer k (0 = nearest the input), for a layer named `name`:

    name.l{k}.weight_x  [features, gates * units]
    name.l{k}.weight_h  [units, gates * units]
    name.l{k}.bias      [gates * units]      (with bias: true)
    name.l{k}.bias_h    [units]              (gru only: b_hn, which r multiplies)

PyTorch keeps two biases per gate; their sum is one bias here, except gru's n gate, where
r * (h W_hn + b_hn) needs b_hn on its own.

Padding. Given a mask m [batch, time] (1 at real steps, 0 at padding), the state stops at
each sequence's end: with m_t the mask's column t as [batch, 1],

    h_t = m_t * h_new + (1 - m_t) * h_(t-1)          (and c_t likewise for lstm)

so the last h is the state at each sequence's last real step, exactly (m is 0 or 1, and
x * 1 + y * 0 = x in floating point), and nothing at a padded step reaches the parameters'
or the input's gradients. With return_sequences the outputs at padded steps repeat the last
real state; the output keeps the mask, so the layers and losses downstream ignore them.
Without a mask the graph has no mask ops at all.

Initial state. A second input (`inputs: [sequence, state]`) is h_0 [batch, units] instead
of zeros: how an encoder's last state starts a decoder. For lstm, [batch, units] is h_0 with
c_0 = 0, and [batch, 2 * units] is h_0 and c_0 side by side (PyTorch's (h_0, c_0)). A
stacked layer starts every one of its layers from the same state (PyTorch's h_0 repeated
over num_layers).
"""

from __future__ import annotations

from nnctl.errors import ShapeError
from nnctl.graph import Tensor
from nnctl.graph.tensor import stack
from nnctl.layers.base import Layer, register_layer, require_sequence


class Recurrent(Layer):
    """Shared by rnn, lstm and gru: parameters, stacking, and the sequence in and out.

    Input [batch, time, features] (and optionally the initial state, see the module's
    docstring); output [batch, units] (the last h), or [batch, time, units] with
    return_sequences. The initial state is zero unless given.
    """

    gates = 1
    takes_mask = True

    def __init__(self, name: str, units: int, return_sequences: bool = False, layers: int = 1,
                 bias: bool = True):
        super().__init__(name)
        self.units, self.return_sequences = units, return_sequences
        self.num_layers, self.bias = layers, bias

    @classmethod
    def from_spec(cls, spec, name, hints):
        return cls(name, spec.units, spec.return_sequences, spec.layers, spec.bias)

    def build(self, x, rng) -> None:
        x = x[0] if isinstance(x, list) else x
        require_sequence(self, x)
        # NOTE: PyTorch draws every weight and bias from U(-1/sqrt(units), 1/sqrt(units)).
        # Glorot's limit is sqrt(6 / (fan_in + fan_out)), so fans of (3 units, 3 units) give
        # exactly that limit.
        n, fan = self.units, (3 * self.units, 3 * self.units)
        width = self.gates * n
        self.cells = []
        for k in range(self.num_layers):
            features = x.shape[-1] if k == 0 else n
            cell = {"wx": self.add_param(f"l{k}.weight_x", (features, width), "glorot_uniform",
                                         rng, x.dtype, fan),
                    "wh": self.add_param(f"l{k}.weight_h", (n, width), "glorot_uniform", rng,
                                         x.dtype, fan)}
            if self.bias:
                cell["b"] = self.add_param(f"l{k}.bias", (width,), "glorot_uniform", rng,
                                           x.dtype, fan)
                if self.kind == "gru":
                    cell["bh"] = self.add_param(f"l{k}.bias_h", (n,), "glorot_uniform", rng,
                                                x.dtype, fan)
            self.cells.append(cell)

    def forward(self, x, training: bool, mask=None) -> Tensor:
        x, state, mask = self.split_inputs(x, mask)
        steps = x.shape[1]
        step_masks = [None] * steps if mask is None else \
            [(m, 1 - m) for m in (mask[:, t:t + 1] for t in range(steps))]
        seq, hs = x, []
        for k, cell in enumerate(self.cells):  # a stacked layer reads the steps of the one below
            if k:
                seq = stack(hs, axis=1)
            batch, steps, features = seq.shape
            # the input projection of every step in one GEMM ([B*T, F] @ [F, gates*units]),
            # then one view per step; only h @ Wh stays inside the recurrence
            xw = seq.reshape(-1, features) @ cell["wx"]
            if "b" in cell:
                xw = xw + cell["b"]
            xw = xw.reshape(batch, steps, -1)
            hs = self.unroll([xw[:, t] for t in range(steps)], cell, step_masks, state)
        return stack(hs, axis=1) if self.return_sequences else hs[-1]

    def split_inputs(self, x, mask):
        """(sequence, initial state or None, the sequence's mask) from what forward gets: a
        list [sequence, state] (masks a list too) when the config names a state input."""
        if not isinstance(x, list):
            return x, None, mask
        if len(x) != 2:
            raise ShapeError(f"{self.kind} reads a sequence and optionally an initial state, "
                             f"got {len(x)} inputs", scope=self.name)
        seq, state = x
        batch, widths = seq.shape[0], self.state_widths()
        if state.ndim != 2 or state.shape[0] != batch or state.shape[1] not in widths:
            wants = " or ".join(f"[{batch}, {w}]" for w in widths)
            raise ShapeError(f"{self.kind}'s initial state (second input) must be {wants} "
                             f"([batch, units]), got {list(state.shape)}", scope=self.name)
        if state.dtype != seq.dtype:
            raise ShapeError(f"{self.kind}'s initial state is {state.dtype}, the sequence "
                             f"{seq.dtype}", scope=self.name)
        return seq, state, (mask or [None])[0]

    def state_widths(self) -> tuple[int, ...]:
        """The widths an initial state may have."""
        return (self.units,)

    def output_mask(self, x, mask, out):
        """The sequence's mask with return_sequences (one output per input step), else None:
        the last state has no time axis."""
        if isinstance(mask, list):
            mask = mask[0]
        return mask if self.return_sequences else None

    def unroll(self, xws: list[Tensor], cell: dict, step_masks: list, state) -> list[Tensor]:
        """Each step's h, given each step's x Wx + b, each step's mask as (m_t, 1 - m_t),
        each [batch, 1] (None: no padding), and the initial state (None: zeros)."""
        raise NotImplementedError

    @staticmethod
    def hold(new: Tensor, old: Tensor | None, step_mask) -> Tensor:
        """m_t * new + (1 - m_t) * old: the new state at real steps, the old one at padding
        (old None is a zero state)."""
        if step_mask is None:
            return new
        m, rest = step_mask
        return m * new if old is None else m * new + rest * old

    def gate(self, g: Tensor, i: int) -> Tensor:
        """The i-th gate's columns of side-by-side gates [batch, gates * units]."""
        return g[:, i * self.units:(i + 1) * self.units]


@register_layer
class RNN(Recurrent):
    """Elman: h_t = tanh(x_t Wx + h_(t-1) Wh + b)."""

    kind = "rnn"

    def unroll(self, xws, cell, step_masks, state):
        hs, h = [], state
        for xw, m in zip(xws, step_masks):
            h = self.hold((xw if h is None else xw + h @ cell["wh"]).tanh(), h, m)  # None: 0
            hs.append(h)
        return hs


@register_layer
class LSTM(Recurrent):
    """PyTorch's LSTM: i, f, o = sigmoid(gates), g = tanh(gate), each gate x Wx + h Wh + b;
    c_t = f * c_(t-1) + i * g, h_t = o * tanh(c_t)."""

    kind = "lstm"
    gates = 4

    def state_widths(self):
        return (self.units, 2 * self.units)  # h_0 (c_0 = 0), or h_0 and c_0 side by side

    def unroll(self, xws, cell, step_masks, state):
        hs, h, c = [], state, None
        if state is not None and state.shape[1] == 2 * self.units:
            h, c = self.gate(state, 0), self.gate(state, 1)
        for xw, m in zip(xws, step_masks):
            z = xw if h is None else xw + h @ cell["wh"]
            i, f = self.gate(z, 0).sigmoid(), self.gate(z, 1).sigmoid()
            g, o = self.gate(z, 2).tanh(), self.gate(z, 3).sigmoid()
            c_new = i * g if c is None else f * c + i * g  # None: c = 0
            h, c = self.hold(o * c_new.tanh(), h, m), self.hold(c_new, c, m)
            hs.append(h)
        return hs


@register_layer
class GRU(Recurrent):
    """PyTorch's GRU: r, z = sigmoid(x Wx + h Wh + b), n = tanh(x Wxn + b_n + r * (h Whn +
    b_hn)), h_t = (1 - z) * n + z * h_(t-1)."""

    kind = "gru"
    gates = 3

    def unroll(self, xws, cell, step_masks, state):
        hs, h = [], state
        bh = cell.get("bh")
        for xw, m in zip(xws, step_masks):
            if h is None:  # a zero state: h Wh vanishes, and so does z * h
                r = self.gate(xw, 0).sigmoid()
                z = self.gate(xw, 1).sigmoid()
                n = self.gate(xw, 2) if bh is None else self.gate(xw, 2) + r * bh
                h_new = (1 - z) * n.tanh()
            else:
                hw = h @ cell["wh"]
                r = (self.gate(xw, 0) + self.gate(hw, 0)).sigmoid()
                z = (self.gate(xw, 1) + self.gate(hw, 1)).sigmoid()
                hn = self.gate(hw, 2) if bh is None else self.gate(hw, 2) + bh
                n = (self.gate(xw, 2) + r * hn).tanh()
                h_new = (1 - z) * n + z * h
            h = self.hold(h_new, h, m)
            hs.append(h)
        return hs
