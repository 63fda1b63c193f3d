"""MovieLens in RecBole atomic files (`<name>.inter`, `<name>.item`), optionally with posters and IMDb plots.

sources[0]: `<name>.inter` (user_id, item_id, rating, timestamp) and `<name>.item` (item_id, movie_title,
release_year, class). Every interaction is kept, as RecBole's ml-100k defaults do (no rating threshold, no
count filter, no duplicate removal). Equal timestamps keep the file order.
sources[1] (optional, movielens-100k-mm): `posters/<item_id>.jpg` -> `image` (path relative to data_root) and
`movielens100k_details.json` -> `description`. Genres always come from `<name>.item`: the JSON's genres are
wrong for some movies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from bbqrec.data.raw import RawDataset, item_frame, require_known
from bbqrec.data.readers import cast_int, read_table, read_text
from bbqrec.io import InputError

# RecBole's ml-100k.item spells the title and year of movie 267 ("unknown" in MovieLens) as "unkonwn".
UNKNOWN_TITLES = ("unknown", "unkonwn")


def load(sources: list[Path], options: dict[str, Any]) -> RawDataset:
    folder, name = sources[0], options["name"]
    inter_path, item_path = folder / f"{name}.inter", folder / f"{name}.item"
    inter = read_table(inter_path, ["user_id", "item_id", "timestamp"], header=True)
    for column in ("user_id", "item_id", "timestamp"):
        inter = cast_int(inter, column, inter_path)
    catalogue = cast_int(
        read_table(item_path, ["item_id", "movie_title", "release_year", "class"], header=True), "item_id", item_path
    )
    require_known(inter, "item_id", catalogue["item_id"], inter_path, item_path)

    year = pl.col("release_year").str.strip_chars()
    title = pl.col("movie_title").str.strip_chars()
    items = catalogue.select(
        pl.col("item_id").cast(pl.String).alias("item"),
        pl.col("item_id").alias("order"),
        pl.when(title.str.to_lowercase().is_in(UNKNOWN_TITLES))
        .then(None)
        .when(year.str.contains(r"^\d{4}$"))
        .then(pl.format("{} ({})", title, year))
        .otherwise(title)
        .alias("title"),
        pl.col("class").str.strip_chars().str.split(" ").list.join(", ").alias("categories"),
    )
    if len(sources) > 1:
        items = _add_multimodal(items, sources[1], options)

    users = inter.select("user_id").unique().sort("user_id")
    return RawDataset(
        interactions=inter.select(
            pl.col("user_id").cast(pl.String).alias("user"),
            pl.col("item_id").cast(pl.String).alias("item"),
            "timestamp",
        ),
        users=users.select(pl.col("user_id").cast(pl.String).alias("user"), pl.col("user_id").alias("order")),
        items=item_frame(items),
    )


def _add_multimodal(items: pl.DataFrame, folder: Path, options: dict[str, Any]) -> pl.DataFrame:
    poster_dir = folder / options["posters"]
    if not poster_dir.is_dir():
        raise InputError(f"{poster_dir}: poster folder not found (options.posters)")
    poster_ids = sorted(p.stem for p in poster_dir.glob("*.jpg") if p.stem.isdigit())
    posters = pl.DataFrame({"item": poster_ids}, schema={"item": pl.String}).with_columns(
        pl.format("{}/{}/{}.jpg", pl.lit(folder.name), pl.lit(options["posters"]), pl.col("item")).alias("image")
    )
    details_path = folder / options["details"]
    try:
        details = json.loads(read_text(details_path))
    except json.JSONDecodeError as err:
        raise InputError(f"{details_path}, line {err.lineno}: not valid JSON ({err.msg})") from err
    if not isinstance(details, list) or not all(isinstance(d, dict) and "movie_id" in d for d in details):
        raise InputError(f"{details_path}: expected a JSON list of objects with 'movie_id' and 'description'")
    descriptions = pl.DataFrame(
        {"item": [str(d["movie_id"]) for d in details], "description": [d.get("description") for d in details]},
        schema={"item": pl.String, "description": pl.String},
    ).unique("item", keep="first", maintain_order=True)
    return items.join(descriptions, on="item", how="left", maintain_order="left").join(
        posters, on="item", how="left", maintain_order="left"
    )
