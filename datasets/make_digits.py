"""Regenerate datasets/digits.npz from the copy of the UCI digits bundled with scikit-learn.

The data set is "Optical Recognition of Handwritten Digits" (E. Alpaydin and C. Kaynak,
UCI ML Repository, 1998, DOI 10.24432/C50P49, CC BY 4.0): 1797 images of 8x8 pixels,
each pixel a grey level 0..16, labelled 0..9. scikit-learn ships it inside its package,
so `sklearn.datasets.load_digits` reads it from disk and downloads nothing.

Usage (scikit-learn is needed only here, never by nnctl itself):

    pip install scikit-learn
    python datasets/make_digits.py            # writes datasets/digits.npz, prints its sha256
    python datasets/make_digits.py OUT.npz    # writes elsewhere

Output keys: `x` uint8 (1797, 64) with values 0..16, `y` int64 (1797,) with values 0..9,
written with np.savez_compressed and no object arrays (so np.load needs no pickle).
The file's sha256 is stable for a given numpy and zlib (numpy writes fixed zip timestamps);
datasets/README.md records it together with a hash of the array contents.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    import sklearn
    from sklearn.datasets import load_digits

    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent / "digits.npz"
    bunch = load_digits()
    # sklearn returns float64 pixels; they are exact integers 0..16, so uint8 loses nothing.
    x = bunch.data
    if not (np.all(x == np.round(x)) and x.min() >= 0 and x.max() <= 16):
        raise SystemExit("unexpected pixel values in sklearn's digits copy")
    x = x.astype(np.uint8)
    y = bunch.target.astype(np.int64)
    assert x.shape == (1797, 64) and y.shape == (1797,), (x.shape, y.shape)

    np.savez_compressed(out, x=x, y=y)
    file_sha = hashlib.sha256(out.read_bytes()).hexdigest()
    content_sha = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}")
    print(f"wrote {out}: x {x.shape} {x.dtype}, y {y.shape} {y.dtype}")
    print(f"sha256 (file)    {file_sha}")
    print(f"sha256 (x+y raw) {content_sha}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
