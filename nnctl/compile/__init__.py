"""Compile a graph: passes, liveness, and the ExecutionPlan the trainer runs every step."""

from nnctl.compile.passes import PASSES, run_passes
from nnctl.compile.plan import ExecutionPlan, compile_graph

__all__ = ["PASSES", "ExecutionPlan", "compile_graph", "run_passes"]
