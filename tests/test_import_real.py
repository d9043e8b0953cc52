"""Imports of the real public datasets: every row accounted for, every reason real."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from recsys.data.importing import import_source

pytestmark = pytest.mark.realdata

#: Reject counts of the full Online Retail file, as documented in docs/data.md.
ONLINE_RETAIL_REJECTS = {
    "bad_debt_adjustment": 3,
    "duplicate_row": 5270,
    "non_product": 2941,
    "stock_adjustment": 1336,
    "zero_price": 1156,
}


@pytest.fixture(scope="module")
def online_retail_raw(online_retail_csv) -> pd.DataFrame:
    return pd.read_csv(online_retail_csv, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def imported_retail(online_retail_csv, tmp_path_factory):
    from recsys.data.store import DataStore

    shop = DataStore(tmp_path_factory.mktemp("retail"))
    return shop, import_source(shop, "online-retail", online_retail_csv, progress=False)


def test_online_retail_every_row_is_accepted_or_rejected_with_a_reason(imported_retail):
    shop, summary = imported_retail
    out = summary.as_dict()
    assert out["rows_read"] == 541_909
    assert out["rows_read"] == out["accepted"] + sum(out["rejected"].values())
    assert out["rejected"] == ONLINE_RETAIL_REJECTS
    assert shop.counts()["events"] == out["accepted"]
    rejects = pd.read_parquet(shop.root / out["rejects_file"])
    assert len(rejects) == sum(ONLINE_RETAIL_REJECTS.values())
    assert rejects["reason"].value_counts().to_dict() == ONLINE_RETAIL_REJECTS
    first = json.loads(rejects.sort_values("row").iloc[0]["raw"])
    assert set(first) >= {"InvoiceNo", "StockCode", "Quantity", "CustomerID"}


def test_online_retail_maps_guests_refunds_countries_and_prices(imported_retail):
    shop, _ = imported_retail
    events = shop.read("events")
    purchases = events[events["type"] == "purchase"]
    known = purchases[purchases["user_id"].notna()]
    # The usual clean subset (customer known, Quantity > 0, UnitPrice > 0, not
    # cancelled) is 397,884 lines of 4,338 customers x 3,665 items; without
    # its exact duplicates (5,192), its non-product lines (1,542: postage,
    # manual, ...) and two lines repeating an event under another description
    # it is 391,148 lines of 4,334 customers x 3,659 products.
    assert len(known) == 391_148
    assert known["user_id"].nunique() == 4_334
    assert known["item_id"].nunique() == 3_659
    assert events["user_id"].isna().sum() > 100_000  # guest checkouts kept
    assert set(events["type"]) == {"purchase", "refund"}
    assert (events["quantity"] > 0).all()
    assert set(events["currency"]) == {"GBP"}
    assert {"GB", "IE", "DE", "FR", "ZA", "US"} <= set(events["country"].dropna())
    assert events["country"].isna().sum() > 0  # "Unspecified", "European Community"
    first = events[(events["session_id"] == "536365") & (events["item_id"] == "85123A")]
    assert first.iloc[0]["user_id"] == "17850"
    assert first.iloc[0]["price"] == pytest.approx(2.55)
    # 2010-12-01 08:26 London time is 08:26 UTC (winter time).
    assert str(first.iloc[0]["timestamp"]) == "2010-12-01 08:26:00+00:00"
    customers = shop.read("customers").set_index("user_id")
    assert customers.loc["12347", "country"] == "IS"
    assert not customers["email_consent"].any()
    items = shop.read("items").set_index("item_id")
    assert items.loc["85123A", "title"] == "WHITE HANGING HEART T-LIGHT HOLDER"


def test_online_retail_import_twice_adds_nothing(imported_retail, online_retail_csv):
    shop, first = imported_retail
    before = shop.counts()
    again = import_source(shop, "online-retail", online_retail_csv, progress=False).as_dict()
    assert shop.counts() == before
    assert again["tables"]["events"] == {"new": 0, "updated": 0, "unchanged": first.accepted}
    assert again["tables"]["customers"]["new"] == 0


def _first(raw: pd.DataFrame, mask) -> pd.DataFrame:
    return raw[mask].head(1)


def test_each_online_retail_reason_on_real_rows(online_retail_raw, store, tmp_path):
    raw = online_retail_raw
    dup_mask = raw.duplicated(keep=False)
    dup_pair = raw[dup_mask & (raw["CustomerID"] != "")].head(1)
    real = pd.concat(
        [
            _first(raw, (raw["CustomerID"] == "17850.0") & ~dup_mask),  # accepted purchase
            _first(
                raw, raw["InvoiceNo"].str.startswith("C") & raw["StockCode"].str.match(r"^\d{5}")
            ),  # accepted refund
            _first(
                raw,
                (raw["CustomerID"] == "")
                & (raw["UnitPrice"] != "0.0")
                & ~raw["InvoiceNo"].str.startswith(("A", "C"))
                & ~raw["StockCode"].isin(["POST", "DOT", "M"]),
            ),  # guest purchase
            dup_pair,
            dup_pair,  # -> duplicate_row
            _first(raw, raw["InvoiceNo"].str.startswith("A")),  # -> bad_debt_adjustment
            _first(raw, raw["StockCode"] == "POST"),  # -> non_product
            _first(raw, raw["StockCode"].str.startswith("gift_0001")),  # -> non_product
            _first(
                raw, (raw["Quantity"].astype(int) <= 0) & ~raw["InvoiceNo"].str.startswith("C")
            ),  # -> stock_adjustment
            _first(
                raw, (raw["UnitPrice"].astype(float) == 0) & (raw["Quantity"].astype(int) > 0)
            ),  # -> zero_price
        ]
    )
    broken = real.head(1).assign(Quantity="six")  # a real line with a corrupted field
    renamed = real.head(1).assign(Country="Atlantis", InvoiceNo="999999")
    sample = pd.concat([real, broken, renamed], ignore_index=True)
    path = tmp_path / "sample.csv"
    sample.to_csv(path, index=False)

    out = import_source(store, "online-retail", path, progress=False).as_dict()
    rejects = pd.read_parquet(store.root / out["rejects_file"]).set_index("row")
    assert out["rows_read"] == 12
    assert out["accepted"] == 4  # purchase, refund, guest purchase, first of the pair
    assert rejects["reason"].to_dict() == {
        5: "duplicate_row",
        6: "bad_debt_adjustment",
        7: "non_product",
        8: "non_product",
        9: "stock_adjustment",
        10: "zero_price",
        11: "malformed_row",
        12: "bad_country",
    }
    events = store.read("events").set_index("session_id")
    refund_invoice = sample.iloc[1]["InvoiceNo"]
    assert events.loc[refund_invoice, "type"] == "refund"
    assert events.loc[refund_invoice, "quantity"] == -int(sample.iloc[1]["Quantity"])
    assert events["user_id"].isna().sum() == 1


def test_movielens_ratings_movies_and_users(movielens_dir, store):
    out = import_source(store, "movielens", movielens_dir, progress=False).as_dict()
    assert out["rows_read"] == 100_000 + 1_682 + 943
    assert out["accepted"] == out["rows_read"] and out["rejected"] == {}
    assert store.counts()["events"] == 100_000
    events = store.read("events")
    assert set(events["type"]) == {"rating"}
    assert events["value"].between(1, 5).all()
    assert events["user_id"].nunique() == 943 and events["item_id"].nunique() == 1_682
    first = events[(events["user_id"] == "196") & (events["item_id"] == "242")].iloc[0]
    assert first["value"] == 3 and str(first["timestamp"]) == "1997-12-04 15:55:49+00:00"
    items = store.read("items").set_index("item_id")
    assert items.loc["1", "title"] == "Toy Story (1995)"
    assert list(items.loc["1", "tags"]) == ["Animation", "Children's", "Comedy"]
    assert items.loc["1", "category"] == "Movies > Animation"
    users = store.read("customers").set_index("user_id")
    assert json.loads(users.loc["1", "attributes"]) == {
        "age": 24,
        "gender": "M",
        "occupation": "technician",
        "zip_code": "85711",
    }


def test_movielens_reasons_on_real_lines(movielens_dir, tmp_path, store):
    folder = tmp_path / "ml"
    folder.mkdir()
    for name in ("u.user", "u.item"):
        (folder / name).write_bytes((movielens_dir / name).read_bytes())
    lines = (movielens_dir / "u.data").read_text().splitlines()[:3]
    user, item, _, ts = lines[0].split("\t")
    extra = [lines[0], f"{user}\t{item}\t7\t{ts}", f"{user}\t{item}\tthree"]
    (folder / "u.data").write_text("\n".join(lines + extra) + "\n")
    out = import_source(store, "movielens", folder, progress=False).as_dict()
    assert out["files"]["u.data"] == {"rows_read": 6, "accepted": 3, "rejected": 3}
    assert out["rejected"] == {"duplicate_row": 1, "bad_value": 1, "malformed_row": 1}
