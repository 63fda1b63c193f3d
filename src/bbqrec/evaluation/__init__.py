"""bbqrec.evaluation: leave-one-out full-ranking evaluation (metrics, target ranks, recommendations)."""

from bbqrec.evaluation.metrics import DEFAULT_KS, mean_metrics, ndcg_at_k, per_user_metrics, recall_at_k, user_metrics_frame
from bbqrec.evaluation.ranking import EvalSet, recommend, target_ranks

__all__ = [
    "DEFAULT_KS",
    "EvalSet",
    "mean_metrics",
    "ndcg_at_k",
    "per_user_metrics",
    "recall_at_k",
    "recommend",
    "target_ranks",
    "user_metrics_frame",
]
