"""Training: the Trainer loop, its events, metrics and the run folder."""

from nnctl.train.events import TrainerEvents
from nnctl.train.run_dir import RunDir, load_weights
from nnctl.train.trainer import Interrupted, Trainer

__all__ = ["Interrupted", "RunDir", "Trainer", "TrainerEvents", "load_weights"]
