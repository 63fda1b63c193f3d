"""Ranking metrics of leave-one-out evaluation: one relevant item (the target) per user.

A target's rank is its place in the recommendation list: 1 + the number of items scored higher, + the number
of items scored equal with a smaller id (the tie-break of `recommend`). So a tie neither favours the target
(a constant-score model does not rank every target first) nor depends on the batch. With one relevant item,
Recall@k = [rank <= k] and NDCG@k = [rank <= k] / log2(rank + 1) (the ideal DCG is 1).
"""

from __future__ import annotations

from typing import Iterable

import polars as pl
import torch
from torch import Tensor

METRICS = ("recall", "ndcg")
DEFAULT_KS = (5, 10, 20)


def recall_at_k(ranks: Tensor, k: int) -> Tensor:
    """Per-user Recall@k [U] from 1-based target ranks [U]."""
    return (ranks <= k).double()


def ndcg_at_k(ranks: Tensor, k: int) -> Tensor:
    """Per-user NDCG@k [U] from 1-based target ranks [U]."""
    gain = 1.0 / torch.log2(ranks.double() + 1.0)
    return torch.where(ranks <= k, gain, torch.zeros_like(gain))


def per_user_metrics(ranks: Tensor, ks: Iterable[int] = DEFAULT_KS) -> dict[tuple[str, int], Tensor]:
    """{(metric, k): per-user values [U]} for every metric in METRICS and k in ks."""
    functions = {"recall": recall_at_k, "ndcg": ndcg_at_k}
    return {(metric, k): functions[metric](ranks, k) for metric in METRICS for k in ks}


def mean_metrics(ranks: Tensor, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """{"recall@10": mean, ...} over users."""
    return {f"{metric}@{k}": values.mean().item() for (metric, k), values in per_user_metrics(ranks, ks).items()}


def user_metrics_frame(
    user_ids: Tensor, ranks: Tensor, ks: Iterable[int] = DEFAULT_KS, split: str = "test"
) -> pl.DataFrame:
    """Long frame (user_id i32, split str, metric str, k i32, value f64), one row per user, metric and k."""
    frames = [
        pl.DataFrame(
            {
                "user_id": user_ids.numpy().astype("int32"),
                "split": split,
                "metric": metric,
                "k": k,
                "value": values.numpy(),
            },
            schema={"user_id": pl.Int32, "split": pl.String, "metric": pl.String, "k": pl.Int32, "value": pl.Float64},
        )
        for (metric, k), values in per_user_metrics(ranks, ks).items()
    ]
    return pl.concat(frames)
