"""Train/test splits of an events table, each checked for leaks before it is returned.

- ``temporal_split``: train before a cutoff, test in a window after it;
- ``leave_last_n``: each user's last ``n`` events go to test;
- ``stratified_split``: a seeded random share of every item's (or user's) events.

A ``Split`` carries its parameters (``description``) and a ``fingerprint`` of
parameters and event ids, so a run can record exactly what it was trained on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.events import event_ids
from recsys.data.schema import EVENT_TYPES


class LeakError(ValueError):
    """A test event is also in train, or lies on the wrong side of the cutoff."""


@dataclass
class Split:
    """Train and test events, and the parameters that produced them."""

    train: pd.DataFrame
    test: pd.DataFrame
    description: dict = field(default_factory=dict)
    #: Set for temporal splits: train is strictly before, test at or after it.
    cutoff: pd.Timestamp | None = None

    def fingerprint(self) -> str:
        """A stable hash of the parameters and of the train and test event ids.

        Independent of row order; event ids come from the ``event_id`` column,
        or from the events' content when the column is absent.
        """
        digest = hashlib.sha256()
        digest.update(json.dumps(self.description, sort_keys=True, default=str).encode())
        for name, frame in (("train", self.train), ("test", self.test)):
            ids = np.sort(_event_ids(frame)).astype("<u8")
            digest.update(f"|{name}:{len(ids)}|".encode())
            digest.update(ids.tobytes())
        return digest.hexdigest()[:16]

    def summary(self) -> dict:
        """Row, user and item counts of both sides (for logging)."""
        out = {}
        for name, frame in (("train", self.train), ("test", self.test)):
            out[f"{name}_events"] = len(frame)
            for column in ("user_id", "item_id"):
                if column in frame.columns:
                    out[f"{name}_{column[:-3]}s"] = int(frame[column].nunique())
        return out


def temporal_split(
    events: pd.DataFrame,
    cutoff: pd.Timestamp | datetime | str,
    test_days: float | None = 30,
    test_types: Iterable[str] | None = ("purchase",),
    known_users_only: bool = True,
    known_items_only: bool = True,
) -> Split:
    """Train: every event before ``cutoff``. Test: events of ``test_types`` in
    ``[cutoff, cutoff + test_days)`` (``test_days=None``: no end).

    With ``known_users_only`` (``known_items_only``) test keeps only users
    (items) that occur in a train event of a signed-in user; guest events
    (null ``user_id``) then never reach test. Events after the cutoff that are
    not test events are in neither side. A naive ``cutoff`` is taken as UTC.
    """
    cutoff = _utc(cutoff)
    timestamps = _timestamps(events)
    types = _types(test_types)
    before = (timestamps < cutoff).to_numpy()
    in_window = ~before
    end = None
    if test_days is not None:
        if not test_days > 0:
            raise ValueError(f"test_days must be > 0, got {test_days}")
        end = cutoff + pd.Timedelta(days=test_days)
        in_window &= (timestamps < end).to_numpy()
    if types is not None:
        in_window &= events["type"].isin(types).to_numpy()

    train = events[before]
    test = events[in_window]
    members = train[train["user_id"].notna()]
    if known_users_only:
        test = test[_isin(test["user_id"], members["user_id"])]
    if known_items_only:
        test = test[_isin(test["item_id"], members["item_id"])]
    description = {
        "method": "temporal",
        "cutoff": cutoff.isoformat(),
        "test_days": test_days,
        "test_end": None if end is None else end.isoformat(),
        "test_types": None if types is None else list(types),
        "known_users_only": known_users_only,
        "known_items_only": known_items_only,
    }
    return _checked(Split(train, test, description, cutoff=cutoff))


def leave_last_n(
    events: pd.DataFrame, n: int = 1, test_types: Iterable[str] | None = None
) -> Split:
    """Per user, the last ``n`` events of ``test_types`` (all types if None) go to test.

    "Last" is by timestamp; among equal timestamps the later row of ``events``
    counts as later. Users with ``<= n`` such events, guest events and events
    of other types stay in train.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    timestamps = _timestamps(events)
    types = _types(test_types)
    eligible = events["user_id"].notna().to_numpy().copy()
    if types is not None:
        eligible &= events["type"].isin(types).to_numpy()

    positions = np.flatnonzero(eligible)
    candidates = pd.DataFrame(
        {"user_id": events["user_id"].to_numpy()[positions], "position": positions}
    )
    stamps = timestamps.array.asi8[positions]
    order = np.argsort(stamps, kind="stable")  # stable: ties keep row order
    candidates = candidates.iloc[order]
    grouped = candidates.groupby("user_id", sort=False)
    from_end = grouped.cumcount(ascending=False).to_numpy()
    count = grouped["position"].transform("size").to_numpy()
    chosen = candidates["position"].to_numpy()[(from_end < n) & (count > n)]

    in_test = np.zeros(len(events), dtype=bool)
    in_test[chosen] = True
    description = {
        "method": "leave_last_n",
        "n": int(n),
        "test_types": None if types is None else list(types),
    }
    return _checked(Split(events[~in_test], events[in_test], description))


