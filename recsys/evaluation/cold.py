"""Offline evaluation of the cold-start slice: users without any history.

Each cold user is known only by a profile (country, language) and ranked
against the full catalog by the model's ``recommend_new_users``; nothing is
filtered (they have bought nothing yet). Metrics are those of
:mod:`recsys.evaluation.metrics`, averaged over the users with a test item.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from recsys.evaluation.evaluate import DEFAULT_KS, EvaluationResult
from recsys.evaluation.metrics import (
    catalog_coverage,
    item_self_information,
    mean_self_information,
    ranking_metrics,
)
from recsys.models.base import new_user_profiles


def evaluate_new_users(
    model,
    profiles,
    cold_test: sp.spmatrix,
    k: int = 10,
    ks: Iterable[int] = DEFAULT_KS,
    train: sp.spmatrix | None = None,
    batch_size: int = 2048,
    progress: bool = True,
) -> EvaluationResult:
    """Rank the full catalog for each profile and score it against ``cold_test``.

    ``profiles`` (a DataFrame with ``country`` and ``language``, one row per
    row of ``cold_test``) goes to ``model.recommend_new_users``. The result's
    ``per_user["user"]`` is the profile's row number and its ``country`` slice
    the profile's country. Novelty needs ``train`` (users x items, for the
    items' self-information); without it novelty is NaN.
    """
    table = new_user_profiles(profiles)
    cold_test = sp.csr_matrix(cold_test)
    if cold_test.shape[0] != len(table):
        raise ValueError(f"cold_test has {cold_test.shape[0]} rows for {len(table)} profiles")
    if train is not None and train.shape[1] != cold_test.shape[1]:
        raise ValueError(f"train has {train.shape[1]} items, cold_test {cold_test.shape[1]}")
    ks = tuple(sorted({int(c) for c in ks} | {int(k)}))
    if ks[0] < 1:
        raise ValueError(f"cutoffs must be positive integers, got {ks}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if cold_test.nnz and not np.all(cold_test.data != 0):
        cold_test = cold_test.copy()  # sp.csr_matrix shares the caller's arrays
        cold_test.eliminate_zeros()
    rows = np.flatnonzero(np.diff(cold_test.indptr) > 0)

    n_rank = max(ks)
    recommended = np.full((len(rows), n_rank), -1, dtype=np.int64)
    with tqdm(
        total=len(rows),
        desc="evaluate new users",
        unit="user",
        file=sys.stderr,
        disable=not progress,
    ) as bar:
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            ids, _ = model.recommend_new_users(table.iloc[batch], N=n_rank)
            recommended[start : start + len(batch)] = ids
            bar.update(len(batch))

    per_user = pd.concat(
        [
            pd.DataFrame({"user": rows}),
            pd.DataFrame(ranking_metrics(recommended, cold_test[rows], ks)),
        ],
        axis=1,
    )
    n_items = cold_test.shape[1]
    self_info = None if train is None else item_self_information(sp.csr_matrix(train))
    coverage = {c: catalog_coverage(recommended, n_items, c) for c in ks}
    novelty = {
        c: float("nan") if self_info is None else mean_self_information(recommended, self_info, c)
        for c in ks
    }
    countries = table["country"].iloc[rows].fillna("unknown").astype(str).to_numpy()
    return EvaluationResult(
        per_user=per_user,
        ks=ks,
        k=int(k),
        coverage=coverage,
        novelty=novelty,
        slice_labels=pd.DataFrame({"country": countries}),
    )
