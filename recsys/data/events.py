"""Helpers for event frames: the content-derived event id."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The columns whose values identify an event: two rows equal in all of
#: them are the same event (imported twice, or logged twice).
IDENTITY_COLUMNS = (
    "timestamp",
    "user_id",
    "session_id",
    "item_id",
    "type",
    "quantity",
    "price",
    "currency",
    "country",
    "value",
)


def event_ids(events: pd.DataFrame) -> np.ndarray:
    """A 64-bit id per row, derived from its content (stable across runs).

    Re-importing a file yields the same ids, which is how imports stay
    idempotent. Columns absent from ``events`` count as null.
    """
    cols = {}
    for name in IDENTITY_COLUMNS:
        if name not in events.columns:
            cols[name] = np.full(len(events), "", dtype=object)
            continue
        col = events[name]
        if name == "timestamp":
            ts = pd.to_datetime(col, utc=True).dt.as_unit("ms")
            cols[name] = ts.astype("int64")  # ms since epoch, whatever the input unit
        else:
            cols[name] = col.astype(object).where(col.notna(), "").astype(str)
    frame = pd.DataFrame(cols)
    return pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
