"""The computation graph: IR nodes and the Tensor handle that builds them."""

from nnctl.graph.ir import Graph, Node, current_scope, name_scope, toposort
from nnctl.graph.tensor import (Tensor, apply, concat, constant, input_placeholder, maximum,
                                minimum, parameter, random_bernoulli, stack, where)

__all__ = ["Graph", "Node", "Tensor", "apply", "concat", "constant", "current_scope",
           "input_placeholder", "maximum", "minimum", "name_scope", "parameter",
           "random_bernoulli", "stack", "toposort", "where"]
