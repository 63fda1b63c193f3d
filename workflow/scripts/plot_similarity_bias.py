"""Report: the attention bias of one trained model (results/<ds>/train/<variant>/seed<k>/similarity_bias.parquet)
as an SVG figure: a panel per stream pair, the bias of each similarity bucket per layer and head."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import polars as pl

from bbqrec.report.plots import plot_similarity_bias


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", type=Path, required=True, help="similarity_bias.parquet")
    parser.add_argument("--title", default="", help="figure title (dataset, variant, seed)")
    parser.add_argument("--out", type=Path, required=True, help="the SVG figure")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    plot_similarity_bias(pl.read_parquet(args.table), args.out, args.title)
    logging.info("%s -> %s", args.table, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
