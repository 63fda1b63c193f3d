"""Stage recommend: the next-item list of every user from one trained model, after the user's whole sequence.

Writes `--out` (user_id, user, rank, item_id, item, score; `user` and `item` are the source ids of
users.parquet / items.parquet), the top `--k` items per user, sorted by user_id and rank. The model is the
evaluated one (trained on the training split); its histories here include the validation and test items. With
`--left-out`, the users that the preparation left out follow (null user_id), ranked after their few items; those
with no item of the catalogue get the most popular items (`ranked_by` = popularity) unless `--cold-users skip`.
"""

import argparse
import json
import logging
from dataclasses import asdict
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--model", required=True, help="train/<variant>/seed<k>/model.pt")
    parser.add_argument("--data", required=True, help="results/<ds>/data: interactions, users and items parquet")
    parser.add_argument("--left-out", help="data/left_out_users.parquet: also list for the users without a split")
    parser.add_argument(
        "--cold-users", choices=["popularity", "skip"], default="popularity",
        help="left-out users with no catalogue item: the most popular items, or no list (config recommend.cold_users)",
    )
    parser.add_argument("--k", type=int, default=20, help="items per user (config recommend.k)")
    parser.add_argument(
        "--keep-history", action="store_true", help="also list items the user already has (recommend.exclude_history: false)"
    )
    parser.add_argument("--config-json", default="{}", help="the train config block as JSON (ranking keys used)")
    parser.add_argument("--out", required=True, help="recommend/<variant>/seed<k>/next_items.parquet")
    parser.add_argument("--log", default=None, help="log file (default: stderr)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import polars as pl
    import torch

    from bbqrec.embed.common import open_stage_log
    from bbqrec.evaluation import next_item_lists
    from bbqrec.io import provenance, write_parquet
    from bbqrec.training import TrainConfig, load_trained_model

    open_stage_log(args.log)
    config = TrainConfig.from_dict(json.loads(args.config_json))
    torch.set_num_threads(config.threads)
    model = load_trained_model(args.model, args.variant, config.device)
    data = Path(args.data)
    lists = next_item_lists(
        model,
        pl.read_parquet(data / "interactions.parquet"),
        pl.read_parquet(data / "users.parquet"),
        pl.read_parquet(data / "items.parquet"),
        k=args.k,
        exclude_history=not args.keep_history,
        batch_size=config.eval_batch_size,
        backend=config.recommend_backend,
        left_out=pl.read_parquet(args.left_out) if args.left_out else None,
        cold_users=args.cold_users,
    )
    run = {"dataset": args.dataset, "variant": args.variant, "model": args.model, "k": args.k,
           "exclude_history": not args.keep_history, "cold_users": args.cold_users, "train": asdict(config)}
    write_parquet(lists, Path(args.out), metadata={"provenance": provenance(run, args.seed)})
    left_out = pl.col("user_id").is_null()
    logging.info(
        "%d users (%d left out by the preparation, %d of them with the most popular items) x up to %d items -> %s",
        lists["user"].n_unique(), lists.filter(left_out)["user"].n_unique(),
        lists.filter(pl.col("ranked_by") == "popularity")["user"].n_unique(), args.k, args.out,
    )


if __name__ == "__main__":
    main()
