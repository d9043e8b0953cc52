"""Comparing two models on the same users: paired bootstrap of per-user differences.

Two evaluations of the same split (e.g. the ``cold_users_per_user.csv`` reports
of two ``recsys train`` runs) are aligned user by user; the mean of the
per-user differences and its bootstrap interval say whether one model beats
the other by more than the noise of which users happened to be tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over paired users and its bootstrap confidence interval."""

    mean: float
    low: float
    high: float
    n_users: int
    confidence: float

    @property
    def significant(self) -> bool:
        """True when the interval excludes zero."""
        return self.low > 0 or self.high < 0


def paired_bootstrap(
    a,
    b,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedDifference:
    """Bootstrap (percentile) interval of ``mean(a - b)``; ``a[i]`` and ``b[i]`` are one user."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D and of one length, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError("a paired bootstrap needs at least two users")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    differences = a - b
    result = stats.bootstrap(
        (differences,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    interval = result.confidence_interval
    return PairedDifference(
        mean=float(differences.mean()),
        low=float(interval.low),
        high=float(interval.high),
        n_users=len(differences),
        confidence=confidence,
    )


def paired_metric(
    a: pd.DataFrame, b: pd.DataFrame, metric: str = "ndcg@10", key: str = "user_id"
) -> tuple[np.ndarray, np.ndarray]:
    """The ``metric`` column of two per-user tables, aligned on ``key``.

    Both tables must hold the same users (two evaluations of one split);
    otherwise a ``ValueError`` says how many differ.
    """
    for name, table in (("a", a), ("b", b)):
        if key not in table.columns or metric not in table.columns:
            raise KeyError(f"table {name} needs columns {key!r} and {metric!r}")
        if table[key].duplicated().any():
            raise ValueError(f"table {name} holds a {key} more than once")
    left = a.set_index(a[key].astype(str))[metric]
    right = b.set_index(b[key].astype(str))[metric]
    only = left.index.symmetric_difference(right.index)
    if len(only):
        raise ValueError(f"{len(only)} users are in one table only: not the same split")
    right = right.reindex(left.index)
    return left.to_numpy(np.float64), right.to_numpy(np.float64)
