"""The canonical data model: tables, their Arrow schemas and their keys.

Every importer and the synthetic generator produce these tables; every job
reads them. ``docs/data.md`` documents each column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

#: Event types, in the order of a shopping funnel. ``rating`` carries an
#: explicit rating in ``value`` (MovieLens); ``refund`` is a returned purchase.
EVENT_TYPES: tuple[str, ...] = ("view", "add_to_cart", "purchase", "refund", "rating")

#: Identifiers (user, item, session) are printable ASCII without whitespace,
#: quotes or the Redis key separator ``:``; at most 64 characters. This keeps
#: every id safe to embed in file names, URLs and key names.
ID_PATTERN = re.compile(r"^[A-Za-z0-9._@+\-/#]{1,64}\Z")

TIMESTAMP = pa.timestamp("ms", tz="UTC")

EVENTS = pa.schema(
    [
        pa.field("event_id", pa.uint64(), nullable=False),
        pa.field("timestamp", TIMESTAMP, nullable=False),
        pa.field("user_id", pa.string()),  # null for guests
        pa.field("session_id", pa.string()),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("quantity", pa.int32(), nullable=False),
        pa.field("price", pa.float64()),  # unit price in `currency`
        pa.field("currency", pa.string()),  # ISO 4217
        pa.field("country", pa.string()),  # ISO 3166-1 alpha-2, null if unknown
        pa.field("value", pa.float32()),  # explicit rating, only for `rating`
    ]
)

ITEMS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("category", pa.string()),  # path, levels joined by " > "
        pa.field("brand", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("created_at", TIMESTAMP),
    ]
)

#: One row per (item, market) where the item is sold.
ITEM_MARKETS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("country", pa.string(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("price", pa.float64()),
        pa.field("stock", pa.int64()),  # null: not tracked (always available)
    ]
)

CUSTOMERS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("email", pa.string()),
        pa.field("country", pa.string()),
        pa.field("language", pa.string()),  # ISO 639-1
        pa.field("email_consent", pa.bool_(), nullable=False),
        pa.field("unsubscribed_at", TIMESTAMP),
        pa.field("created_at", TIMESTAMP),
        pa.field("attributes", pa.string()),  # JSON object of extra attributes
    ]
)


@dataclass(frozen=True)
class Table:
    """A stored table: its schema, its key and how its rows are partitioned."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    #: "keep_first": an existing row wins (immutable facts such as events);
    #: "keep_last": the newly imported row replaces the stored one (upsert).
    on_conflict: str
    partition_by_month: str | None = None


TABLES: dict[str, Table] = {
    "events": Table("events", EVENTS, ("event_id",), "keep_first", "timestamp"),
    "items": Table("items", ITEMS, ("item_id",), "keep_last"),
    "item_markets": Table("item_markets", ITEM_MARKETS, ("item_id", "country"), "keep_last"),
    "customers": Table("customers", CUSTOMERS, ("user_id",), "keep_last"),
}
