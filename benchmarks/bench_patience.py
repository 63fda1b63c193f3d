"""Benchmark: what a smaller early-stopping patience would save, replayed on finished training runs.

Reads the per-epoch logs (results/<dataset>/train/<variant>/seed<k>/log.parquet) and replays the stopping rule
with each patience (bbqrec.training.replay_early_stopping: exact for a patience up to the one the runs used,
since patience decides only when a run stops). For each patience it prints the training time kept (epochs and
validation passes, as logged), how many runs keep the same best epoch (then the same weights, so the same test
metrics) and the validation NDCG@10 lost by those that do not. Validation only: the test split is not read.

    python benchmarks/bench_patience.py --logs 'results/beauty/train/*/seed*/log.parquet' --patience 3 5 7 10
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import polars as pl

from bbqrec.training import replay_early_stopping


def replay_runs(paths: list[Path], patiences: list[int]) -> pl.DataFrame:
    """One row per (run, patience): epochs, seconds, best epoch and its validation NDCG@10."""
    rows = []
    for path in paths:
        log = pl.read_parquet(path)
        curve = log["valid_ndcg_10"].to_list()
        seconds = (log["seconds"] + log["valid_seconds"]).cum_sum().to_list()
        run = "/".join(path.parts[-5:-1]).replace("/train/", "/")  # <dataset>/<variant>/seed<k>
        for patience in patiences:
            epochs, best = replay_early_stopping(curve, patience)
            rows.append(
                {
                    "run": run,
                    "patience": patience,
                    "epochs": epochs,
                    "seconds": seconds[epochs - 1],
                    "best_epoch": best,
                    "best_valid_ndcg_10": curve[best - 1],
                }
            )
    return pl.DataFrame(rows)


def summarize(replayed: pl.DataFrame, logged_patience: int) -> pl.DataFrame:
    """Per patience, against the logged runs: share of the time, runs with the same best epoch, NDCG@10 lost."""
    full = replayed.filter(pl.col("patience") == logged_patience).select(
        "run", full_seconds="seconds", full_best="best_epoch", full_ndcg="best_valid_ndcg_10"
    )
    return (
        replayed.join(full, on="run")
        .group_by("patience")
        .agg(
            runs=pl.len(),
            epochs=pl.col("epochs").sum(),
            seconds=pl.col("seconds").sum(),
            time_share=pl.col("seconds").sum() / pl.col("full_seconds").sum(),
            same_best_epoch=(pl.col("best_epoch") == pl.col("full_best")).sum(),
            mean_ndcg_lost=(pl.col("full_ndcg") - pl.col("best_valid_ndcg_10")).mean(),
            max_ndcg_lost=(pl.col("full_ndcg") - pl.col("best_valid_ndcg_10")).max(),
        )
        .sort("patience")
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", default="results/*/train/*/seed*/log.parquet", help="glob of log.parquet files")
    parser.add_argument("--patience", type=int, nargs="+", default=[3, 5, 7, 10])
    parser.add_argument("--logged-patience", type=int, default=10, help="the patience the logged runs used")
    args = parser.parse_args(argv)
    paths = sorted(Path(p) for p in glob.glob(args.logs))
    if not paths:
        parser.error(f"no log.parquet matches --logs {args.logs!r}")
    if max(args.patience) > args.logged_patience:
        parser.error(f"--patience above --logged-patience {args.logged_patience} cannot be replayed from the logs")
    patiences = sorted(set(args.patience) | {args.logged_patience})
    replayed = replay_runs(paths, patiences)
    print("| run | " + " | ".join(f"patience {p}: epochs (best)" for p in patiences) + " |")
    print("|" + " --- |" * (len(patiences) + 1))
    for run, group in replayed.group_by("run", maintain_order=True):
        cells = [f"{r['epochs']} ({r['best_epoch']})" for r in group.sort("patience").iter_rows(named=True)]
        print(f"| {run[0]} | " + " | ".join(cells) + " |")
    print()
    print("| patience | runs | epochs | hours | share of the time | same best epoch | valid NDCG@10 lost: mean / max |")
    print("|" + " --- |" * 7)
    for r in summarize(replayed, args.logged_patience).iter_rows(named=True):
        print(
            f"| {r['patience']} | {r['runs']} | {r['epochs']} | {r['seconds'] / 3600:.2f} | {r['time_share']:.2f} |"
            f" {r['same_best_epoch']} | {r['mean_ndcg_lost']:.4f} / {r['max_ndcg_lost']:.4f} |"
        )


if __name__ == "__main__":
    main()
