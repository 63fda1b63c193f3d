"""The hand-over between a source adapter and `prepare_dataset`: source ids, source order, item side info."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from bbqrec.data.readers import LINE
from bbqrec.io import InputError

TEXT_COLUMNS = ("title", "description", "categories", "brand")
ITEM_SCHEMA = {
    "item": pl.String,
    "order": pl.Int64,
    "title": pl.String,
    "description": pl.String,
    "categories": pl.String,
    "brand": pl.String,
    "image": pl.String,
    "source_row": pl.Int32,
}


@dataclass
class RawDataset:
    """A dataset as its sources describe it, before filtering and id assignment.

    interactions: `user`, `item` (source ids, str), `timestamp` (i64, all null when the source has none).
        Row order is source order: it breaks timestamp ties, and is the chronology when there are no timestamps.
    users: `user`, `order` (i64, unique): dense user ids are numbered in this order.
    items: the columns of ITEM_SCHEMA, one row per item of `interactions`; dense item ids follow `order`.
    features: precomputed item feature matrices, stored in the items.parquet metadata (see docs/artifacts.md).
    """

    interactions: pl.DataFrame
    users: pl.DataFrame
    items: pl.DataFrame
    features: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


def item_frame(items: pl.DataFrame) -> pl.DataFrame:
    """`items` with every ITEM_SCHEMA column (missing ones null), text stripped and empty text made null."""
    out = items.with_columns(
        pl.lit(None, dtype=dtype).alias(name) for name, dtype in ITEM_SCHEMA.items() if name not in items.columns
    )
    text = [*TEXT_COLUMNS, "image"]
    out = out.with_columns(pl.col(text).str.strip_chars()).with_columns(
        pl.when(pl.col(c).str.len_chars() > 0).then(pl.col(c)).alias(c) for c in text
    )
    return out.select(pl.col(name).cast(dtype) for name, dtype in ITEM_SCHEMA.items())


def first_appearance(ids: pl.Series, column: str) -> pl.DataFrame:
    """`column` + `order`: the distinct ids in order of first appearance."""
    return ids.unique(maintain_order=True).to_frame(column).with_row_index("order").cast({"order": pl.Int64})


def require_known(frame: pl.DataFrame, column: str, known: pl.Series, path: Path, catalogue: Path) -> None:
    """Every value of `column` (a file read with line numbers) must be in `known`, read from `catalogue`."""
    unknown = frame.filter(~pl.col(column).is_in(known.implode()))
    if unknown.height:
        row = unknown.row(0, named=True)
        raise InputError(
            f"{path}, line {row[LINE]}: {column} {row[column]!r} is not in {catalogue} "
            f"({unknown.height} unknown value(s) in all)"
        )


def require_one_to_one(table: pl.DataFrame, columns: list[str], path: Path) -> None:
    """Each of `columns` (of a map file read with line numbers) holds every value once."""
    for column in columns:
        repeated = table.filter(~pl.col(column).is_first_distinct())
        if repeated.height:
            row = repeated.row(0, named=True)
            raise InputError(
                f"{path}, line {row[LINE]}: {column} {row[column]!r} appears twice (the map must be one-to-one)"
            )
