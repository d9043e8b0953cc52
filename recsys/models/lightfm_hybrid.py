"""LightFM hybrid: users and items as sums of feature embeddings (Kula 2015)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightfm import LightFM

from recsys.features import user_feature_names
from recsys.models.base import FitContext, Recommender
from recsys.models.profile_demand import distinct_profiles, fit_profile_demand, profile_scores
from recsys.models.sparse_utils import binarize
from recsys.models.time_decay import decayed_events
from recsys.models.topn import top_n

LOSSES = ("warp", "bpr", "logistic", "warp-kos")
NORMALIZE_OPTIONS = (True, False, "users", "items")
NEW_USER_OPTIONS = ("features", "demand")


class LightFMRecommender(Recommender):
    """LightFM with an identity feature per user / item plus the context's features.

    ``context.item_features`` (e.g. category, brand, price band) and
    ``context.user_features`` (e.g. country, language) are appended to the
    identity features, and each row is scaled to sum to 1 when
    ``normalize_features`` (``"users"`` or ``"items"``: that side only). An item
    without interactions is still scored from its features (``add_cold_items``
    appends items that arrive after fitting); a user with no history is scored
    from a feature row with ``score_user_features`` / ``recommend_cold`` /
    ``recommend_new_users``.

    ``profile_rows`` (share of users, 0-1) also trains that share of users as
    profile-only rows (their side features, no identity), so the user features
    learn to rank on their own, as they must for a new user. ``sample_weights``
    passes the positive interaction weights (e.g. time-decayed), scaled to mean
    1, as LightFM sample weights instead of counting every positive once.

    ``profile_half_life_days`` weighs the profile rows' positives by the
    recency of their events instead (each event ``0.5 ** (age_days /
    profile_half_life_days)`` at the context's reference time), so the side
    features learn what a market buys now while identities keep the history.

    ``new_users`` says how a user with no history is scored: ``"features"``
    sums the side features' LightFM embeddings; ``"demand"`` uses embeddings of
    the same side features fitted after LightFM, over its item representations,
    to what each profile's known users did recently (events weighted ``0.5 **
    (age_days / demand_half_life_days)``, refunds left out; a softmax
    likelihood with L2 weight ``demand_l2``: :mod:`recsys.models.profile_demand`).
    The item side is LightFM's item vectors and biases and, with
    ``demand_item_features``, the items' own side features (category, brand,
    tags, price band), so that a market's weight on a category can follow the
    season. Known users are scored as before either way.
    """

    name = "lightfm"
    supports_new_users = True

    def __init__(
        self,
        no_components: int = 32,
        loss: str = "warp",
        learning_rate: float = 0.05,
        item_alpha: float = 0.0,
        user_alpha: float = 0.0,
        epochs: int = 30,
        max_sampled: int = 10,
        normalize_features: bool | str = True,
        random_state: int | None = 0,
        num_threads: int = 1,
        profile_rows: float = 0.0,
        sample_weights: bool = False,
        profile_half_life_days: float | None = None,
        new_users: str = "features",
        demand_half_life_days: float = 7.0,
        demand_l2: float = 1e-4,
        demand_item_features: bool = True,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if no_components < 1 or epochs < 1:
            raise ValueError("no_components and epochs must be >= 1")
        if item_alpha < 0 or user_alpha < 0:
            raise ValueError("item_alpha and user_alpha must be >= 0")
        if normalize_features not in NORMALIZE_OPTIONS:
            raise ValueError(
                f"normalize_features must be a bool, 'users' or 'items', got {normalize_features!r}"
            )
        if not 0 <= profile_rows <= 1:
            raise ValueError(f"profile_rows must lie in [0, 1], got {profile_rows!r}")
        if sample_weights and loss == "warp-kos":
            raise ValueError("LightFM has no sample weights for loss='warp-kos'")
        if profile_half_life_days is not None and not profile_half_life_days > 0:
            raise ValueError(
                f"profile_half_life_days must be positive, got {profile_half_life_days!r}"
            )
        if profile_half_life_days is not None and loss == "warp-kos":
            raise ValueError("LightFM has no sample weights for loss='warp-kos'")
        if profile_half_life_days is not None and not profile_rows > 0:
            raise ValueError("profile_half_life_days weighs profile rows: set profile_rows > 0")
        if new_users not in NEW_USER_OPTIONS:
            raise ValueError(f"new_users must be one of {NEW_USER_OPTIONS}, got {new_users!r}")
        if not demand_half_life_days > 0 or not demand_l2 >= 0:
            raise ValueError("demand_half_life_days must be > 0 and demand_l2 >= 0")
        self.no_components = no_components
        self.loss = loss
        self.learning_rate = learning_rate
        self.item_alpha = item_alpha
        self.user_alpha = user_alpha
        self.epochs = epochs
        self.max_sampled = max_sampled
        self.normalize_features = normalize_features
        self.random_state = random_state
        self.num_threads = num_threads
        self.profile_rows = profile_rows
        self.sample_weights = sample_weights
        self.profile_half_life_days = profile_half_life_days
        self.new_users = new_users
        self.demand_half_life_days = demand_half_life_days
        self.demand_l2 = demand_l2
        self.demand_item_features = demand_item_features

    # -- features -----------------------------------------------------------------

    def _with_identity(
        self, features: sp.csr_matrix, n_identity: int, kind: str, *, cold: bool = False
    ) -> sp.csr_matrix:
        """[identity | features], rows scaled to sum 1 when ``normalize_features``
        covers ``kind`` ("user" or "item").

        ``n_identity`` is the number of identity columns (entities seen at fit);
        ``cold`` rows describe new entities and get an empty identity part.
        """
        n_rows = features.shape[0]
        if cold:
            identity = sp.csr_matrix((n_rows, n_identity), dtype=np.float32)
        else:
            identity = sp.eye(n_rows, n_identity, dtype=np.float32, format="csr")
        combined = sp.csr_matrix(sp.hstack([identity, features], format="csr"), dtype=np.float32)
        if self.normalize_features in (True, f"{kind}s"):
            sums = np.asarray(combined.sum(axis=1)).ravel()
            scale = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums != 0)
            combined = sp.csr_matrix(sp.diags(scale.astype(np.float32)) @ combined)
        return combined

    @staticmethod
    def _side_features(features, names, n_rows: int, kind: str) -> tuple[sp.csr_matrix, list]:
        if features is None:
            return sp.csr_matrix((n_rows, 0), dtype=np.float32), []
        if features.shape[0] < n_rows:
            raise ValueError(f"{kind}_features has {features.shape[0]} rows for {n_rows} {kind}s")
        matrix = sp.csr_matrix(features, dtype=np.float32)[:n_rows]
        if names is None:
            names = [f"{kind}_feature_{j}" for j in range(matrix.shape[1])]
        return sp.csr_matrix(matrix), [str(n) for n in names]

    # -- fit and score ------------------------------------------------------------

    def fit(self, user_items: sp.spmatrix, *, context: FitContext | None = None) -> Self:
        """Learn feature embeddings from binary interactions and the context's features."""
        matrix = self._start_fit(user_items)
        context = context or FitContext()
        item_side, item_names = self._side_features(
            context.item_features, context.item_feature_names, self.n_items_, "item"
        )
        user_side, user_names = self._side_features(
            context.user_features, context.user_feature_names, self.n_users_, "user"
        )
        if self.new_users == "demand":
            _check_demand_inputs(user_side, context)
        self.item_feature_names_ = np.array(item_names, dtype=str)
        self.user_feature_names_ = np.array(user_names, dtype=str)
        self.item_features_ = self._with_identity(item_side, self.n_items_, "item")
        self.user_features_ = self._with_identity(user_side, self.n_users_, "user")
        interactions, weights, user_rows = self._training_rows(matrix, user_side, context)

        model = LightFM(
            no_components=self.no_components,
            loss=self.loss,
            learning_rate=self.learning_rate,
            item_alpha=self.item_alpha,
            user_alpha=self.user_alpha,
            max_sampled=self.max_sampled,
            random_state=self.random_state,
        )
        model.fit(
            interactions,
            user_features=user_rows,
            item_features=self.item_features_,
            sample_weight=weights,
            epochs=self.epochs,
            num_threads=self.num_threads,
        )
        self.user_embeddings_ = model.user_embeddings
        self.user_biases_ = model.user_biases
        self.item_embeddings_ = model.item_embeddings
        self.item_biases_ = model.item_biases
        self.demand_embeddings_ = None
        # raw (unnormalised) item side features: the demand fit's item side
        self.item_side_ = item_side if self.new_users == "demand" else None
        self._cache_item_representations()
        if self.new_users == "demand":
            self.demand_embeddings_ = self._fit_demand(user_side, context)
        return self

    def _fit_demand(self, user_side: sp.csr_matrix, context: FitContext) -> np.ndarray:
        """Side-feature embeddings fitted to each profile's recent demand (new_users="demand")."""

        users, items, weights = decayed_events(
            context, (self.n_users_, self.n_items_), self.demand_half_life_days
        )
        profiles, profile_of = distinct_profiles(user_side)
        rows = profile_of[users]
        known = rows >= 0
        demand = sp.csr_matrix(
            (weights[known], (rows[known], items[known])),
            shape=(profiles.shape[0], self.n_items_),
        )
        if not demand.nnz:
            warnings.warn(
                'new_users="demand": no event of a user with side features to fit; '
                "new users get the item biases",
                RuntimeWarning,
                stacklevel=3,
            )
        return fit_profile_demand(
            profiles,
            demand,
            self._demand_items,
            self._item_bias,
            self._demand_features,
            l2=self.demand_l2,
        )

    def _training_rows(
        self,
        matrix: sp.csr_matrix,
        user_side: sp.csr_matrix,
        context: FitContext | None = None,
    ) -> tuple[sp.coo_matrix, sp.coo_matrix | None, sp.csr_matrix]:
        """Interactions, sample weights and user feature rows handed to LightFM.

        With ``profile_rows``, a seeded share of users is appended again as
        profile-only rows (features without identity) with the same interactions;
        with ``profile_half_life_days`` those rows weigh each interaction by the
        recency of its events (``_profile_weights``) instead.
        """
        positive = binarize(matrix)
        positive.sort_indices()
        weights = None
        if self.sample_weights or self.profile_half_life_days is not None:
            weights = positive.copy()  # the positive entries' values, in the same layout
            if self.sample_weights:
                weights.data = np.asarray(matrix[positive.nonzero()], dtype=np.float32).ravel()
                weights.data /= weights.data.mean() if weights.nnz else 1.0
        user_rows = self.user_features_
        if self.profile_rows > 0 and user_side.shape[1] > 0:
            rng = np.random.default_rng(self.random_state)
            picked = np.flatnonzero(rng.random(self.n_users_) < self.profile_rows)
            profiles = self._with_identity(user_side[picked], self.n_users_, "user", cold=True)
            user_rows = sp.csr_matrix(sp.vstack([user_rows, profiles]))
            positive_picked = positive[picked]
            if weights is not None:
                profile_weights = weights[picked]
                if self.profile_half_life_days is not None:
                    profile_weights = self._profile_weights(positive_picked, picked, context)
                weights = sp.csr_matrix(sp.vstack([weights, profile_weights]))
            positive = sp.csr_matrix(sp.vstack([positive, positive_picked]))
        if weights is not None:
            weights = weights.tocoo()
        return positive.tocoo(), weights, user_rows

    def _profile_weights(
        self, positive: sp.csr_matrix, users: np.ndarray, context: FitContext | None
    ) -> sp.csr_matrix:
        """Weights of the profile rows' positives: the sum of ``0.5 ** (age_days /
        profile_half_life_days)`` over each (user, item)'s events (refunds left
        out), scaled to mean 1; a positive without events weighs as the least."""
        if context is None or not context.has_events:
            raise ValueError("profile_half_life_days needs context events")
        event_users, event_items, decay = decayed_events(
            context, (self.n_users_, self.n_items_), self.profile_half_life_days
        )
        recency = sp.csr_matrix(
            (decay, (event_users, event_items)), shape=(self.n_users_, self.n_items_)
        )[users]
        out = positive.copy()
        out.data = np.asarray(recency[positive.nonzero()], dtype=np.float32).ravel()
        if out.nnz:
            floor = out.data[out.data > 0].min() if (out.data > 0).any() else 1.0
            out.data = np.maximum(out.data, floor)
            out.data /= out.data.mean()
        return out

    def _cache_item_representations(self) -> None:
        self._item_vectors = np.asarray(self.item_features_ @ self.item_embeddings_, np.float32)
        self._item_bias = np.asarray(self.item_features_ @ self.item_biases_, np.float32)
        # the item side of new_users="demand": vectors, the bias as one more dimension
        # and (demand_item_features) the items' raw side features
        self._demand_items = self._demand_features = None
        if self.new_users != "demand":
            return
        self._demand_items = np.column_stack([self._item_vectors, self._item_bias])
        side = getattr(self, "item_side_", None)
        if self.demand_item_features and side is not None and side.shape[1]:
            self._demand_features = sp.csr_matrix(side, dtype=np.float32)

    def _score_feature_rows(self, rows: sp.csr_matrix) -> np.ndarray:
        vectors = rows @ self.user_embeddings_
        biases = rows @ self.user_biases_
        scores = vectors @ self._item_vectors.T + biases[:, None] + self._item_bias[None, :]
        return np.asarray(scores, dtype=np.float32)

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """LightFM's prediction for every item; users unknown at fit get item biases only."""
        self._check_fitted()
        userids = np.asarray(userids, dtype=np.int64)
        known = userids < self.n_users_
        rows = sp.csr_matrix(self.user_features_[np.where(known, userids, 0)])
        if not known.all():
            rows = sp.csr_matrix(sp.diags(known.astype(np.float32)) @ rows)
        return self._score_feature_rows(rows)

    # -- cold users -------------------------------------------------------------

    def user_features_from_names(self, rows: Sequence[Sequence[str]]) -> sp.csr_matrix:
        """A feature matrix (one row per user) from feature names; unknown names are ignored."""
        self._check_fitted()
        lookup = {name: j for j, name in enumerate(self.user_feature_names_)}
        indptr, indices = [0], []
        for names in rows:
            indices.extend(sorted({lookup[n] for n in names if n in lookup}))
            indptr.append(len(indices))
        data = np.ones(len(indices), dtype=np.float32)
        return sp.csr_matrix(
            (data, np.array(indices, dtype=np.int32), np.array(indptr)),
            shape=(len(rows), len(self.user_feature_names_)),
        )

    def score_user_features(self, user_features: sp.spmatrix) -> np.ndarray:
        """Scores (n x n_items) for users described only by side features (no history).

        ``user_features`` has the columns of ``context.user_features`` at fit time.
        """
        self._check_fitted()
        if not sp.issparse(user_features):
            raise TypeError("user_features must be a scipy sparse matrix")
        if user_features.shape[1] != len(self.user_feature_names_):
            raise ValueError(
                f"user_features has {user_features.shape[1]} columns, the model "
                f"{len(self.user_feature_names_)}"
            )
        if self.demand_embeddings_ is not None:
            profile = np.asarray(sp.csr_matrix(user_features) @ self.demand_embeddings_)
            scores = profile_scores(
                profile, self._demand_items, self._item_bias, self._demand_features
            )
            return np.asarray(scores, dtype=np.float32)
        rows = self._with_identity(
            sp.csr_matrix(user_features, dtype=np.float32), self.n_users_, "user", cold=True
        )
        return self._score_feature_rows(rows)

    def recommend_cold(
        self, user_features: sp.spmatrix, N: int = 10, filter_items=None, items=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` (ids, scores), 2-D, for users described only by side features."""
        scores = self.score_user_features(user_features)
        return top_n(scores, N, exclude=self._item_mask(filter_items, items))

    def _score_new_users(self, profiles: pd.DataFrame) -> np.ndarray:
        """Scores from the ``country=..`` / ``language=..`` features of each profile."""
        names = [
            user_feature_names(country, language)
            for country, language in zip(profiles["country"], profiles["language"], strict=True)
        ]
        return self.score_user_features(self.user_features_from_names(names))

    # -- cold items -------------------------------------------------------------

    def add_cold_items(self, item_features: sp.spmatrix) -> None:
        """Append items unknown at fit time, represented by their side features only.

        Rows take the next item indices (``n_items_``, ``n_items_ + 1``, ...), as an
        append-only id map assigns them; columns are those of
        ``context.item_features`` at fit time.
        """
        self._check_fitted()
        if not sp.issparse(item_features):
            raise TypeError("item_features must be a scipy sparse matrix")
        if item_features.shape[1] != len(self.item_feature_names_):
            raise ValueError(
                f"item_features has {item_features.shape[1]} columns, the model "
                f"{len(self.item_feature_names_)}"
            )
        n_identity = self.item_features_.shape[1] - len(self.item_feature_names_)
        rows = self._with_identity(
            sp.csr_matrix(item_features, dtype=np.float32), n_identity, "item", cold=True
        )
        self.item_features_ = sp.csr_matrix(sp.vstack([self.item_features_, rows]))
        if getattr(self, "item_side_", None) is not None:
            raw = sp.csr_matrix(item_features, dtype=np.float32)
            self.item_side_ = sp.csr_matrix(sp.vstack([self.item_side_, raw]))
        self.n_items_ += rows.shape[0]
        self._cache_item_representations()

    def _similar_scores(self, itemids: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(self._item_vectors, axis=1)
        norms[norms == 0] = 1e-10
        vectors = self._item_vectors
        cosine = (vectors[itemids] @ vectors.T) / (norms[itemids, None] * norms[None, :])
        return cosine.astype(np.float32)

    # -- persistence --------------------------------------------------------------

    def _get_state(self) -> dict[str, Any]:
        return {
            "item_feature_names_": self.item_feature_names_,
            "user_feature_names_": self.user_feature_names_,
            "item_features_": self.item_features_,
            "user_features_": self.user_features_,
            "user_embeddings_": self.user_embeddings_,
            "user_biases_": self.user_biases_,
            "item_embeddings_": self.item_embeddings_,
            "item_biases_": self.item_biases_,
            "demand_embeddings_": self.demand_embeddings_,
            "item_side_": getattr(self, "item_side_", None),
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        for key in ("item_feature_names_", "user_feature_names_"):
            setattr(self, key, np.asarray(state[key]).astype(str).reshape(-1))
        for key in ("item_features_", "user_features_"):
            setattr(self, key, sp.csr_matrix(state[key], dtype=np.float32))
        for key in ("user_embeddings_", "user_biases_", "item_embeddings_", "item_biases_"):
            setattr(self, key, np.asarray(state[key], dtype=np.float32))
        demand = state.get("demand_embeddings_")  # absent: saved without new_users="demand"
        self.demand_embeddings_ = None if demand is None else np.asarray(demand, np.float32)
        side = state.get("item_side_")
        self.item_side_ = None if side is None else sp.csr_matrix(side, dtype=np.float32)
        self._cache_item_representations()


def _check_demand_inputs(user_side: sp.csr_matrix, context: FitContext) -> None:
    """new_users="demand" needs side features of the users and their events."""
    if user_side.shape[1] == 0:
        raise ValueError('new_users="demand" needs context.user_features (e.g. country)')
    if not context.has_events:
        raise ValueError('new_users="demand" needs context events')
