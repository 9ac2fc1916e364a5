"""What to install for an optional feature, said so that it works where nnctl was installed
from a source checkout (`pip install 'nnctl[plot]'` would look for nnctl on PyPI) as well as
from a package index."""

from __future__ import annotations


def install_hint(extra: str, packages: str) -> str:
    """'pip install PACKAGES (the nnctl[EXTRA] extra; in a source checkout: pip install -e
    '.[EXTRA]')'."""
    return (f"pip install {packages} (the nnctl[{extra}] extra; in a source checkout: "
            f"pip install -e '.[{extra}]')")
