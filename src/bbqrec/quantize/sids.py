"""Semantic IDs from a trained tokenizer: codes per item and stream, the dedup `extra` level, quality metrics.

Items missing a modality get no row for that stream: their code would only describe the learned "missing"
vector, which is the same for all of them.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import polars as pl
import torch

from bbqrec.quantize.tokenizer import BBQTokenizer
from bbqrec.quantize.train import TokenizerInputs


@torch.no_grad()
def encode_items(model: BBQTokenizer, inputs: TokenizerInputs, chunk_size: int = 4096) -> pl.DataFrame:
    """item_id, stream, c1..cL, quantized for every (item, stream) the item has, sorted by stream then item_id."""
    model.eval()
    c = model.config
    codes: dict[str, list[np.ndarray]] = {s: [] for s in c.streams}
    quantized: dict[str, list[np.ndarray]] = {s: [] for s in c.streams}
    for rows in torch.arange(len(inputs.item_ids)).split(chunk_size):
        encoded = model.encode(
            {s: inputs.features[s][rows] for s in c.streams},
            {s: inputs.present[s][rows] for s in c.streams},
        )
        for s in c.streams:
            codes[s].append(encoded[s].quant.codes.numpy())
            quantized[s].append(encoded[s].quant.quantized.numpy())
    frames = []
    for s in c.streams:
        keep = inputs.present[s].numpy()
        stream_codes = np.concatenate(codes[s])[keep].astype(np.int32)
        frames.append(
            pl.DataFrame(
                {
                    "item_id": inputs.item_ids[keep].astype(np.int32),
                    "stream": [s] * int(keep.sum()),
                    **{f"c{level + 1}": stream_codes[:, level] for level in range(c.levels)},
                    "quantized": np.concatenate(quantized[s])[keep].astype(np.float32),
                },
                schema_overrides={"quantized": pl.Array(pl.Float32, c.code_dim)},
            )
        )
    return pl.concat(frames)


def code_columns(frame: pl.DataFrame) -> list[str]:
    return sorted((c for c in frame.columns if c[0] == "c" and c[1:].isdigit()), key=lambda c: int(c[1:]))


def assign_extra(frame: pl.DataFrame) -> pl.DataFrame:
    """Add `extra`: 0 for the lowest item_id of each (stream, code tuple), then 1, 2, ... by item_id."""
    keys = ["stream", *code_columns(frame)]
    return (
        frame.sort("stream", "item_id")
        .with_columns((pl.col("item_id").rank("ordinal").over(keys) - 1).cast(pl.Int32).alias("extra"))
        .select("item_id", "stream", *code_columns(frame), "extra", "quantized")
    )


def sid_quality(frame: pl.DataFrame, codebook_size: int) -> dict[str, Any]:
    """Per stream and level: usage share, perplexity, dead codes; unique-ID and collision rates before `extra`;
    per stream pair (and all three): share of common items whose codes agree on the first l levels."""
    codes = code_columns(frame)
    streams = sorted(frame["stream"].unique().to_list())
    out: dict[str, Any] = {"codebook_size": codebook_size, "levels": len(codes), "streams": {}}
    for s in streams:
        part = frame.filter(pl.col("stream") == s)
        levels = []
        for level, column in enumerate(codes, start=1):
            counts = part[column].value_counts(sort=True)["count"].to_numpy().astype(np.float64)
            share = counts / counts.sum()
            used = len(counts)
            levels.append(
                {
                    "level": level,
                    "codes_used": used,
                    "usage": used / codebook_size,
                    "dead_codes": codebook_size - used,
                    "perplexity": float(np.exp(-(share * np.log(share)).sum())),
                }
            )
        group_size = part.select(pl.len().over(codes).alias("n"))["n"]
        n_items = part.height
        out["streams"][s] = {
            "items": n_items,
            "levels": levels,
            "unique_id_rate": part.select(codes).n_unique() / n_items,
            "collision_rate": float((group_size > 1).sum() / n_items),
            "max_extra": int(group_size.max()) - 1,
        }
    out["prefix_agreement"] = prefix_agreement(frame, streams, codes)
    return out


def prefix_agreement(frame: pl.DataFrame, streams: list[str], codes: list[str]) -> dict[str, dict[str, float]]:
    """For each stream pair (and `all` streams when there are three): over the items having every stream of the
    group, the share whose codes are equal on levels 1..l, for each prefix length l."""
    wide = None
    for s in streams:
        part = frame.filter(pl.col("stream") == s).select("item_id", *[pl.col(c).alias(f"{s}_{c}") for c in codes])
        wide = part if wide is None else wide.join(part, on="item_id", how="full", coalesce=True)
    groups = {"-".join(pair): list(pair) for pair in itertools.combinations(streams, 2)}
    if len(streams) > 2:
        groups["all"] = streams
    out = {}
    for name, group in groups.items():
        rows = wide.drop_nulls([f"{s}_{codes[0]}" for s in group])
        agree = pl.lit(True)
        shares = {}
        for length, column in enumerate(codes, start=1):
            for a, b in itertools.pairwise(group):
                agree = agree & (pl.col(f"{a}_{column}") == pl.col(f"{b}_{column}"))
            shares[str(length)] = rows.select(agree.mean())[0, 0] if rows.height else None
        out[name] = {"items": rows.height, "share_by_prefix_length": shares}
    return out


def codebook_frame(model: BBQTokenizer) -> pl.DataFrame:
    """codebook (`shared` or the stream), level, code, vector: every code vector of the tokenizer."""
    c = model.config
    frames = []
    for book, quantizer in model.quantizers.items():
        vectors = quantizer.codebooks.detach().numpy().reshape(-1, c.code_dim).astype(np.float32)
        level, code = np.divmod(np.arange(len(vectors)), c.codebook_size)
        frames.append(
            pl.DataFrame(
                {
                    "codebook": [book] * len(vectors),
                    "level": level.astype(np.int32) + 1,
                    "code": code.astype(np.int32),
                    "vector": vectors,
                },
                schema_overrides={"vector": pl.Array(pl.Float32, c.code_dim)},
            )
        )
    return pl.concat(frames)


def input_duplicate_rates(inputs: TokenizerInputs) -> dict[str, float]:
    """Per stream, the share of items whose input embedding is identical to another item's.

    Such items necessarily get the same code tuple: the floor under that stream's collision rate.
    """
    out = {}
    for s, features in inputs.features.items():
        rows = features[inputs.present[s]].numpy()
        _, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        out[s] = float((counts[inverse.ravel()] > 1).mean())
    return out
