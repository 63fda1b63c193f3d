"""Next-item lists after new events, from a trained model: serving without rerunning the workflow.

Reads `--events` (CSV or Parquet: user and item source ids, as in users.parquet / items.parquet, and a timestamp
unless `--timestamp-column ""`) and writes `--out` (user, rank, item_id, item, score, ranked_by), the top `--k`
items after each user's events, users in order of first appearance. A user the dataset knows (users.parquet, or
left_out_users.parquet: too few interactions for a split) continues their sequence (`--known-users extend`, the
default; an event with the same item and timestamp as one of their interactions is already there and skipped) or
starts afresh with the file's events (`replace`). Items outside the catalogue are skipped; a user left with no
item of it gets the most popular items (`ranked_by` = popularity) unless `--cold-users skip`.

    python workflow/scripts/recommend_events.py --model results/<ds>/train/bbqrec/seed0/model.pt \\
        --variant bbqrec --data results/<ds>/data --events today.csv --out today_lists.parquet
"""

import argparse
import logging
import sys
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="results/<ds>/train (or refit)/<variant>/seed<k>/model.pt")
    parser.add_argument("--variant", required=True, help="the variant model.pt holds")
    parser.add_argument("--data", required=True, help="results/<ds>/data: interactions, users and items parquet")
    parser.add_argument("--events", required=True, help="CSV or Parquet file of events (user, item, timestamp)")
    parser.add_argument("--user-column", default="user")
    parser.add_argument("--item-column", default="item")
    parser.add_argument(
        "--timestamp-column", default="timestamp", help='integer or datetime; "" for none (the file order is the order)'
    )
    parser.add_argument("--separator", default=",", help="CSV field separator")
    parser.add_argument(
        "--known-users", choices=["extend", "replace"], default="extend",
        help="a user of users.parquet: their prepared sequence, then the events (extend), or the events alone",
    )
    parser.add_argument("--k", type=int, default=20, help="items per user")
    parser.add_argument("--keep-history", action="store_true", help="also list items the user already has")
    parser.add_argument("--cold-users", choices=["popularity", "skip"], default="popularity")
    parser.add_argument("--backend", choices=["matmul", "faiss"], default="matmul")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="the lists, a .parquet file")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import polars as pl
    import torch

    from bbqrec.evaluation import (
        event_histories,
        history_lists,
        mark_prepared_events,
        prepared_histories,
        read_events,
        read_left_out_users,
    )
    from bbqrec.io import InputError, provenance, write_parquet
    from bbqrec.training import load_trained_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    try:
        if Path(args.out).suffix != ".parquet":
            raise InputError(f"--out {args.out}: expected a .parquet file")
        events = read_events(
            args.events, args.user_column, args.item_column, args.timestamp_column or None, args.separator
        )
        if events.height == 0:
            raise InputError(f"{args.events}: no events, expected at least one row")
        model = load_trained_model(args.model, args.variant, args.device)
        if not 1 <= args.k <= model.config.n_items:
            raise InputError(f"--k: expected 1..{model.config.n_items} (the number of items), got {args.k}")
        interactions = pl.read_parquet(data / "interactions.parquet")
        users, items = pl.read_parquet(data / "users.parquet"), pl.read_parquet(data / "items.parquet")
        known, left_out = None, read_left_out_users(data / "left_out_users.parquet")
        if args.known_users == "extend":  # what the data already holds is not repeated (same item and time)
            if left_out is not None and "timestamps" not in left_out.columns:
                logging.warning(
                    "%s has no timestamps (an older version wrote it): events of its users that repeat what it holds "
                    "are counted twice; rerun its rule to mend (snakemake -R left_out_users)",
                    data / "left_out_users.parquet",
                )
            known = prepared_histories(interactions, users, left_out)
            events = mark_prepared_events(events, interactions, users, items, left_out)
        histories = event_histories(events, items, known)
        lists = history_lists(
            model, histories, interactions, items, k=args.k, exclude_history=not args.keep_history,
            backend=args.backend, cold_users=args.cold_users, source=args.events,
        )
    except InputError as err:
        logging.error("%s", err)
        return 1
    run = {"stage": "recommend_events", "model": args.model, "variant": args.variant, "events": args.events,
           "known_users": args.known_users, "k": args.k, "exclude_history": not args.keep_history,
           "cold_users": args.cold_users}
    write_parquet(lists, Path(args.out), metadata={"provenance": provenance(run)})
    outside = events.join(items.select(pl.col("source_id").alias("item")), on="item", how="anti").height
    known_users = events.join(users.select(pl.col("source_id").alias("user")), on="user", how="semi")["user"].n_unique()
    left_out_users = 0 if left_out is None else events.join(left_out, on="user", how="semi")["user"].n_unique()
    already = int(events["prepared"].sum()) if "prepared" in events.columns else 0
    logging.info(
        "%d events of %d users (%d known to the dataset, %d more left out by its preparation; %d events already in "
        "it and %d with items outside the catalogue, skipped); %d users with the most popular items -> %s",
        events.height, histories.height, known_users, left_out_users, already, outside,
        lists.filter(pl.col("ranked_by") == "popularity")["user"].n_unique(), args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
