"""bbqrec.training: the options of the train/evaluate stages (`config`, torch-free) and the training loop (`loop`).

The options are imported eagerly; the loop (torch) on first use, so that the workflow reads the defaults at every
start without loading torch.
"""

from bbqrec.lazy import lazy_exports
from bbqrec.training.config import (
    CHOICES,
    DEFAULT_TRAIN_CONFIG,
    NOT_TRAINING_OPTIONS,
    SEMANTIC_ID_OPTIONS,
    STREAM_ORDER,
    TrainConfig,
    recommend_runs,
)

# The loop's public names, loaded on first use (tests/test_train_loop.py checks the list against the module).
LOOP_NAMES = (
    "FitResult",
    "TrainingSequences",
    "build_model",
    "count_items",
    "fit",
    "load_item_embeddings",
    "load_joint_quantizer",
    "load_refit_schedule",
    "load_semantic_ids",
    "load_trained_model",
    "load_trained_run",
    "pack_rows",
    "refit_schedule",
    "replay_early_stopping",
    "resolve_device",
    "seed_everything",
    "train_epoch",
)


__getattr__, __dir__ = lazy_exports(__name__, "bbqrec.training.loop", LOOP_NAMES)

__all__ = [
    "CHOICES",
    "DEFAULT_TRAIN_CONFIG",
    "NOT_TRAINING_OPTIONS",
    "SEMANTIC_ID_OPTIONS",
    "STREAM_ORDER",
    "TrainConfig",
    "recommend_runs",
    *LOOP_NAMES,
]
