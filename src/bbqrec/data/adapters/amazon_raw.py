"""Raw Amazon review + metadata files (McAuley lab, 2014 or 2018 release), JSON lines, gzipped or not.

Reviews: `reviewerID`, `asin`, `unixReviewTime` (both releases). Metadata: 2018 is strict JSON
(`category` list, `description` list, `imageURLHighRes` / `imageURL` lists); 2014 is one Python literal per line
(`categories` list of lists, `description` string, `imUrl`), read with `ast.literal_eval`. An ASIN repeated in
the metadata keeps its first row (the 2018 files repeat some). Image URLs are kept as URLs in `image`.
Items without a metadata row keep null text.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import polars as pl

from bbqrec.data.raw import RawDataset, first_appearance, item_frame
from bbqrec.data.readers import read_lines
from bbqrec.io import InputError

REVIEW_FIELDS = ("reviewerID", "asin", "unixReviewTime")


def load(sources: list[Path], options: dict[str, Any]) -> RawDataset:
    folder = sources[0]
    reviews_path = folder / options["reviews"]
    records = _records(reviews_path)
    for line, record in records:
        missing = [f for f in REVIEW_FIELDS if f not in record]
        if missing:
            raise InputError(f"{reviews_path}, line {line}: missing field(s) {missing}")
        if not isinstance(record["unixReviewTime"], int):
            raise InputError(
                f"{reviews_path}, line {line}: unixReviewTime must be an integer, got {record['unixReviewTime']!r}"
            )
    interactions = pl.DataFrame(
        {
            "user": [str(r["reviewerID"]) for _, r in records],
            "item": [str(r["asin"]) for _, r in records],
            "timestamp": [r["unixReviewTime"] for _, r in records],
        },
        schema={"user": pl.String, "item": pl.String, "timestamp": pl.Int64},
    )
    items = first_appearance(interactions["item"], "item")
    notes: dict[str, Any] = {}
    if options["meta"] is not None:
        meta, repeated = _meta(folder / options["meta"], set(items["item"]))
        items = items.join(meta, on="item", how="left", maintain_order="left")
        notes["meta_rows_repeated"] = repeated
    return RawDataset(
        interactions=interactions,
        users=first_appearance(interactions["user"], "user"),
        items=item_frame(items),
        notes=notes,
    )


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-empty line: strict JSON, else a Python literal (2014 metadata)."""
    out = []
    for line, text in read_lines(path).iter_rows():
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            try:
                record = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
                raise InputError(f"{path}, line {line}: neither JSON nor a Python literal ({err})") from err
        if not isinstance(record, dict):
            raise InputError(f"{path}, line {line}: expected an object, got {type(record).__name__}")
        out.append((line, record))
    return out


def _meta(path: Path, wanted: set[str]) -> tuple[pl.DataFrame, int]:
    """Text and image of the `wanted` ASINs (first row per ASIN wins) and the number of repeated rows skipped."""
    rows: dict[str, dict[str, str | None]] = {}
    seen: set[str] = set()
    repeated = 0
    for line, record in _records(path):
        if "asin" not in record:
            raise InputError(f"{path}, line {line}: missing field 'asin'")
        asin = str(record["asin"])
        if asin in seen:
            repeated += 1
            continue
        seen.add(asin)
        if asin in wanted:
            rows[asin] = _meta_fields(record)
    frame = pl.DataFrame(
        [{"item": asin, **fields} for asin, fields in rows.items()],
        schema={
            "item": pl.String,
            "title": pl.String,
            "description": pl.String,
            "categories": pl.String,
            "brand": pl.String,
            "image": pl.String,
        },
    )
    return frame, repeated


def _meta_fields(record: dict[str, Any]) -> dict[str, str | None]:
    categories = record.get("category", record.get("categories"))  # 2018: list; 2014: list of lists
    if categories and isinstance(categories[0], list):
        categories = [c for path in categories for c in path]
    categories = list(dict.fromkeys(str(c) for c in categories or []))  # the 2018 lists repeat names
    images = record.get("imageURLHighRes") or record.get("imageURL") or record.get("imUrl")
    return {
        "title": _text(record.get("title")),
        "description": _text(record.get("description")),
        "categories": ", ".join(categories) if categories else None,
        "brand": _text(record.get("brand")),
        "image": (images[0] if isinstance(images, list) else images) or None,
    }


def _text(value: Any) -> str | None:
    """A text field that is a string or a list of strings (2018 `description`), joined with spaces."""
    if isinstance(value, list):
        value = " ".join(str(v) for v in value if v)
    return str(value) if value else None
