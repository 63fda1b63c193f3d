"""Stage compare: every evaluated (dataset, variant, seed) -> results/comparison.parquet and comparison.md.

Mean ± std over seeds per dataset and variant; against each baseline (`sasrec` and `sasrec-mm`) the relative
gain and a paired Wilcoxon test over users (see bbqrec.evaluation.compare).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import polars as pl

from bbqrec.evaluation.compare import comparison_table, markdown
from bbqrec.io import atomic_path, provenance, write_parquet


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-dirs", nargs="+", type=Path, required=True,
                        help="results/<ds>/eval/<variant>/seed<k> folders (metrics + user_metrics parquet)")
    parser.add_argument("--variants", nargs="+", required=True, help="variant order of the Markdown table")
    parser.add_argument("--out-parquet", type=Path, required=True)
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
    table = comparison_table(pl.concat(metrics), pl.concat(user_metrics, how="vertical_relaxed"))
    write_parquet(table, args.out_parquet, metadata={"provenance": provenance({"variants": args.variants})})
    with atomic_path(args.out_markdown, ".md") as tmp:
        tmp.write_text(markdown(table, args.variants))
    logging.info("compared %d runs", len(args.eval_dirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
