"""Blend: a weighted sum of other models' per-user min-max normalised scores."""

from __future__ import annotations

import math
import numbers
from typing import Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.models.base import FitContext, Recommender


def minmax_rows(scores: np.ndarray) -> np.ndarray:
    """Scale each row to [0, 1]; non-finite entries and constant rows become 0."""
    finite = np.isfinite(scores)
    low = np.where(finite, scores, np.inf).min(axis=1, keepdims=True)
    high = np.where(finite, scores, -np.inf).max(axis=1, keepdims=True)
    span = high - low
    usable = finite & (span > 0)
    scaled = np.divide(scores - low, span, out=np.zeros_like(scores), where=usable)
    return np.where(usable, scaled, 0.0).astype(np.float32)


class BlendRecommender(Recommender):
    """``sum_m parts[m] * minmax(score_m)`` over the models named in ``parts``.

    ``parts`` maps model names to weights (none below 0, one at least above),
    e.g. ``{"buy-again": 0.3, "als": 0.7}``; ``part_params`` maps model names to
    their hyper-parameters, checked when the blend is made. Every part is
    fitted on the same data and context. When a part recommends already-bought
    items (buy again), so does the blend: ``filter_already_liked_items`` is
    then ignored. New users (``recommend_new_users``) are ranked by the parts
    that support them.
    """

    name = "blend"

    def __init__(
        self,
        parts: dict[str, float] | None = None,
        part_params: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        from recsys.models.registry import MODELS

        if not parts:
            raise ValueError('parts must name at least one model, e.g. {"als": 1.0}')
        part_params = part_params or {}
        for model_name, weight in parts.items():
            if model_name not in MODELS or model_name == self.name:
                raise ValueError(f"unknown or unsupported part {model_name!r}")
            if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
                raise ValueError(f"weight of {model_name!r} must be a number, got {weight!r}")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(
                    f"weight of {model_name!r} must be >= 0 and finite, got {weight!r}"
                )
        if not any(weight > 0 for weight in parts.values()):
            raise ValueError(f"at least one part needs a weight > 0, got {parts}")
        extra = set(part_params) - set(parts)
        if extra:
            raise ValueError(f"part_params for models not in parts: {sorted(extra)}")
        self.parts = {name: float(weight) for name, weight in parts.items()}
        self.part_params = {name: dict(params) for name, params in part_params.items()}
        for name in self.parts:  # a part's bad parameter fails now, not in fit
            try:
                self._new_part(name)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name}: {exc}") from exc
        self.recommends_already_liked = any(
            MODELS[name].recommends_already_liked for name in self.parts
        )
        self.supports_new_users = any(MODELS[name].supports_new_users for name in self.parts)

    def _new_part(self, model_name: str) -> Recommender:
        from recsys.models.registry import create_model

        return create_model(model_name, **self.part_params.get(model_name, {}))

    def fit(self, user_items: sp.spmatrix, *, context: FitContext | None = None) -> Self:
        """Fit every part on the same interactions and context."""
        matrix = self._start_fit(user_items)
        self.models_ = {
            name: self._new_part(name).fit(matrix, context=context) for name in self.parts
        }
        return self

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        """Weighted sum of the parts' per-user normalised scores."""
        self._check_fitted()
        total = np.zeros((len(userids), self.n_items_), dtype=np.float32)
        for name, model in self.models_.items():
            total += self.parts[name] * minmax_rows(model.score(userids, user_items))
        return total

    def _score_new_users(self, profiles: pd.DataFrame) -> np.ndarray:
        """Weighted sum over the parts that rank new users; the others (which need a
        history) are left out."""
        total = np.zeros((len(profiles), self.n_items_), dtype=np.float32)
        for name, model in self.models_.items():
            if model.supports_new_users:
                total += self.parts[name] * minmax_rows(model._score_new_users(profiles))
        return total

    def _similar_scores(self, itemids: np.ndarray) -> np.ndarray:
        total = np.zeros((len(itemids), self.n_items_), dtype=np.float32)
        for name, model in self.models_.items():
            total += self.parts[name] * minmax_rows(model._similar_scores(itemids))
        return total

    def _get_state(self) -> dict[str, Any]:
        return {"parts": {name: model._full_state() for name, model in self.models_.items()}}

    def _set_state(self, state: dict[str, Any]) -> None:
        self.models_ = {}
        for name in self.parts:
            model = self._new_part(name)
            model._restore_full_state(state["parts"][name])
            self.models_[name] = model
