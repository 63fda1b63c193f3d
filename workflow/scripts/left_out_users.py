"""Stage left_out_users: the users that prepare_data left out, with their items of the prepared catalogue.

A user with fewer than `min_seq_len` interactions (or dropped by `k_core`) has no leave-one-out split, so no part
in training or evaluation; a trained model can still rank items after what the user did. Writes `--out`
(user: source id, items: list<i32> of item_ids in time order, timestamps: list<i64>, their times), one row per
such user, an empty list for one with no item of items.parquet; read by the recommend stage and by
recommend_events.py. Same ordering and duplicates handling as prepare_data.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import polars as pl

from bbqrec.data import left_out_histories, load_dataset_config
from bbqrec.io import InputError, provenance, write_parquet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-config", type=Path, required=True, help="config/datasets/<name>.yaml")
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding the source folders")
    parser.add_argument("--data", type=Path, required=True, help="results/<name>/data: users.parquet, items.parquet")
    parser.add_argument("--min-seq-len", type=int, help="as given to prepare_data")
    parser.add_argument("--k-core", type=int, help="as given to prepare_data")
    parser.add_argument("--duplicates", choices=["keep", "first", "last"], help="as given to prepare_data")
    parser.add_argument("--out", type=Path, required=True, help="results/<name>/data/left_out_users.parquet")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    options = {"min_seq_len": args.min_seq_len, "k_core": args.k_core, "duplicates": args.duplicates}
    try:
        dataset_cfg = load_dataset_config(args.dataset_config)
        left_out = left_out_histories(
            dataset_cfg,
            args.data_root,
            pl.read_parquet(args.data / "users.parquet"),
            pl.read_parquet(args.data / "items.parquet"),
            **options,
        )
    except InputError as err:
        logging.error("%s", err)
        return 1
    run = {"stage": "left_out_users", "dataset": dataset_cfg["name"], "prepare": options}
    write_parquet(left_out, args.out, metadata={"provenance": provenance(run)})
    logging.info("%d users left out by the preparation have items of the catalogue -> %s", left_out.height, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
