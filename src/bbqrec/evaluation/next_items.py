"""Next-item lists for every user: what a trained model recommends after everything the user did.

The evaluation ranks all items for a held-out target; a list to serve ranks them after the whole sequence, the
test target included. The model is the one the evaluation measured (trained on the training split, stopped on
validation), so the lists come from the same weights as the reported metrics.
"""

from __future__ import annotations

import polars as pl

from bbqrec.data.split import user_sequences
from bbqrec.evaluation.ranking import UserHistories, recommend
from bbqrec.io import InputError
from bbqrec.models.sasrec import SASRec


def latest_histories(interactions: pl.DataFrame, max_len: int, source: str = "interactions") -> UserHistories:
    """Every user's whole chronological sequence (interactions.parquet rows), cut to its last `max_len` items."""
    return UserHistories.from_sequences(_sequences(interactions, source), max_len, source)


def _sequences(interactions: pl.DataFrame, source: str) -> pl.DataFrame:
    missing = {"user_id", "item_id", "position"} - set(interactions.columns)
    if missing:
        raise InputError(f"{source}: missing column(s) {sorted(missing)}; expected user_id, item_id, position")
    return user_sequences(interactions)


def next_item_lists(
    model: SASRec,
    interactions: pl.DataFrame,
    users: pl.DataFrame,
    items: pl.DataFrame,
    k: int = 20,
    exclude_history: bool = True,
    batch_size: int = 256,
    backend: str = "matmul",
) -> pl.DataFrame:
    """Top-k next items per user: user_id, user (source id), rank 1..k, item_id, item (source id), score.

    users / items: users.parquet / items.parquet (dense id -> source id); interactions: interactions.parquet.
    `exclude_history` drops the items a user already has (the evaluation's switch, here on by default: a list
    to show a user rarely repeats what they bought or watched).
    """
    n_items = model.config.n_items
    if items.height != n_items:
        raise InputError(f"items.parquet: {items.height} items, but the model was trained on {n_items}")
    if not 1 <= k <= n_items:
        raise InputError(f"config key recommend.k: expected 1..{n_items} (the number of items), got {k}")
    sequences = _sequences(interactions, "interactions.parquet")
    histories = UserHistories.from_sequences(sequences, model.config.max_len, "interactions.parquet")
    # What a user has is the whole sequence, not only the model's window of its last max_len items.
    lists = recommend(model, histories, k, batch_size, exclude_history, backend, seen=sequences["items"])
    return (
        lists.join(users.select("user_id", pl.col("source_id").alias("user")), on="user_id", how="left")
        .join(items.select("item_id", pl.col("source_id").alias("item")), on="item_id", how="left")
        .select("user_id", "user", "rank", "item_id", "item", "score")
        .sort("user_id", "rank")
    )
