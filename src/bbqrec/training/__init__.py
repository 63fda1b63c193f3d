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

# The loop's public names, loaded on first use (tests/test_train_loop.py checks the list against the module).
LOOP_NAMES = (
    "FitResult",
    "TrainingSequences",
    "build_model",
    "count_items",
    "fit",
    "load_item_embeddings",
    "load_semantic_ids",
    "pack_rows",
    "replay_early_stopping",
    "resolve_device",
    "seed_everything",
    "train_epoch",
)


def __getattr__(name):
    if name not in LOOP_NAMES:
        raise AttributeError(f"module 'bbqrec.training' has no attribute {name!r}")
    loop = importlib.import_module("bbqrec.training.loop")  # `from . import loop` would call __getattr__ again
    return getattr(loop, name)


def __dir__():
    return sorted(set(globals()) | set(LOOP_NAMES))


__all__ = [
    "CHOICES",
    "DEFAULT_TRAIN_CONFIG",
    "NOT_TRAINING_OPTIONS",
    "SEMANTIC_ID_OPTIONS",
    "STREAM_ORDER",
    "TrainConfig",
    *LOOP_NAMES,
]
