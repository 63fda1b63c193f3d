"""Stage compare: every evaluated (dataset, variant, seed) -> results/comparison.parquet and comparison.md.

Mean ± std over seeds per dataset and variant; against each baseline (`sasrec` and `sasrec-mm`) the relative
gain and a paired Wilcoxon test over users (see bbqrec.evaluation.compare). The same per bucket of the target's
count in the training sequences -> results/comparison_by_popularity.parquet. Both files hold the test split and
the validation split (column `split`); comparison.md shows the test split's two tables first, then the
validation split's, then where the runs were trained (CPU, instruction set, code commit), with a warning for a
dataset whose runs come from more than one CPU or instruction set.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import polars as pl

from bbqrec.evaluation.compare import (
    POPULARITY_EDGES,
    SPLITS,
    comparison_by_popularity,
    comparison_table,
    markdown,
    popularity_markdown,
    target_popularity,
)
from bbqrec.origins import machine_warnings, origins_markdown, run_origin
from bbqrec.io import InputError, atomic_path, provenance, read_parquet_metadata, write_parquet


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-dirs", nargs="+", type=Path, required=True,
                        help="results/<ds>/eval/<variant>/seed<k> folders (metrics + user_metrics parquet)")
    parser.add_argument("--data-dirs", nargs="+", type=Path, required=True,
                        help="results/<ds>/data folders (train, valid and test parquet), one per compared dataset")
    parser.add_argument("--variants", nargs="+", required=True, help="variant order of the Markdown table")
    parser.add_argument("--popularity-edges", nargs="+", type=int, default=list(POPULARITY_EDGES),
                        help="bucket edges of the target's training count (default: %(default)s)")
    parser.add_argument("--out-parquet", type=Path, required=True)
    parser.add_argument("--out-popularity", type=Path, required=True, help="comparison_by_popularity.parquet")
    parser.add_argument("--out-markdown", type=Path, required=True)
    parser.add_argument("--out-origins", type=Path, required=True,
                        help="comparison_origins.parquet: where each run was trained (CPU, instruction set, code)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    metrics, user_metrics, without_valid, origins = [], [], [], []
    for folder in args.eval_dirs:
        frame = pl.read_parquet(folder / "metrics.parquet")
        metrics.append(frame)
        key = frame.select("dataset", "variant", "seed").unique()
        origin = run_origin(read_parquet_metadata(folder / "metrics.parquet").get("provenance", {}))
        origins.append(key.with_columns(**{name: pl.lit(value) for name, value in origin.items()}))
        users = pl.read_parquet(folder / "user_metrics.parquet")
        if "split" not in users.columns:  # written before the validation rows: test rows only
            without_valid.append(str(folder))
            users = users.with_columns(split=pl.lit("test"))
        user_metrics.append(users.join(key, how="cross"))
    if without_valid:
        logging.warning(
            "%d user_metrics.parquet without validation rows (written by an older evaluate stage; `snakemake -R "
            "evaluate` rewrites them): no p users in the validation tables for %s",
            len(without_valid), ", ".join(without_valid),
        )
    metrics, user_metrics = pl.concat(metrics), pl.concat(user_metrics, how="vertical_relaxed")
    origins = pl.concat(origins)
    for warning in machine_warnings(origins):
        logging.warning(warning)
    data_dirs = {folder.parent.name: folder for folder in args.data_dirs}  # results/<ds>/data
    missing = sorted(set(metrics["dataset"]) - data_dirs.keys())
    if missing:
        raise InputError(f"--data-dirs: no results/<ds>/data folder for dataset(s) {missing}")
    trains = {name: pl.read_parquet(data_dirs[name] / "train.parquet") for name in sorted(set(metrics["dataset"]))}
    tables, by_popularity = [], []
    for split in SPLITS:
        tables.append(comparison_table(metrics, user_metrics, split=split))
        popularity = pl.concat(
            [
                target_popularity(
                    train, pl.read_parquet(data_dirs[name] / f"{split}.parquet"), args.popularity_edges
                ).select(pl.lit(name).alias("dataset"), pl.all())
                for name, train in trains.items()
            ]
        )
        by_popularity.append(comparison_by_popularity(user_metrics, popularity, split=split))
    run = {"variants": args.variants, "popularity_edges": args.popularity_edges}
    write_parquet(pl.concat(tables), args.out_parquet, metadata={"provenance": provenance(run)})
    write_parquet(pl.concat(by_popularity), args.out_popularity, metadata={"provenance": provenance(run)})
    origins = origins.sort("dataset", "variant", "seed")
    write_parquet(origins, args.out_origins, metadata={"provenance": provenance(run)})
    sections = []
    for table, buckets in zip(tables, by_popularity):
        sections.append(markdown(table, args.variants))
        if not buckets.is_empty():  # empty where every run's user_metrics predates the validation rows
            sections.append(popularity_markdown(buckets, args.variants))
    sections.append(origins_markdown(origins))
    with atomic_path(args.out_markdown, ".md") as tmp:
        tmp.write_text("\n".join(sections))
    logging.info("compared %d runs", len(args.eval_dirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
