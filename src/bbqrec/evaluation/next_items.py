"""Next-item lists for every user: what a trained model recommends after everything the user did.

The evaluation ranks all items for a held-out target; a list to serve ranks them after the whole sequence, the
test target included. The model is the one the evaluation measured (trained on the training split, stopped on
validation), so the lists come from the same weights as the reported metrics.

`read_events` / `event_histories` / `history_lists` do the same for a file of events that the workflow has not
seen (new users, or what known users did since the data was prepared): workflow/scripts/recommend_events.py.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from bbqrec.data.readers import LINE, int_timestamps, read_columns
from bbqrec.data.split import user_sequences
from bbqrec.evaluation.ranking import UserHistories, check_columns, recommend
from bbqrec.io import InputError
from bbqrec.models.sasrec import SASRec

COLD_USERS = ("popularity", "skip")  # what a user with no item of the catalogue gets (config recommend.cold_users)


def latest_histories(interactions: pl.DataFrame, max_len: int, source: str = "interactions") -> UserHistories:
    """Every user's whole chronological sequence (interactions.parquet rows), cut to its last `max_len` items."""
    return UserHistories.from_sequences(_sequences(interactions, source), max_len, source)


def _sequences(interactions: pl.DataFrame, source: str) -> pl.DataFrame:
    check_columns(interactions, ("user_id", "item_id", "position"), source)
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
    left_out: pl.DataFrame | None = None,
    cold_users: str = "popularity",
) -> pl.DataFrame:
    """Top-k next items per user: user_id, user (source id), rank 1..k, item_id, item (source id), score, ranked_by.

    users / items: users.parquet / items.parquet (dense id -> source id); interactions: interactions.parquet.
    `exclude_history` drops the items a user already has (the evaluation's switch, here on by default: a list
    to show a user rarely repeats what they bought or watched). left_out: left_out_users.parquet (user, items),
    the users without a split; their rows follow, with a null user_id, in that file's order. Those with no item of
    the catalogue (cold users) have nothing for the model to rank after: with `cold_users="popularity"` they get
    the k items with the most interactions in `interactions` (ties: lower item_id first; `score` = that count,
    `ranked_by` = "popularity"), with "skip" no rows. Every other row has `ranked_by` = "model".
    """
    sequences = _sequences(interactions, "interactions.parquet")
    names = _user_names(users)
    return _ranked_lists(
        model, sequences, names, left_out, "left_out_users.parquet", interactions, items, k, exclude_history,
        batch_size, backend, cold_users,
    )


def history_lists(
    model: SASRec,
    histories: pl.DataFrame,
    interactions: pl.DataFrame,
    items: pl.DataFrame,
    k: int = 20,
    exclude_history: bool = True,
    batch_size: int = 256,
    backend: str = "matmul",
    cold_users: str = "popularity",
    source: str = "histories",
) -> pl.DataFrame:
    """`next_item_lists` for the given histories instead of the dataset's users: user, rank, item_id, item, score,
    ranked_by, the users in the order of `histories` (user, items: list<i32> item_ids in time order, e.g. from
    `event_histories`). A user with an empty list gets the popularity list of `interactions` (or none, "skip")."""
    sequences = pl.DataFrame(schema={"user_id": pl.Int32, "items": pl.List(pl.Int32)})
    names = pl.DataFrame(schema={"user_id": pl.Int32, "user": pl.String})
    lists = _ranked_lists(
        model, sequences, names, histories, source, interactions, items, k, exclude_history, batch_size, backend,
        cold_users,
    )
    return lists.drop("user_id")


def prepared_histories(
    interactions: pl.DataFrame, users: pl.DataFrame, left_out: pl.DataFrame | None = None
) -> pl.DataFrame:
    """user (source id), items: every prepared user's whole sequence (interactions.parquet, users.parquet), then,
    with `left_out` (left_out_users.parquet: user, items), the users the preparation left out with their items."""
    histories = (
        _sequences(interactions, "interactions.parquet")
        .join(_user_names(users), on="user_id")
        .select("user", pl.col("items").cast(pl.List(pl.Int32)))
    )
    if left_out is None:
        return histories
    check_columns(left_out, ("user", "items"), "left_out_users.parquet")
    return pl.concat([histories, left_out.select("user", pl.col("items").cast(pl.List(pl.Int32)))])


