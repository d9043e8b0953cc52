"""Recency weights: exponential decay of interactions by their age."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

SECONDS_PER_DAY = 86_400.0


def to_unix_seconds(values) -> np.ndarray:
    """Unix seconds (float64) from numbers (taken as seconds) or datetimes of any kind."""
    array = np.atleast_1d(np.asarray(values))
    if array.dtype.kind in "iuf":
        return array.astype(np.float64)
    if array.dtype.kind == "b":
        raise TypeError("timestamps must be numbers (unix seconds) or datetimes")
    stamps = pd.to_datetime(pd.Series(np.atleast_1d(values)), utc=True)
    epoch = pd.Timestamp(0, tz="UTC")
    return (stamps - epoch).dt.total_seconds().to_numpy(dtype=np.float64)


def decay_weights(times, reference_time, half_life_days: float) -> np.ndarray:
    """Weight ``0.5 ** (age_days / half_life_days)`` of each time; future times weigh 1."""
    if not half_life_days > 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days!r}")
    ages = (to_unix_seconds(reference_time)[0] - to_unix_seconds(times)) / SECONDS_PER_DAY
    return np.exp2(-np.clip(ages, 0.0, None) / half_life_days)


def decayed_events(
    context, shape: tuple[int, int], half_life_days: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user, item, ``0.5 ** (age_days / half_life_days)``) of ``context``'s events
    (a ``FitContext`` with events) whose user and item lie inside ``shape``;
    ``refund`` events, when ``context.event_types`` names them, are left out: a
    returned purchase is no new interest."""
    users = np.asarray(context.event_users, dtype=np.int64)
    items = np.asarray(context.event_items, dtype=np.int64)
    inside = (users >= 0) & (users < shape[0]) & (items >= 0) & (items < shape[1])
    if context.event_types is not None:
        inside &= np.asarray(context.event_types, dtype=object) != "refund"
    weights = decay_weights(
        np.asarray(context.event_times)[inside], context.events_reference_time(), half_life_days
    )
    return users[inside], items[inside], weights


def latest_weight_matrix(
    users: np.ndarray, items: np.ndarray, weights: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """CSR matrix holding, per (user, item), the largest weight (the most recent event)."""
    keys = users.astype(np.int64) * shape[1] + items.astype(np.int64)
    order = np.lexsort((weights, keys))
    keys, weights = keys[order], weights[order]
    last = np.r_[keys[1:] != keys[:-1], True] if len(keys) else np.zeros(0, dtype=bool)
    keys, weights = keys[last], weights[last]
    return sp.csr_matrix(
        (weights.astype(np.float32), (keys // shape[1], keys % shape[1])), shape=shape
    )
