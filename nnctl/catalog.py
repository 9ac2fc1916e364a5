"""The data sets nnctl knows: shipped files, seeded generators and loaders for your files.

Static facts (nothing is loaded or generated), so `nnctl datasets` answers at once. Sizes are
the shipped files' and the generators' defaults; datasets/README.md has the sources, hashes
and licence texts. `available` says whether a shipped file is where nnctl will read it
(`datasets/`, or `$NNCTL_DATASETS`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from nnctl.config.schema import DATASETS
from nnctl.data import DATASETS_DIR


@dataclass(frozen=True)
class DatasetInfo:
    name: str          # the config's `dataset:` value
    kind: str          # "file" (shipped), "generator" (seeded, nothing stored), "loader" (yours)
    size: str
    features: str
    labels: str
    licence: str
    snippet: str       # what goes under `data:` in a config
    description: str
    file: str | None = None  # shipped file name, in the data sets folder

    def to_dict(self) -> dict:
        d = asdict(self)
        path = self.path()
        d["path"] = str(path) if path else None
        d["available"] = path.is_file() if path else True
        return d

    def path(self) -> Path | None:
        if self.file is None:
            return None
        env = os.environ.get("NNCTL_DATASETS")
        return (Path(env) if env else DATASETS_DIR) / self.file


CATALOG: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        "digits", "file", "1,797 samples", "64 pixels (8x8, grey levels 0..16)",
        "10 classes (digits 0..9)",
        "CC BY 4.0 (E. Alpaydin, C. Kaynak 1998, UCI ML Repository)",
        "dataset: digits", "UCI optical recognition of handwritten digits", file="digits.npz"),
    DatasetInfo(
        "words", "file", "20,000 words (5,816 windows at seq_len 32)",
        "seq_len character ids (27: newline and a..z)", "the next character at each position",
        "SCOWL notice (permissive; full text in datasets/README.md)",
        "dataset: words", "English words from Debian's wamerican (SCOWL size 50), for "
        "character models", file="words.txt"),
    DatasetInfo(
        "spirals", "generator", "1,000 points (samples)", "2 coordinates", "2 classes",
        "none needed (generated)", "dataset: spirals",
        "two interleaved spirals (Lang and Witbrock 1988); keys samples, noise, turns"),
    DatasetInfo(
        "parity", "generator", "2,000 sequences (samples)", "12 bits (length), token ids",
        "2 classes (parity)", "none needed (generated)", "dataset: parity",
        "bit strings labelled by their parity; keys samples, length"),
    DatasetInfo(
        "adding", "generator", "2,000 sequences (samples)", "20 steps (length) x 2 channels",
        "1 float target (regression)", "none needed (generated)", "dataset: adding",
        "the adding problem (Hochreiter and Schmidhuber 1997); keys samples, length"),
    DatasetInfo(
        "npz", "loader", "your file", "array x: [N, ...] (x_key)",
        "array y: int classes or float targets (y_key)", "yours",
        "{dataset: npz, path: data.npz}", "a NumPy .npz archive; never unpickled"),
    DatasetInfo(
        "csv", "loader", "your file", "numeric columns", "label_column (default: the last)",
        "yours", "{dataset: csv, path: data.csv}",
        "a CSV file, one sample per row; header detected; keys label_column, header, delimiter"),
    DatasetInfo(
        "dates", "generator", "20,000 pairs (samples)",
        "a date in one of 18 human formats, as characters (<= 53)",
        "the ISO date YYYY-MM-DD, as characters (sequence to sequence)",
        "none needed (generated)", "dataset: dates",
        "dates written in words and numbers -> ISO dates; keys samples, formats "
        "(docs/text-data.md)"),
    DatasetInfo(
        "text", "loader", "your file", "a text per line, as character or word ids (padded)",
        "class names (sorted)", "yours", "{dataset: text, path: texts.txt}",
        "texts with labels: `label<TAB>text` lines, or a .csv/.tsv with text_column and "
        "label_column; vocabulary from the training split (docs/text-data.md)"),
    DatasetInfo(
        "text_pairs", "loader", "your file", "the source text, as character or word ids",
        "the target text (sequence to sequence)", "yours",
        "{dataset: text_pairs, path: pairs.tsv}",
        "`source<TAB>target` lines (or .csv columns); one vocabulary for both sides, from "
        "the training split"),
    DatasetInfo(
        "chunks", "generator", "3,000 sentences (samples), 5-25 words",
        "word ids (132 words)", "a BIO chunk tag per word (NP, VP, PP: 6 tags)",
        "none needed (generated)", "dataset: chunks",
        "generated sentences whose chunk tags depend on the next word, for taggers "
        "(docs/tagging.md); keys samples, min_len, max_len"),
    DatasetInfo(
        "conll", "loader", "your file", "a sentence of word ids (padded)",
        "a tag per word (the last column)", "yours", "{dataset: conll, path: train.conll}",
        "CoNLL-style tagging files: a token per line with its tag last, blank lines between "
        "sentences; words from the training split"),
    DatasetInfo(
        "wav_folder", "loader", "your folder (shipped example: datasets/dtmf, 480 clips)",
        "sample_rate x duration samples in [-1, 1] (mono PCM WAV)",
        "one class per subfolder (sorted names)", "yours (datasets/dtmf: CC0, generated)",
        "{dataset: wav_folder, path: ../datasets/dtmf, sample_rate: 8000}",
        "a folder of WAV clips, one subfolder per class; configs/dtmf.yaml reads the "
        "shipped DTMF key tones"),
    DatasetInfo(
        "audio_npz", "loader", "your file", "array x: [N, samples] floats in [-1, 1]",
        "array y: int classes", "yours",
        "{dataset: audio_npz, path: clips.npz, sample_rate: 16000}",
        "raw audio clips in a NumPy .npz; sample_rate from the config or the file"),
    DatasetInfo(
        "moving_shapes", "generator", "2,000 clips (samples), 8 frames of 12x12",
        "[frames, 1, 12, 12] floats (a shape on gaussian noise)",
        "the direction it moves: up, down, left, right (4 classes)",
        "none needed (generated)", "dataset: moving_shapes",
        "a small shape drifting across noisy frames; one frame does not tell the direction "
        "(docs/video.md); keys samples, frames, size, max_speed, noise"),
    DatasetInfo(
        "frames_npz", "loader", "your file",
        "array x: [N, frames, channels, height, width] floats", "array y: int classes",
        "yours", "{dataset: frames_npz, path: clips.npz}",
        "frame stacks (short videos) in a NumPy .npz; every frame the same size"),
    DatasetInfo(
        "graphs_npz", "loader", "your file", "node_features [total_nodes, F] + edges [2, E] "
        "(padded graphs; model input adjacency)", "labels [G] per graph or node_labels per node",
        "yours", "{dataset: graphs_npz, path: graphs.npz}",
        "graphs in an .npz: node_features, node_counts, edges, edge_counts, labels or "
        "node_labels; key undirected (docs/graphs.md)"),
    DatasetInfo(
        "graphs_jsonl", "loader", "your file", "a graph per line: nodes (feature lists), edges "
        "[[source, target], ...]", "label per graph or node_labels per node", "yours",
        "{dataset: graphs_jsonl, path: graphs.jsonl}",
        "graphs as JSON lines; key undirected (docs/graphs.md)"),
    DatasetInfo(
        "graph_cycles", "generator", "2,000 graphs (samples)", "8..16 nodes, feature 1 per node "
        "(or noise), adjacency", "2 classes (tree, one_cycle)", "none needed (generated)",
        "dataset: graph_cycles", "random trees vs trees plus one edge (exactly one cycle), "
        "same node counts; keys samples, min_nodes, max_nodes, node_features, feature_width"),
    DatasetInfo(
        "pairs", "generator", "4,000 pairs (pairs)",
        "two samples of the source (x and input 'right'; digits: 64 each)",
        "2 classes (different 0, same 1)", "that of the source (digits: UCI, CC BY 4.0)",
        "{dataset: pairs, of: digits, pairs: 4000}",
        "pairs drawn from a labelled data set (of: digits | npz); each split's pairs use only "
        "its own source samples (held out); keys of, path, x_key, y_key, pairs, "
        "positive_fraction, seed_offset, scale"),
    DatasetInfo(
        "triplets", "generator", "4,000 triplets (triplets)",
        "anchor x, inputs 'positive' and 'negative' (digits: 64 each)", "none (all 0)",
        "that of the source (digits: UCI, CC BY 4.0)",
        "{dataset: triplets, of: digits, triplets: 4000}",
        "anchor, same-class positive, other-class negative drawn from a labelled data set; "
        "held-out source samples per split; keys of, path, x_key, y_key, triplets, "
        "seed_offset, scale"),
)

if "idx" in DATASETS:  # nnctl.data.load_idx exists; listed once a config can name it
    _required = [f.name for f in dataclasses.fields(DATASETS["idx"])
                 if f.default is dataclasses.MISSING
                 and f.default_factory is dataclasses.MISSING]
    CATALOG += (DatasetInfo(
        "idx", "loader", "your files", "an IDX array [N, ...] (MNIST's format, gzip or plain)",
        "an IDX label vector [N]", "yours",
        "{" + ", ".join(["dataset: idx", *(f"{n}: ..." for n in _required)]) + "}",
        "MNIST-style IDX files (see docs/config.md for the keys)"),)

def catalog() -> list[dict]:
    """Every entry as a dict (the DatasetInfo fields plus `path` and `available`)."""
    return [info.to_dict() for info in CATALOG]
