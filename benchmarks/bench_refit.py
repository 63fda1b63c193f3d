"""Benchmark: what a refit on more data buys the model that serves (config recommend.model: refit).

The serving refit (rule refit) trains a run again on every interaction for its best epoch count at its learning
rates. Its own lists cannot be scored: every held-out item is in its training data. So this replays the same
procedure one item earlier, where the test split can score it: a run trained on the training split and stopped on
validation (what `evaluate` measures), and its refit on the training split plus each user's validation item, both
ranked on the test split (history = everything before the test item, the same for both). The refit gets exactly
what serving gets: one more item per user, and the test item stays unseen. Nothing is chosen on these figures:
`recommend.model` keeps its default (`evaluated`), and the table only says what the option is worth.

    python benchmarks/bench_refit.py --data results/scientific-mm/data --variant sasrec --seeds 0 1 2
    python benchmarks/bench_refit.py --data results/scientific-mm/data --variant bbqrec \
        --sids results/scientific-mm/sids/bbq/seed{seed}/semantic_ids.parquet \
        --text results/scientific-mm/embeddings/text.parquet --image results/scientific-mm/embeddings/image.parquet

Prints one row per seed (best epoch, training seconds, test Recall@10 / NDCG@10 of each) and a paired Wilcoxon
test over the test users (per-user NDCG@10 averaged over the seeds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import polars as pl
import torch
from scipy.stats import wilcoxon

from bbqrec.evaluation import EvalSet, mean_metrics, target_ranks
from bbqrec.evaluation.metrics import ndcg_at_k
from bbqrec.training import (
    TrainConfig,
    TrainingSequences,
    build_model,
    count_items,
    fit,
    refit_schedule,
    seed_everything,
)


def through_validation(valid: pl.DataFrame) -> pl.DataFrame:
    """valid.parquet (user_id, history, target) -> (user_id, items): each training sequence plus its validation item."""
    return valid.select("user_id", pl.col("history").list.concat(pl.col("target")).alias("items"))


def run_seed(args, config: TrainConfig, seed: int) -> dict:
    data = Path(args.data)
    n_items = count_items(data / "items.parquet")
    valid_frame = pl.read_parquet(data / "valid.parquet")
    train = TrainingSequences.from_frame(pl.read_parquet(data / "train.parquet"), config.max_len, config.training_rows)
    more = TrainingSequences.from_frame(through_validation(valid_frame), config.max_len, config.training_rows)
    valid = EvalSet.from_frame(valid_frame, config.max_len)
    test = EvalSet.from_frame(pl.read_parquet(data / "test.parquet"), config.max_len)
    sids = args.sids.format(seed=seed) if args.sids else None

    def model():
        seed_everything(seed)
        return build_model(args.variant, config, n_items, sids, args.text, args.image)

    stopped_model, started = model(), time.perf_counter()
    stopped = fit(stopped_model, train, valid, config, seed)
    stopped_seconds = time.perf_counter() - started
    schedule = refit_schedule(stopped.log, stopped.best_epoch)
    refit_model, started = model(), time.perf_counter()
    fit(refit_model, more, None, config, seed, learning_rates=schedule)
    refit_seconds = time.perf_counter() - started
    row = {"seed": seed, "best_epoch": stopped.best_epoch, "epochs_run": stopped.log.height,
           "stopped_seconds": stopped_seconds, "refit_seconds": refit_seconds}
    for name, trained in (("stopped", stopped_model), ("refit", refit_model)):
        ranks = target_ranks(trained, test, config.eval_batch_size, config.exclude_history)
        metrics = mean_metrics(ranks, (10,))
        row |= {f"{name}_recall10": metrics["recall@10"], f"{name}_ndcg10": metrics["ndcg@10"],
                f"{name}_user_ndcg10": ndcg_at_k(ranks, 10).tolist()}
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="results/<ds>/data")
    parser.add_argument("--variant", default="sasrec")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--sids", default=None, help="semantic_ids.parquet, {seed} replaced by each seed (bbqrec)")
    parser.add_argument("--text", default=None)
    parser.add_argument("--image", default=None)
    parser.add_argument("--config-json", default="{}", help="train options (the dataset's, as the workflow gives)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    config = TrainConfig.from_dict({**json.loads(args.config_json), "threads": args.threads})
    torch.set_num_threads(config.threads)
    rows = [run_seed(args, config, seed) for seed in args.seeds]

    print(f"\n{args.data} {args.variant} ({torch.get_num_threads()} threads, {torch.__version__})\n")
    print("| seed | best epoch (run) | stopped s | refit s | stopped R@10 / N@10 | refit R@10 / N@10 | N@10 gain |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        gain = r["refit_ndcg10"] / r["stopped_ndcg10"] - 1
        print(f"| {r['seed']} | {r['best_epoch']} ({r['epochs_run']}) | {r['stopped_seconds']:.0f} | "
              f"{r['refit_seconds']:.0f} | {r['stopped_recall10']:.4f} / {r['stopped_ndcg10']:.4f} | "
              f"{r['refit_recall10']:.4f} / {r['refit_ndcg10']:.4f} | {gain:+.1%} |")
    mean = {key: sum(r[key] for r in rows) / len(rows) for key in
            ("stopped_recall10", "stopped_ndcg10", "refit_recall10", "refit_ndcg10", "stopped_seconds", "refit_seconds")}
    stopped_users = torch.tensor([r["stopped_user_ndcg10"] for r in rows]).mean(dim=0).numpy()
    refit_users = torch.tensor([r["refit_user_ndcg10"] for r in rows]).mean(dim=0).numpy()
    diff = refit_users - stopped_users
    p_value = float(wilcoxon(diff, zero_method="wilcox").pvalue) if diff.any() else 1.0
    print(f"| mean | | {mean['stopped_seconds']:.0f} | {mean['refit_seconds']:.0f} | "
          f"{mean['stopped_recall10']:.4f} / {mean['stopped_ndcg10']:.4f} | "
          f"{mean['refit_recall10']:.4f} / {mean['refit_ndcg10']:.4f} | "
          f"{mean['refit_ndcg10'] / mean['stopped_ndcg10'] - 1:+.1%} (p {p_value:.2g}, Wilcoxon) |")


if __name__ == "__main__":
    main()
