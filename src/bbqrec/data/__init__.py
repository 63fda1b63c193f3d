"""Data stage: source adapters, filtering, dense ids, leave-one-out split and stats (`prepare_dataset`).

`load_dataset_config` reads and validates config/datasets/<name>.yaml; `prepare_dataset` turns the dataset's
sources into the files listed in docs/artifacts.md (prepare_data).
"""

from bbqrec.data.config import load_dataset_config, merge_prepare_options
from bbqrec.data.prepare import left_out_histories, prepare_dataset

__all__ = ["left_out_histories", "load_dataset_config", "merge_prepare_options", "prepare_dataset"]
