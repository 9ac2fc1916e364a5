import pytest

from nnctl.config.layer_specs import ModelSpec
from nnctl.config.loader import load_yaml_text
from nnctl.config.validate import Context, parse


@pytest.fixture
def model_spec():
    """Parse a model section's YAML text into a ModelSpec; errors (as their one-line strings)
    go into the list given, if any."""
    def parse_model(text: str, errors: list | None = None):
        source = load_yaml_text(text, "m.yaml")
        ctx = Context(source)
        spec = parse(ModelSpec, source.data, (), ctx)
        if errors is not None:
            errors.extend(str(e) for e in ctx.errors)
        return spec
    return parse_model
