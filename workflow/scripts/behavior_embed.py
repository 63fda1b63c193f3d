"""Stage behavior_embed: the behaviour embedding x_B(i) of every item, from an ID-only SASRec.

The model is trained on the TRAINING sequences only: its own validation target is the last item of each
training sequence (never the real valid/test targets), its training sequences the rest. Writes
`--out` (item_id, embedding fixed_size_list<f32>[D]), one row per item of items.parquet, sorted by
item_id; the embedding is the item's learned ID vector. Same model and trainer code as the train stage.
"""

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="results/<ds>/data: items.parquet and train.parquet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config-json", default="{}", help="train config as JSON (keys: DEFAULT_TRAIN_CONFIG)")
    parser.add_argument("--out", required=True, help="embeddings/behavior/seed<k>.parquet (the workflow: one per seed)")
    parser.add_argument("--log", default=None, help="log file (default: stderr)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import polars as pl
    import pyarrow as pa
    import torch

    from bbqrec.embed.common import open_stage_log
    from bbqrec.evaluation import EvalSet
    from bbqrec.io import provenance, write_parquet
    from bbqrec.training import TrainConfig, TrainingSequences, build_model, count_items, fit, seed_everything

    open_stage_log(args.log)
    config = TrainConfig.from_dict(json.loads(args.config_json))
    torch.set_num_threads(config.threads)
    data, out = Path(args.data), Path(args.out)
    n_items = count_items(data / "items.parquet")
    sequences = pl.read_parquet(data / "train.parquet").filter(pl.col("items").list.len() >= 2)
    inner_train = sequences.select("user_id", pl.col("items").list.head(pl.col("items").list.len() - 1))
    inner_valid = sequences.select(
        "user_id", pl.col("items").list.head(pl.col("items").list.len() - 1).alias("history"),
        pl.col("items").list.last().alias("target"),
    )
    seed_everything(args.seed)
    model = build_model("sasrec", config, n_items)
    result = fit(
        model,
        TrainingSequences.from_frame(inner_train, config.max_len, config.training_rows),
        EvalSet.from_frame(inner_valid, config.max_len, f"{data / 'train.parquet'} (last items)"),
        config,
        args.seed,
        out.with_name(out.name + ".checkpoint.pt"),
        on_epoch=lambda row: logging.info("%s", row),
    )
    vectors = model.item_vectors()[1:].detach().cpu().numpy().astype(np.float32)  # items 1..n_items
    table = pa.table(
        {
            "item_id": pa.array(np.arange(1, n_items + 1, dtype=np.int32)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]),
        }
    )
    run = {"stage": "behavior_embed", "train": asdict(config), "best_epoch": result.best_epoch,
           "inner_valid_ndcg10": result.best_metric}
    write_parquet(table, out, metadata={"provenance": provenance(run, args.seed), "dim": vectors.shape[1]})
    out.with_name(out.name + ".checkpoint.pt").unlink(missing_ok=True)
    logging.info("best epoch %d, inner-validation NDCG@10 %.5f", result.best_epoch, result.best_metric)


if __name__ == "__main__":
    main()
