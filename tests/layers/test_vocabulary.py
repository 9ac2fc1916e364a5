"""The config's layer vocabulary and the layer implementations stay in step."""

from nnctl.config.layer_specs import ACTIVATIONS as CONFIG_ACTIVATIONS
from nnctl.config.layer_specs import LAYERS
from nnctl.layers import ACTIVATIONS, LAYER_TYPES


def test_every_config_layer_type_has_an_implementation_and_back():
    assert set(LAYERS) == set(LAYER_TYPES)


def test_every_activation_name_is_implemented():
    assert set(CONFIG_ACTIVATIONS) == set(ACTIVATIONS)
