"""prepare_data: raw sources -> chronological sequences with dense ids, leave-one-out split and stats.

Steps, in this order: read the sources (adapter) -> sort each user's interactions by time, equal times in source
order -> handle repeated (user, item) pairs (`duplicates`) -> iterative filter (users need
max(k_core, min_seq_len) interactions, items k_core) -> dense ids from 1 in the adapter's order -> split.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from bbqrec.data.adapters import ADAPTERS
from bbqrec.data.config import check_dataset_config, resolve_prepare_options
from bbqrec.data.raw import RawDataset
from bbqrec.data.split import leave_one_out
from bbqrec.data.stats import dataset_stats
from bbqrec.io import InputError, provenance, write_json, write_parquet

log = logging.getLogger(__name__)

OUTPUT_FILES = (
    "interactions.parquet",
    "items.parquet",
    "users.parquet",
    "train.parquet",
    "valid.parquet",
    "test.parquet",
    "stats.json",
)


@dataclass
class PreparedDataset:
    """The frames of docs/artifacts.md (prepare_data), ready to write."""

    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    stats: dict[str, Any]
    features: dict[str, Any]


def prepare_dataset(dataset_cfg: dict[str, Any], data_root: Path, out_dir: Path, **prepare_options: Any) -> dict:
    """Prepare one dataset into `out_dir` and return its stats.

    `dataset_cfg` is a dataset file's content (`load_dataset_config`; a dict is validated and completed here the
    same way, so it needs a `name`); `prepare_options` (max_history_len,
    min_seq_len, k_core, duplicates; None = not given) override its `prepare` block. Nothing is written to
    `out_dir` unless every file was computed and written.
    """
    dataset_cfg = check_dataset_config(dataset_cfg, f"dataset config {dataset_cfg.get('name', '?')!r}")
    options = resolve_prepare_options(dataset_cfg, prepare_options)
    raw = load_raw(dataset_cfg, Path(data_root))
    prepared = build_dataset(raw, options, dataset_cfg["name"])
    prepared.stats.update(
        dataset=dataset_cfg["name"],
        adapter=dataset_cfg["adapter"],
        prepare=options,
        provenance=provenance({"dataset": dataset_cfg, "prepare": options}),
    )
    write_prepared(prepared, Path(out_dir), Path(data_root))
    log.info(
        "%s: %d users, %d items, %d interactions -> %s",
        dataset_cfg["name"],
        prepared.stats["users"],
        prepared.stats["items"],
        prepared.stats["interactions"],
        out_dir,
    )
    return prepared.stats


def load_raw(dataset_cfg: dict[str, Any], data_root: Path) -> RawDataset:
    """Run the dataset's adapter on its source folders under `data_root`."""
    sources = [data_root / s for s in dataset_cfg["sources"]]
    for i, folder in enumerate(sources):
        if not folder.is_dir():
            raise InputError(
                f"{folder}: source folder not found (dataset {dataset_cfg['name']!r}, key sources[{i}]; "
                f"data_root {data_root})"
            )
    return ADAPTERS[dataset_cfg["adapter"]].load(sources, dataset_cfg["options"])


def build_dataset(raw: RawDataset, options: dict[str, Any], name: str) -> PreparedDataset:
    """Order, deduplicate, filter, number and split `raw` (see the module docstring)."""
    inter = _ordered_interactions(raw, options["duplicates"], name)
    duplicates_removed = raw.interactions.height - inter.height

    inter = _filter_counts(inter, user_min=max(options["k_core"], options["min_seq_len"]), item_min=options["k_core"])
    if inter.height == 0:
        raise InputError(
            f"dataset {name!r}: no interactions left after filtering (k_core={options['k_core']}, "
            f"min_seq_len={options['min_seq_len']}, duplicates={options['duplicates']!r}); lower these prepare options"
        )

    users = _number(raw.users, "user", inter, "user_id")
    items = _number(raw.items, "item", inter, "item_id")
    interactions = (
        inter.join(users.select("user", "user_id"), on="user")
        .join(items.select("item", "item_id"), on="item")
        .sort("user_id", "timestamp", "source_row")
        .select(
            "user_id",
            "item_id",
            "timestamp",
            pl.int_range(pl.len(), dtype=pl.Int32).over("user_id").alias("position"),
        )
    )
    train, valid, test = leave_one_out(interactions, options["max_history_len"])
    stats = dataset_stats(interactions, items, raw.features)
    stats["removed"] = {
        "duplicates": duplicates_removed,
        "filtered_interactions": raw.interactions.height - duplicates_removed - interactions.height,
        "filtered_users": raw.users.height - users.height,
        "filtered_items": raw.items.height - items.height,
    }
    stats["source_notes"] = raw.notes
    return PreparedDataset(
        interactions=interactions,
        items=items.select(
            "item_id",
            pl.col("item").alias("source_id"),
            "title",
            "description",
            "categories",
            "brand",
            "image",
            "source_row",
        ),
        users=users.select("user_id", pl.col("user").alias("source_id")),
        train=train,
        valid=valid,
        test=test,
        stats=stats,
        features=raw.features,
    )


