"""Semantic IDs from a trained tokenizer: codes per item and stream, the balanced last level, the dedup `extra`
level, quality metrics.

Items missing a modality get no row for that stream: their code would only describe the learned "missing"
vector, which is the same for all of them. With `balance_last_level` on, items whose argmin code tuples collide
get distinct last-level codes where the codebook allows (`residual.balanced_last_codes`); `last_argmin` keeps the
argmin last code, so the quality report gives the collision rate both before and after that step.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import polars as pl
import torch

from bbqrec.quantize.residual import balanced_last_codes
from bbqrec.quantize.tokenizer import BBQTokenizer
from bbqrec.quantize.train import TokenizerInputs


@torch.no_grad()
def encode_items(model: BBQTokenizer, inputs: TokenizerInputs, chunk_size: int = 4096) -> pl.DataFrame:
    """item_id, stream, c1..cL, last_argmin, quantized for every (item, stream) the item has, sorted by stream then
    item_id. cL is the balanced last code when `balance_last_level` is on, else the argmin like every other level;
    `quantized` is ẑ = Σ_l C^l_{c^l} of the codes written."""
    model.eval()
    c = model.config
    parts: dict[str, dict[str, list[np.ndarray]]] = {s: {"codes": [], "zq": [], "last_input": []} for s in c.streams}
    for rows in torch.arange(len(inputs.item_ids)).split(chunk_size):
        encoded = model.encode(
            {s: inputs.features[s][rows] for s in c.streams},
            {s: inputs.present[s][rows] for s in c.streams},
            specific=False,
        )
        for s in c.streams:
            parts[s]["codes"].append(encoded[s].quant.codes.numpy())
            parts[s]["zq"].append(encoded[s].quant.quantized.numpy())
            parts[s]["last_input"].append(encoded[s].quant.residuals[:, -1].numpy())
    frames = []
    for s in c.streams:
        keep = inputs.present[s].numpy()
        codes, quantized = np.concatenate(parts[s]["codes"])[keep], np.concatenate(parts[s]["zq"])[keep]
        argmin = codes[:, -1].copy()
        if c.balance_last_level:
            codebook = model.quantizer(s).codebooks[-1].detach().numpy()  # [K, d]
            codes[:, -1] = balanced_last_codes(codes, np.concatenate(parts[s]["last_input"])[keep], codebook)
            quantized = quantized + codebook[codes[:, -1]] - codebook[argmin]
        frames.append(
            pl.DataFrame(
                {
                    "item_id": inputs.item_ids[keep].astype(np.int32),
                    "stream": [s] * int(keep.sum()),
                    **{f"c{level + 1}": codes[:, level].astype(np.int32) for level in range(c.levels)},
                    "last_argmin": argmin.astype(np.int32),
                    "quantized": quantized.astype(np.float32),
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
    kept = [c for c in ("last_argmin", "quantized") if c in frame.columns]
    return (
        frame.sort("stream", "item_id")
        .with_columns((pl.col("item_id").rank("ordinal").over(keys) - 1).cast(pl.Int32).alias("extra"))
        .select("item_id", "stream", *code_columns(frame), "extra", *kept)
    )


def collision_rates(part: pl.DataFrame, codes: list[str]) -> tuple[float, float]:
    """(collision rate, duplicate-ID rate) of one stream's code tuples.

    Collision rate: the share of items whose tuple another item also has (the items `extra` must tell apart).
    Duplicate-ID rate: 1 − unique tuples / items, the definition of TIGER and LETTER (a colliding pair counts once).
    """
    group_size = part.select(pl.len().over(codes).alias("n"))["n"]
    return float((group_size > 1).mean()), 1.0 - part.select(codes).n_unique() / part.height


def sid_quality(frame: pl.DataFrame, codebook_size: int) -> dict[str, Any]:
    """Per stream and level: usage share, perplexity, dead codes. Per stream, before `extra`: the unique-ID rate;
    the collision and duplicate-ID rates (`collision_rates`) of the codes written, c1..cL (the codes the
    recommender uses), and, as `*_argmin`, of the argmin codes before the balanced last level; the share of items
    whose last code that step changed. Per stream pair (and all three): share of common items whose codes agree on
    the first l levels."""
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
        collision, duplicate = collision_rates(part, codes)
        if "last_argmin" in part.columns:
            argmin = part.with_columns(pl.col("last_argmin").alias(codes[-1]))
            collision_argmin, duplicate_argmin = collision_rates(argmin, codes)
            reassigned = float((part["last_argmin"] != part[codes[-1]]).mean())
        else:
            collision_argmin, duplicate_argmin, reassigned = collision, duplicate, 0.0
        out["streams"][s] = {
            "items": part.height,
            "levels": levels,
            "unique_id_rate": part.select(codes).n_unique() / part.height,
            "collision_rate": collision,
            "collision_rate_argmin": collision_argmin,
            "duplicate_id_rate": duplicate,
            "duplicate_id_rate_argmin": duplicate_argmin,
            "last_level_reassigned": reassigned,
            "max_extra": int(part.select(pl.len().over(codes)).max().item()) - 1,
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
