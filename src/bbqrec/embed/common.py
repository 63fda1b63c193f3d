"""What the text and image embedding stages share: items input, config checking, shards, shipped features, output.

Sharding is by batch, not by item: a stage puts its items in one deterministic global order, cuts that order into
batches of `batch_size`, and batch b belongs to shard b % N. Every batch is therefore encoded with exactly the same
inputs whether the run is sharded or not, so the gathered shards equal the unsharded output bit for bit (on the same
device and thread count).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from bbqrec.io import InputError, read_parquet_metadata, write_parquet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemsFile:
    """`items.parquet` as the embedding stages see it: the frame and its `features` metadata (shipped matrices)."""

    frame: pl.DataFrame
    features: dict[str, Any]
    path: str

    @classmethod
    def read(cls, path: str | os.PathLike) -> ItemsFile:
        path = str(path)
        if not Path(path).is_file():
            raise InputError(f"{path}: items file not found")
        frame = pl.read_parquet(path)
        features = read_parquet_metadata(path).get("features") or {}
        return cls(frame=frame, features=features, path=path).checked()

    def checked(self) -> ItemsFile:
        if "item_id" not in self.frame.columns:
            raise InputError(f"{self.path}: column 'item_id' missing (columns: {self.frame.columns})")
        if self.frame["item_id"].null_count() or not self.frame["item_id"].is_unique().all():
            raise InputError(f"{self.path}: column 'item_id' must be unique and non-null")
        return self

    def column(self, name: str, config_key: str) -> pl.Series:
        if name not in self.frame.columns:
            raise InputError(
                f"{self.path}: column '{name}' (needed by config {config_key}) missing; columns: {self.frame.columns}"
            )
        return self.frame[name]


@dataclass(frozen=True)
class EmbeddingResult:
    """One embedding artifact before it is written: the Arrow table and its Parquet metadata."""

    table: pa.Table
    metadata: dict[str, Any]

    def write(self, path: str | os.PathLike) -> None:
        write_parquet(self.table, path, metadata=self.metadata)


def parse_config(cls: type, raw: dict[str, Any] | None, where: str):
    """Build the dataclass `cls` from a config dict, naming `where.<key>` for unknown keys."""
    raw = dict(raw or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise InputError(f"config {where}.{unknown[0]}: unknown key; expected one of {sorted(names)}")
    return cls(**raw)


def require(condition: bool, key: str, expected: str, value: Any) -> None:
    if not condition:
        raise InputError(f"config {key}: expected {expected}, got {value!r}")


def shard_batches(n_rows: int, batch_size: int, shard: int, num_shards: int) -> list[np.ndarray]:
    """Row positions (in a stage's global order) of the batches owned by `shard`: batch b goes to shard b % N."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise InputError(f"shard {shard} of {num_shards}: expected 0 <= shard < num_shards")
    starts = range(shard * batch_size, n_rows, batch_size * num_shards)
    return [np.arange(s, min(s + batch_size, n_rows)) for s in starts]


def rows_of(batches: list[np.ndarray]) -> np.ndarray:
    """The row positions of `batches`, in batch order."""
    return np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def embedding_table(item_ids: np.ndarray, vectors: np.ndarray, present: np.ndarray, flag: str) -> pa.Table:
    """item_id i32, embedding fixed_size_list<f32>[D] (null where absent), `flag` bool; sorted by item_id."""
    order = np.argsort(item_ids, kind="stable")
    item_ids, vectors, present = item_ids[order], vectors[order], present[order]
    vectors = np.where(present[:, None], vectors, 0).astype(np.float32, copy=False)
    dim = vectors.shape[1]
    embedding = pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1), type=pa.float32()), dim, mask=pa.array(~present)
    )
    return pa.table(
        {
            "item_id": pa.array(item_ids, type=pa.int32()),
            "embedding": embedding,
            flag: pa.array(present, type=pa.bool_()),
        }
    )


