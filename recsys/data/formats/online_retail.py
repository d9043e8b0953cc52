"""UCI Online Retail (Chen, Sain & Guo, 2012): invoice lines to canonical tables.

Each line of ``online_retail.csv(.gz)`` becomes one event or one reject:

- a line of an invoice is a ``purchase``; a line of a cancelled invoice
  (``InvoiceNo`` starting with ``C``, negative ``Quantity``) a ``refund``;
- guests (no ``CustomerID``) keep their events with an empty ``user_id``;
  the invoice number is the ``session_id``;
- prices are GBP unit prices; country names become ISO 3166 codes, and names
  that denote no single country (``Unspecified``, ``European Community``,
  ``Channel Islands``) an unknown country;
- ``InvoiceDate`` is the shop's local time (Europe/London), stored as UTC.

Reject reasons, in the order they are checked (a line gets the first):
``malformed_row``, ``duplicate_row``, ``bad_debt_adjustment``,
``non_product``, ``stock_adjustment``, ``zero_price``, ``bad_country``.

The items table gets every product's most frequent description and the
markets it was sold in (with its median price there); customers get their
most frequent country and their first purchase time. There is no consent
data, so no customer of this shop is opted in to email.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data import markets
from recsys.data.events import event_ids
from recsys.data.importing import Batch, read_text_table
from recsys.data.validation import (
    Verdicts,
    bad_ids,
    column,
    parse_country,
    parse_float,
    parse_int,
    parse_timestamp,
    require_columns,
)
from recsys.progress import elapsed

COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]

#: Stock codes that are charges, fees, discounts, samples or vouchers, not products.
NON_PRODUCT_CODES = frozenset(
    {"POST", "DOT", "M", "C2", "D", "S", "BANK CHARGES", "AMAZONFEE", "CRUK", "B", "PADS"}
)
NON_PRODUCT_PREFIXES = ("GIFT_",)
SHOP_TIMEZONE = "Europe/London"
CURRENCY = "GBP"


def import_online_retail(src: Path, progress: bool = True) -> Iterator[Batch]:
    """The whole file as one batch of events, items and customers."""
    with elapsed(f"read {src.name}", progress):  # one batch: nothing to count
        batch = _read(src)
    yield batch


def _read(src: Path) -> Batch:
    (raw,) = list(read_text_table(src))
    require_columns(raw, COLUMNS, str(src))
    v = Verdicts(len(raw))
    invoice = column(raw, "InvoiceNo")
    code = column(raw, "StockCode")
    qty, bad_qty = parse_int(column(raw, "Quantity"))
    price, bad_price = parse_float(column(raw, "UnitPrice"))
    ts, bad_ts = parse_timestamp(column(raw, "InvoiceDate"), tz=SHOP_TIMEZONE)
    customer = column(raw, "CustomerID").str.replace(r"\.0$", "", regex=True)
    country, bad_country = parse_country(column(raw, "Country"))
    cancelled = invoice.str.startswith("C").to_numpy()
    upper_code = code.str.upper()

    malformed = (
        bad_qty
        | np.isnan(qty)
        | (np.abs(qty) > 2**31 - 1)  # the int32 quantity column cannot hold it
        | bad_price
        | np.isnan(price)
        | bad_ts
        | ts.isna().to_numpy()
        | (invoice == "").to_numpy()
        | (code == "").to_numpy()
        | bad_ids(customer)
        | bad_ids(invoice)  # the session id
    )
    v.reject(malformed, "malformed_row")
    # An event is its time, customer, invoice, item, quantity, price and
    # country: a second line equal in all of them (whatever its description
    # says) is the same event logged twice.
    events = _events(raw, ts, customer, invoice, code, cancelled, qty, price, country)
    ids = event_ids(events)
    dup = np.zeros(len(raw), dtype=bool)
    dup[v.accepted] = pd.Series(ids[v.accepted]).duplicated().to_numpy()
    v.reject(dup, "duplicate_row")
    v.reject(invoice.str.startswith("A").to_numpy(), "bad_debt_adjustment")
    non_product = upper_code.isin(NON_PRODUCT_CODES) | upper_code.str.startswith(
        NON_PRODUCT_PREFIXES
    )
    v.reject(non_product.to_numpy() | bad_ids(code), "non_product")
    v.reject(((qty <= 0) & ~cancelled) | (qty == 0), "stock_adjustment")  # 0: no refund
    v.reject(price <= 0, "zero_price")
    v.reject(bad_country, "bad_country")
    ok = v.accepted

    events = events[ok].reset_index(drop=True)
    events["event_id"] = ids[ok]
    descriptions = column(raw, "Description")[ok].reset_index(drop=True)

    return Batch(
        file=src.name,
        rows_read=len(raw),
        accepted=int(ok.sum()),
        tables={
            "events": events,
            "items": _items(events, descriptions),
            "item_markets": _item_markets(events),
            "customers": _customers(events),
        },
        rejects=v.rejects(raw),
    )


def _events(raw, ts, customer, invoice, code, cancelled, qty, price, country) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": ts,
            "user_id": customer.where(customer != "").to_numpy(object),
            "session_id": invoice.to_numpy(object),
            "item_id": code.to_numpy(object),
            "type": np.where(cancelled, "refund", "purchase").astype(object),
            "quantity": np.abs(np.nan_to_num(qty)).clip(0, 2**31 - 1).astype("int32"),
            "price": price,
            "currency": CURRENCY,
            "country": country,
            "value": np.float32("nan"),
        }
    )


def _items(events: pd.DataFrame, descriptions: pd.Series) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"item_id": events["item_id"], "title": descriptions, "timestamp": events["timestamp"]}
    )
    titled = frame[frame["title"] != ""]
    title = (
        titled.groupby(["item_id", "title"])
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["item_id", "n", "title"], ascending=[True, False, True])
        .drop_duplicates("item_id")
        .set_index("item_id")["title"]
    )
    first_seen = frame.groupby("item_id")["timestamp"].min()
    out = first_seen.rename("created_at").to_frame().join(title).reset_index()
    out["category"] = None
    out["brand"] = None
    out["tags"] = pd.Series([[] for _ in range(len(out))], index=out.index, dtype=object)
    return out


def _item_markets(events: pd.DataFrame) -> pd.DataFrame:
    sold = events[(events["type"] == "purchase") & events["country"].notna()]
    out = sold.groupby(["item_id", "country"])["price"].median().reset_index()
    out["currency"] = CURRENCY
    out["stock"] = pd.array([None] * len(out), dtype="Int64")
    return out


def _customers(events: pd.DataFrame) -> pd.DataFrame:
    known = events[events["user_id"].notna()]
    country = (
        known.dropna(subset=["country"])
        .groupby(["user_id", "country"])
        .size()
        .rename("n")
        .reset_index()
        .sort_values(["user_id", "n", "country"], ascending=[True, False, True])
        .drop_duplicates("user_id")
        .set_index("user_id")["country"]
    )
    out = known.groupby("user_id")["timestamp"].min().rename("created_at").to_frame()
    out = out.join(country).reset_index()
    out["language"] = out["country"].map(
        lambda c: markets.MARKETS[c].language if c in markets.MARKETS else None
    )
    out["email"] = None
    out["email_consent"] = False
    out["unsubscribed_at"] = pd.NaT
    out["attributes"] = None
    return out
