"""make_optimizer: spec.name picks the class; the other fields are the constructor keywords."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from nnctl.config.schema import OPTIMIZERS as SPECS
from nnctl.optim import (OPTIMIZER_NAMES, SGD, Adagrad, Adam, AdamW, RMSprop, make_optimizer)

CASES = [
    (dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), SGD),
    (dict(name="adam", lr=0.002, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.1), Adam),
    (dict(name="adamw", lr=0.003, beta1=0.85, beta2=0.995, eps=1e-6, weight_decay=0.05), AdamW),
    (dict(name="rmsprop", lr=0.01, alpha=0.9, eps=1e-6, momentum=0.5, weight_decay=0.02), RMSprop),
    (dict(name="adagrad", lr=0.05, eps=1e-9, weight_decay=0.03, initial_accumulator_value=0.1),
     Adagrad),
]


@pytest.mark.parametrize("fields,cls", CASES)
def test_every_field_reaches_the_optimizer(fields, cls):
    opt = make_optimizer(SimpleNamespace(**fields), np)
    assert type(opt) is cls and opt.xp is np
    for key, value in fields.items():
        if key != "name":
            assert getattr(opt, key) == value, key


def test_names_cover_the_cases():
    assert OPTIMIZER_NAMES == tuple(f["name"] for f, _ in CASES)


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        make_optimizer(SimpleNamespace(name="lbfgs", lr=0.1), np)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_config_specs_with_their_defaults(name):
    # whatever specs the config defines today build with their defaults
    opt = make_optimizer(SPECS[name](), np)
    assert type(opt).__name__.lower() == name
