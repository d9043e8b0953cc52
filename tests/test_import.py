"""Imports of the canonical formats: reasons, idempotence, and failures that lose nothing."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recsys.data import importing
from recsys.data.importing import import_source
from recsys.data.store import DataError, DataStore

EVENTS_HEADER = "timestamp,user_id,session_id,item_id,type,quantity,price,currency,country,value"
GOOD_EVENTS = [
    "2024-03-01T10:00:00Z,u1,s1,i1,view,,,,DE,",
    "2024-03-01T10:01:00Z,u1,s1,i1,add_to_cart,1,19.99,EUR,DE,",
    "2024-03-01T10:02:00+01:00,u1,s1,i1,purchase,2,19.99,eur,Germany,",
    "1709287320,,s2,i2,view,,,,,",  # guest, epoch seconds
    "2024-03-02 09:00:00,u2,,i3,rating,,,,,4.5",
]
BAD_EVENTS = {
    ",u1,s1,i1,view,,,,DE,": "missing_timestamp",
    "yesterday,u1,s1,i1,view,,,,DE,": "bad_timestamp",
    "2024-03-01T10:00:00Z,u1,s1,,view,,,,DE,": "missing_item_id",
    "2024-03-01T10:00:00Z,u1,s1,i:1,view,,,,DE,": "bad_id",
    "2024-03-01T10:00:00Z,u 1,s1,i1,view,,,,DE,": "bad_id",
    "2024-03-01T10:00:00Z,u1,s1,i1,wishlist,,,,DE,": "unknown_type",
    "2024-03-01T10:00:00Z,u1,s1,i1,purchase,0,5,EUR,DE,": "bad_quantity",
    "2024-03-01T10:00:00Z,u1,s1,i1,purchase,1.5,5,EUR,DE,": "bad_quantity",
    "2024-03-01T10:00:00Z,u1,s1,i1,purchase,1,-5,EUR,DE,": "bad_price",
    "2024-03-01T10:00:00Z,u1,s1,i1,purchase,1,5,EURO,DE,": "bad_currency",
    "2024-03-01T10:00:00Z,u1,s1,i1,purchase,1,5,,DE,": "missing_currency",
    "2024-03-01T10:00:00Z,u1,s1,i1,view,,,,Atlantis,": "bad_country",
    "2024-03-01T10:00:00Z,u1,s1,i1,rating,,,,DE,": "bad_value",
    GOOD_EVENTS[0]: "duplicate_row",
}


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def events_csv(tmp_path) -> Path:
    return write(tmp_path / "events.csv", [EVENTS_HEADER, *GOOD_EVENTS, *BAD_EVENTS])


def test_events_every_reason(store, events_csv):
    out = import_source(store, "events", events_csv, progress=False).as_dict()
    assert out["rows_read"] == len(GOOD_EVENTS) + len(BAD_EVENTS)
    assert out["accepted"] == len(GOOD_EVENTS)
    assert out["rows_read"] == out["accepted"] + sum(out["rejected"].values())
    rejects = pd.read_parquet(store.root / out["rejects_file"]).set_index("row")
    first_bad = len(GOOD_EVENTS) + 1
    expected = {first_bad + i: reason for i, reason in enumerate(BAD_EVENTS.values())}
    assert rejects["reason"].to_dict() == expected
    raw = json.loads(rejects.loc[first_bad + 1, "raw"])
    assert raw["timestamp"] == "yesterday"  # the row is kept as it came

    events = store.read("events").sort_values("timestamp").reset_index(drop=True)
    assert len(events) == len(GOOD_EVENTS)
    purchase = events[events["type"] == "purchase"].iloc[0]
    assert purchase["currency"] == "EUR" and purchase["country"] == "DE"
    assert str(purchase["timestamp"]) == "2024-03-01 09:02:00+00:00"  # +01:00 to UTC
    guest = events[events["user_id"].isna()].iloc[0]
    assert str(guest["timestamp"]) == "2024-03-01 10:02:00+00:00"
    assert guest["quantity"] == 1  # default quantity
    assert events[events["type"] == "rating"].iloc[0]["value"] == pytest.approx(4.5)


def test_events_import_is_idempotent_and_merges_new_rows(store, events_csv, tmp_path):
    import_source(store, "events", events_csv, progress=False)
    again = import_source(store, "events", events_csv, progress=False).as_dict()
    assert store.counts()["events"] == len(GOOD_EVENTS)
    assert again["tables"]["events"] == {"new": 0, "updated": 0, "unchanged": len(GOOD_EVENTS)}
    more = write(
        tmp_path / "more.csv",
        [EVENTS_HEADER, GOOD_EVENTS[1], "2024-04-01T00:00:00Z,u3,s9,i9,view,,,,FR,"],
    )
    out = import_source(store, "events", more, progress=False).as_dict()
    assert out["tables"]["events"] == {"new": 1, "updated": 0, "unchanged": 1}
    assert store.counts()["events"] == len(GOOD_EVENTS) + 1


def test_events_from_parquet_and_gzip_give_the_same_data(tmp_path, events_csv):
    from recsys.data.store import DataStore

    frame = pd.read_csv(events_csv, dtype=str, keep_default_na=False)
    parquet = tmp_path / "events.parquet"
    frame.to_parquet(parquet)
    gz = tmp_path / "events.csv.gz"
    gz.write_bytes(gzip.compress(events_csv.read_bytes()))
    results = []
    for i, src in enumerate([events_csv, parquet, gz]):
        shop = DataStore(tmp_path / f"d{i}")
        out = import_source(shop, "events", src, progress=False).as_dict()
        results.append(
            (out["accepted"], out["rejected"], sorted(shop.read("events")["event_id"].tolist()))
        )
    assert results[0] == results[1] == results[2]


def test_events_read_in_chunks_catch_duplicates_across_chunks(store, tmp_path, monkeypatch):
    monkeypatch.setattr(importing, "CHUNK_ROWS", 2)
    monkeypatch.setattr("recsys.data.formats.canonical.CHUNK_ROWS", 2)
    lines = [EVENTS_HEADER, *GOOD_EVENTS, GOOD_EVENTS[0], GOOD_EVENTS[4]]
    out = import_source(store, "events", write(tmp_path / "e.csv", lines), progress=False).as_dict()
    assert out["accepted"] == len(GOOD_EVENTS)
    assert out["rejected"] == {"duplicate_row": 2}
    rejects = pd.read_parquet(store.root / out["rejects_file"])
    assert sorted(rejects["row"]) == [6, 7]


def snapshot(store) -> tuple[dict, bytes | None]:
    manifest = store.tables_dir / "manifest.json"
    return store.counts(), manifest.read_bytes() if manifest.exists() else None


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x01\x02\xff\xfe garbage \x00", "cannot read"),
        (b"timestamp,user_id,type\n2024-01-01,u1,view\n", "missing required column(s) item_id"),
        (
            (
                "timestamp,item_id,type,quantity\n"
                + "".join(f"2024-01-0{d},i{d},view,lots\n" for d in range(1, 6))
            ).encode(),
            "column 'quantity' should hold integers",
        ),
    ],
    ids=["unreadable", "missing-column", "wrong-type"],
)
def test_bad_files_fail_with_one_line_and_leave_data_untouched(
    store, events_csv, tmp_path, content, message
):
    import_source(store, "events", events_csv, progress=False)
    before = snapshot(store)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(message)) as err:
        import_source(store, "events", bad, progress=False)
    assert "\n" not in str(err.value)
    assert snapshot(store) == before
    assert not list(store.rejects_dir.glob(".*.tmp"))


def test_failure_in_a_later_chunk_commits_nothing(store, tmp_path, monkeypatch):
    monkeypatch.setattr("recsys.data.formats.canonical.CHUNK_ROWS", 3)
    good = [f"2024-01-0{d}T00:00:00Z,u{d},s,i{d},view,1,,,," for d in range(1, 7)]
    wrong = [f"2024-01-0{d}T00:00:00Z,u{d},s,i{d},view,many,,,," for d in range(1, 4)]
    src = write(tmp_path / "e.csv", [EVENTS_HEADER, *good, *wrong])
    with pytest.raises(DataError, match="quantity"):
        import_source(store, "events", src, progress=False)
    assert store.counts()["events"] == 0
    assert not list((store.tables_dir / "events").glob("*.parquet"))


def test_nan_in_a_parquet_float_column_is_no_value(store, tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    nan = np.nan  # as Arrow-native writers (not pandas) store a missing float
    table = pa.table(
        {
            "timestamp": ["2024-03-01T10:00:00Z", "2024-03-01T10:01:00Z"],
            "item_id": ["i1", "i2"],
            "type": ["view", "purchase"],
            "price": pa.array([nan, 9.5], from_pandas=False),
            "currency": [None, "EUR"],
            "value": pa.array([nan, nan], pa.float32(), from_pandas=False),
        }
    )
    pq.write_table(table, tmp_path / "events.parquet")
    out = import_source(store, "events", tmp_path / "events.parquet", progress=False).as_dict()
    assert out["accepted"] == 2 and out["rejected"] == {}
    assert store.read("events").sort_values("item_id")["price"].isna().tolist() == [True, False]


def test_the_next_import_deletes_the_rejects_a_killed_import_was_writing(store, events_csv):
    # what an import killed while it wrote its rejects leaves (the name it writes to)
    store.rejects_dir.mkdir(parents=True)
    debris = store.rejects_dir / ".20240301T100000-events-0123456789-ab12.parquet.tmp"
    debris.write_bytes(b"PAR1 half a file")
    out = import_source(store, "events", events_csv, progress=False).as_dict()
    assert not debris.exists()
    assert sorted(p.name for p in store.rejects_dir.iterdir()) == [f"{out['import_id']}.parquet"]


def test_cli_import_json_and_exit_codes(tmp_path, events_csv):
    data = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "recsys",
        "--data",
        str(data),
        "data",
        "import",
        "--format",
        "events",
        str(events_csv),
        "--json",
        "--quiet",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    assert out["rows_read"] == out["accepted"] + sum(out["rejected"].values())
    missing = tmp_path / "missing.csv"
    missing.write_text("user_id,item_id\nu1,i1\n")
    cmd[-3] = str(missing)
    failed = subprocess.run(cmd, capture_output=True, text=True)
    assert failed.returncode == 2
    assert failed.stderr.strip().startswith("error:") and "timestamp" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1


ITEMS_HEADER = "item_id,title,category,brand,tags,created_at,country,currency,price,stock"


def test_items_long_format_reasons_and_upsert(store, tmp_path):
    rows = [
        "i1,Mug,Home > Kitchen,Acme,blue|gift,2024-01-01,DE,EUR,9.5,10",
        "i1,Mug,Home > Kitchen,Acme,blue|gift,2024-01-01,GB,,8.0,0",  # market currency
        "i2,Plate,Home > Kitchen,Acme,,,,,,",  # catalog only
        ",Nameless,,,,,,,,",  # missing_item_id
        "i 3,Bad,,,,,,,,",  # bad_id
        "i4,Pot,,,,someday,,,,",  # bad_timestamp
        "i5,Pan,,,,,Atlantis,,1,1",  # bad_country
        "i6,Pan,,,,,DE,ZZZ,1,1",  # bad_currency
        "i7,Pan,,,,,DE,EUR,-1,1",  # bad_price
        "i8,Pan,,,,,DE,EUR,1,-2",  # bad_stock
        "i9,Pan,,,,,,,5,",  # price_without_country
        "i1,Mug,Home > Kitchen,Acme,,,DE,EUR,9.0,3",  # duplicate_key (i1, DE)
    ]
    out = import_source(
        store, "items", write(tmp_path / "items.csv", [ITEMS_HEADER, *rows]), progress=False
    ).as_dict()
    assert out["accepted"] == 3
    assert out["rejected"] == {
        "missing_item_id": 1,
        "bad_id": 1,
        "bad_timestamp": 1,
        "bad_country": 1,
        "bad_currency": 1,
        "bad_price": 1,
        "bad_stock": 1,
        "price_without_country": 1,
        "duplicate_key": 1,
    }
    items = store.read("items").set_index("item_id")
    assert list(items.loc["i1", "tags"]) == ["blue", "gift"]
    assert sorted(items.index) == ["i1", "i2"]
    mk = store.read("item_markets").set_index(["item_id", "country"])
    assert mk.loc[("i1", "GB"), "currency"] == "GBP" and mk.loc[("i1", "GB"), "stock"] == 0
    update = write(
        tmp_path / "update.csv", [ITEMS_HEADER, "i1,Big mug,Home > Kitchen,Acme,,,DE,EUR,11,5"]
    )
    out = import_source(store, "items", update, progress=False).as_dict()
    assert out["tables"]["items"] == {"new": 0, "updated": 1, "unchanged": 0}
    assert out["tables"]["item_markets"] == {"new": 0, "updated": 1, "unchanged": 0}
    assert store.read("items").set_index("item_id").loc["i1", "title"] == "Big mug"
    mk = store.read("item_markets").set_index(["item_id", "country"])
    assert mk.loc[("i1", "DE"), "price"] == 11 and len(mk) == 2


def test_an_item_market_imported_again_as_it_is_stored_counts_as_unchanged(store, tmp_path):
    """A stock column with a null is read back as floats (7.0): the same stock, 7,
    counted as an update."""
    catalog = [
        ITEMS_HEADER,
        "i1,Mug,Home > Kitchen,Acme,,2024-01-01,DE,EUR,9.5,7",
        "i1,Mug,Home > Kitchen,Acme,,2024-01-01,GB,GBP,8.0,",
    ]
    src = write(tmp_path / "catalog.csv", catalog)
    import_source(store, "items", src, progress=False)
    again = import_source(store, "items", src, progress=False)
    assert again.tables["item_markets"] == {"new": 0, "updated": 0, "unchanged": 2}
    feed = write(tmp_path / "stock.csv", ["item_id,country,stock", "i1,DE,7", "i1,GB,3"])
    out = import_source(store, "items", feed, progress=False)
    assert out.tables["item_markets"] == {"new": 0, "updated": 1, "unchanged": 1}


def test_a_stock_feed_keeps_the_catalog_columns_it_does_not_have(store, tmp_path):
    catalog = [
        ITEMS_HEADER,
        "i1,Mug,Home > Kitchen,Acme,blue|gift,2024-01-01,DE,EUR,9.5,0",
        "i1,Mug,Home > Kitchen,Acme,blue|gift,2024-01-01,GB,GBP,8.0,4",
    ]
    import_source(store, "items", write(tmp_path / "catalog.csv", catalog), progress=False)
    # stock only: the titles stay, and so do the prices
    stock = ["item_id,country,stock", "i1,DE,0", "i1,GB,2", "i2,DE,7"]
    out = import_source(store, "items", write(tmp_path / "stock.csv", stock), progress=False)
    assert out.tables["items"] == {"new": 1, "updated": 0, "unchanged": 1}
    assert out.tables["item_markets"] == {"new": 1, "updated": 1, "unchanged": 1}
    items = store.read("items").set_index("item_id")
    assert (items.loc["i1", "title"], items.loc["i1", "category"]) == ("Mug", "Home > Kitchen")
    assert list(items.loc["i1", "tags"]) == ["blue", "gift"]
    assert str(items.loc["i1", "created_at"]) == "2024-01-01 00:00:00+00:00"
    assert pd.isna(items.loc["i2", "title"])  # a new item has only what the feed says
    # prices only: the out-of-stock item stays out of stock (null stock: always available)
    prices = ["item_id,country,price", "i1,DE,9.0"]
    import_source(store, "items", write(tmp_path / "prices.csv", prices), progress=False)
    mk = store.read("item_markets").set_index(["item_id", "country"])
    assert mk.loc[("i1", "DE"), ["price", "stock"]].tolist() == [9.0, 0]
    assert mk.loc[("i1", "GB"), ["price", "stock"]].tolist() == [8.0, 2]
    assert pd.isna(mk.loc[("i2", "DE"), "price"]) and mk.loc[("i2", "DE"), "stock"] == 7


def test_a_stock_feed_keeps_the_currency_of_the_stored_price(store, tmp_path):
    catalog = [ITEMS_HEADER, "i1,Mug,,,,,DE,USD,10,10"]
    import_source(store, "items", write(tmp_path / "catalog.csv", catalog), progress=False)
    stock = ["item_id,country,stock", "i1,DE,3", "i1,FR,5"]
    import_source(store, "items", write(tmp_path / "stock.csv", stock), progress=False)
    mk = store.read("item_markets").set_index(["item_id", "country"])
    assert mk.loc[("i1", "DE"), ["currency", "price", "stock"]].tolist() == ["USD", 10.0, 3]
    assert mk.loc[("i1", "FR"), "currency"] == "EUR"  # a new market: its own currency


def test_customers_reasons_consent_and_attributes(store, tmp_path):
    header = "user_id,email,country,language,email_consent,unsubscribed_at,created_at,tier"
    rows = [
        "u1,a@shop.example,DE,de,yes,,2024-01-01,gold",
        "u2,b@shop.example,FR,fr,true,2024-02-01,2024-01-01,",  # unsubscribed: no consent
        "u3,,GB,en,,,,",  # consent missing: no
        ",x@shop.example,DE,de,yes,,,",  # missing_user_id
        "u 4,x@shop.example,DE,de,yes,,,",  # bad_id
        "u5,not-an-email,DE,de,yes,,,",  # bad_email
        "u6,c@shop.example,Atlantis,de,yes,,,",  # bad_country
        "u7,c@shop.example,DE,german,yes,,,",  # bad_language
        "u8,c@shop.example,DE,de,maybe,,,",  # bad_consent
        "u9,c@shop.example,DE,de,yes,,last week,",  # bad_timestamp
        "u1,dup@shop.example,DE,de,yes,,,",  # duplicate_key
    ]
    out = import_source(
        store, "customers", write(tmp_path / "c.csv", [header, *rows]), progress=False
    ).as_dict()
    assert out["accepted"] == 3
    assert set(out["rejected"]) == {
        "missing_user_id",
        "bad_id",
        "bad_email",
        "bad_country",
        "bad_language",
        "bad_consent",
        "bad_timestamp",
        "duplicate_key",
    }
    customers = store.read("customers").set_index("user_id")
    assert customers["email_consent"].to_dict() == {"u1": True, "u2": False, "u3": False}
    assert json.loads(customers.loc["u1", "attributes"]) == {"tier": "gold"}


def test_a_consent_export_keeps_the_customer_columns_it_does_not_have(store, tmp_path):
    profiles = [
        "user_id,email,country,language,email_consent,created_at,tier",
        "u1,a@shop.example,DE,de,yes,2024-01-01,gold",
        "u2,b@shop.example,FR,fr,yes,2024-01-02,",
    ]
    import_source(store, "customers", write(tmp_path / "profiles.csv", profiles), progress=False)
    consent = ["user_id,email_consent", "u1,no", "u2,yes"]
    out = import_source(
        store, "customers", write(tmp_path / "consent.csv", consent), progress=False
    )
    assert out.tables["customers"] == {"new": 0, "updated": 1, "unchanged": 1}
    customers = store.read("customers").set_index("user_id")
    assert customers["email"].to_dict() == {"u1": "a@shop.example", "u2": "b@shop.example"}
    assert customers["country"].to_dict() == {"u1": "DE", "u2": "FR"}
    assert customers["email_consent"].to_dict() == {"u1": False, "u2": True}
    assert json.loads(customers.loc["u1", "attributes"]) == {"tier": "gold"}
    # without the consent column, consent is no: an export cannot grant it by omission
    emails = ["user_id,email", "u2,new@shop.example"]
    import_source(store, "customers", write(tmp_path / "emails.csv", emails), progress=False)
    u2 = store.read("customers").set_index("user_id").loc["u2"]
    assert (u2["email"], u2["country"], u2["email_consent"]) == ("new@shop.example", "FR", False)


def test_a_consent_export_does_not_undo_a_stored_unsubscribe(store, tmp_path):
    """A consent export (no unsubscribed_at column) with "yes" for a customer who had
    unsubscribed cleared the unsubscribe and gave the consent back."""
    profiles = [
        "user_id,email,email_consent,unsubscribed_at",
        "u1,a@shop.example,yes,2024-02-01T00:00:00Z",
        "u2,b@shop.example,yes,",
    ]
    import_source(store, "customers", write(tmp_path / "profiles.csv", profiles), progress=False)
    consent = ["user_id,email_consent", "u1,yes", "u2,yes", "u3,yes"]
    import_source(store, "customers", write(tmp_path / "consent.csv", consent), progress=False)
    customers = store.read("customers").set_index("user_id")
    assert customers["email_consent"].to_dict() == {"u1": False, "u2": True, "u3": True}
    assert str(customers.loc["u1", "unsubscribed_at"]).startswith("2024-02-01")
    # to subscribe again, a file clears the unsubscribe explicitly
    again = ["user_id,email_consent,unsubscribed_at", "u1,yes,"]
    import_source(store, "customers", write(tmp_path / "again.csv", again), progress=False)
    u1 = store.read("customers").set_index("user_id").loc["u1"]
    assert u1["email_consent"] and u1["unsubscribed_at"] is pd.NaT


def test_timestamps_finer_than_milliseconds_are_cut_to_milliseconds(store, tmp_path):
    rows = [
        "2024-03-01T10:00:00.123456Z,u1,,i1,view,,,,,",  # Python's isoformat(): microseconds
        "2024-03-01T10:00:01.987654321+01:00,u1,,i1,view,,,,,",  # nanoseconds, with offset
        "2024-03-01 10:00:02.5555555,u1,,i1,view,,,,,",  # naive
        "1709287323.1234567,u1,,i1,view,,,,,",  # epoch seconds with a fraction
    ]
    src = write(tmp_path / "e.csv", [EVENTS_HEADER, *rows])
    out = import_source(store, "events", src, progress=False).as_dict()
    assert out["accepted"] == len(rows) and out["rejected"] == {}
    stamps = sorted(store.read("events")["timestamp"].astype(str))
    assert stamps == [
        "2024-03-01 09:00:01.987+00:00",
        "2024-03-01 10:00:00.123+00:00",
        "2024-03-01 10:00:02.555+00:00",
        "2024-03-01 10:02:03.123+00:00",
    ]


def test_epoch_numbers_out_of_range_are_bad_timestamps_not_a_crash(store, tmp_path):
    rows = [
        "1709287320.123,u1,,i1,view,,,,,",  # seconds: accepted
        "1709287320000,u1,,i2,view,,,,,",  # milliseconds: year 56,000
        "1e20,u1,,i3,view,,,,,",
        "inf,u1,,i4,view,,,,,",
        "-1e15,u1,,i5,view,,,,,",
    ]
    src = write(tmp_path / "e.csv", [EVENTS_HEADER, *rows])
    out = import_source(store, "events", src, progress=False).as_dict()
    assert out["accepted"] == 1 and out["rejected"] == {"bad_timestamp": 4}
    assert store.read("events")["timestamp"].iloc[0] == pd.Timestamp("2024-03-01T10:02:00.123Z")


def test_offsets_of_hours_only_are_offsets(store, tmp_path):
    rows = [
        "2024-03-01T10:00:00+05,u1,,i1,view,,,,,",
        "2024-03-01T10:00:00-08,u1,,i2,view,,,,,",
        "2024-03-01 10:00:00 +0100,u1,,i3,view,,,,,",
        "2024-03-01,u1,,i4,view,,,,,",  # a date: its -01 is the day, not an offset
    ]
    src = write(tmp_path / "e.csv", [EVENTS_HEADER, *rows])
    out = import_source(store, "events", src, progress=False).as_dict()
    assert out["accepted"] == len(rows)
    stamps = store.read("events").set_index("item_id")["timestamp"].astype(str).to_dict()
    assert stamps == {
        "i1": "2024-03-01 05:00:00+00:00",
        "i2": "2024-03-01 18:00:00+00:00",
        "i3": "2024-03-01 09:00:00+00:00",
        "i4": "2024-03-01 00:00:00+00:00",
    }


def test_items_stock_too_large_for_int64_is_a_reject_not_a_crash(store, tmp_path):
    rows = [
        "i1,Mug,,,,,DE,EUR,1,1e30",
        "i2,Cup,,,,,DE,EUR,1,9223372036854775808",
        "i3,Pot,,,,,DE,EUR,1,7",
    ]
    src = write(tmp_path / "items.csv", [ITEMS_HEADER, *rows])
    out = import_source(store, "items", src, progress=False).as_dict()
    assert out["accepted"] == 1 and out["rejected"] == {"bad_stock": 2}
    assert store.read("item_markets")["stock"].tolist() == [7]


RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"


def test_imports_that_accept_no_row_keep_their_rejects(store, tmp_path):
    retail = write(
        tmp_path / "retail.csv",
        [RETAIL_HEADER, "536365,POST,POSTAGE,1,2010-12-01 08:26:00,18.0,12583.0,France"],
    )
    out = import_source(store, "online-retail", retail, progress=False).as_dict()
    assert out["rows_read"] == 1 and out["rejected"] == {"non_product": 1}
    assert len(pd.read_parquet(store.root / out["rejects_file"])) == 1
    items = write(tmp_path / "items.csv", [ITEMS_HEADER])  # a header and no row
    out = import_source(store, "items", items, progress=False).as_dict()
    assert out["rows_read"] == 0 and out["tables"]["items"]["new"] == 0


def test_a_delimiter_at_the_end_of_every_row_shifts_no_column(store, tmp_path, monkeypatch):
    monkeypatch.setattr("recsys.data.formats.canonical.CHUNK_ROWS", 2)
    rows = [f"2024-03-0{d}T10:00:00Z,i{d},view," for d in range(1, 5)] + ["yesterday,i9,view,"]
    src = write(tmp_path / "e.csv", ["timestamp,item_id,type", *rows])
    out = import_source(store, "events", src, progress=False).as_dict()
    assert out["accepted"] == 4 and out["rejected"] == {"bad_timestamp": 1}
    assert sorted(store.read("events")["item_id"]) == ["i1", "i2", "i3", "i4"]
    rejects = pd.read_parquet(store.root / out["rejects_file"])
    assert json.loads(rejects["raw"].iloc[0]) == {
        "timestamp": "yesterday",  # the rejected row is kept whole
        "item_id": "i9",
        "type": "view",
    }
    extra = write(tmp_path / "x.csv", ["timestamp,item_id,type", "2024-03-01T10:00:00Z,i1,view,7"])
    with pytest.raises(DataError, match="the rows have 4 fields but the header names 3"):
        import_source(store, "events", extra, progress=False)


def test_movielens_line_breaks_are_newlines_only(store, tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.user").write_bytes(b"1|24|M|technician|85711\r\n")
    genres = "|".join(["0"] * 18 + ["1"])
    # 0x85 is "..." in cp1252: a title with it is one line, not two
    (folder / "u.item").write_bytes(
        f"1|Ghost\x85 (1990)|01-Jan-1990||http://x|{genres}\n".encode("latin-1")
    )
    (folder / "u.data").write_bytes(b"1\t1\t4\t881250949\n")
    out = import_source(store, "movielens", folder, progress=False).as_dict()
    assert out["files"]["u.item"] == {"rows_read": 1, "accepted": 1, "rejected": 0}
    assert out["rows_read"] == 3 and out["accepted"] == 3
    assert store.read("items")["title"].tolist() == ["Ghost\x85 (1990)"]
    assert store.read("customers")["attributes"].map(json.loads).tolist()[0]["zip_code"] == "85711"


def test_movielens_duplicates_are_judged_among_accepted_lines(store, tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    # user 1's first line is malformed: the good line after it is no duplicate
    (folder / "u.user").write_text("1|x|M|writer|11111\n1|24|M|writer|22222\n")
    genres = "|".join(["0"] * 18 + ["1"])
    (folder / "u.item").write_text(f"1|Heat (1995)|01-Jan-1995||http://x|{genres}\n")
    # "4" and "4.0" are one rating: the second is a duplicate, not a row lost in the merge
    (folder / "u.data").write_text("1\t1\tx\t881250949\n1\t1\t4\t881250949\n1\t1\t4.0\t881250949\n")
    out = import_source(store, "movielens", folder, progress=False).as_dict()
    assert out["files"]["u.user"] == {"rows_read": 2, "accepted": 1, "rejected": 1}
    assert out["files"]["u.data"] == {"rows_read": 3, "accepted": 1, "rejected": 2}
    assert out["rejected"] == {"malformed_row": 2, "duplicate_row": 1}
    users = store.read("customers")
    assert json.loads(users.set_index("user_id").loc["1", "attributes"])["zip_code"] == "22222"
    assert store.counts()["events"] == out["tables"]["events"]["new"] == 1


def test_movielens_ids_follow_the_id_rule(store, tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.user").write_text("1|24|M|writer|11111\n2:9|30|F|artist|22222\n")
    genres = "|".join(["0"] * 18 + ["1"])
    (folder / "u.item").write_text(
        f"1|Heat (1995)|01-Jan-1995||http://x|{genres}\n|No id|01-Jan-1995||http://x|{genres}\n"
    )
    (folder / "u.data").write_text("1\t1\t4\t881250949\n2:9\t1\t3\t881250949\n")
    out = import_source(store, "movielens", folder, progress=False).as_dict()
    assert out["accepted"] == 3 and out["rejected"] == {"malformed_row": 3}
    assert store.read("customers")["user_id"].tolist() == ["1"]
    assert store.read("items")["item_id"].tolist() == ["1"]
    assert store.read("events")["user_id"].tolist() == ["1"]


def test_online_retail_quantities_the_events_table_cannot_hold_are_rejected(store, tmp_path):
    line = "{inv},85123A,HEART,{qty},2010-12-01 08:26:00,2.55,17850.0,United Kingdom"
    rows = [
        line.format(inv="536365", qty=6),
        line.format(inv="C536366", qty=-2),  # a refund of 2
        line.format(inv="C536367", qty=0),  # cancels nothing
        line.format(inv="536368", qty=3_000_000_000),  # beyond int32: was clipped
    ]
    src = write(tmp_path / "retail.csv", [RETAIL_HEADER, *rows])
    out = import_source(store, "online-retail", src, progress=False).as_dict()
    assert out["rejected"] == {"stock_adjustment": 1, "malformed_row": 1}
    events = store.read("events").set_index("session_id")
    assert events["quantity"].to_dict() == {"536365": 6, "C536366": 2}


def test_online_retail_invoices_follow_the_id_rule(store, tmp_path):
    line = "{inv},85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom"
    rows = [line.format(inv=inv) for inv in ("536365", "536 366", "536367:x")]
    src = write(tmp_path / "retail.csv", [RETAIL_HEADER, *rows])
    out = import_source(store, "online-retail", src, progress=False).as_dict()
    assert out["rejected"] == {"malformed_row": 2}
    assert store.read("events")["session_id"].tolist() == ["536365"]


def test_a_rating_too_large_for_float32_is_a_bad_value_not_inf(store, tmp_path):
    rows = [
        "2024-03-01T10:00:00Z,u1,,i1,rating,,,,,1e300",
        "2024-03-01T10:00:00Z,u1,,i2,rating,,,,,4",
    ]
    out = import_source(
        store, "events", write(tmp_path / "e.csv", [EVENTS_HEADER, *rows]), progress=False
    ).as_dict()
    assert out["rejected"] == {"bad_value": 1}
    assert store.read("events")["value"].tolist() == [4.0]


def test_two_upserts_of_a_keyed_table_in_one_transaction_keep_one_row_per_key(store):
    def customer(user: str, email: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "user_id": [user],
                "email": [email],
                "country": [None],
                "language": [None],
                "email_consent": [False],
                "unsubscribed_at": [pd.NaT],
                "created_at": [pd.NaT],
                "attributes": [None],
            }
        )

    with store.transaction() as txn:  # e.g. an adapter that yields customers in two batches
        txn.upsert("customers", customer("u1", "a@shop.example"))
        txn.upsert("customers", customer("u2", "b@shop.example"))
        txn.upsert("customers", customer("u1", "c@shop.example"))
    customers = store.read("customers")
    assert sorted(customers["user_id"]) == ["u1", "u2"]
    assert customers.set_index("user_id")["email"].to_dict() == {
        "u1": "c@shop.example",
        "u2": "b@shop.example",
    }
    assert len(list((store.tables_dir / "customers").glob("*.parquet"))) == 1


def _items(title: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["a1", "a2"],
            "title": [title, title],
            "category": [None, None],
            "brand": [None, None],
            "tags": [[], []],
            "created_at": [pd.NaT, pd.NaT],
        }
    )


def test_a_read_while_another_write_commits_returns_the_new_state_not_an_error(store):
    with store.transaction() as txn:
        txn.upsert("items", _items("old"))
    reader = DataStore(store.root)
    listed = reader.manifest
    commits = []

    def manifest_then_a_commit():
        manifest = listed()
        if not commits:  # another job commits between the reader's manifest and its files
            commits.append(1)
            with DataStore(store.root).transaction() as txn:
                txn.upsert("items", _items("new"))  # its commit deletes the part just listed
        return manifest

    reader.manifest = manifest_then_a_commit
    items = reader.read("items")
    assert commits and items["title"].tolist() == ["new", "new"]


def test_online_retail_times_around_the_clock_changes_are_kept(store, tmp_path):
    line = "{inv},85123A,HEART,1,{when},2.55,17850.0,United Kingdom"
    rows = [
        line.format(inv="536401", when="2011-10-30 01:30:00"),  # happens twice in London
        line.format(inv="536402", when="2011-03-27 01:30:00"),  # does not happen there
        line.format(inv="536403", when="2011-10-30 03:00:00"),
    ]
    src = write(tmp_path / "retail.csv", [RETAIL_HEADER, *rows])
    out = import_source(store, "online-retail", src, progress=False).as_dict()
    assert out["accepted"] == 3 and out["rejected"] == {}
    stamps = store.read("events").set_index("session_id")["timestamp"].astype(str).to_dict()
    assert stamps == {
        "536401": "2011-10-30 00:30:00+00:00",  # the first pass, in summer time
        "536402": "2011-03-27 01:00:00+00:00",  # 02:00 summer time, past the gap
        "536403": "2011-10-30 03:00:00+00:00",
    }


def test_the_same_file_imported_twice_in_one_second_keeps_both_rejects(
    store, events_csv, monkeypatch
):
    frozen = importing.now_utc()
    monkeypatch.setattr(importing, "now_utc", lambda: frozen)
    first = import_source(store, "events", events_csv, progress=False).as_dict()
    second = import_source(store, "events", events_csv, progress=False).as_dict()
    assert first["import_id"] != second["import_id"]
    assert first["rejects_file"] != second["rejects_file"]
    for out in (first, second):
        rejects = pd.read_parquet(store.root / out["rejects_file"])
        assert len(rejects) == sum(out["rejected"].values()) == len(BAD_EVENTS)
