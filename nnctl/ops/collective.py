"""The one collective op: `allreduce_sum`, the sum of a value over every process of a
data-parallel run (nnctl/distributed.py), for layers whose forward pass needs the whole
global batch (batch norm's statistics: synchronised batch norm).

A compiled plan runs its ops in the same order on every rank, so the collectives of all
ranks meet in the same order. The communicator is installed by the trainer
(`set_communicator`); in a single process the op is the identity, which is how its
gradients are checked with the op table. Its vjp is itself: d(sum over ranks)/d(own value)
routes every rank's incoming gradient back to each rank, summed.
"""

from __future__ import annotations

from nnctl.ops.registry import OPAQUE, Aval, Op, Sample, register

_communicator = None


def set_communicator(communicator) -> None:
    """Install the run's communicator (an object with `size` and `allreduce_array(array)`),
    or None for a single process."""
    global _communicator
    _communicator = communicator if communicator is not None and communicator.size > 1 else None


def world_size() -> int:
    """The number of processes layers must synchronise with (1: none)."""
    return 1 if _communicator is None else _communicator.size


@register
class AllReduceSum(Op):
    """y = the sum of x over all ranks (one process: x);  dx = allreduce_sum(g)"""
    name = "allreduce_sum"
    capturable = False  # the communicator sums on the host (MPI) between ranks
    kind = OPAQUE

    def infer(self, x: Aval) -> Aval:
        return x

    def forward(self, xp, x):
        if _communicator is None:
            return x.copy() if hasattr(x, "copy") else x
        return _communicator.allreduce_array(x)

    def vjp(self, g, out, x):
        return (g.apply("allreduce_sum"),)

    def samples(self):
        yield Sample(shapes=((3, 4),))
        yield Sample(shapes=((1, 5, 1, 1),))
