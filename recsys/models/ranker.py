"""Learned ranker: gradient-boosted trees over a shop's repeat, trend and EASE signals.

A second stage for time-stamped purchase data. For every user it ranks the
candidates (the items the user already bought, the EASE neighbours of the
user's items, the trending items) by a classifier's estimate that the user
buys the item within the next ``horizon_days``. The classifier learns from
the fit data alone: the model cuts its own history at ``n_windows`` earlier
dates (``horizon_days`` apart, the last one ``horizon_days`` before the
latest event), describes every candidate of every user as of that date
(:data:`FEATURES`) and labels it with the user's purchases of the following
``horizon_days``. Those features, at the latest event, then rank.

Learning needs scikit-learn (``HistGradientBoostingClassifier``); the trees
are kept as plain arrays, so scoring and ``save``/``load`` do not.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Self

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recsys.models.base import FitContext, Recommender
from recsys.models.time_decay import SECONDS_PER_DAY, to_unix_seconds

#: Candidate features, in the column order of the classifier.
FEATURES = (
    "log_count",  # log(1 + purchase events of the user for the item)
    "days",  # distinct days the user bought the item
    "last_age",  # days since the user last bought it (NaN: never)
    "span",  # days between the user's first and last purchase of it
    "gap",  # mean days between two of those purchase days (NaN: fewer than 2)
    "due",  # last_age / gap: how overdue the next purchase is
    "decayed",  # purchase events weighted 0.5 ** (age / 30 days)
    "bought",  # 1 if the user bought it before
    "day_share",  # days / the user's purchase days
    "last_vs_user",  # last_age - the user's own last_age
    "days_vs_top",  # days / the user's largest days of any item
    "user_last_age",  # days since the user's last purchase
    "user_days",  # the user's purchase days
    "user_recent_days",  # ... in the last 30 days
    "user_items",  # distinct items the user bought
    "user_tenure",  # days since the user's first purchase
    "item_log_users",  # log(1 + users who bought the item)
    "item_trend_short",  # events of the item weighted 0.5 ** (age / trend_half_life_days)
    "item_trend_long",  # ... with a 30-day half-life
    "item_trend_ratio",  # short / (long + 1): rising items
    "item_age",  # days since the item's first sale
    "item_repeat_rate",  # smoothed share of its buyers who bought it on 2+ days
    "country_share",  # share of the user's market's purchases that were this item
    "ease",  # EASE score of the item for the user
    "ease_rank",  # rank of that score among the items the user has not bought
)
_PAIR_VALUES = ("count", "days", "last_age", "first_age", "decayed")
_DECAY_DAYS = 30.0
_RECENT_DAYS = 30.0


@dataclass
class PurchaseHistory:
    """Purchases summarised at one reference time; every age is in days before it.

    ``pairs`` holds the structure of the bought (user, item) cells and
    ``pair_values`` one row per stored cell, columns as ``_PAIR_VALUES``.
    """

    pairs: sp.csr_matrix
    pair_values: np.ndarray
    user_last_age: np.ndarray
    user_first_age: np.ndarray
    user_days: np.ndarray
    user_recent_days: np.ndarray
    user_country: np.ndarray  # index into country_share (last row: unknown market)
    item_users: np.ndarray
    item_trend_short: np.ndarray
    item_trend_long: np.ndarray
    item_age: np.ndarray
    item_repeat_rate: np.ndarray
    country_share: np.ndarray
    ease_weights: np.ndarray

    @classmethod
    def from_events(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        times: np.ndarray,
        user_country: np.ndarray,
        n_countries: int,
        shape: tuple[int, int],
        reference: float,
        trend_half_life_days: float,
        ease_lambda: float,
    ) -> PurchaseHistory:
        """Summarise purchase events (unix seconds) as of ``reference``."""
        n_users, n_items = shape
        ages = np.maximum(reference - times, 0.0) / SECONDS_PER_DAY
        day = np.floor(times / SECONDS_PER_DAY).astype(np.int64)
        keys = users.astype(np.int64) * n_items + items
        cells, cell_of = np.unique(keys, return_inverse=True)
        n_cells = len(cells)
        count = np.bincount(cell_of, minlength=n_cells).astype(np.float64)
        last_age = np.full(n_cells, np.inf)
        np.minimum.at(last_age, cell_of, ages)
        first_age = np.zeros(n_cells)
        np.maximum.at(first_age, cell_of, ages)
        decayed = np.bincount(cell_of, np.exp2(-ages / _DECAY_DAYS), minlength=n_cells)
        first_day = int(day.min()) if len(day) else 0
        day -= first_day
        day_span = int(day.max()) + 1 if len(day) else 1
        cell_days = np.unique(cell_of.astype(np.int64) * day_span + day)
        days = np.bincount(cell_days // day_span, minlength=n_cells)
        # The unique keys are sorted by (user, item): CSR order, one stored cell each.
        indptr = np.r_[0, np.cumsum(np.bincount(cells // n_items, minlength=n_users))]
        pairs = sp.csr_matrix(
            (np.ones(n_cells, dtype=np.float32), (cells % n_items).astype(np.int32), indptr),
            shape=shape,
        )
        values = np.column_stack([count, days, last_age, first_age, decayed]).astype(np.float32)

        user_last_age = np.full(n_users, np.nan)
        user_first_age = np.full(n_users, np.nan)
        if len(users):
            last = np.full(n_users, np.inf)
            np.minimum.at(last, users, ages)
            first = np.full(n_users, -np.inf)
            np.maximum.at(first, users, ages)
            seen = np.isfinite(last)
            user_last_age[seen], user_first_age[seen] = last[seen], first[seen]
        user_day = np.unique(users.astype(np.int64) * day_span + day)
        user_days = np.bincount(user_day // day_span, minlength=n_users).astype(np.float32)
        reference_day = np.floor(reference / SECONDS_PER_DAY) - first_day
        recent = reference_day - user_day % day_span <= _RECENT_DAYS
        user_recent_days = np.bincount(user_day[recent] // day_span, minlength=n_users)
        item_users = np.bincount(cells % n_items, minlength=n_items).astype(np.float32)
        repeat = np.bincount(cells[days >= 2] % n_items, minlength=n_items)
        item_trend_short = np.bincount(
            items, np.exp2(-ages / trend_half_life_days), minlength=n_items
        )
        item_trend_long = np.bincount(items, np.exp2(-ages / _DECAY_DAYS), minlength=n_items)
        item_age = np.full(n_items, np.nan)
        if len(items):
            oldest = np.full(n_items, -np.inf)
            np.maximum.at(oldest, items, ages)
            item_age[np.isfinite(oldest)] = oldest[np.isfinite(oldest)]

        known = user_country[users] >= 0
        by_market = sp.csr_matrix(
            (np.ones(int(known.sum())), (user_country[users][known], items[known])),
            shape=(n_countries + 1, n_items),
        ).toarray()
        by_market[n_countries] = np.bincount(items, minlength=n_items)  # unknown: global
        share = by_market / np.maximum(by_market.sum(axis=1, keepdims=True), 1.0)

        return cls(
            pairs=pairs,
            pair_values=values,
            user_last_age=user_last_age.astype(np.float32),
            user_first_age=user_first_age.astype(np.float32),
            user_days=user_days,
            user_recent_days=user_recent_days.astype(np.float32),
            user_country=np.where(user_country >= 0, user_country, n_countries).astype(np.int32),
            item_users=item_users,
            item_trend_short=item_trend_short.astype(np.float32),
            item_trend_long=item_trend_long.astype(np.float32),
            item_age=item_age.astype(np.float32),
            item_repeat_rate=((repeat + 1.0) / (item_users + 2.0)).astype(np.float32),
            country_share=share.astype(np.float32),
            ease_weights=ease_weights(pairs, ease_lambda),
        )

    @property
    def n_items(self) -> int:
        return self.pairs.shape[1]

    def pair_block(self, userids: np.ndarray) -> np.ndarray:
        """Dense ``len(userids) x n_items x len(_PAIR_VALUES)`` values (0 where not bought)."""
        known = userids < self.pairs.shape[0]
        block = np.zeros((len(userids), self.n_items, len(_PAIR_VALUES)), dtype=np.float32)
        safe = np.where(known, userids, 0)
        starts = self.pairs.indptr[safe]
        lengths = np.where(known, self.pairs.indptr[safe + 1] - starts, 0)
        row_of = np.repeat(np.arange(len(userids)), lengths)
        source = np.arange(lengths.sum()) + np.repeat(
            starts - (np.cumsum(lengths) - lengths), lengths
        )
        block[row_of, self.pairs.indices[source]] = self.pair_values[source]
        return block

    def candidates(
        self, userids: np.ndarray, n_neighbours: int, n_trending: int, user_rows=None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows, items, features): every candidate of the block of users ``userids``.

        ``user_rows`` (CSR, one row per user) stands in for the purchase
        history of users unknown to this history: one purchase per stored entry.
        """
        values = self.pair_block(userids)
        if user_rows is not None:
            unknown = np.flatnonzero(userids >= self.pairs.shape[0])
            sub = sp.csr_matrix(user_rows[unknown])
            r = np.repeat(unknown, np.diff(sub.indptr))
            values[r, sub.indices, 0] = 1.0
            values[r, sub.indices, 1] = 1.0
            values[r, sub.indices, 2:4] = np.nan
        count, days, last_age, first_age, decayed = np.moveaxis(values, 2, 0)
        bought = count > 0
        ease = bought.astype(np.float32) @ self.ease_weights
        ease_rank = _row_ranks(np.where(bought, -np.inf, ease))
        sold = self.item_users > 0
        trending = np.zeros(self.n_items, dtype=bool)
        order = np.argsort(-np.where(sold, self.item_trend_short, -np.inf), kind="stable")
        trending[order[: min(n_trending, int(sold.sum()))]] = True
        chosen = bought | ((ease_rank < n_neighbours) & sold[None, :]) | trending[None, :]
        rows, cols = np.nonzero(chosen)
        users = np.minimum(userids[rows], len(self.user_days) - 1)
        known_user = userids[rows] < len(self.user_days)

        def user_value(array: np.ndarray) -> np.ndarray:
            return np.where(known_user, array[users], np.nan)

        user_days = np.where(known_user, self.user_days[users], days.max(axis=1)[rows])
        c_days = days[rows, cols]
        c_last = np.where(bought[rows, cols], last_age[rows, cols], np.nan)
        span = np.where(bought[rows, cols], first_age[rows, cols] - last_age[rows, cols], np.nan)
        gap = np.where(c_days >= 2, span / np.maximum(c_days - 1, 1), np.nan)
        user_last = user_value(self.user_last_age)
        country = np.where(known_user, self.user_country[users], len(self.country_share) - 1)
        short, long = self.item_trend_short[cols], self.item_trend_long[cols]
        columns = {
            "log_count": np.log1p(count[rows, cols]),
            "days": c_days,
            "last_age": c_last,
            "span": span,
            "gap": gap,
            "due": c_last / np.maximum(gap, 1.0),
            "decayed": decayed[rows, cols],
            "bought": bought[rows, cols].astype(np.float32),
            "day_share": c_days / np.maximum(user_days, 1.0),
            "last_vs_user": c_last - user_last,
            "days_vs_top": c_days / np.maximum(days.max(axis=1)[rows], 1.0),
            "user_last_age": user_last,
            "user_days": user_days,
            "user_recent_days": user_value(self.user_recent_days),
            "user_items": bought.sum(axis=1)[rows].astype(np.float32),
            "user_tenure": user_value(self.user_first_age),
            "item_log_users": np.log1p(self.item_users[cols]),
            "item_trend_short": short,
            "item_trend_long": long,
            "item_trend_ratio": short / (long + 1.0),
            "item_age": self.item_age[cols],
            "item_repeat_rate": self.item_repeat_rate[cols],
            "country_share": self.country_share[country, cols],
            "ease": ease[rows, cols],
            "ease_rank": np.where(bought[rows, cols], np.nan, ease_rank[rows, cols]),
        }
        features = np.column_stack([columns[name] for name in FEATURES]).astype(np.float32)
        return rows, cols, features

    def state(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def ease_weights(pairs: sp.csr_matrix, lambda_: float) -> np.ndarray:
    """EASE item-item weights of a binary users x items matrix (zero diagonal)."""
    gram = np.asarray((pairs.T @ pairs).todense(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += lambda_
    inverse = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    weights = inverse / (-np.diag(inverse))[None, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)


def _row_ranks(scores: np.ndarray) -> np.ndarray:
    """0 for the highest score of each row, 1 for the next, ... (ties: smaller column first)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(scores.shape[1])[None, :], axis=1)
    return ranks


@dataclass
class TreeEnsemble:
    """Regression trees as flat arrays: the raw score is ``baseline`` plus one leaf per tree."""

    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    baseline: float

    @classmethod
    def from_sklearn(cls, model) -> TreeEnsemble:
        """Copy the trees of a fitted binary ``HistGradientBoostingClassifier``."""
        parts, roots, offset = [], [], 0
        for (predictor,) in model._predictors:
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported")
            parts.append(nodes)
            roots.append(offset)
            offset += len(nodes)
        nodes = np.concatenate(parts)
        shift = np.repeat(np.asarray(roots), [len(p) for p in parts])
        return cls(
            feature=nodes["feature_idx"].astype(np.int32),
            threshold=nodes["num_threshold"].astype(np.float64),
            missing_left=nodes["missing_go_to_left"].astype(bool),
            left=(nodes["left"] + shift).astype(np.int64),
            right=(nodes["right"] + shift).astype(np.int64),
            is_leaf=nodes["is_leaf"].astype(bool),
            value=nodes["value"].astype(np.float64),
            roots=np.asarray(roots, dtype=np.int64),
            baseline=float(np.ravel(model._baseline_prediction)[0]),
        )

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds) of the rows of ``features``."""
        features = np.asarray(features, dtype=np.float64)
        out = np.full(len(features), self.baseline)
        rows = np.arange(len(features))
        for root in self.roots:
            node = np.full(len(features), root, dtype=np.int64)
            active = rows[~self.is_leaf[node]]
            while len(active):
                at = node[active]
                x = features[active, self.feature[at]]
                go_left = np.where(np.isnan(x), self.missing_left[at], x <= self.threshold[at])
                node[active] = np.where(go_left, self.left[at], self.right[at])
                active = active[~self.is_leaf[node[active]]]
            out += self.value[node]
        return out

    def state(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class RankerRecommender(Recommender):
    """Rank bought, similar and trending items by a learned purchase probability.

    Needs ``context.event_users/event_items/event_times`` (purchases; when
    ``context.event_types`` is given only the types in ``purchase_types``
    count) and uses ``context.user_country`` when given. ``n_windows`` x
    ``horizon_days`` of history must precede the latest event by enough for
    the earliest window to hold purchases. Users unknown at fit time are
    described by their row of ``user_items`` (one purchase per entry, no dates).
    ``recommend`` keeps already-bought items: re-buying is the main signal.
    The EASE signal needs a dense items x items matrix (float64 while solved:
    20,000 items take 3.2 GB, twice over); ``max_items`` guards the fit as in EASE.
    """

    name = "ranker"
    recommends_already_liked = True

    def __init__(
        self,
        horizon_days: float = 30.0,
        n_windows: int = 3,
        n_neighbours: int = 100,
        n_trending: int = 50,
        trend_half_life_days: float = 7.0,
        ease_lambda: float = 300.0,
        max_iter: int = 200,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 31,
        purchase_types: tuple[str, ...] | list[str] = ("purchase",),
        random_state: int = 0,
        max_items: int = 30_000,
    ) -> None:
        super().__init__()
        if not horizon_days > 0 or not trend_half_life_days > 0 or not ease_lambda > 0:
            raise ValueError("horizon_days, trend_half_life_days and ease_lambda must be > 0")
        if n_windows < 1 or n_neighbours < 0 or n_trending < 0 or max_iter < 1:
            raise ValueError("n_windows and max_iter must be >= 1, candidate counts >= 0")
        self.horizon_days = horizon_days
        self.n_windows = n_windows
        self.n_neighbours = n_neighbours
        self.n_trending = n_trending
        self.trend_half_life_days = trend_half_life_days
        self.ease_lambda = ease_lambda
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.purchase_types = list(purchase_types)
        self.random_state = random_state
        self.max_items = max_items

    # -- fitting -------------------------------------------------------------

    def fit(self, user_items: sp.spmatrix, *, context: FitContext | None = None) -> Self:
        """Learn the classifier on ``n_windows`` past horizons, then summarise all history.

        When no window holds purchases both before and after its cut-off (a
        history shorter than ``horizon_days``), nothing is learned and the
        ranking falls back to: bought items by purchase days, then the others
        by EASE rank.
        """
        self._start_fit(user_items)
        if self.n_items_ > self.max_items:
            raise ValueError(
                f"the ranker's EASE signal needs a dense {self.n_items_}^2 matrix; raise "
                f"max_items (now {self.max_items}) if the memory is there"
            )
        users, items, times = self._purchases(context)
        if not len(times):
            raise ValueError("the ranker needs purchase events in the context")
        countries, user_country = _country_index(context, self.n_users_)
        reference = float(to_unix_seconds(context.events_reference_time())[0])
        x, y = self._training_rows(users, items, times, user_country, countries, reference)
        self.trees_ = None
        if len(y) and y.any() and not y.all():
            self.trees_ = self._learn(x, y)
        self.history_ = self._history(users, items, times, user_country, countries, reference)
        return self

    def _training_rows(self, users, items, times, user_country, countries, reference):
        """Candidate features at each window's cut-off, labelled by the next horizon's buys."""
        horizon = self.horizon_days * SECONDS_PER_DAY
        blocks, labels = [np.empty((0, len(FEATURES)), np.float32)], [np.empty(0, bool)]
        for window in range(self.n_windows, 0, -1):
            cutoff = reference - window * horizon
            before = times < cutoff
            after = ~before & (times < cutoff + horizon)
            if not before.any() or not after.any():
                continue
            history = self._history(
                users[before], items[before], times[before], user_country, countries, cutoff
            )
            buyers = np.unique(users[after])
            buyers = buyers[history.user_days[buyers] > 0]  # known before the cut-off
            truth = sp.csr_matrix(
                (np.ones(int(after.sum())), (users[after], items[after])),
                shape=(self.n_users_, self.n_items_),
            )
            for start in range(0, len(buyers), self._users_per_block()):
                block = buyers[start : start + self._users_per_block()]
                rows, cols, features = history.candidates(block, self.n_neighbours, self.n_trending)
                blocks.append(features)
                labels.append(np.asarray(truth[block[rows], cols]).ravel() > 0)
        return np.concatenate(blocks), np.concatenate(labels)

    def _learn(self, x: np.ndarray, y: np.ndarray) -> TreeEnsemble:
        from sklearn.ensemble import HistGradientBoostingClassifier

        classifier = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            early_stopping=False,
            random_state=self.random_state,
        )
        # a feature without any value (e.g. ``gap`` when nobody bought an item on two
        # days) breaks scikit-learn's binning; as a constant it is never split on
        empty = np.flatnonzero(np.isnan(x).all(axis=0))
        if len(empty):
            x = x.copy()
            x[:, empty] = 0
        classifier.fit(x, y)
        trees = TreeEnsemble.from_sklearn(classifier)
        sample = x[:: max(1, len(x) // 2000)]
        expected = classifier.decision_function(sample)
        if not np.allclose(trees.decision_function(sample), expected, atol=1e-4):
            raise RuntimeError("copied trees disagree with scikit-learn's predictions")
        return trees

    def _purchases(self, context: FitContext | None) -> tuple[np.ndarray, ...]:
        if context is None or not context.has_events:
            raise ValueError("the ranker needs context events (event_users/items/times)")
        users = np.asarray(context.event_users, dtype=np.int64)
        items = np.asarray(context.event_items, dtype=np.int64)
        keep = (users >= 0) & (users < self.n_users_) & (items >= 0) & (items < self.n_items_)
        if context.event_types is not None:
            keep &= np.isin(np.asarray(context.event_types, dtype=object), self.purchase_types)
        times = to_unix_seconds(context.event_times)
        return users[keep], items[keep], times[keep]

    def _history(self, users, items, times, user_country, n_countries, reference):
        return PurchaseHistory.from_events(
            users,
            items,
            times,
            user_country,
            n_countries,
            (self.n_users_, self.n_items_),
            reference,
            self.trend_half_life_days,
            self.ease_lambda,
        )

    def _users_per_block(self) -> int:
        # The dense per-block arrays hold ~12 floats per (user, item).
        return max(1, (1 << 22) // max(self.n_items_, 1))

    def _block_rows(self) -> int:
        return self._users_per_block()

    # -- scoring -------------------------------------------------------------

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Log-odds of a purchase for the candidates; the other items rank below the
        user's candidates (by the item's short-term trend).

        A user's row depends on that user alone (not on the users scored with it),
        so that a blend, which rescales each row, ranks the same in any batch.
        """
        self._check_fitted()
        userids = np.asarray(userids, dtype=np.int64)
        history = self.history_
        out = np.empty((len(userids), self.n_items_), dtype=np.float32)
        trend = history.item_trend_short / max(float(history.item_trend_short.max()), 1e-12)
        for start in range(0, len(userids), self._users_per_block()):
            block = slice(start, start + self._users_per_block())
            n_rows = len(userids[block])
            rows, cols, features = history.candidates(
                userids[block], self.n_neighbours, self.n_trending, user_rows=user_items[block]
            )
            raw = self._raw_scores(features)
            floor = np.full(n_rows, np.inf)
            np.minimum.at(floor, rows, raw)
            floor = np.where(np.isfinite(floor), floor, 0.0) - 2.0
            dense = floor[:, None] + trend[None, :]
            dense[rows, cols] = raw
            out[block] = dense
        return out

    def _raw_scores(self, features: np.ndarray) -> np.ndarray:
        if self.trees_ is not None:
            return self.trees_.decision_function(features)
        column = {name: features[:, FEATURES.index(name)] for name in ("bought", "days")}
        ease_rank = np.nan_to_num(features[:, FEATURES.index("ease_rank")], nan=0.0)
        return np.where(column["bought"] > 0, 1.0 + column["days"], 1.0 / (2.0 + ease_rank))

    def _similar_scores(self, itemids: np.ndarray) -> np.ndarray:
        return self.history_.ease_weights[itemids]

    # -- persistence ---------------------------------------------------------

    def _get_state(self) -> dict[str, Any]:
        trees = self.trees_.state() if self.trees_ is not None else None
        return {"history_": self.history_.state(), "trees_": trees}

    def _set_state(self, state: dict[str, Any]) -> None:
        history = dict(state["history_"])
        self.history_ = PurchaseHistory(**history)
        self.trees_ = None
        if state.get("trees_") is not None:
            trees = dict(state["trees_"])
            trees["baseline"] = float(trees["baseline"])
            self.trees_ = TreeEnsemble(**trees)


def _country_index(context: FitContext, n_users: int) -> tuple[int, np.ndarray]:
    """(number of markets, market index per user; -1 when unknown)."""
    index = np.full(n_users, -1, dtype=np.int64)
    if context.user_country is None:
        return 0, index
    codes = np.asarray(context.user_country, dtype=object)[:n_users]
    known = np.array([isinstance(c, str) and c != "" for c in codes], dtype=bool)
    markets, inverse = np.unique(codes[known].astype(str), return_inverse=True)
    index[np.flatnonzero(known)] = inverse
    return len(markets), index
