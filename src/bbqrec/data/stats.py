"""stats.json of a prepared dataset: sizes, density, sequence-length quantiles, modality coverage."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from bbqrec.data.raw import TEXT_COLUMNS

QUANTILES = {"p25": 25, "p50": 50, "p75": 75, "p90": 90}


def dataset_stats(interactions: pl.DataFrame, items: pl.DataFrame, features: dict[str, Any]) -> dict[str, Any]:
    """Counts, density, sequence lengths (min, p25, p50, p75, p90, max, mean; linear interpolation) and the share
    of items with text / with an image (a text column, an image path/URL, or a row of a shipped feature matrix)."""
    users = interactions["user_id"].n_unique()
    n_items = items.height
    lengths = interactions.group_by("user_id").len()["len"].to_numpy()
    has_text = pl.any_horizontal(pl.col(c).is_not_null() for c in TEXT_COLUMNS)
    has_image = pl.col("image").is_not_null()
    if "text" in features:
        has_text = has_text | pl.col("source_row").is_not_null()
    if "image" in features:
        has_image = has_image | pl.col("source_row").is_not_null()
    coverage = items.select(has_text.mean().alias("text"), has_image.mean().alias("image")).row(0, named=True)
    return {
        "users": users,
        "items": n_items,
        "interactions": interactions.height,
        "density": interactions.height / (users * n_items),
        "sequence_length": {
            "min": int(lengths.min()),
            **{name: float(np.percentile(lengths, q)) for name, q in QUANTILES.items()},
            "max": int(lengths.max()),
            "mean": float(lengths.mean()),
        },
        "share_items_with_text": coverage["text"],
        "share_items_with_image": coverage["image"],
        "repeated_user_item_pairs": interactions.height - interactions.select("user_id", "item_id").n_unique(),
    }
