"""Offline evaluation of one recommender against a held-out test matrix.

Protocol: every evaluated user is ranked against the full catalog (never a
sample of negatives) by the model's own ``recommend``, given the user's train
row; items liked in train are excluded from the ranking when
``exclude_train_items`` is true (the usual setting when test holds only new
items; set it false for repeat-purchase tasks), also for models that keep them
by design (``recommends_already_liked``). The evaluated users are
those with at least one test item (or those of a given list that have one).
Per-user metrics are defined in :mod:`recsys.evaluation.metrics`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from recsys.candidates import recommend_excluding
from recsys.evaluation.metrics import (
    RANKING_METRICS,
    catalog_coverage,
    item_self_information,
    mean_self_information,
    ranking_metrics,
)

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)


class SupportsRecommend(Protocol):
    """The part of the ``Recommender`` interface that evaluation calls."""

    def recommend(
        self,
        userids: np.ndarray,
        user_items: sp.csr_matrix,
        N: int = 10,
        filter_already_liked_items: bool = True,
        filter_items: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class EvaluationResult:
    """Per-user metrics of one evaluation, and their aggregates.

    ``per_user`` has a ``user`` column (internal user index) and one column
    per metric and cutoff (``"ndcg@10"``); ``slice_labels`` holds one column
    per slice, row-aligned with ``per_user``. ``coverage`` and ``novelty`` map
    each cutoff to the catalog-level value.
    """

    per_user: pd.DataFrame
    ks: tuple[int, ...]
    k: int
    coverage: dict[int, float]
    novelty: dict[int, float]
    slice_labels: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Test (user, item) pairs of the evaluated users that are also in train.
    train_test_overlap: int = 0

    @property
    def n_users(self) -> int:
        """How many users were evaluated."""
        return len(self.per_user)

    def summary(self) -> dict[str, float]:
        """Means over users of every metric at every cutoff, plus coverage, novelty, n_users."""
        out = {name: float(value) for name, value in self._metric_columns().mean().items()}
        for k in self.ks:
            out[f"coverage@{k}"] = self.coverage[k]
            out[f"novelty@{k}"] = self.novelty[k]
        out["n_users"] = float(self.n_users)
        return out

    def by_slice(self, name: str, ks: Iterable[int] | None = None) -> pd.DataFrame:
        """Mean of each metric per value of slice ``name`` (at ``self.k`` unless ``ks``).

        Indexed by the slice values, with a ``users`` column counting the
        evaluated users of each value.
        """
        if name not in self.slice_labels.columns:
            known = ", ".join(self.slice_labels.columns) or "none"
            raise KeyError(f"unknown slice {name!r} (known: {known})")
        ks = (self.k,) if ks is None else tuple(ks)
        unknown = sorted(set(ks) - set(self.ks))
        if unknown:
            raise ValueError(f"cutoffs {unknown} were not evaluated (evaluated: {self.ks})")
        columns = [f"{metric}@{k}" for k in ks for metric in RANKING_METRICS]
        labels = self.slice_labels[name].rename(name)
        grouped = self.per_user[columns].groupby(labels, dropna=False, observed=True)
        table = grouped.mean()
        table.insert(0, "users", grouped.size())
        return table

    def metric_vs_k(self) -> pd.DataFrame:
        """One row per cutoff ``k``, one column per metric (means), ready to plot."""
        summary = self.summary()
        metrics = (*RANKING_METRICS, "coverage", "novelty")
        rows = {k: {metric: summary[f"{metric}@{k}"] for metric in metrics} for k in self.ks}
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "k"
        return table

    def _metric_columns(self) -> pd.DataFrame:
        return self.per_user.drop(columns="user")


def evaluate(
    model: SupportsRecommend,
    train: sp.csr_matrix,
    test: sp.csr_matrix,
    k: int = 10,
    users: Sequence[int] | np.ndarray | None = None,
    exclude_train_items: bool = True,
    ks: Iterable[int] = DEFAULT_KS,
    slices: Mapping[str, np.ndarray] | None = None,
    batch_size: int = 2048,
    progress: bool = True,
    exclude: sp.spmatrix | None = None,
) -> EvaluationResult:
    """Rank the full catalog for every evaluated user and score it against ``test``.

    ``train`` and ``test`` are users x items matrices of the same shape.
    ``users`` restricts the evaluation to those user indices (users among
    them without a test item are skipped). Metrics are computed at every
    cutoff of ``ks`` and at ``k``, the headline cutoff. ``slices`` maps a
    slice name to an array of labels indexed by user index (length
    ``n_users`` of the matrices). ``exclude`` (users x items) removes each
    user's listed items from the ranking instead of the train row (e.g. the
    items already bought, when train also holds views). A tqdm bar on stderr
    follows the batches.
    """
    train, test = _check_matrices(train, test)
    ks = tuple(sorted({int(c) for c in ks} | {int(k)}))
    if ks[0] < 1:
        raise ValueError(f"cutoffs must be positive integers, got {ks}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    user_ids = _evaluated_users(test, users)
    slice_labels = _slice_labels(slices, user_ids, train.shape[0])

    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        if exclude.shape != train.shape:
            raise ValueError(f"exclude {exclude.shape} must have the shape of train {train.shape}")
    # Models that recommend already-liked items by design (buy again) ignore
    # filter_already_liked_items: their train items are removed here instead.
    drop_train = exclude is None and exclude_train_items
    drop_train &= bool(getattr(model, "recommends_already_liked", False))
    n_rank = max(ks)
    recommended = np.full((len(user_ids), n_rank), -1, dtype=np.int64)
    with tqdm(
        total=len(user_ids), desc="evaluate", unit="user", file=sys.stderr, disable=not progress
    ) as bar:
        for start in range(0, len(user_ids), batch_size):
            batch = user_ids[start : start + batch_size]
            if drop_train:
                rows = train[batch]
                ids, _ = recommend_excluding(model, batch, rows, rows, n_rank)
            elif exclude is None:
                ids, _ = model.recommend(
                    batch, train[batch], N=n_rank, filter_already_liked_items=exclude_train_items
                )
                ids = np.atleast_2d(np.asarray(ids))
            else:
                ids, _ = recommend_excluding(model, batch, train[batch], exclude[batch], n_rank)
            if not np.issubdtype(ids.dtype, np.integer):
                raise ValueError(f"model.recommend returned {ids.dtype} ids, expected integers")
            if ids.shape[0] != len(batch) or ids.shape[1] > n_rank:
                raise ValueError(
                    f"model.recommend returned ids of shape {ids.shape} "
                    f"for {len(batch)} users and N={n_rank}"
                )
            recommended[start : start + len(batch), : ids.shape[1]] = ids
            bar.update(len(batch))

    test_rows = test[user_ids]
    per_user = pd.DataFrame({"user": user_ids})
    per_user = pd.concat(
        [per_user, pd.DataFrame(ranking_metrics(recommended, test_rows, ks))], axis=1
    )
    self_info = item_self_information(train)
    coverage, novelty = {}, {}
    for c in ks:
        coverage[c] = catalog_coverage(recommended, train.shape[1], c)
        novelty[c] = mean_self_information(recommended, self_info, c)
    overlap = int(test_rows.multiply(train[user_ids]).count_nonzero())
    return EvaluationResult(
        per_user=per_user,
        ks=ks,
        k=int(k),
        coverage=coverage,
        novelty=novelty,
        slice_labels=slice_labels,
        train_test_overlap=overlap,
    )


def _check_matrices(train: sp.spmatrix, test: sp.spmatrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    if not (sp.issparse(train) and sp.issparse(test)):
        raise ValueError("train and test must be scipy sparse matrices (users x items)")
    if train.shape != test.shape:
        raise ValueError(f"train {train.shape} and test {test.shape} must have the same shape")
    test = sp.csr_matrix(test)
    if test.nnz and not np.all(test.data != 0):
        test = test.copy()
        test.eliminate_zeros()
    return sp.csr_matrix(train), test


def _evaluated_users(test: sp.csr_matrix, users: Sequence[int] | np.ndarray | None) -> np.ndarray:
    has_test = np.diff(test.indptr) > 0
    if users is None:
        return np.flatnonzero(has_test)
    users = np.unique(np.asarray(users, dtype=np.int64))
    if users.size and (users[0] < 0 or users[-1] >= test.shape[0]):
        raise ValueError(f"users must be indices in [0, {test.shape[0]})")
    return users[has_test[users]]


def _slice_labels(
    slices: Mapping[str, np.ndarray] | None, user_ids: np.ndarray, n_users: int
) -> pd.DataFrame:
    columns = {}
    for name, labels in (slices or {}).items():
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != n_users:
            raise ValueError(
                f"slice {name!r} must be a 1-D array of {n_users} labels (one per user index), "
                f"got shape {labels.shape}"
            )
        columns[name] = labels[user_ids]
    return pd.DataFrame(columns, index=pd.RangeIndex(len(user_ids)))
