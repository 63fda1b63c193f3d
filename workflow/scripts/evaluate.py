"""Stage evaluate: full-ranking leave-one-out evaluation of one trained model on valid and test.

Writes metrics.parquet (dataset, variant, seed, split, metric, k, value; both splits),
user_metrics.parquet (user_id, split, metric, k, value; both splits) and recommendations.parquet
(user_id, rank, item_id, score; top `recommend_k` for the test histories, by matmul or faiss).
"""

import argparse
import json
import logging
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--model", required=True, help="train/<variant>/seed<k>/model.pt")
    parser.add_argument("--data", required=True, help="results/<ds>/data: valid and test parquet files")
    parser.add_argument("--config-json", default="{}", help="the train config block as JSON (evaluation keys used)")
    parser.add_argument("--out", required=True, help="output folder: metrics, user_metrics, recommendations parquet")
    parser.add_argument("--log", default=None, help="log file (default: stderr)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import polars as pl
    import torch

    from bbqrec.embed.common import open_stage_log
    from bbqrec.evaluation import EvalSet, mean_metrics, recommend, target_ranks, user_metrics_frame
    from bbqrec.io import provenance, write_parquet
    from bbqrec.training import TrainConfig, load_trained_run

    open_stage_log(args.log)
    config = TrainConfig.from_dict(json.loads(args.config_json))
    torch.set_num_threads(config.threads)
    model, trained = load_trained_run(args.model, args.variant, config.device)
    data, out = Path(args.data), Path(args.out)
    # Where the model was trained travels with its metrics: compare reports runs from other CPUs or code.
    run = {"dataset": args.dataset, "variant": args.variant, "model": args.model,
           "trained": {key: trained.get(key) for key in ("code", "platform", "cpu")}}
    meta = {"provenance": provenance(run, args.seed)}
    rows, per_user, test = [], [], None
    for split in ("valid", "test"):
        frame = EvalSet.from_frame(pl.read_parquet(data / f"{split}.parquet"), model.config.max_len, str(data / f"{split}.parquet"))
        ranks = target_ranks(model, frame, config.eval_batch_size, config.exclude_history)
        for name, value in mean_metrics(ranks, config.ks).items():
            metric, k = name.split("@")
            rows.append({"split": split, "metric": metric, "k": int(k), "value": value})
            logging.info("%s %s %.5f", split, name, value)
        per_user.append(user_metrics_frame(frame.user_ids, ranks, config.ks, split))
        test = frame
    metrics = pl.DataFrame(rows).select(
        pl.lit(args.dataset).alias("dataset"),
        pl.lit(args.variant).alias("variant"),
        pl.lit(args.seed, dtype=pl.Int32).alias("seed"),
        "split",
        "metric",
        pl.col("k").cast(pl.Int32),
        pl.col("value").cast(pl.Float64),
    )
    recommendations = recommend(
        model, test, config.recommend_k, config.eval_batch_size, config.exclude_history, config.recommend_backend
    )
    write_parquet(metrics, out / "metrics.parquet", metadata=meta)
    write_parquet(pl.concat(per_user), out / "user_metrics.parquet", metadata=meta)
    write_parquet(recommendations, out / "recommendations.parquet", metadata=meta)


if __name__ == "__main__":
    main()
