"""S3-Rec benchmark files (`<name>.txt`: `user item1 item2 ...`, chronological, integer ids).

The line order of each sequence is the S3-Rec order and is kept as the chronology (it is the reference for
evaluation). An optional second source (amazon-s3rec-asin) maps the integer ids to ASINs / reviewerIDs
(`<name>_item_map.tsv`, `<name>_user_map.tsv`), which become the source ids, and gives titles
(`<name>_item_titles.tsv`, Beauty only). Without it the S3-Rec integers are the source ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from bbqrec.data.raw import RawDataset, item_frame, require_known, require_one_to_one
from bbqrec.data.readers import LINE, cast_int, read_lines, read_table, split_int_lists
from bbqrec.io import InputError


def load(sources: list[Path], options: dict[str, Any]) -> RawDataset:
    name = options["name"]
    path = sources[0] / f"{name}.txt"
    lines = split_int_lists(read_lines(path), path)
    short = lines.filter(pl.col("values").list.len() < 2)
    if short.height:
        raise InputError(f"{path}, line {short[LINE][0]}: expected 'user item1 item2 ...', got {short['text'][0]!r}")
    lines = lines.select(
        LINE, pl.col("values").list.first().alias("s3_user"), pl.col("values").list.slice(1).alias("s3_item")
    )
    dup = lines.filter(pl.col("s3_user").is_duplicated())
    if dup.height:
        raise InputError(f"{path}, line {dup[LINE][1]}: user {dup['s3_user'][0]} already has a line")
    pairs = lines.explode("s3_item")

    users = lines.select("s3_user", pl.col("s3_user").alias("order"))
    items = pairs.select("s3_item").unique().sort("s3_item").with_columns(pl.col("s3_item").alias("order"))
    if len(sources) > 1:
        users = _attach(
            users, "s3_user", sources[1] / f"{name}_user_map.tsv", "s3rec_user_id", "reviewerID", pairs, path
        )
        items = _attach(items, "s3_item", sources[1] / f"{name}_item_map.tsv", "s3rec_item_id", "asin", pairs, path)
        titles_path = sources[1] / f"{name}_item_titles.tsv"
        if titles_path.is_file():
            items = items.join(_titles(titles_path), on="s3_item", how="left", maintain_order="left")
    else:
        users = users.with_columns(pl.col("s3_user").cast(pl.String).alias("source_id"))
        items = items.with_columns(pl.col("s3_item").cast(pl.String).alias("source_id"))

    interactions = (
        pairs.join(users.select("s3_user", pl.col("source_id").alias("user")), on="s3_user", maintain_order="left")
        .join(items.select("s3_item", pl.col("source_id").alias("item")), on="s3_item", maintain_order="left")
        .select("user", "item", pl.lit(None, dtype=pl.Int64).alias("timestamp"))
    )
    return RawDataset(
        interactions=interactions,
        users=users.select(pl.col("source_id").alias("user"), "order"),
        items=item_frame(items.drop("s3_item").rename({"source_id": "item"})),
    )


def _attach(
    ids: pl.DataFrame, column: str, map_path: Path, map_key: str, map_value: str, pairs: pl.DataFrame, seq_path: Path
) -> pl.DataFrame:
    """`ids` with `source_id` from a `<int>\t<string>` map; an id of the sequence file missing there is an error."""
    table = cast_int(read_table(map_path, [map_key, map_value], header=True), map_key, map_path)
    require_one_to_one(table, [map_key, map_value], map_path)
    where = pairs if column == "s3_item" else pairs.unique(column, keep="first", maintain_order=True)
    require_known(where, column, table[map_key], seq_path, map_path)
    return ids.join(
        table.select(pl.col(map_key).alias(column), pl.col(map_value).alias("source_id")),
        on=column,
        maintain_order="left",
    )


def _titles(path: Path) -> pl.DataFrame:
    table = cast_int(read_table(path, ["s3rec_item_id", "asin", "title"], header=True), "s3rec_item_id", path)
    return table.select(pl.col("s3rec_item_id").alias("s3_item"), "title").unique(
        "s3_item", keep="first", maintain_order=True
    )
