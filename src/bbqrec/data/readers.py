"""Strict readers for the raw source files: every failure names the file and line.

The raw files are small enough to hold in memory (the largest, S3-Rec Sports, is 1.7 MB), so each reader
decodes the whole file once and lets Polars do the splitting and casting; a failed cast is traced back to its
line number through a row index, never by a Python loop over the rows.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import polars as pl

from bbqrec.io import InputError

LINE = "line"  # 1-based line number of a row in its source file, kept for error messages


def read_text(path: Path) -> str:
    """The whole file as strict UTF-8 (gunzipped when the name ends in .gz)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path}: not a readable gzip file ({err})") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(
            f"{path}, line {line}: not valid UTF-8 (byte {data[err.start]:#04x} at offset {err.start})"
        ) from err


def read_lines(path: Path) -> pl.DataFrame:
    """One row per line: `line` (1-based number) and `text`; a final newline adds no empty row."""
    text = read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return pl.DataFrame({"text": [line.removesuffix("\r") for line in lines]}).with_row_index(LINE, offset=1)


def read_table(path: Path, columns: list[str], *, header: bool, separator: str = "\t") -> pl.DataFrame:
    """A delimited text file as string columns `columns` plus `line`.

    With `header`, the first line names the columns (RecBole's `name:type` suffixes are dropped) and every name
    in `columns` must be there; without, the file must have exactly `len(columns)` fields per line.
    """
    lines = read_lines(path)
    if header:
        if lines.height == 0:
            raise InputError(f"{path}: empty file, expected a header with columns {columns}")
        names = [name.split(":")[0] for name in lines["text"][0].split(separator)]
        missing = [c for c in columns if c not in names]
        if missing:
            raise InputError(f"{path}, line 1: missing column(s) {missing}; the header has {names}")
        lines = lines.slice(1)
    else:
        names = columns
    fields = lines.with_columns(pl.col("text").str.split(separator).alias("fields"))
    bad = fields.filter(pl.col("fields").list.len() != len(names))
    if bad.height:
        row = bad.row(0, named=True)
        raise InputError(
            f"{path}, line {row[LINE]}: expected {len(names)} {separator!r}-separated fields {names}, "
            f"got {len(row['fields'])}: {row['text'][:120]!r}"
        )
    return fields.select(LINE, *[pl.col("fields").list.get(names.index(c)).alias(c) for c in columns])


def cast_int(frame: pl.DataFrame, column: str, path: Path) -> pl.DataFrame:
    """`column` cast to Int64; a value that is not an integer is reported with its line."""
    cast = pl.col(column).str.strip_chars().cast(pl.Int64, strict=False)
    bad = frame.filter(cast.is_null() & pl.col(column).is_not_null())
    if bad.height:
        row = bad.row(0, named=True)
        raise InputError(f"{path}, line {row[LINE]}: column {column!r} must be an integer, got {row[column]!r}")
    return frame.with_columns(cast)


def split_int_lists(lines: pl.DataFrame, path: Path) -> pl.DataFrame:
    """Whitespace-separated integers per line -> `values` list<i64>; a non-integer token names its line."""
    tokens = lines.with_columns(
        pl.col("text").str.strip_chars().str.replace_all(r"\s+", " ").str.split(" ").alias("values")
    )
    flat = tokens.select(LINE, "values").explode("values")
    cast = pl.col("values").cast(pl.Int64, strict=False)
    bad = flat.filter(cast.is_null())
    if bad.height:
        row = bad.row(0, named=True)
        raise InputError(f"{path}, line {row[LINE]}: expected space-separated integers, got {row['values']!r}")
    return tokens.with_columns(pl.col("values").list.eval(pl.element().cast(pl.Int64)))


def read_columns(path: Path, columns: list[str], separator: str = ",") -> pl.DataFrame:
    """`columns` of a CSV (all as strings) or Parquet file, plus the source `line` (CSV: header = line 1)."""
    if path.suffix == ".parquet":
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        try:
            frame = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as err:
            raise InputError(f"{path}: not a readable Parquet file ({err})") from err
        first_line = 1
    else:
        try:
            frame = pl.read_csv(io.StringIO(read_text(path)), separator=separator, infer_schema=False)
        except pl.exceptions.PolarsError as err:
            raise InputError(f"{path}: malformed CSV ({err})") from err
        first_line = 2
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; the file has {frame.columns}")
    return frame.select(columns).with_row_index(LINE, offset=first_line)


def int_timestamps(frame: pl.DataFrame, column: str, path: Path) -> pl.DataFrame:
    """`column` as Int64: integers as they are, datetimes as epoch seconds; nulls are an error."""
    dtype = frame.schema[column]
    if dtype == pl.String:
        frame = cast_int(frame, column, path)
    elif isinstance(dtype, pl.Datetime):
        frame = frame.with_columns(pl.col(column).dt.epoch("s"))
    elif dtype.is_integer():
        frame = frame.with_columns(pl.col(column).cast(pl.Int64))
    else:
        raise InputError(f"{path}: column {column!r} must hold integer or datetime timestamps, not {dtype}")
    empty = frame.filter(pl.col(column).is_null())
    if empty.height:
        raise InputError(f"{path}, line {empty[LINE][0]}: empty timestamp in column {column!r}")
    return frame
