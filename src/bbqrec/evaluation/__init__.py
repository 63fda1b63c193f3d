"""bbqrec.evaluation: leave-one-out full-ranking evaluation (metrics, target ranks, recommendations), and the
next-item lists to serve from a trained model."""

from bbqrec.evaluation.metrics import DEFAULT_KS, mean_metrics, ndcg_at_k, per_user_metrics, recall_at_k, user_metrics_frame
from bbqrec.evaluation.next_items import (
    event_histories,
    history_lists,
    latest_histories,
    mark_prepared_events,
    next_item_lists,
    prepared_histories,
    read_events,
    read_left_out_users,
)
from bbqrec.evaluation.ranking import EvalSet, UserHistories, recommend, target_ranks

__all__ = [
    "DEFAULT_KS",
    "EvalSet",
    "UserHistories",
    "event_histories",
    "history_lists",
    "latest_histories",
    "mark_prepared_events",
    "mean_metrics",
    "ndcg_at_k",
    "next_item_lists",
    "per_user_metrics",
    "prepared_histories",
    "read_events",
    "read_left_out_users",
    "recall_at_k",
    "recommend",
    "target_ranks",
    "user_metrics_frame",
]