def shipped_features(
    items: ItemsFile, kind: str, data_root: str | os.PathLike | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Rows of the shipped `kind` feature matrix for every item (by `source_row`), a presence mask, and its path.

    The matrix is a raw array (UniSRec `.featNCLS` layout) described by items metadata `features.<kind>`:
    `path` (relative to `data_root` unless absolute), `dim`, optional `dtype` (float32), `row` (the items
    column holding the matrix row, `source_row`) and `rows` (the expected row count).
    """
    spec = items.features.get(kind)
    where = f"{items.path}: metadata 'features.{kind}'"
    if not spec:
        raise InputError(f"{where} missing (this dataset ships no {kind} features); use source: model")
    if "path" not in spec or "dim" not in spec:
        raise InputError(f"{where} needs 'path' and 'dim', got {spec}")
    path = Path(spec["path"])
    if not path.is_absolute() and data_root is not None:
        path = Path(data_root) / path
    if not path.is_file():
        raise InputError(f"{where}.path = {spec['path']}: no such file {path}")
    dim = int(spec["dim"])
    raw = np.fromfile(path, dtype=np.dtype(spec.get("dtype", "float32")))
    if raw.size % dim:
        raise InputError(f"{path}: {raw.size} values are not a multiple of {where}.dim = {dim}")
    matrix = raw.reshape(-1, dim).astype(np.float32, copy=False)
    if "rows" in spec and len(matrix) != spec["rows"]:
        raise InputError(f"{path}: {len(matrix)} rows, {where}.rows says {spec['rows']}")
    rows = items.column(spec.get("row", "source_row"), f"features.{kind}")
    present = rows.is_not_null().to_numpy()
    valid_rows = rows.drop_nulls().to_numpy().astype(np.int64)
    if valid_rows.size and (valid_rows.min() < 0 or valid_rows.max() >= len(matrix)):
        bad = int(valid_rows[(valid_rows < 0) | (valid_rows >= len(matrix))][0])
        raise InputError(f"{items.path}: source_row {bad} outside the {len(matrix)} rows of {path}")
    vectors = np.zeros((len(rows), dim), dtype=np.float32)
    vectors[present] = matrix[valid_rows]
    return vectors, present, str(spec["path"])


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1)).astype(np.float32)


def with_shard(result: EmbeddingResult, shard: int, num_shards: int) -> EmbeddingResult:
    """Mark a result as shard `shard` of `num_shards` (the gather step checks and drops the mark)."""
    return EmbeddingResult(result.table, {**result.metadata, "shard": {"index": shard, "num_shards": num_shards}})


def gather_shards(paths: list[str | os.PathLike], items: ItemsFile | None = None) -> EmbeddingResult:
    """Concatenate the shard files of one embedding into the final artifact (sorted by item_id).

    Checks that the shards are exactly 0..N-1 of one N, were made with the same model/config, hold each item
    once, and (when `items` is given) together cover exactly the items of `items.parquet`.
    """
    if not paths:
        raise InputError("gather: no shard files given")
    metas = [read_parquet_metadata(p) for p in paths]
    for path, meta in zip(paths, metas):
        if "shard" not in meta:
            raise InputError(f"{path}: not a shard file (metadata 'shard' missing)")
    num_shards = metas[0]["shard"]["num_shards"]
    indices = sorted(m["shard"]["index"] for m in metas)
    if indices != list(range(num_shards)) or any(m["shard"]["num_shards"] != num_shards for m in metas):
        raise InputError(f"gather: expected shards 0..{num_shards - 1} of {num_shards} once each, got {indices}")
    reference = _without(metas[0], "shard", "counts")
    for path, meta in zip(paths, metas):
        if _without(meta, "shard", "counts") != reference:
            raise InputError(f"{path}: metadata differs from {paths[0]} (another model, config or version)")
    table = pa.concat_tables([pq.read_table(p) for p in paths])
    table = table.replace_schema_metadata(None).sort_by("item_id")
    item_ids = table["item_id"].to_numpy()
    if len(np.unique(item_ids)) != len(item_ids):
        raise InputError(f"gather: an item_id appears in more than one shard of {paths}")
    if items is not None and not np.array_equal(item_ids, np.sort(items.frame["item_id"].to_numpy())):
        raise InputError(f"gather: the shards hold {len(item_ids)} items, {items.path} has {items.frame.height}")
    counts: dict[str, int] = {}
    for meta in metas:
        for key, value in meta.get("counts", {}).items():
            counts[key] = counts.get(key, 0) + value
    return EmbeddingResult(table, {**reference, "counts": counts})


def _without(meta: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in keys}


def open_stage_log(path: str | os.PathLike | None) -> TextIO:
    """Log to stderr and to the stage's log file; returns the stream for tqdm (the log file, else stderr)."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="w"))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    return handlers[-1].stream


def progress(total: int, desc: str, stream: TextIO | None):
    from tqdm import tqdm

    stream = stream or sys.stderr
    interactive = hasattr(stream, "isatty") and stream.isatty()
    return tqdm(total=total, desc=desc, file=stream, ascii=not interactive, mininterval=0.5 if interactive else 10)
