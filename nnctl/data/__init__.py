"""Data sets and batching: loaders (NPZ, CSV, IDX, text), generators, split, normalisation,
batches, augmentation."""

from nnctl.data.augment import Augmenter
from nnctl.data.dataset import Dataset, Normalizer, batch_indices, split
from nnctl.data.generators import make_spirals
from nnctl.data.idx import load_idx, read_idx, write_idx
from nnctl.data.loaders import DATASETS_DIR, load_csv, load_digits, load_npz
from nnctl.data.sequences import make_adding, make_parity
from nnctl.data.text import Vocabulary, char_windows, load_text, load_words

__all__ = [
    "Augmenter",
    "DATASETS_DIR",
    "Dataset",
    "Normalizer",
    "Vocabulary",
    "batch_indices",
    "char_windows",
    "load_csv",
    "load_digits",
    "load_idx",
    "load_npz",
    "load_text",
    "load_words",
    "make_adding",
    "make_parity",
    "make_spirals",
    "read_idx",
    "split",
    "write_idx",
]

# the data kinds defined in their own modules register their loaders (nnctl.data.kinds)
from nnctl.data import (audio, comparisons, dates, graphs, pairs, tabular,  # noqa: E402,F401
                        tagging, text_lines, video)
