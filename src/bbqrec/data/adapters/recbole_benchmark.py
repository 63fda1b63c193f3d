"""RecBole / UniSRec benchmark splits (`<name>.{train,valid,test}.inter`, `.item2index`, `.user2index`, `.text`).

The .inter files hold one row per prefix: `user_id  item_id_list  item_id` (history, target), histories cut to
the last `history_len` items. Each user's full chronological sequence is rebuilt from them: for most users the
test row is the whole sequence; for users whose test history was cut, the earlier items are chained back from the
train rows. The rebuilt sequences are then checked to reproduce every published row exactly.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from bbqrec.data.raw import RawDataset, item_frame, require_known, require_one_to_one
from bbqrec.data.readers import LINE, cast_int, read_table, split_int_lists
from bbqrec.io import InputError

SPLITS = ("train", "valid", "test")


def load(sources: list[Path], options: dict[str, Any]) -> RawDataset:
    folder, name = sources[0], options["name"]
    item_index_path, user_index_path = folder / f"{name}.item2index", folder / f"{name}.user2index"
    item_index = cast_int(read_table(item_index_path, ["item", "index"], header=False), "index", item_index_path)
    user_index = cast_int(read_table(user_index_path, ["user", "index"], header=False), "index", user_index_path)
    require_one_to_one(item_index, ["item", "index"], item_index_path)
    require_one_to_one(user_index, ["user", "index"], user_index_path)

    rows = pl.concat([_read_inter(folder / f"{name}.{split}.inter", split) for split in SPLITS])
    for split in SPLITS:
        part = rows.filter(pl.col("split") == split)
        split_path = folder / f"{name}.{split}.inter"
        require_known(part, "user_id", user_index["index"], split_path, user_index_path)
        used = pl.concat(
            [
                part.select(LINE, pl.col("history").alias("item_id")).explode("item_id"),
                part.select(LINE, pl.col("target").alias("item_id")),
            ]
        ).sort(LINE, maintain_order=True)
        require_known(used, "item_id", item_index["index"], split_path, item_index_path)

    sequences = _rebuild_sequences(rows, options["history_len"], folder, name)
    interactions = (
        sequences.explode("items")
        .join(user_index.select(pl.col("index").alias("user_id"), "user"), on="user_id", maintain_order="left")
        .join(item_index.select(pl.col("index").alias("items"), "item"), on="items", maintain_order="left")
        .select("user", "item", pl.lit(None, dtype=pl.Int64).alias("timestamp"))
    )
    users = user_index.select("user", pl.col("index").alias("order"))
    items = _items(folder, name, item_index, options)
    features = _features(folder, sources[0].name, item_index.height, options)
    if features:
        items = items.with_columns(pl.col("order").cast(pl.Int32).alias("source_row"))
    return RawDataset(
        interactions=interactions,
        users=users,
        items=item_frame(items),
        features=features,
        notes={"published_split_verified": True},
    )


def _read_inter(path: Path, split: str) -> pl.DataFrame:
    """`line, split, user_id, history list<i64>, target` of one .inter file."""
    table = read_table(path, ["user_id", "item_id_list", "item_id"], header=True)
    table = cast_int(cast_int(table, "user_id", path), "item_id", path)
    histories = split_int_lists(table.select(LINE, pl.col("item_id_list").alias("text")), path)
    return table.select(LINE, pl.lit(split).alias("split"), "user_id", pl.col("item_id").alias("target")).with_columns(
        histories["values"].alias("history")
    )


def _rebuild_sequences(rows: pl.DataFrame, history_len: int, folder: Path, name: str) -> pl.DataFrame:
    """`user_id, items` (full chronological sequence) per user, in user_id order; checked against every row."""
    test = rows.filter(pl.col("split") == "test").sort("user_id")
    counts = rows.group_by("user_id").agg(pl.len().alias("rows"), (pl.col("split") == "test").sum().alias("tests"))
    once = counts.filter(pl.col("tests") != 1)
    if once.height:
        test_path = folder / f"{name}.test.inter"
        raise InputError(f"{test_path}: user {once['user_id'][0]} has {once['tests'][0]} test rows, expected 1")
    # A user with n items has n - 1 rows (one per target position 1..n-1); an uncut test history has n - 1 items.
    test = test.join(counts, on="user_id").with_columns(pl.col("history").list.len().alias("seen"))
    whole = test.filter(pl.col("seen") == pl.col("rows"))
    cut = test.filter(pl.col("seen") != pl.col("rows"))
    sequences = [whole.select("user_id", pl.col("history").list.concat(pl.col("target")).alias("items"))]
    if cut.height:
        sequences.append(
            _chain(rows.filter(pl.col("user_id").is_in(cut["user_id"].implode())), history_len, folder, name)
        )
    sequences = pl.concat(sequences).sort("user_id")
    _check_reproduces(rows, sequences, history_len, folder, name)
    return sequences


def _chain(rows: pl.DataFrame, history_len: int, folder: Path, name: str) -> pl.DataFrame:
    """Sequences of the (few) users whose histories were cut: follow the rows from the first item on.

    The row at position p (p >= history_len) has history seq[p - history_len : p], so knowing seq[:p] finds it.
    Rows with an uncut history give their own position (= history length) directly.
    """
    by_history: dict[tuple[int, tuple[int, ...]], list[int]] = defaultdict(list)
    prefixes: dict[int, list[int]] = {}
    rows_per_user: dict[int, int] = defaultdict(int)
    for user, history, target in rows.select("user_id", "history", "target").iter_rows():
        rows_per_user[user] += 1
        by_history[(user, tuple(history[-history_len:]))].append(target)
        if len(history) == history_len - 1:
            prefixes[user] = [*history, target]
    users, items = [], []
    for user, n_rows in sorted(rows_per_user.items()):
        seq = prefixes.get(user)
        if seq is None:
            raise InputError(
                f"{folder}/{name}.train.inter: user {user} has no row with a {history_len - 1}-item history"
            )
        while len(seq) < n_rows + 1:
            targets = by_history.get((user, tuple(seq[-history_len:])))
            if not targets:
                raise InputError(
                    f"{folder}/{name}.train.inter: cannot rebuild the sequence of user {user}: no row continues "
                    f"its first {len(seq)} items"
                )
            seq.append(targets.pop(0))
        users.append(user)
        items.append(seq)
    return pl.DataFrame({"user_id": users, "items": items}, schema={"user_id": pl.Int64, "items": pl.List(pl.Int64)})


def _check_reproduces(rows: pl.DataFrame, sequences: pl.DataFrame, history_len: int, folder: Path, name: str) -> None:
    """Every published row equals the (history, target) that the rebuilt sequence gives at its position."""
    expected = (
        sequences.with_columns(pl.int_ranges(1, pl.col("items").list.len()).alias("position"))
        .explode("position")
        .with_columns(pl.col("items").list.len().alias("n"))
        .select(
            "user_id",
            pl.when(pl.col("position") == pl.col("n") - 1)
            .then(pl.lit("test"))
            .when(pl.col("position") == pl.col("n") - 2)
            .then(pl.lit("valid"))
            .otherwise(pl.lit("train"))
            .alias("split"),
            pl.col("items").list.head(pl.col("position")).list.tail(history_len).alias("history"),
            pl.col("items").list.get(pl.col("position")).alias("target"),
        )
    )
    key = ["user_id", "split", "history", "target"]
    as_text = pl.col("history").list.eval(pl.element().cast(pl.String)).list.join(" ")
    # Compare as multisets: a row may legitimately repeat when an item repeats in a sequence.
    published = rows.select(key).with_columns(as_text).group_by(key).len()
    rebuilt = expected.with_columns(as_text).group_by(key).len()
    diff = published.join(rebuilt, on=key, how="full", coalesce=True, nulls_equal=True).filter(
        pl.col("len").ne_missing(pl.col("len_right"))
    )
    if diff.height:
        row = diff.sort(key[:2]).row(0, named=True)
        split_path = folder / f"{name}.{row['split']}.inter"
        raise InputError(
            f"{split_path}: user {row['user_id']}: the published rows disagree with the sequence rebuilt from all "
            f"rows, at (history [{row['history']}], target {row['target']})"
        )


def _items(folder: Path, name: str, item_index: pl.DataFrame, options: dict[str, Any]) -> pl.DataFrame:
    """`item, order` from item2index with the text of `<name>.text` (whole text, or split where unambiguous)."""
    text_path = folder / f"{name}.text"
    text = read_table(text_path, ["item_id", "text"], header=True)
    require_one_to_one(text, ["item_id"], text_path)
    require_known(
        text.rename({"item_id": "item"}), "item", item_index["item"], text_path, folder / f"{name}.item2index"
    )
    items = item_index.select("item", pl.col("index").alias("order")).join(
        text.select(pl.col("item_id").alias("item"), pl.col("text").str.strip_chars()),
        on="item",
        how="left",
        maintain_order="left",
    )
    if not options["split_text"]:
        return items.select("item", "order", pl.col("text").alias("title"))
    # UniSRec writes "title. categories. brand. "; split only where ". " occurs exactly twice.
    parts = pl.col("text").str.strip_suffix(".").str.split(". ")
    clean = parts.list.len() == 3
    return items.select(
        "item",
        "order",
        pl.when(clean).then(parts.list.get(0, null_on_oob=True)).otherwise(pl.col("text")).alias("title"),
        pl.when(clean).then(parts.list.get(1, null_on_oob=True)).alias("categories"),
        pl.when(clean).then(parts.list.get(2, null_on_oob=True)).alias("brand"),
    )


def _features(folder: Path, source: str, n_items: int, options: dict[str, Any]) -> dict[str, Any]:
    """Declared feature matrices, checked to be float32 (n_items, feature_dim); paths relative to data_root."""
    dim = options["feature_dim"]
    out = {}
    for modality, file_name in sorted(options["features"].items()):
        path = folder / file_name
        if not path.is_file():
            raise InputError(f"{path}: feature file not found (options.features.{modality})")
        size = path.stat().st_size
        if size != n_items * dim * np.dtype(np.float32).itemsize:
            raise InputError(
                f"{path}: {size} bytes, expected float32 ({n_items}, {dim}) = {n_items * dim * 4} bytes "
                f"(options.features.{modality}, options.feature_dim)"
            )
        out[modality] = {
            "path": f"{source}/{file_name}",
            "dim": dim,
            "rows": n_items,
            "dtype": "float32",
            "relative_to": "data_root",
            "row": "source_row",
        }
    return out
