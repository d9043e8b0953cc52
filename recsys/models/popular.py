"""Popularity baselines: global, per market, and trending (recency-decayed)."""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.models.base import FitContext, Recommender
from recsys.models.time_decay import decayed_events

BY_OPTIONS = ("global", "country")
COUNT_OPTIONS = ("users", "weight")


class PopularRecommender(Recommender):
    """Recommend the most popular items.

    - ``by="global"``: score = number of users per item (``count="users"``) or
      the sum of the item's positive entries (``count="weight"``; fitted on a
      recency-decayed matrix this is trending); with ``half_life_days``, the
      sum of the context events' decay weights (trending from raw events;
      ``refund`` events, returned purchases, are left out when
      ``context.event_types`` names them).
    - ``by="country"``: the share of the user's market who took the item,
      shrunk toward the global share with the weight of ``country_prior``
      users, so small markets fall back to global popularity; users of unknown
      country (or unknown to the model) get the global share.

    Trending needs ``context.event_users/event_items/event_times``; each event
    counts ``0.5 ** (age_days / half_life_days)``.
    """

    name = "popular"
    supports_new_users = True

    def __init__(
        self,
        by: str = "global",
        count: str = "users",
        half_life_days: float | None = None,
        country_prior: float = 10.0,
    ) -> None:
        super().__init__()
        if by not in BY_OPTIONS:
            raise ValueError(f"by must be one of {BY_OPTIONS}, got {by!r}")
        if count not in COUNT_OPTIONS:
            raise ValueError(f"count must be one of {COUNT_OPTIONS}, got {count!r}")
        if half_life_days is not None and not half_life_days > 0:
            raise ValueError(f"half_life_days must be positive, got {half_life_days!r}")
        if country_prior < 0:
            raise ValueError(f"country_prior must be >= 0, got {country_prior!r}")
        self.by = by
        self.count = count
        self.half_life_days = half_life_days
        self.country_prior = country_prior

    def fit(self, user_items: sp.spmatrix, *, context: FitContext | None = None) -> Self:
        """Count (or decay-weight) the users of every item, globally and per country."""
        matrix = self._start_fit(user_items)
        context = context or FitContext()
        user_country = self._user_country_index(context)
        users, items, weights = self._weighted_entries(matrix, context)

        self.item_counts_ = np.bincount(items, weights, minlength=self.n_items_).astype(np.float32)
        self.countries_ = np.array([], dtype="<U2")
        self.country_scores_ = np.zeros((0, self.n_items_), dtype=np.float32)
        self.user_country_ = np.full(self.n_users_, -1, dtype=np.int32)
        if self.by == "country":
            self.countries_, self.user_country_ = user_country
            self.country_scores_ = self._country_scores(users, items, weights)
        return self

    def _user_country_index(self, context: FitContext) -> tuple[np.ndarray, np.ndarray] | None:
        if self.by != "country":
            return None
        if context.user_country is None:
            raise ValueError('by="country" needs context.user_country')
        codes = np.asarray(context.user_country, dtype=object)
        if len(codes) < self.n_users_:
            raise ValueError(f"user_country has {len(codes)} entries for {self.n_users_} users")
        codes = codes[: self.n_users_]
        known = np.array([isinstance(c, str) and c != "" for c in codes], dtype=bool)
        countries, index = np.unique(codes[known].astype(str), return_inverse=True)
        user_country = np.full(self.n_users_, -1, dtype=np.int32)
        user_country[known] = index
        return countries.astype(str), user_country

    def _weighted_entries(
        self, matrix: sp.csr_matrix, context: FitContext
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user, item, weight) triples: per positive entry, or per decayed event."""
        if self.half_life_days is None:
            coo = matrix.tocoo()
            positive = coo.data > 0
            users, items = coo.row[positive], coo.col[positive]
            if self.count == "weight":
                return users, items, coo.data[positive].astype(np.float64)
            return users, items, np.ones(len(users))
        if not context.has_events:
            raise ValueError("half_life_days needs context events (event_users/items/times)")
        # a returned purchase (refund) makes nothing popular
        return decayed_events(context, (self.n_users_, self.n_items_), self.half_life_days)

    def _country_scores(self, users, items, weights) -> np.ndarray:
        n_countries = len(self.countries_)
        country = self.user_country_[users]
        known = country >= 0
        counts = sp.csr_matrix(
            (weights[known], (country[known], items[known])),
            shape=(n_countries, self.n_items_),
        ).toarray()
        global_share = self._global_share().astype(np.float64)
        in_market = self.user_country_[self.user_country_ >= 0]
        market_users = np.bincount(in_market, minlength=n_countries)
        prior = self.country_prior
        shares = (counts + prior * global_share) / np.maximum(market_users + prior, 1e-12)[:, None]
        return shares.astype(np.float32)

    def _global_share(self) -> np.ndarray:
        return (self.item_counts_ / max(self.n_users_, 1)).astype(np.float32)

    def country_scores(self, countries) -> np.ndarray:
        """Scores (n x n_items) for visitors of the given markets (unknown: global)."""
        self._check_fitted()
        countries = np.atleast_1d(np.asarray(countries, dtype=object))
        if self.by != "country":
            return np.tile(self.item_counts_, (len(countries), 1))
        lookup = {code: i for i, code in enumerate(self.countries_)}
        rows = np.array([lookup.get(c, -1) for c in countries], dtype=np.int64)
        return self._rows_for_country_index(rows)

    def _score_new_users(self, profiles: pd.DataFrame) -> np.ndarray:
        """The popularity of the profile's market (global for an unknown market)."""
        return self.country_scores(profiles["country"].to_numpy(object))

    def _rows_for_country_index(self, rows: np.ndarray) -> np.ndarray:
        table = np.vstack([self.country_scores_, self._global_share()[None, :]])
        return table[np.where(rows >= 0, rows, len(self.countries_))]

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Popularity of every item; per market when ``by="country"``."""
        self._check_fitted()
        userids = np.asarray(userids, dtype=np.int64)
        if self.by == "global":
            return np.tile(self.item_counts_, (len(userids), 1))
        known = userids < self.n_users_
        rows = np.where(known, self.user_country_[np.where(known, userids, 0)], -1)
        return self._rows_for_country_index(rows)

    def _similar_scores(self, itemids: np.ndarray) -> np.ndarray:
        return np.tile(self.item_counts_, (len(itemids), 1))

    def _get_state(self) -> dict[str, Any]:
        return {
            "item_counts_": self.item_counts_,
            "countries_": self.countries_,
            "country_scores_": self.country_scores_,
            "user_country_": self.user_country_,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.item_counts_ = state["item_counts_"]
        self.countries_ = state["countries_"].astype(str)
        self.country_scores_ = state["country_scores_"].reshape(-1, self.n_items_)
        self.user_country_ = state["user_country_"]
