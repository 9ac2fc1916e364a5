"""Layers: the vocabulary of the config's model section, implemented with Tensor ops."""

from nnctl.layers.activation import ACTIVATIONS, Activation
from nnctl.layers.base import Layer
from nnctl.layers.dense import Dense
from nnctl.layers.dropout import Dropout
from nnctl.layers.model import LayerError, Model, build_model
from nnctl.layers.reshape import Reshape

__all__ = ["ACTIVATIONS", "Activation", "Dense", "Dropout", "Layer", "LayerError", "Model",
           "Reshape", "build_model"]
