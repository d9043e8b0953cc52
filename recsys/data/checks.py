"""Integrity checks over the stored tables (after an import or a generation).

Importers validate each row on the way in. ``problems`` counts rule breaks
(id pattern, event type, ISO codes) that no stored row should have.
``unmatched`` counts events that other tables do not know of: an unknown
item or customer, a purchase in a market where the item is not listed. Live
data has them (a customer who signed up on the storefront after the last
customer export, posted through ``POST /v1/events``), so they are reported,
not errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data import markets
from recsys.data.schema import EVENT_TYPES, ID_PATTERN
from recsys.data.store import TableReader

EVENT_COLUMNS = ["user_id", "session_id", "item_id", "type", "country", "currency", "quantity"]


def check_store(store: TableReader) -> dict:
    """Counts of rows breaking each rule (``ok``: none) and of unmatched events."""
    with store.pinned() as view:  # every table of one manifest
        return _check(view)


def _check(store: TableReader) -> dict:
    problems: dict[str, int] = {}
    unmatched: dict[str, int] = {}
    items = store.read("items", columns=["item_id"]) if store.has("items") else None
    markets_df = (
        store.read("item_markets", columns=["item_id", "country"])
        if store.has("item_markets")
        else None
    )
    customers = store.read("customers", columns=["user_id"]) if store.has("customers") else None
    events_seen = 0
    for batch in store.dataset("events").to_batches(columns=EVENT_COLUMNS, batch_size=2_000_000):
        ev = batch.to_pandas()
        events_seen += len(ev)
        _add(problems, "event_unknown_type", ~ev["type"].isin(EVENT_TYPES))
        _add(problems, "event_bad_quantity", ev["quantity"] <= 0)
        ids_ok = _ids_ok(ev["item_id"]) & _ids_ok(ev["user_id"]) & _ids_ok(ev["session_id"])
        _add(problems, "event_bad_id", ~ids_ok)
        _add(problems, "event_bad_country", ~_codes_ok(ev["country"], markets.is_country))
        _add(problems, "event_bad_currency", ~_codes_ok(ev["currency"], markets.is_currency))
        if items is not None:
            _add(unmatched, "event_unknown_item", ~ev["item_id"].isin(items["item_id"]))
        if customers is not None:
            known = ev["user_id"].isna() | ev["user_id"].isin(customers["user_id"])
            _add(unmatched, "event_unknown_customer", ~known)
        if markets_df is not None and len(markets_df):
            sold = ev[(ev["type"] == "purchase") & ev["country"].notna()]
            pairs = pd.MultiIndex.from_frame(sold[["item_id", "country"]])
            listed = pd.MultiIndex.from_frame(markets_df[["item_id", "country"]])
            _add(unmatched, "purchase_outside_item_markets", ~pairs.isin(listed))
    return {
        "ok": not any(problems.values()),
        "events_checked": events_seen,
        "problems": {k: v for k, v in problems.items() if v},
        "unmatched": {k: v for k, v in unmatched.items() if v},
    }


def _add(problems: dict[str, int], name: str, mask) -> None:
    problems[name] = problems.get(name, 0) + int(np.asarray(mask, dtype=bool).sum())


def _ids_ok(values: pd.Series) -> pd.Series:
    """True for null ids and ids matching the id rule."""
    text = values.astype(object)
    return text.isna() | text.astype(str).str.fullmatch(ID_PATTERN.pattern.strip("^$"))


def _codes_ok(values: pd.Series, is_valid) -> pd.Series:
    uniques = {v: is_valid(v) for v in pd.unique(values.dropna())}
    return values.isna() | values.map(uniques).fillna(False).astype(bool)
