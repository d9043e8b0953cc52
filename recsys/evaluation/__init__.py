"""Offline evaluation: per-user top-k metrics and their aggregates.

See :mod:`recsys.evaluation.metrics` for the metric definitions and
:mod:`recsys.evaluation.evaluate` for the protocol.
"""

from recsys.evaluation.evaluate import EvaluationResult, evaluate
from recsys.evaluation.metrics import (
    RANKING_METRICS,
    catalog_coverage,
    hit_rate_at_k,
    hits_matrix,
    item_self_information,
    map_at_k,
    mean_self_information,
    mrr_at_k,
    ndcg_at_k,
    novelty,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

__all__ = [
    "RANKING_METRICS",
    "EvaluationResult",
    "catalog_coverage",
    "evaluate",
    "hit_rate_at_k",
    "hits_matrix",
    "item_self_information",
    "map_at_k",
    "mean_self_information",
    "mrr_at_k",
    "ndcg_at_k",
    "novelty",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
]
