"""The computation graph: IR nodes and the Tensor handle that builds them."""

from nnctl.graph.ir import Graph, Node, current_scope, name_scope, toposort
from nnctl.graph.tensor import Tensor, apply, constant, input_placeholder, parameter, random_bernoulli

__all__ = ["Graph", "Node", "Tensor", "apply", "constant", "current_scope", "input_placeholder",
           "name_scope", "parameter", "random_bernoulli", "toposort"]
