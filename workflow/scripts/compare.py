"""Stage compare: every evaluated (dataset, variant, seed) -> results/comparison.parquet and comparison.md.

Mean ± std over seeds per dataset and variant; against each baseline (`sasrec` and `sasrec-mm`) the relative
gain and a paired Wilcoxon test over users (see bbqrec.evaluation.compare). The same per bucket of the test
target's count in the training sequences -> results/comparison_by_popularity.parquet and a second part of
comparison.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import polars as pl

from bbqrec.evaluation.compare import (
    POPULARITY_EDGES,
    comparison_by_popularity,
    comparison_table,
    markdown,
    popularity_markdown,
    target_popularity,
)
from bbqrec.io import InputError, atomic_path, provenance, write_parquet


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-dirs", nargs="+", type=Path, required=True,
                        help="results/<ds>/eval/<variant>/seed<k> folders (metrics + user_metrics parquet)")
    parser.add_argument("--data-dirs", nargs="+", type=Path, required=True,
                        help="results/<ds>/data folders (train.parquet, test.parquet), one per compared dataset")
    parser.add_argument("--variants", nargs="+", required=True, help="variant order of the Markdown table")
    parser.add_argument("--popularity-edges", nargs="+", type=int, default=list(POPULARITY_EDGES),
                        help="bucket edges of the test target's training count (default: %(default)s)")
    parser.add_argument("--out-parquet", type=Path, required=True)
    parser.add_argument("--out-popularity", type=Path, required=True, help="comparison_by_popularity.parquet")
    parser.add_argument("--out-markdown", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    metrics, user_metrics = [], []
    for folder in args.eval_dirs:
        frame = pl.read_parquet(folder / "metrics.parquet")
        metrics.append(frame)
        key = frame.select("dataset", "variant", "seed").unique()
        user_metrics.append(pl.read_parquet(folder / "user_metrics.parquet").join(key, how="cross"))
    metrics, user_metrics = pl.concat(metrics), pl.concat(user_metrics, how="vertical_relaxed")
    table = comparison_table(metrics, user_metrics)
    data_dirs = {folder.parent.name: folder for folder in args.data_dirs}  # results/<ds>/data
    missing = sorted(set(metrics["dataset"]) - data_dirs.keys())
    if missing:
        raise InputError(f"--data-dirs: no results/<ds>/data folder for dataset(s) {missing}")
    popularity = pl.concat(
        [
            target_popularity(
                pl.read_parquet(data_dirs[name] / "train.parquet"),
                pl.read_parquet(data_dirs[name] / "test.parquet"),
                args.popularity_edges,
            ).select(pl.lit(name).alias("dataset"), pl.all())
            for name in sorted(set(metrics["dataset"]))
        ]
    )
    by_popularity = comparison_by_popularity(user_metrics, popularity)
    run = {"variants": args.variants, "popularity_edges": args.popularity_edges}
    write_parquet(table, args.out_parquet, metadata={"provenance": provenance(run)})
    write_parquet(by_popularity, args.out_popularity, metadata={"provenance": provenance(run)})
    with atomic_path(args.out_markdown, ".md") as tmp:
        tmp.write_text(markdown(table, args.variants) + "\n" + popularity_markdown(by_popularity, args.variants))
    logging.info("compared %d runs", len(args.eval_dirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
