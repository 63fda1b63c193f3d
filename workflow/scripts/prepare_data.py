"""Stage prepare_data: one dataset's sources -> results/<ds>/data/ (see docs/artifacts.md).

Option precedence: this command line > the dataset file's `prepare:` block > built-in defaults
(the Snakefile passes the merged config.yaml + dataset values).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bbqrec.data import load_dataset_config, prepare_dataset
from bbqrec.io import InputError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-config", type=Path, required=True, help="config/datasets/<name>.yaml")
    parser.add_argument("--data-root", type=Path, required=True, help="folder holding the source folders")
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. results/<name>/data")
    parser.add_argument("--max-history-len", type=int, help="keep the last N items of each history (default 50)")
    parser.add_argument("--min-seq-len", type=int, help="drop users with fewer interactions (default 3)")
    parser.add_argument("--k-core", type=int, help="iterative k-core on users and items, 0 = off (default 0)")
    parser.add_argument("--duplicates", choices=["keep", "first", "last"], help="repeated (user, item) pairs")
    parser.add_argument("--log", type=Path, help="also write the log to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if args.log:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(args.log, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers)
    try:
        stats = prepare_dataset(
            load_dataset_config(args.dataset_config),
            args.data_root,
            args.out,
            max_history_len=args.max_history_len,
            min_seq_len=args.min_seq_len,
            k_core=args.k_core,
            duplicates=args.duplicates,
        )
    except InputError as err:
        logging.error("%s", err)
        return 1
    logging.info("sequence length %s", stats["sequence_length"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
