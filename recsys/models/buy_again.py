"""Buy again: the customer's own repeat-purchase signal, recency-weighted."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from recsys.models.base import FitContext, Recommender
from recsys.models.sparse_utils import (
    dense_rows,
    rows_or_empty,
    structure_mask,
    users_per_item,
)
from recsys.models.time_decay import decayed_events, latest_weight_matrix

#: Items the user has not bought score at most this (scaled popularity), so
#: every bought item (scored in (1, 2]) comes first and lists stay full.
BACKFILL_CEILING = 0.5


class BuyAgainRecommender(Recommender):
    """Rank the items a user already has by their own signal.

    The signal is the user's row of ``user_items`` (e.g. purchase counts, or a
    matrix already decayed by recency); with ``half_life_days`` each entry is
    multiplied by the decay weight of the user's latest event for the item
    (recency x frequency; a ``refund`` event, when ``context.event_types``
    names it, is not a fresh interest). Entries the model has not seen at fit
    time count as fresh. Bought items score ``1 + signal / max signal of the user``; other
    items score a popularity share below ``BACKFILL_CEILING`` (or 0 without
    ``popularity_backfill``).
    ``recommend`` never filters the user's own items: that is the point.
    """

    name = "buy-again"
    recommends_already_liked = True

    def __init__(self, half_life_days: float | None = None, popularity_backfill: bool = True):
        super().__init__()
        if half_life_days is not None and not half_life_days > 0:
            raise ValueError(f"half_life_days must be positive, got {half_life_days!r}")
        self.half_life_days = half_life_days
        self.popularity_backfill = popularity_backfill

    def fit(self, user_items: sp.spmatrix, *, context: FitContext | None = None) -> Self:
        """Learn item popularity (backfill) and, with decay, each (user, item) recency."""
        matrix = self._start_fit(user_items)
        context = context or FitContext()
        counts = users_per_item(matrix)
        self.backfill_ = (BACKFILL_CEILING * counts / max(counts.max(), 1.0)).astype(np.float32)
        self.recency_ = None
        if self.half_life_days is not None:
            if not context.has_events:
                raise ValueError("half_life_days needs context events (event_users/items/times)")
            # refunds left out: returning an item is no new interest
            users, items, weights = decayed_events(context, matrix.shape, self.half_life_days)
            # Floor the weights so that very old events stay stored entries.
            self.recency_ = latest_weight_matrix(
                users, items, np.maximum(weights, 1e-30), matrix.shape
            )
        return self

    def _signal(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        signal = dense_rows(user_items)
        if self.recency_ is not None:
            recency = rows_or_empty(self.recency_, userids)
            rows, cols = structure_mask(recency)
            signal[rows, cols] *= recency.data
        return signal

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Bought items in (1, 2] by (decayed) signal, the rest by scaled popularity."""
        self._check_fitted()
        signal = self._signal(np.asarray(userids, dtype=np.int64), user_items)
        bought = signal > 0
        top = np.where(bought, signal, 0).max(axis=1, keepdims=True)
        scaled = np.divide(signal, top, out=np.zeros_like(signal), where=top > 0)
        backfill = self.backfill_ if self.popularity_backfill else np.zeros_like(self.backfill_)
        return np.where(bought, 1.0 + scaled, backfill[None, :]).astype(np.float32)

    def _similar_scores(self, itemids: np.ndarray) -> np.ndarray:
        return np.tile(self.backfill_, (len(itemids), 1))

    def _get_state(self) -> dict[str, Any]:
        return {"backfill_": self.backfill_, "recency_": self.recency_}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.backfill_ = state["backfill_"]
        self.recency_ = state.get("recency_")
