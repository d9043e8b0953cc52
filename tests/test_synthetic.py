"""The synthetic shop: deterministic, valid, and shaped so its right answers are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.data.markets import MARKETS
from recsys.data.schema import EVENT_TYPES, ID_PATTERN, TABLES
from recsys.data.store import DataStore
from recsys.data.synthetic import ShopConfig, customer_taste_groups, generate_shop

USERS, ITEMS, DAYS, SEED = 2000, 500, 60, 7
START = pd.Timestamp("2024-01-01", tz="UTC")


def _read_all(store: DataStore) -> dict[str, pd.DataFrame]:
    frames = {}
    for name, spec in TABLES.items():
        frame = store.read(name)
        frames[name] = frame.sort_values(list(spec.key), ignore_index=True)
    return frames


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    store = DataStore(tmp_path_factory.mktemp("shop"))
    summary = generate_shop(store, USERS, ITEMS, DAYS, seed=SEED, progress=False)
    return store, summary, _read_all(store)


@pytest.fixture(scope="module")
def events(shop):
    return shop[2]["events"]


def test_same_seed_same_tables_and_other_seed_differs(shop, tmp_path):
    _, _, first = shop
    again = DataStore(tmp_path / "again")
    generate_shop(again, USERS, ITEMS, DAYS, seed=SEED, progress=True)  # progress on: same data
    second = _read_all(again)
    for name in TABLES:
        pd.testing.assert_frame_equal(first[name], second[name], obj=name)

    other = DataStore(tmp_path / "other")
    generate_shop(other, USERS, ITEMS, DAYS, seed=SEED + 1, progress=False)
    third = _read_all(other)
    assert not first["events"]["event_id"].isin(third["events"]["event_id"]).all()
    assert not first["item_markets"]["price"].equals(third["item_markets"]["price"])


def test_tables_follow_the_schema(shop, events):
    store, summary, frames = shop
    for name, spec in TABLES.items():
        assert store.dataset(name).schema == spec.schema
        for field in spec.schema:
            if not field.nullable:
                assert frames[name][field.name].notna().all(), (name, field.name)
    assert store.counts()["customers"] == USERS
    assert store.counts()["items"] == ITEMS
    assert summary["events"] == len(events)
    assert summary["events_by_type"] == events["type"].value_counts().to_dict()
    assert events["event_id"].is_unique
    assert set(events["type"]) <= set(EVENT_TYPES)
    assert (events["quantity"] >= 1).all()
    assert events["value"].isna().all()
    assert events["timestamp"].min() >= START
    assert events["timestamp"].max() < START + pd.Timedelta(days=DAYS)
    ids = pd.concat([events["user_id"].dropna(), events["session_id"], frames["items"]["item_id"]])
    assert ids.str.fullmatch(ID_PATTERN.pattern).all()
    depth = frames["items"]["category"].str.count(" > ") + 1
    assert set(depth) == {2, 3}


def test_replacing_the_shop_replaces_every_table(tmp_path):
    store = DataStore(tmp_path)
    generate_shop(store, 300, 80, 20, seed=1, progress=False)
    generate_shop(store, 100, 60, 10, seed=2, progress=False)
    counts = store.counts()
    assert counts["customers"] == 100
    assert counts["items"] == 60
    assert store.read("events")["timestamp"].max() < START + pd.Timedelta(days=10)


def test_markets_currencies_and_languages(shop, events):
    _, _, frames = shop
    customers = frames["customers"]
    shares = customers["country"].value_counts(normalize=True)
    assert len(shares) >= 8
    assert shares.index[0] == "GB" and 0.3 < shares.iloc[0] < 0.5
    assert shares.iloc[-1] < shares.iloc[0] / 5
    assert (customers["language"] == customers["country"].map(lambda c: MARKETS[c].language)).all()
    for frame in (events, frames["item_markets"]):
        currency = frame["country"].map(lambda c: MARKETS[c].currency)
        assert (frame["currency"] == currency).all()
    assert events["currency"].nunique() >= 5


def test_items_are_sold_in_some_markets_and_events_respect_that(shop, events):
    _, _, frames = shop
    offers = frames["item_markets"]
    markets_per_item = offers.groupby("item_id").size()
    assert markets_per_item.min() < offers["country"].nunique()
    assert (markets_per_item == offers["country"].nunique()).any()
    assert set(markets_per_item.index) == set(frames["items"]["item_id"])
    food = frames["items"].loc[frames["items"]["category"].str.startswith("Food"), "item_id"]
    assert not offers[offers["item_id"].isin(food)]["country"].isin(["US", "JP", "AU"]).any()
    assert (offers["stock"] == 0).any() and offers["stock"].isna().any()
    joined = events.merge(offers, on=["item_id", "country"], how="left", suffixes=("", "_offer"))
    assert joined["price_offer"].notna().all()  # every event's item is sold in its market
    assert (joined["price"] == joined["price_offer"]).all()
    jpy = offers.loc[offers["currency"] == "JPY", "price"]
    assert (jpy % 100 == 0).all()


def test_items_launched_during_the_window_have_no_earlier_events(shop, events):
    _, _, frames = shop
    items = frames["items"].set_index("item_id")
    assert (items["created_at"] > START).any()
    launched = events["item_id"].map(items["created_at"])
    assert (events["timestamp"] >= launched).all()


def test_funnel_order_inside_sessions(events):
    first = events.groupby(["session_id", "item_id", "type"])["timestamp"].min().unstack()
    carts = first[first["add_to_cart"].notna()]
    assert (carts["view"] <= carts["add_to_cart"]).all()  # NaN view would fail too
    bought = first[first["purchase"].notna()]
    assert (bought["add_to_cart"] <= bought["purchase"]).all()
    refunded = first[first["refund"].notna()]
    assert len(refunded) and (refunded["purchase"] < refunded["refund"]).all()
    assert (events.groupby("session_id")["user_id"].nunique(dropna=False) == 1).all()
    assert (events.groupby("session_id")["country"].nunique() == 1).all()


def test_guests_cold_customers_and_repeat_purchases(shop, events):
    _, summary, frames = shop
    guests = events["user_id"].isna()
    assert 0.05 < guests.mean() < 0.4
    assert events.loc[guests, "session_id"].notna().all()
    cold = ~frames["customers"]["user_id"].isin(events["user_id"])
    assert 0.05 < cold.mean() < 0.4
    assert summary["customers_without_events"] == cold.sum()

    purchases = events[(events["type"] == "purchase") & ~guests]
    sessions = purchases.groupby(["user_id", "item_id"])["session_id"].nunique()
    repeated = sessions[sessions > 1].index.get_level_values("item_id")
    assert len(repeated) > 10
    tags = frames["items"].set_index("item_id")["tags"]
    assert np.mean(["consumable" in tags[item] for item in repeated]) > 0.9


def test_customers_consent_and_unsubscribes(shop):
    customers = shop[2]["customers"]
    assert customers["user_id"].str.fullmatch(r"u\d{7}").all()
    assert 0.5 < customers["email_consent"].mean() < 0.7
    unsubscribed = customers["unsubscribed_at"].notna()
    assert unsubscribed.any()
    assert not customers.loc[unsubscribed, "email_consent"].any()
    assert customers["email"].is_unique


def test_purchases_concentrate_on_the_hidden_taste_groups(events, shop):
    items = shop[2]["items"]
    groups, world = customer_taste_groups(USERS, ITEMS, DAYS, seed=SEED)
    purchases = events[(events["type"] == "purchase") & events["user_id"].notna()]
    user = purchases["user_id"].str[1:].astype(int).to_numpy()
    leaf_of = pd.Series(world.item_leaf, index=items.sort_values("item_id")["item_id"].to_numpy())
    leaf = leaf_of[purchases["item_id"]].to_numpy()
    favourite = np.argsort(-world.group_leaf[: ShopConfig().taste_groups], axis=1)[:, :4]
    in_group = (favourite[groups[user]] == leaf[:, None]).any(axis=1)
    leaf_share = np.bincount(leaf, minlength=world.group_leaf.shape[1]) / len(leaf)
    chance = leaf_share[favourite[groups[user]]].sum(axis=1)
    assert in_group.mean() > 3 * chance.mean()


def test_popularity_has_a_long_tail(events):
    per_item = events["item_id"].value_counts()
    top = per_item.iloc[: ITEMS // 10].sum() / per_item.sum()
    assert top > 0.4
    assert per_item.iloc[-1] < per_item.iloc[0] / 50


def test_item_neighbours_beat_popularity(events):
    known = events[events["user_id"].notna()]
    cut = START + pd.Timedelta(days=DAYS * 0.75)
    train, test = known[known["timestamp"] < cut], known[known["timestamp"] >= cut]
    test = test[(test["type"] == "purchase") & test["user_id"].isin(train["user_id"])]
    users = pd.Index(train["user_id"].unique())
    items = pd.Index(known["item_id"].unique())
    x = sp.csr_matrix(
        (
            np.ones(len(train)),
            (users.get_indexer(train["user_id"]), items.get_indexer(train["item_id"])),
        ),
        shape=(len(users), len(items)),
    )
    x.data = np.log1p(x.data)
    norm = x.multiply(1 / np.sqrt(np.asarray(x.multiply(x).sum(axis=0))).clip(1e-9)).tocsc()
    similar = (norm.T @ norm).tocsr()
    similar.setdiag(0)
    truth = test.groupby("user_id")["item_id"].agg(lambda s: set(items.get_indexer(s)))
    rows = x[users.get_indexer(truth.index)]
    popularity = np.asarray((x > 0).sum(axis=0)).ravel().astype(float)

    def hit_rate(scores: np.ndarray) -> float:
        top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        return float(np.mean([bool(set(t) & s) for t, s in zip(top, truth, strict=True)]))

    neighbours = hit_rate((rows @ similar).toarray())
    popular = hit_rate(np.tile(popularity, (len(truth), 1)))
    assert len(truth) > 100
    assert neighbours > 1.5 * popular


def test_traffic_and_categories_follow_the_seasons(tmp_path):
    store = DataStore(tmp_path)
    generate_shop(store, 1500, 300, 366, seed=3, progress=False)
    events = store.read("events", columns=["timestamp", "item_id", "country"])
    events = events[events["country"] != "AU"]  # seasons are mirrored there
    items = store.read("items", columns=["item_id", "tags"]).set_index("item_id")["tags"]
    summer = events["item_id"].map(lambda i: "summer" in items[i])
    month = events["timestamp"].dt.month
    assert summer[month.isin([6, 7, 8])].mean() > 2 * summer[month.isin([12, 1, 2])].mean()
    per_month = month.value_counts()
    assert per_month[12] > 1.2 * per_month[[4, 5, 6, 7, 8, 9]].mean()


def test_rejects_impossible_arguments(tmp_path):
    store = DataStore(tmp_path)
    with pytest.raises(ValueError):
        generate_shop(store, 0, 10, 10, progress=False)
    with pytest.raises(ValueError):
        generate_shop(store, 10, 10, 10, progress=False, config=ShopConfig(cart_rate=1.5))
    assert not store.has("events")


def test_a_start_that_is_not_a_date_is_a_one_line_error(tmp_path):
    from click.testing import CliRunner

    from recsys.cli import cli

    args = ["--data", str(tmp_path), "data", "generate", "--users", "10", "--start", "01.03.24"]
    result = CliRunner().invoke(cli, [*args, "-q"])
    assert result.exit_code == 2, result.output
    assert "error: start '01.03.24' is not a date; give one as YYYY-MM-DD" in result.output
    assert not DataStore(tmp_path).has("events")


def test_chunks_share_nothing_but_the_catalog(tmp_path):
    config = ShopConfig(chunk_users=100)
    store = DataStore(tmp_path)
    summary = generate_shop(store, 350, 120, 30, seed=5, progress=False, config=config)
    customers = store.read("customers")
    events = store.read("events")
    assert summary["chunks"] == 4
    assert list(customers["user_id"]) == [f"u{i:07d}" for i in range(350)]
    assert events["event_id"].is_unique
    assert events["session_id"].str[:6].nunique() == 4  # "s0000<chunk>-"
    assert (events.groupby("session_id")["user_id"].nunique() <= 1).all()
    again = DataStore(tmp_path / "again")
    generate_shop(again, 350, 120, 30, seed=5, progress=False, config=config)
    pd.testing.assert_frame_equal(
        events.sort_values("event_id", ignore_index=True),
        again.read("events").sort_values("event_id", ignore_index=True),
    )
