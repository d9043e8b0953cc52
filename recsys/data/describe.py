"""A short description of a data directory's tables, for humans and scripts."""

from __future__ import annotations

import pyarrow.compute as pc

from recsys.data.store import TableReader


def describe(store: TableReader) -> dict:
    """Rows per table; event types, time range, users, items and countries of the events."""
    with store.pinned() as view:  # the counts and the events of one manifest
        return _describe(view)


def _describe(store: TableReader) -> dict:
    info: dict = {"data_dir": str(store.root), "rows": store.counts()}
    if not store.has("events"):
        return info
    events = store.dataset("events").to_table(
        columns=["timestamp", "user_id", "item_id", "type", "country"]
    )
    types = pc.value_counts(events["type"]).to_pylist()
    countries = pc.value_counts(events["country"].drop_null()).to_pylist()
    info["events"] = {
        "first": str(pc.min(events["timestamp"]).as_py()),
        "last": str(pc.max(events["timestamp"]).as_py()),
        "by_type": {t["values"]: t["counts"] for t in sorted(types, key=lambda t: -t["counts"])},
        "users": pc.count_distinct(events["user_id"]).as_py(),
        "guest_events": events["user_id"].null_count,
        "items": pc.count_distinct(events["item_id"]).as_py(),
        "countries": len(countries),
        "top_countries": {
            c["values"]: c["counts"] for c in sorted(countries, key=lambda c: -c["counts"])[:10]
        },
    }
    return info