def read_left_out_users(path: str | Path) -> pl.DataFrame | None:
    """left_out_users.parquet (user, items; timestamps where this version wrote it), or None where the workflow has
    not written it (data prepared outside it)."""
    path = Path(path)
    if not path.exists():
        return None
    left_out = pl.read_parquet(path)
    check_columns(left_out, ("user", "items"), str(path))
    return left_out


def mark_prepared_events(
    events: pl.DataFrame,
    interactions: pl.DataFrame,
    users: pl.DataFrame,
    items: pl.DataFrame,
    left_out: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The events (`read_events`) with a column `prepared`: true for an event of a known user with the same item and
    timestamp as one of their interactions, which `event_histories` then skips, so that a file repeating what the
    data holds does not count it twice. `left_out` (left_out_users.parquet: user, items, timestamps): the users the
    preparation left out are known too (a file without `timestamps`, from before it had them: none of theirs is
    marked). Without timestamps (in the events or the dataset) none is marked."""
    if events["timestamp"].null_count() or interactions["timestamp"].null_count():
        return events.with_columns(prepared=pl.lit(False))
    held = (
        interactions.join(_user_names(users), on="user_id")
        .select("user", "item_id", pl.col("timestamp").cast(pl.Int64))
    )
    if left_out is not None and "timestamps" in left_out.columns:
        theirs = (
            left_out.select("user", pl.col("items").alias("item_id"), pl.col("timestamps").alias("timestamp"))
            .explode("item_id", "timestamp")
            .drop_nulls()  # a user with no item of the catalogue: one null row
        )
        held = pl.concat([held, theirs], how="vertical_relaxed")
    held = (
        held.join(_item_names(items), on="item_id")
        .select("user", "item", "timestamp")
        .unique()
        .with_columns(prepared=pl.lit(True))
    )
    return events.join(held, on=["user", "item", "timestamp"], how="left", maintain_order="left").with_columns(
        pl.col("prepared").fill_null(False)
    )


def read_events(
    path: str | Path, user: str = "user", item: str = "item", timestamp: str | None = "timestamp", separator: str = ","
) -> pl.DataFrame:
    """A table of events (CSV or Parquet): columns `user` and `item` (source ids, as in users.parquet and
    items.parquet) and, unless `timestamp` is None, an integer or datetime time. Returns line, user, item (str)
    and timestamp (Int64, null without the column). An empty user or item is an error naming the line."""
    path = Path(path)
    frame = read_columns(path, [user, item] + ([timestamp] if timestamp else []), separator)
    if timestamp:
        frame = int_timestamps(frame, timestamp, path)
    events = frame.select(
        LINE,
        pl.col(user).cast(pl.String).alias("user"),
        pl.col(item).cast(pl.String).alias("item"),
        (pl.col(timestamp) if timestamp else pl.lit(None, dtype=pl.Int64)).alias("timestamp"),
    )
    for column, name in (("user", user), ("item", item)):
        empty = events.filter(pl.col(column).is_null() | (pl.col(column) == ""))
        if empty.height:
            raise InputError(f"{path}, line {empty[LINE][0]}: empty {name!r}, expected the {column}'s id")
    return events


def event_histories(events: pl.DataFrame, items: pl.DataFrame, known: pl.DataFrame | None = None) -> pl.DataFrame:
    """user, items (list<i32> item_ids): each user's events (`read_events`) in time order, equal or missing
    timestamps in row order, one row per user in order of first appearance. Items outside the catalogue
    (items.parquet), and those marked `prepared` (`mark_prepared_events`), are skipped, so a user with none left
    has an empty list. `known` (user, items; `prepared_histories`): the histories these events continue, put
    before the events of the users that have one.
    """
    item_id = pl.col("item_id")
    if "prepared" in events.columns:  # `mark_prepared_events`: already in `known`
        item_id = pl.when(~pl.col("prepared")).then(item_id)
    histories = (
        events.with_row_index("order")
        .join(_item_names(items), on="item", how="left")
        .with_columns(item_id)
        .sort("timestamp", "order", nulls_last=True)
        .group_by("user", maintain_order=True)
        .agg(pl.col("item_id").drop_nulls().alias("items"), pl.col("order").min().alias("first"))
        .sort("first")
        .drop("first")
    )
    if known is None:
        return histories
    return histories.join(known.rename({"items": "before"}), on="user", how="left", maintain_order="left").select(
        "user",
        pl.when(pl.col("before").is_null()).then("items").otherwise(pl.col("before").list.concat("items")).alias("items"),
    )


def _ranked_lists(
    model: SASRec,
    sequences: pl.DataFrame,
    names: pl.DataFrame,
    extra: pl.DataFrame | None,
    extra_source: str,
    interactions: pl.DataFrame,
    items: pl.DataFrame,
    k: int,
    exclude_history: bool,
    batch_size: int,
    backend: str,
    cold_users: str,
) -> pl.DataFrame:
    """The lists of `next_item_lists`: the users of `sequences` (user_id, items; names: user_id -> user), then
    those of `extra` (user, items; read from `extra_source`), whose user_id is null."""
    if cold_users not in COLD_USERS:
        raise InputError(f"config key recommend.cold_users: expected one of {list(COLD_USERS)}, got {cold_users!r}")
    n_items = model.config.n_items
    if items.height != n_items:
        raise InputError(f"items.parquet: {items.height} items, but the model was trained on {n_items}")
    if not 1 <= k <= n_items:
        raise InputError(f"config key recommend.k: expected 1..{n_items} (the number of items), got {k}")
    # Extra users get stand-in ids from here on, so that one ranking pass serves both; nulled below.
    first = int(sequences["user_id"].max() or 0) + 1
    cold = pl.DataFrame(schema={"user_id": pl.Int32})
    if extra is not None:
        _check_extra(extra, n_items, extra_source)
        extra = extra.select(pl.int_range(first, first + pl.len(), dtype=pl.Int32).alias("user_id"), "user", "items")
        is_cold = pl.col("items").list.len() == 0
        sequences = pl.concat([sequences, extra.filter(~is_cold).select("user_id", "items")], how="vertical_relaxed")
        names = pl.concat([names, extra.select("user_id", "user")])
        cold = extra.filter(is_cold).select("user_id")
    histories = UserHistories.from_sequences(sequences, model.config.max_len, "interactions.parquet")
    # What a user has is the whole sequence, not only the model's window of its last max_len items.
    lists = recommend(model, histories, k, batch_size, exclude_history, backend, seen=sequences["items"])
    lists = lists.with_columns(ranked_by=pl.lit("model"))
    if cold_users == "popularity" and cold.height:
        lists = pl.concat([lists, cold.join(_most_popular(interactions, k), how="cross")])
    return (
        lists.join(names, on="user_id", how="left")
        .join(_item_names(items), on="item_id", how="left")
        .sort("user_id", "rank")
        .select(
            pl.when(pl.col("user_id") < first).then("user_id").alias("user_id"),
            "user", "rank", "item_id", "item", "score", "ranked_by",
        )
    )


def _user_names(users: pl.DataFrame) -> pl.DataFrame:
    """user_id (i32) -> user (source id), from users.parquet."""
    return users.select(pl.col("user_id").cast(pl.Int32), pl.col("source_id").alias("user"))


def _item_names(items: pl.DataFrame) -> pl.DataFrame:
    """item_id (i32) -> item (source id), from items.parquet."""
    return items.select(pl.col("item_id").cast(pl.Int32), pl.col("source_id").alias("item"))


def _most_popular(interactions: pl.DataFrame, k: int) -> pl.DataFrame:
    """rank, item_id, score (the item's number of interactions), ranked_by: the k most frequent items."""
    return (
        interactions.group_by("item_id")
        .len()
        .sort(["len", "item_id"], descending=[True, False])
        .head(k)
        .select(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("rank"),
            pl.col("item_id").cast(pl.Int32),
            pl.col("len").cast(pl.Float32).alias("score"),
            pl.lit("popularity").alias("ranked_by"),
        )
    )


def _check_extra(extra: pl.DataFrame, n_items: int, source: str) -> None:
    check_columns(extra, ("user", "items"), source)
    bad = extra.with_row_index("row").filter(
        pl.col("items").is_null() | (pl.col("items").list.min() < 1) | (pl.col("items").list.max() > n_items)
    )
    if bad.height:
        got = bad["items"][0]
        raise InputError(
            f"{source}, row {bad['row'][0]} (user {bad['user'][0]}): expected a list of item ids in "
            f"1..{n_items} (empty for a user with none), got {got.to_list() if got is not None else None}"
        )
