"""Report: the comparison (results/comparison.parquet) as a self-contained HTML table and an SVG bar chart of
test Recall@10 and NDCG@10 per dataset and variant; with --by-popularity, the HTML also holds the table per bucket
of the test target's training count (results/comparison_by_popularity.parquet), and with --origins where the runs
were trained (results/comparison_origins.parquet)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import polars as pl

from bbqrec.io import atomic_path
from bbqrec.report.plots import plot_comparison
from bbqrec.report.tables import comparison_html


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", type=Path, required=True, help="results/comparison.parquet")
    parser.add_argument("--by-popularity", type=Path, help="results/comparison_by_popularity.parquet")
    parser.add_argument("--origins", type=Path, help="results/comparison_origins.parquet: where the runs were trained")
    parser.add_argument("--variants", nargs="+", default=[], help="variant order of the table and the chart")
    parser.add_argument("--out-html", type=Path, required=True)
    parser.add_argument("--out-svg", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    table = pl.read_parquet(args.table)
    with atomic_path(args.out_html, ".html") as tmp:
        by_popularity = pl.read_parquet(args.by_popularity) if args.by_popularity else None
        origins = pl.read_parquet(args.origins) if args.origins else None
        page = comparison_html(table, args.variants, by_popularity=by_popularity, origins=origins)
        tmp.write_text(page, encoding="utf-8")
    plot_comparison(table, args.out_svg, args.variants)
    logging.info("%s -> %s, %s", args.table, args.out_html, args.out_svg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
