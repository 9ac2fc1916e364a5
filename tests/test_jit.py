"""nnctl.jit: numba only where it pays, and never for a small model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nnctl import jit

ROOT = Path(__file__).resolve().parent.parent


def test_worth_needs_a_large_array_and_is_off_when_held_back():
    if not jit.enabled():
        pytest.skip("the JIT is off (numba not installed, or NNCTL_JIT=0)")
    assert jit.worth(jit.MIN_SIZE) and not jit.worth(jit.MIN_SIZE - 1)
    with jit.held_back():
        assert not jit.worth(10 * jit.MIN_SIZE)
    assert jit.worth(10 * jit.MIN_SIZE)
    # a fused kernel's own bar is lower (the plan decided already that the model is large)
    assert jit.worth(jit.KERNEL_MIN_SIZE, jit.KERNEL_MIN_SIZE)
    assert not jit.worth(jit.KERNEL_MIN_SIZE - 1, jit.KERNEL_MIN_SIZE)


def test_training_a_small_model_never_imports_numba():
    """digits_mlp: its training step's arrays are small, so its evaluation batches (512 rows,
    large enough on their own) stay on NumPy too, and so does its optimizer."""
    code = ("import sys; from pathlib import Path; from nnctl.backend import get_backend; "
            "from nnctl.config import load_config; from nnctl.train import Trainer; "
            f"c = load_config(Path({str(ROOT / 'configs' / 'digits_mlp.yaml')!r}), ()); "
            "t = Trainer(c, get_backend('cpu'), None, out=None, epochs=1); s = t.fit(); "
            "print(s['test_accuracy'] > 0.5, 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**__import__("os").environ, "NNCTL_JIT": "1"})
    assert out.stdout.split() == ["True", "False"]
