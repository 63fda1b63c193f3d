"""Report: the tokenizer's per-epoch losses and codebook health (results/<ds>/quantize/<tokenizer>/log.parquet)
as an SVG figure of small multiples."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import polars as pl

from bbqrec.report.plots import plot_tokenizer_log


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--log-table", type=Path, required=True, help="results/<ds>/quantize/<tokenizer>/log.parquet")
    parser.add_argument("--title", default="", help="figure title (dataset and tokenizer)")
    parser.add_argument("--out", type=Path, required=True, help="the SVG figure")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    plot_tokenizer_log(pl.read_parquet(args.log_table), args.out, args.title)
    logging.info("%s -> %s", args.log_table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
