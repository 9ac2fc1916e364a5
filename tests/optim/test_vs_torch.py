"""Every optimizer against torch.optim on identical float64 parameters and gradients, 5 steps,
with the learning rate changed between steps (as a schedule does)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.optim import SGD, Adagrad, Adam, AdamW, RMSprop

RNG = np.random.default_rng(7)
# magnitudes of at least 1, so that no coordinate crosses zero and rtol alone is meaningful
PARAMS = [RNG.uniform(1.0, 3.0, (4, 3)) * RNG.choice([-1.0, 1.0], (4, 3)),
          RNG.uniform(1.0, 3.0, 5) * RNG.choice([-1.0, 1.0], 5)]
GRADS = [[RNG.normal(size=p.shape) for p in PARAMS] for _ in range(5)]
LR_FACTORS = [1.0, 0.5, 2.0, 1.0, 0.25]

# (nnctl class, nnctl keywords, torch class name, torch keywords)
CASES = {
    "sgd": (SGD, dict(lr=0.1), "SGD", dict(lr=0.1)),
    "sgd_momentum_wd": (SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.05),
                        "SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.05)),
    "sgd_nesterov": (SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
                     "SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    "adam": (Adam, dict(lr=0.01), "Adam", dict(lr=0.01)),
    "adam_wd": (Adam, dict(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
                "Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adamw": (AdamW, dict(lr=0.02), "AdamW", dict(lr=0.02)),
    "adamw_wd": (AdamW, dict(lr=0.02, beta1=0.85, beta2=0.995, eps=1e-4, weight_decay=0.3),
                 "AdamW", dict(lr=0.02, betas=(0.85, 0.995), eps=1e-4, weight_decay=0.3)),
    "rmsprop": (RMSprop, dict(lr=0.01), "RMSprop", dict(lr=0.01)),
    "rmsprop_momentum_wd": (RMSprop, dict(lr=0.01, alpha=0.9, eps=1e-4, momentum=0.9,
                                          weight_decay=0.05),
                            "RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-4, momentum=0.9,
                                            weight_decay=0.05)),
    "adagrad": (Adagrad, dict(lr=0.1), "Adagrad", dict(lr=0.1)),
    "adagrad_wd_init": (Adagrad, dict(lr=0.1, eps=1e-6, weight_decay=0.05,
                                      initial_accumulator_value=0.2),
                        "Adagrad", dict(lr=0.1, eps=1e-6, weight_decay=0.05,
                                        initial_accumulator_value=0.2)),
}


@pytest.mark.parametrize("case", CASES)
def test_five_steps_match_torch(case):
    torch = pytest.importorskip("torch")
    cls, kwargs, torch_name, torch_kwargs = CASES[case]
    ours = [p.copy() for p in PARAMS]
    opt = cls(np, **kwargs)
    theirs = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in PARAMS]
    ref = getattr(torch.optim, torch_name)(theirs, **torch_kwargs)
    base_lr = kwargs["lr"]
    for step, grads in enumerate(GRADS):
        lr = base_lr * LR_FACTORS[step]
        opt.lr = lr
        opt.step(ours, grads)
        for group in ref.param_groups:
            group["lr"] = lr
        for t, g in zip(theirs, grads):
            t.grad = torch.tensor(g, dtype=torch.float64)
        ref.step()
        for p, t in zip(ours, theirs):
            np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-12, atol=0,
                                       err_msg=f"{case}, step {step + 1}")
    # the starting point was left behind: the comparison is not vacuous
    assert not np.allclose(ours[0], PARAMS[0], rtol=1e-3)
