"""Data sets and batching: loaders (NPZ, CSV), generators, split, normalisation, batches."""

from nnctl.data.dataset import Dataset, Normalizer, batch_indices, split
from nnctl.data.generators import make_spirals
from nnctl.data.loaders import DATASETS_DIR, load_csv, load_digits, load_npz

__all__ = [
    "DATASETS_DIR",
    "Dataset",
    "Normalizer",
    "batch_indices",
    "load_csv",
    "load_digits",
    "load_npz",
    "make_spirals",
    "split",
]
