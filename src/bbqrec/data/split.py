"""Leave-one-out split by position: test target = last item, valid target = the one before, train = the rest."""

from __future__ import annotations

import polars as pl


def user_sequences(interactions: pl.DataFrame) -> pl.DataFrame:
    """`user_id`, `items` list<i32> in position order, one row per user, sorted by user_id."""
    return (
        interactions.sort("user_id", "position")
        .group_by("user_id", maintain_order=True)
        .agg(pl.col("item_id").alias("items"))
    )


def leave_one_out(interactions: pl.DataFrame, max_history_len: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(train, valid, test) frames as docs/artifacts.md describes, from `user_id, item_id, position` rows.

    Every user needs at least 3 items (guaranteed by `min_seq_len`). Histories keep the last
    `max_history_len` items, oldest first, and never contain a position at or after their target's.
    """
    seqs = user_sequences(interactions).with_columns(pl.col("items").list.len().alias("n"))
    training = pl.col("items").list.head(pl.col("n") - 2)
    train = seqs.select("user_id", training.list.tail(max_history_len).alias("items"))
    valid = seqs.select(
        "user_id",
        training.list.tail(max_history_len).alias("history"),
        pl.col("items").list.get(-2).alias("target"),
    )
    test = seqs.select(
        "user_id",
        pl.col("items").list.head(pl.col("n") - 1).list.tail(max_history_len).alias("history"),
        pl.col("items").list.get(-1).alias("target"),
    )
    list_i32 = pl.List(pl.Int32)
    return (
        train.cast({"user_id": pl.Int32, "items": list_i32}),
        valid.cast({"user_id": pl.Int32, "history": list_i32, "target": pl.Int32}),
        test.cast({"user_id": pl.Int32, "history": list_i32, "target": pl.Int32}),
    )
