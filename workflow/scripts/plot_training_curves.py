"""Report: training loss and validation NDCG@10 per epoch of every variant and seed of one dataset
(results/<ds>/train/<variant>/seed<k>/log.parquet) as one SVG figure."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import polars as pl

from bbqrec.report.plots import plot_training_curves, train_log_key


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logs", type=Path, nargs="+", required=True,
                        help="results/<ds>/train/<variant>/seed<k>/log.parquet files")
    parser.add_argument("--variants", nargs="+", default=[], help="variant order (colours, legend)")
    parser.add_argument("--title", default="", help="figure title (the dataset)")
    parser.add_argument("--out", type=Path, required=True, help="the SVG figure")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logs = {train_log_key(path): pl.read_parquet(path) for path in args.logs}
    plot_training_curves(logs, args.out, args.title, args.variants)
    logging.info("%d training logs -> %s", len(logs), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
