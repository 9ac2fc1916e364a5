"""Config specs of the recurrent and attention layers (registered into the layer vocabulary)."""

from __future__ import annotations

from nnctl.config.layer_specs import register_layer_spec  # noqa: F401
