"""A user's own catalogue: an interactions table and an optional item table, each CSV or Parquet.

Column names are options. Without a timestamp column the file order is the chronology; with one, equal
timestamps keep the file order. Ids are numbered in order of first appearance in the interactions table.
Image values that are neither URLs nor absolute paths are taken relative to the item table's folder and
stored relative to data_root, like every other dataset's image paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from bbqrec.data.raw import TEXT_COLUMNS, RawDataset, first_appearance, item_frame, require_known, require_one_to_one
from bbqrec.data.readers import LINE, int_timestamps, read_columns
from bbqrec.io import InputError


def load(sources: list[Path], options: dict[str, Any]) -> RawDataset:
    folder = sources[0]
    inter_path = folder / options["interactions"]
    columns = options["columns"]
    wanted = [columns["user"], columns["item"]] + ([columns["timestamp"]] if columns["timestamp"] else [])
    inter = read_columns(inter_path, wanted, options["separator"])
    if columns["timestamp"]:
        inter = int_timestamps(inter, columns["timestamp"], inter_path)
    interactions = inter.select(
        LINE,
        pl.col(columns["user"]).cast(pl.String).alias("user"),
        pl.col(columns["item"]).cast(pl.String).alias("item"),
        (pl.col(columns["timestamp"]) if columns["timestamp"] else pl.lit(None, dtype=pl.Int64)).alias("timestamp"),
    )
    for column in ("user", "item"):
        missing = interactions.filter(pl.col(column).is_null())
        if missing.height:
            raise InputError(f"{inter_path}, line {missing[LINE][0]}: empty {columns[column]!r}")

    items = first_appearance(interactions["item"], "item")
    if options["items"] is not None:
        catalogue = _items(folder, options)
        require_known(interactions, "item", catalogue["item"], inter_path, folder / options["items"])
        items = items.join(catalogue, on="item", how="left", maintain_order="left")
    return RawDataset(
        interactions=interactions.drop(LINE),
        users=first_appearance(interactions["user"], "user"),
        items=item_frame(items),
    )


def _items(folder: Path, options: dict[str, Any]) -> pl.DataFrame:
    """`item` + text/image columns of the item table; one row per item."""
    path = folder / options["items"]
    names = options["item_columns"]
    present = {target: names[target] for target in (*TEXT_COLUMNS, "image") if names[target]}
    table = read_columns(path, [names["item"], *dict.fromkeys(present.values())], options["separator"])
    require_one_to_one(table, [names["item"]], path)
    items = table.select(
        pl.col(names["item"]).cast(pl.String).alias("item"),
        *[pl.col(source).cast(pl.String).alias(target) for target, source in present.items()],
    )
    if "image" in items.columns:
        base = (Path(folder.name) / options["items"]).parent.as_posix()
        local = ~pl.col("image").str.contains(r"^(/|[a-zA-Z][a-zA-Z0-9+.-]*://)")
        items = items.with_columns(
            pl.when(local)
            .then(pl.format("{}/{}", pl.lit(base), pl.col("image")))
            .otherwise(pl.col("image"))
            .alias("image")
        )
    return items
