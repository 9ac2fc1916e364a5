"""Layers: the vocabulary of the config's model section, implemented with Tensor ops.

Importing this package registers every layer type (LAYER_TYPES, by config kind).
"""

from nnctl.layers import (activation, attention, audio, compare, conv, crf,  # noqa: F401
                          cross_attention, dense, dropout, embedding, graph, merge, norm,
                          recurrent, reshape, sequence_pool, video)
from nnctl.layers.activation import ACTIVATIONS, Activation
from nnctl.layers.base import LAYER_TYPES, Layer, register_layer
from nnctl.layers.dense import Dense
from nnctl.layers.dropout import Dropout
from nnctl.layers.model import LayerError, Model, build_model
from nnctl.layers.reshape import Flatten, Reshape

__all__ = ["ACTIVATIONS", "Activation", "Dense", "Dropout", "Flatten", "LAYER_TYPES", "Layer",
           "LayerError", "Model", "Reshape", "build_model", "register_layer"]
