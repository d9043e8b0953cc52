"""The canonical formats: events, items and customers as CSV or Parquet.

Column names are those of ``docs/data.md``; unknown extra columns are
ignored (customers keep them as ``attributes``). Each function turns a text
frame into canonical rows plus rejected rows with their reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from recsys.data import markets
from recsys.data.events import event_ids
from recsys.data.importing import CHUNK_ROWS, Batch, read_text_table
from recsys.data.schema import EVENT_TYPES
from recsys.data.store import month_keys
from recsys.data.validation import (
    Verdicts,
    as_text,
    bad_ids,
    blank,
    check_column_type,
    column,
    parse_bool,
    parse_country,
    parse_currency,
    parse_float,
    parse_int,
    parse_timestamp,
    require_columns,
)

EVENT_COLUMNS = ["timestamp", "item_id", "type"]
ITEM_COLUMNS = ["item_id"]
CUSTOMER_COLUMNS = ["user_id"]
CUSTOMER_FIELDS = [
    "user_id",
    "email",
    "country",
    "language",
    "email_consent",
    "unsubscribed_at",
    "created_at",
]
EMAIL = r"[^@\s]+@[^@\s]+\.[^@\s]+"


def import_events(src: Path, progress: bool = True) -> Iterator[Batch]:
    """Canonical events, read in chunks; exact duplicates of an earlier row are rejected."""
    seen: dict[str, np.ndarray] = {}  # month -> sorted event ids already in this file
    first_row = 1
    chunks = read_text_table(src, chunk_rows=CHUNK_ROWS)
    for raw in tqdm(chunks, desc="import events", unit="chunk", disable=not progress):
        events, verdicts = parse_events(raw, str(src))
        ok = verdicts.accepted
        ids = event_ids(events)
        months = month_keys(events["timestamp"].to_numpy(dtype="datetime64[ms]"))
        dup = np.zeros(len(raw), dtype=bool)
        dup[ok] = pd.Series(ids[ok]).duplicated().to_numpy()
        for month in np.unique(months[ok]):
            in_month = ok & (months == month) & ~dup
            dup |= in_month & np.isin(ids, seen.get(month, np.empty(0, np.uint64)))
            seen[month] = np.union1d(seen.get(month, np.empty(0, np.uint64)), ids[in_month])
        verdicts.reject(dup, "duplicate_row")
        ok = verdicts.accepted
        events["event_id"] = ids
        yield Batch(
            file=src.name,
            rows_read=len(raw),
            accepted=int(ok.sum()),
            tables={"events": events[ok]},
            rejects=verdicts.rejects(raw, first_row),
        )
        first_row += len(raw)


def parse_events(raw: pd.DataFrame, source: str) -> tuple[pd.DataFrame, Verdicts]:
    """Canonical event columns from a text frame, and each row's verdict."""
    require_columns(raw, EVENT_COLUMNS, source)
    v = Verdicts(len(raw))
    ts, bad_ts = parse_timestamp(column(raw, "timestamp"))
    check_column_type(raw, "timestamp", bad_ts, "timestamps", source)
    user, session, item = column(raw, "user_id"), column(raw, "session_id"), column(raw, "item_id")
    etype = column(raw, "type").str.lower()
    qty, bad_qty = parse_int(column(raw, "quantity"))
    check_column_type(raw, "quantity", bad_qty, "integers", source)
    price, bad_price = parse_float(column(raw, "price"))
    check_column_type(raw, "price", bad_price, "numbers", source)
    value, bad_value = parse_float(column(raw, "value"))
    currency, bad_currency = parse_currency(column(raw, "currency"))
    country, bad_country = parse_country(column(raw, "country"))

    v.reject(blank(column(raw, "timestamp")), "missing_timestamp")
    v.reject(bad_ts, "bad_timestamp")
    v.reject(blank(item), "missing_item_id")
    v.reject(bad_ids(item) | bad_ids(user) | bad_ids(session), "bad_id")
    v.reject(~etype.isin(EVENT_TYPES).to_numpy(), "unknown_type")
    qty = np.where(np.isnan(qty), 1, qty)
    v.reject(bad_qty | (qty <= 0) | (qty > 1_000_000), "bad_quantity")
    v.reject(bad_price | (price < 0), "bad_price")
    v.reject(bad_currency, "bad_currency")
    v.reject(~np.isnan(price) & pd.isna(currency), "missing_currency")
    v.reject(bad_country, "bad_country")
    is_rating = (etype == "rating").to_numpy()
    too_big = np.abs(np.nan_to_num(value)) > np.finfo(np.float32).max  # float32 column: inf
    v.reject(bad_value | too_big | (is_rating & np.isnan(value)), "bad_value")

    events = pd.DataFrame(
        {
            "timestamp": ts,
            "user_id": as_text(user),
            "session_id": as_text(session),
            "item_id": as_text(item),
            "type": etype.to_numpy(object),
            "quantity": np.clip(qty, 0, 1_000_000).astype("int32"),
            "price": price,
            "currency": currency,
            "country": country,
            "value": np.where(is_rating & ~too_big, value, np.nan).astype("float32"),
        }
    )
    return events, v