def stratified_split(
    events: pd.DataFrame, test_fraction: float = 0.25, by: str = "item_id", seed: int = 42
) -> Split:
    """A seeded random split within each group of ``by`` (item or user).

    The protocol of Microsoft Recommenders' ``python_stratified_split`` with
    ``ratio = 1 - test_fraction``: draw ``numpy.random.RandomState(seed).rand``
    for every row (in the order of ``events``), order each group's rows by that
    number, and give the row of rank ``k`` (1-based) in a group of ``n`` rows to
    train when ``k / n <= ratio``, else to test. So a group keeps
    ``floor(ratio * n)`` rows in train (e.g. n=1: 0, n=2: 1, n=4: 3); an item
    with a single event lands in test. Rows with a null ``by`` stay in train.
    Same input (rows in the same order) and seed: same split.

    Recommenders splits by user (``filter_by="user"``) unless told otherwise,
    as its MovieLens notebooks do; ``by="user_id"`` gives that protocol.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if by not in events.columns:
        raise ValueError(f"events have no column {by!r}")
    ratio = 1.0 - test_fraction
    draws = np.random.RandomState(seed).rand(len(events))
    codes, _ = pd.factorize(events[by], sort=False)
    by_draw = np.argsort(draws)
    order = by_draw[np.argsort(codes[by_draw], kind="stable")]  # by group, then by draw
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(1, len(order) + 1) - np.repeat(starts, sizes)
    to_test = (rank / np.repeat(sizes, sizes) > ratio) & (sorted_codes >= 0)
    in_test = np.zeros(len(events), dtype=bool)
    in_test[order[to_test]] = True
    description = {
        "method": "stratified",
        "test_fraction": test_fraction,
        "by": by,
        "seed": seed,
    }
    return _checked(Split(events[~in_test], events[in_test], description))


def check_no_leak(split: Split) -> None:
    """Raise ``LeakError`` if ``split`` leaks test information into train.

    Checks that no test event is also a train event (same ``event_id`` when
    both sides have that column, else the same values in every column);
    with a ``cutoff``, that train is strictly before it and test at or after
    it; for ``leave_last_n``, that no user's test event precedes one of their
    train events of the test types.
    """
    train_ids, test_ids = _event_keys(split.train, split.test)
    shared = pd.Series(test_ids).isin(train_ids).to_numpy()  # hashed: faster than np.isin
    if shared.any():
        raise LeakError(f"{int(shared.sum())} test events are also in train")
    if split.cutoff is not None:
        cutoff = _utc(split.cutoff)
        if len(split.train) and (_timestamps(split.train) >= cutoff).any():
            raise LeakError(f"train has events at or after the cutoff {cutoff.isoformat()}")
        if len(split.test) and (_timestamps(split.test) < cutoff).any():
            raise LeakError(f"test has events before the cutoff {cutoff.isoformat()}")
    if split.description.get("method") == "leave_last_n":
        _check_user_order(split)


def _checked(split: Split) -> Split:
    check_no_leak(split)
    return split


def _check_user_order(split: Split) -> None:
    """No test event of a user is older than a train event of theirs of the test types."""
    if not len(split.test):
        return
    train = split.train[_isin(split.train["user_id"], split.test["user_id"])]
    types = split.description.get("test_types")
    if types is not None:
        train = train[train["type"].isin(types)]
    latest_train = train.groupby("user_id")["timestamp"].max()
    first_test = split.test.groupby("user_id")["timestamp"].min()
    latest_train, first_test = latest_train.align(first_test, join="inner")
    early = int((first_test < latest_train).sum())
    if early:
        raise LeakError(f"{early} users have a test event older than one of their train events")


def _event_keys(train: pd.DataFrame, test: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One uint64 key per event: its ``event_id``, else a hash of the whole row."""
    if "event_id" in train.columns and "event_id" in test.columns:
        return (
            train["event_id"].to_numpy(dtype=np.uint64),
            test["event_id"].to_numpy(dtype=np.uint64),
        )
    if list(train.columns) != list(test.columns):
        raise ValueError("train and test must have the same columns")
    return _row_hash(train), _row_hash(test)


def _isin(column: pd.Series, allowed: pd.Series) -> np.ndarray:
    """Whether each value of ``column`` is among the non-null values of ``allowed``.

    Goes through Arrow: pandas' ``isin`` on Arrow-backed strings turns a large
    value set into Python objects first.
    """
    values = pa.array(allowed.dropna().unique(), from_pandas=True)
    data = pa.array(column, from_pandas=True)
    if not len(values) or not len(data):
        return np.zeros(len(column), dtype=bool)
    return np.asarray(pc.is_in(data, value_set=values.cast(data.type)), dtype=bool)


def _row_hash(frame: pd.DataFrame) -> np.ndarray:
    if not len(frame):
        return np.empty(0, dtype=np.uint64)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)


def _event_ids(frame: pd.DataFrame) -> np.ndarray:
    if "event_id" in frame.columns:
        return frame["event_id"].to_numpy(dtype=np.uint64)
    if not len(frame):
        return np.empty(0, dtype=np.uint64)
    return event_ids(frame)


def _types(test_types: Iterable[str] | None) -> tuple[str, ...] | None:
    if test_types is None:
        return None
    types = (test_types,) if isinstance(test_types, str) else tuple(test_types)
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown or not types:
        raise ValueError(f"test_types must be some of {EVENT_TYPES}, got {list(types)}")
    return types


def _timestamps(events: pd.DataFrame) -> pd.Series:
    if "timestamp" not in events.columns:
        raise ValueError("events lack the column 'timestamp'")
    timestamps = events["timestamp"]
    if not isinstance(timestamps.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"timestamp must be a tz-aware datetime column, got {timestamps.dtype}")
    return timestamps


def _utc(value: pd.Timestamp | datetime | str) -> pd.Timestamp:
    """``value`` as a UTC ``Timestamp`` (a naive value is taken as UTC)."""
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        return stamp.tz_localize("UTC")
    return stamp.tz_convert("UTC")
