"""bbqrec.training: the options of the train/evaluate stages (`config`, torch-free) and the training loop (`loop`).

The options are imported eagerly; the loop (torch) on first use, so that the workflow reads the defaults at every
start without loading torch.
"""

import importlib

from bbqrec.training.config import (
    CHOICES,
    DEFAULT_TRAIN_CONFIG,
    NOT_TRAINING_OPTIONS,
    SEMANTIC_ID_OPTIONS,
    STREAM_ORDER,
    TrainConfig,
)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    loop = importlib.import_module("bbqrec.training.loop")  # `from . import loop` would call __getattr__ again
    if not hasattr(loop, name):
        raise AttributeError(f"module 'bbqrec.training' has no attribute {name!r}")
    return getattr(loop, name)


__all__ = ["CHOICES", "DEFAULT_TRAIN_CONFIG", "NOT_TRAINING_OPTIONS", "SEMANTIC_ID_OPTIONS", "STREAM_ORDER", "TrainConfig"]