def _ordered_interactions(raw: RawDataset, duplicates: str, name: str) -> pl.DataFrame:
    """The raw interactions (+ source_row) in time order, repeated (user, item) pairs handled by `duplicates`."""
    inter = raw.interactions.with_row_index("source_row")
    if inter.height == 0:
        raise InputError(f"dataset {name!r}: the sources hold no interactions")
    if 0 < inter["timestamp"].null_count() < inter.height:
        raise InputError(f"dataset {name!r}: some interactions have a timestamp and others not")
    # Equal (or absent) timestamps keep source order: source_row is unique, so the order is total.
    inter = inter.sort("timestamp", "source_row")
    if duplicates != "keep":
        inter = inter.unique(["user", "item"], keep=duplicates, maintain_order=True)
    return inter


def left_out_histories(
    dataset_cfg: dict[str, Any], data_root: Path, users: pl.DataFrame, items: pl.DataFrame, **prepare_options: Any
) -> pl.DataFrame:
    """The users that the preparation left out, with what they did in the prepared catalogue: `user` (source id),
    `items` (list<i32> of item_ids in time order), `timestamps` (list<i64>, each item's time, null where the source
    has none; with them recommend_events.py knows an event it is given again), one row per left-out user, in source
    order.

    users / items: the prepared users.parquet / items.parquet. A user is left out by `min_seq_len` or `k_core`
    (too few interactions for a leave-one-out split); a trained model can still rank items after those it has.
    Interactions with items outside the catalogue (dropped by `k_core`, or only such users had them) are skipped,
    so a user whose items are all outside it has an empty list (a cold user: no history to rank after).
    """
    dataset_cfg = check_dataset_config(dataset_cfg, f"dataset config {dataset_cfg.get('name', '?')!r}")
    options = resolve_prepare_options(dataset_cfg, prepare_options)
    raw = load_raw(dataset_cfg, Path(data_root))
    inter = _ordered_interactions(raw, options["duplicates"], dataset_cfg["name"])
    return (
        inter.join(users.select(pl.col("source_id").alias("user")), on="user", how="anti")
        .join(items.select(pl.col("source_id").alias("item"), "item_id"), on="item", how="left")
        .sort("timestamp", "source_row")
        .group_by("user", maintain_order=True)
        .agg(
            pl.col("item_id").drop_nulls().cast(pl.Int32).alias("items"),
            pl.col("timestamp").filter(pl.col("item_id").is_not_null()).cast(pl.Int64).alias("timestamps"),
        )
        .join(raw.users.select("user", "order"), on="user")
        .sort("order")
        .select("user", "items", "timestamps")
    )


def _filter_counts(inter: pl.DataFrame, user_min: int, item_min: int) -> pl.DataFrame:
    """Drop users with < user_min and items with < item_min interactions until none is left to drop."""
    while True:
        kept = inter.filter((pl.len().over("user") >= user_min) & (pl.len().over("item") >= item_min))
        if kept.height == inter.height:
            return kept
        inter = kept


def _number(table: pl.DataFrame, key: str, inter: pl.DataFrame, id_column: str) -> pl.DataFrame:
    """The rows of `table` still in `inter`, sorted by `order`, with dense `id_column` from 1."""
    return (
        table.join(inter.select(key).unique(), on=key, how="semi")
        .sort("order")
        .with_row_index(id_column, offset=1)
        .with_columns(pl.col(id_column).cast(pl.Int32))
    )


def write_prepared(prepared: PreparedDataset, out_dir: Path, data_root: Path) -> None:
    """Write every file into a temporary folder beside `out_dir`, then move them in: all or nothing."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        write_parquet(prepared.interactions, staging / "interactions.parquet")
        # Image paths and feature files are relative to data_root, recorded as given on the command line.
        items_metadata: dict[str, Any] = {"paths_relative_to": "data_root", "data_root": str(data_root)}
        if prepared.features:
            items_metadata["features"] = prepared.features
        write_parquet(prepared.items, staging / "items.parquet", metadata=items_metadata)
        write_parquet(prepared.users, staging / "users.parquet")
        write_parquet(prepared.train, staging / "train.parquet")
        write_parquet(prepared.valid, staging / "valid.parquet")
        write_parquet(prepared.test, staging / "test.parquet")
        write_json(prepared.stats, staging / "stats.json")
        out_dir.mkdir(exist_ok=True)
        for file_name in OUTPUT_FILES:
            os.replace(staging / file_name, out_dir / file_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