def import_items(src: Path, progress: bool = True) -> Iterator[Batch]:
    """Items in long format: one row per (item, market); market columns optional."""
    (raw,) = list(read_text_table(src))
    require_columns(raw, ITEM_COLUMNS, str(src))
    v = Verdicts(len(raw))
    item = column(raw, "item_id")
    created, bad_created = parse_timestamp(column(raw, "created_at"))
    country, bad_country = parse_country(column(raw, "country"))
    currency, bad_currency = parse_currency(column(raw, "currency"))
    price, bad_price = parse_float(column(raw, "price"))
    check_column_type(raw, "price", bad_price, "numbers", str(src))
    stock, bad_stock = parse_int(column(raw, "stock"))
    check_column_type(raw, "stock", bad_stock, "integers", str(src))
    has_market = ~blank(column(raw, "country"))
    # A market row without a currency takes the market's own currency.
    default_currency = pd.Series(country).map(
        lambda c: markets.MARKETS[c].currency if c in markets.MARKETS else None
    )
    currency = np.where(pd.isna(currency), default_currency.to_numpy(object), currency)

    v.reject(blank(item), "missing_item_id")
    v.reject(bad_ids(item), "bad_id")
    v.reject(bad_created, "bad_timestamp")
    v.reject(bad_country | (has_market & pd.isna(country)), "bad_country")
    v.reject(bad_currency, "bad_currency")
    v.reject(has_market & pd.isna(currency), "missing_currency")
    v.reject(bad_price | (price < 0), "bad_price")
    v.reject(bad_stock | (stock < 0) | (stock >= 2.0**63), "bad_stock")  # int64 column
    v.reject(~has_market & (~np.isnan(price) | ~np.isnan(stock)), "price_without_country")
    key = pd.DataFrame({"item": item, "country": pd.Series(country).fillna("")})
    v.reject(_repeated(key, v.accepted), "duplicate_key")
    ok = v.accepted

    rows = pd.DataFrame(
        {
            "item_id": as_text(item),
            "title": as_text(column(raw, "title")),
            "category": as_text(column(raw, "category")),
            "brand": as_text(column(raw, "brand")),
            "tags": pd.Series(
                [[x for x in t.split("|") if x] for t in column(raw, "tags")],
                index=raw.index,
                dtype=object,
            ),
            "created_at": created,
        }
    )[ok]
    items = rows.drop_duplicates("item_id", keep="first")
    market = ok & has_market
    item_markets = pd.DataFrame(
        {
            "item_id": as_text(item)[market],
            "country": country[market],
            "currency": currency[market],
            "price": price[market],
            "stock": pd.array(np.where(np.isnan(stock), np.nan, stock)[market], dtype="Int64"),
        }
    )
    yield Batch(
        src.name,
        len(raw),
        int(ok.sum()),
        {"items": items, "item_markets": item_markets},
        v.rejects(raw),
        # a column the file lacks keeps what is stored: a stock feed keeps the titles
        keep_stored={
            "items": _absent(raw, ["title", "category", "brand", "tags", "created_at"]),
            # the currency goes with the price: a file without either keeps both
            "item_markets": _absent(raw, ["price", "stock"])
            + (() if "price" in raw.columns else _absent(raw, ["currency"])),
        },
    )


def import_customers(src: Path, progress: bool = True) -> Iterator[Batch]:
    """Customers; extra columns are kept as a JSON ``attributes`` object."""
    (raw,) = list(read_text_table(src))
    require_columns(raw, CUSTOMER_COLUMNS, str(src))
    v = Verdicts(len(raw))
    user = column(raw, "user_id")
    email = column(raw, "email")
    country, bad_country = parse_country(column(raw, "country"))
    language = column(raw, "language").str.lower()
    consent, bad_consent = parse_bool(column(raw, "email_consent"))
    unsub, bad_unsub = parse_timestamp(column(raw, "unsubscribed_at"))
    created, bad_created = parse_timestamp(column(raw, "created_at"))

    v.reject(blank(user), "missing_user_id")
    v.reject(bad_ids(user), "bad_id")
    v.reject(~email.str.fullmatch(EMAIL).to_numpy(bool) & ~blank(email), "bad_email")
    v.reject(bad_country, "bad_country")
    v.reject(
        ~language.map(lambda x: x == "" or markets.is_language(x)).to_numpy(bool), "bad_language"
    )
    v.reject(bad_consent, "bad_consent")
    v.reject(bad_unsub | bad_created, "bad_timestamp")
    v.reject(_repeated(pd.DataFrame({"user": user}), v.accepted), "duplicate_key")
    ok = v.accepted

    # Consent must be explicit: missing means no; an unsubscribe revokes it.
    consent = consent & unsub.isna().to_numpy()
    extra = [c for c in raw.columns if c not in CUSTOMER_FIELDS]
    attributes = (
        raw[extra].apply(lambda r: json.dumps({k: x for k, x in r.items() if x != ""}), axis=1)
        if extra
        else pd.Series([None] * len(raw), index=raw.index, dtype=object)
    )
    customers = pd.DataFrame(
        {
            "user_id": as_text(user),
            "email": as_text(email),
            "country": country,
            "language": as_text(language),
            "email_consent": consent,
            "unsubscribed_at": unsub,
            "created_at": created,
            "attributes": attributes.to_numpy(object),
        }
    )[ok]
    # a column the file lacks keeps what is stored (a consent export keeps the emails,
    # and a stored unsubscribe, which still revokes the consent); not consent: without
    # it, it is no (see above)
    kept = _absent(raw, ["email", "country", "language", "created_at", "unsubscribed_at"])
    yield Batch(
        src.name,
        len(raw),
        int(ok.sum()),
        {"customers": customers},
        v.rejects(raw),
        keep_stored={"customers": kept + (() if extra else ("attributes",))},
    )


def _absent(raw: pd.DataFrame, columns: list[str]) -> tuple[str, ...]:
    """The ``columns`` the source file does not have."""
    return tuple(c for c in columns if c not in raw.columns)


def _repeated(key: pd.DataFrame, accepted: np.ndarray) -> np.ndarray:
    """Mask of accepted rows whose key an earlier accepted row already has."""
    out = np.zeros(len(key), dtype=bool)
    out[accepted] = key[accepted].duplicated(keep="first").to_numpy()
    return out
