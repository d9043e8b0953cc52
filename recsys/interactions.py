"""The users x items interaction matrix built from canonical events.

Every event adds ``weights[type]`` (optionally times its quantity, its rating
and a time decay) to the cell of its (user, item); the cells are summed, and
cells whose total is not above ``min_weight`` (a purchase netted out by its
refund, say) are dropped. Rows and columns are the indices of two ``IdMap``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.schema import EVENT_TYPES
from recsys.idmap import IdMap

DEFAULT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "add_to_cart": 3.0,
    "purchase": 10.0,
    "refund": -10.0,
    "rating": 1.0,
}


@dataclass(frozen=True)
class InteractionConfig:
    """How events turn into matrix values.

    - ``weights``: weight per event type; a type left out weighs 0 (ignored).
    - ``half_life_days``: an event ``age`` days older than ``reference_time``
      counts ``0.5 ** (age / half_life_days)`` times its weight; None: no decay.
    - ``reference_time``: "now" for the decay; None: the latest event timestamp.
      A naive time is taken as UTC.
    - ``use_quantity``: multiply every event's weight by its ``quantity``.
    - ``use_rating_value``: multiply a ``rating`` event's weight by its ``value``
      (the explicit rating), so MovieLens cells hold weighted ratings.
    - ``min_weight``: cells whose summed value is ``<= min_weight`` are dropped.
    """

    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    half_life_days: float | None = None
    reference_time: pd.Timestamp | datetime | str | None = None
    use_quantity: bool = False
    use_rating_value: bool = True
    min_weight: float = 0.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"weights for unknown event types {unknown}; types are {EVENT_TYPES}")
        for name, weight in self.weights.items():
            if not np.isfinite(weight):
                raise ValueError(f"weight of {name!r} must be finite, got {weight}")
        if self.half_life_days is not None and not self.half_life_days > 0:
            raise ValueError(f"half_life_days must be > 0, got {self.half_life_days}")
        if not np.isfinite(self.min_weight):
            raise ValueError(f"min_weight must be finite, got {self.min_weight}")
        if self.reference_time is not None:
            object.__setattr__(self, "reference_time", _utc(self.reference_time))

    def as_dict(self) -> dict:
        """The settings as plain values (for logging as run parameters)."""
        out = asdict(self)
        out["weights"] = dict(self.weights)
        if self.reference_time is not None:
            out["reference_time"] = self.reference_time.isoformat()
        return out


@dataclass
class Interactions:
    """A users x items ``csr_matrix`` (float32) with its id maps and counts.

    Row ``u`` is ``user_map.ids([u])``, column ``i`` is ``item_map.ids([i])``;
    the shape is ``(len(user_map), len(item_map))``.
    """

    matrix: sp.csr_matrix
    user_map: IdMap
    item_map: IdMap
    config: InteractionConfig
    reference_time: pd.Timestamp | None  # used for the decay; None without decay
    n_events: int  # rows of the input
    n_guest_events: int  # skipped: null user_id
    n_unknown_events: int  # skipped: user or item not in a fixed map
    n_zero_weight_events: int  # skipped: their weight is 0 (e.g. a type left out)
    n_dropped_cells: int  # (user, item) cells whose total was <= min_weight

    def summary(self) -> dict:
        """Shape, non-zeros and counts as a flat dict (for logging as metrics)."""
        return {
            "n_users": self.matrix.shape[0],
            "n_items": self.matrix.shape[1],
            "nnz": int(self.matrix.nnz),
            "n_events": self.n_events,
            "n_guest_events": self.n_guest_events,
            "n_unknown_events": self.n_unknown_events,
            "n_zero_weight_events": self.n_zero_weight_events,
            "n_dropped_cells": self.n_dropped_cells,
        }


def build_interactions(
    events: pd.DataFrame,
    config: InteractionConfig | None = None,
    user_map: IdMap | None = None,
    item_map: IdMap | None = None,
    extend_maps: bool = True,
) -> Interactions:
    """Sum the weighted events of ``events`` into a users x items matrix.

    ``events`` has the canonical columns ``user_id`` (null for guests),
    ``item_id``, ``type`` and, when the config needs them, ``timestamp``
    (tz-aware), ``quantity`` and ``value``. Guest events are skipped.

    The given maps are not modified: the result holds copies, extended with
    the new ids of the (non-guest) events in first-seen order, so indices of
    the given maps stay valid. With ``extend_maps=False`` the maps stay as
    given and events of unknown users or items are skipped (e.g. a test
    matrix shaped like the training one).
    """
    config = config or InteractionConfig()
    _require(events, ["user_id", "item_id", "type"])
    n_events = len(events)

    weight_of_type = _type_weights(events["type"], config.weights)
    user_ids = events["user_id"]
    guest = user_ids.isna().to_numpy()
    n_guest = int(guest.sum())
    member = ~guest
    if events["item_id"].isna().any():
        raise ValueError("item_id must not be null")

    user_map = user_map.copy() if user_map is not None else IdMap()
    item_map = item_map.copy() if item_map is not None else IdMap()
    members = user_ids[member]
    items = events["item_id"][member]
    if extend_maps:
        rows = user_map.index(members, add=True)
        cols = item_map.index(items, add=True)
        n_unknown = 0
    else:
        rows = user_map.index(members)
        cols = item_map.index(items)
        known = (rows >= 0) & (cols >= 0)
        n_unknown = int((~known).sum())
        member[member] = known
        rows, cols = rows[known], cols[known]

    weights = weight_of_type[member]
    if config.use_quantity:
        _require(events, ["quantity"])
        quantity = events["quantity"][member]
        if quantity.isna().any():
            raise ValueError("quantity must not be null when use_quantity is set")
        weights = weights * quantity.to_numpy(dtype=np.float64)
    if config.use_rating_value and "rating" in config.weights:
        rating = (events["type"][member] == "rating").to_numpy()
        if rating.any():
            _require(events, ["value"])
            value = events["value"][member][rating]
            if value.isna().any():
                raise ValueError("rating events need a value (or set use_rating_value=False)")
            weights[rating] *= value.to_numpy(dtype=np.float64)

    reference_time = None
    if config.half_life_days is not None:
        _require(events, ["timestamp"])
        timestamps = events["timestamp"]
        _check_tz_aware(timestamps)
        reference_time = config.reference_time
        if reference_time is None:
            reference_time = timestamps.max() if n_events else pd.Timestamp(0, tz="UTC")
        age_days = ((reference_time - timestamps[member]) / pd.Timedelta(days=1)).to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        if np.isnan(age_days).any():
            raise ValueError("timestamp must not be null when half_life_days is set")
        if len(age_days) and age_days.min() < 0:
            raise ValueError(
                f"events after reference_time {reference_time.isoformat()}; "
                "pass a later reference_time or filter the events"
            )
        weights = weights * np.exp2(-age_days / config.half_life_days)

    nonzero = weights != 0
    n_zero_weight = int((~nonzero).sum())
    if not nonzero.all():
        rows, cols, weights = rows[nonzero], cols[nonzero], weights[nonzero]

    shape = (len(user_map), len(item_map))
    matrix = sp.coo_matrix((weights, (rows, cols)), shape=shape).tocsr()  # sums duplicates
    matrix.sum_duplicates()
    drop = matrix.data <= config.min_weight
    n_dropped = int(drop.sum())
    if n_dropped:
        matrix.data[drop] = 0.0
        matrix.eliminate_zeros()
    matrix = matrix.astype(np.float32)
    matrix.sort_indices()
    return Interactions(
        matrix=matrix,
        user_map=user_map,
        item_map=item_map,
        config=config,
        reference_time=reference_time,
        n_events=n_events,
        n_guest_events=n_guest,
        n_unknown_events=n_unknown,
        n_zero_weight_events=n_zero_weight,
        n_dropped_cells=n_dropped,
    )


def _type_weights(types: pd.Series, weights: Mapping[str, float]) -> np.ndarray:
    """The configured weight of every event's type (float64, one per row)."""
    codes, uniques = pd.factorize(types, sort=False)
    if len(codes) and codes.min() < 0:
        raise ValueError("event type must not be null")
    unknown = sorted(set(uniques) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event types {unknown}; types are {EVENT_TYPES}")
    per_type = np.array([float(weights.get(t, 0.0)) for t in uniques], dtype=np.float64)
    return per_type[codes]


def _require(events: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in events.columns]
    if missing:
        raise ValueError(f"events lack the columns {missing}")


def _check_tz_aware(timestamps: pd.Series) -> None:
    if not isinstance(timestamps.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"timestamp must be a tz-aware datetime column, got {timestamps.dtype}")


def _utc(value: pd.Timestamp | datetime | str) -> pd.Timestamp:
    """``value`` as a UTC ``Timestamp`` (a naive value is taken as UTC)."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        return stamp.tz_localize("UTC")
    return stamp.tz_convert("UTC")
