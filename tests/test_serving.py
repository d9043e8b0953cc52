"""The serving API against a real Redis: lists, fallbacks, business rules, events, errors.

The tiny shop of ``serving_fixtures`` has known answers (two taste groups,
three markets); see that module's docstring.
"""

# ruff: noqa: F401, F811 (pytest fixtures are imported, then named as arguments)

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from serving_fixtures import (  # fixtures: shop, app, client
    API_KEY,
    PRICES,
    app,
    client,
    ids_of,
    idx,
    make_config,
    shop,
    write_shop,
)

from recsys.snapshots.keys import Keys
from serving import create_app

AUTH = {"X-API-Key": API_KEY}


def get(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    return response.get_json()


def post_events(client, body, status=200, headers=AUTH):
    response = client.post("/v1/events", json=body, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


# -- the fallback chain ------------------------------------------------------------------
def test_known_customer_gets_personalized_items_sold_and_in_stock_in_the_market(client, shop):
    body = get(client, "/v1/recommendations?user_id=alice&country=GB&n=6")
    assert body["source"] == "personalized" and body["user_known"] is True
    assert body["version"] == shop[3] and body["degraded"] is False
    # alice's candidates a0..a5, b0 without a5 (out of stock in GB)
    assert ids_of(body) == ["a0", "a1", "a2", "a3", "a4", "b0"]
    assert all(i["source"] == "personalized" for i in body["items"])
    assert {(i["price"], i["currency"]) for i in body["items"]} == {(PRICES["GB"], "GBP")}
    assert [i["score"] for i in body["items"]] == sorted(
        (i["score"] for i in body["items"]), reverse=True
    )
    de = get(client, "/v1/recommendations?user_id=alice&country=DE&n=6")
    assert ids_of(de) == ["a0", "a1", "a2", "a3", "a4", "a5"]  # a5 is in stock in DE
    assert de["items"][0]["currency"] == "EUR"


def test_short_personalized_list_is_filled_from_the_fallbacks_without_duplicates(client):
    body = get(client, "/v1/recommendations?user_id=bob&country=GB&n=10")
    items = ids_of(body)
    # bob's candidates b0..b4 and a0 (b5 not sold in GB), then GB's popular list
    assert items[:6] == ["b0", "b1", "b2", "b3", "b4", "a0"]
    assert items[6:] == ["a1", "a2", "a3", "a4"]
    assert body["items"][6]["source"] == "popular_country"
    assert len(set(items)) == len(items)


def test_unknown_customer_gets_the_fallback_not_a_404(client):
    body = get(client, "/v1/recommendations?user_id=nobody&country=GB&n=4")
    assert body["user_known"] is False and body["source"] == "popular_country"
    assert ids_of(body) == ["a1", "a0", "a2", "b0"]  # GB's popular list


def test_market_without_history_gets_popular_overall_within_its_offers(client):
    body = get(client, "/v1/recommendations?country=NO&n=5")
    assert body["source"] == "popular"
    assert ids_of(body) == ["b0", "b1", "b2"]  # the only items sold in NO
    assert {i["currency"] for i in body["items"]} == {"NOK"}


def test_country_where_nothing_is_sold_gets_an_empty_list(client):
    body = get(client, "/v1/recommendations?user_id=alice&country=JP")
    assert body["items"] == [] and body["source"] == "none" and body["country"] == "JP"


def test_anonymous_visitor_with_session_items_gets_similar_items(client):
    body = get(client, "/v1/recommendations?session_items=b3&country=DE&n=4")
    assert body["source"] == "session" and body["user_known"] is False
    assert ids_of(body) == ["b2", "b4", "b1", "b5"]  # b3's similar items, b3 left out
    two = get(client, "/v1/recommendations?session_items=a0,b5&country=DE&n=3")
    assert ids_of(two) == ["a1", "a2", "b4"]  # a0's list weighs more (newest first)


def test_list_is_never_empty_while_eligible_items_exist(client):
    # only b5 is eligible: in DE, in Sport > Bike, b3 and b4 excluded; no list holds b5
    body = get(client, "/v1/recommendations?country=DE&category=Sport%20%3E%20Bike&exclude=b3,b4")
    assert ids_of(body) == ["b5"] and body["source"] == "catalog"


# -- business rules --------------------------------------------------------------------
def test_diversity_caps_items_per_category(shop):
    url, _, keys, _ = shop
    client = create_app(make_config(url, keys.prefix, max_per_category=2)).test_client()
    body = get(client, "/v1/recommendations?user_id=alice&country=DE&n=6")
    assert ids_of(body) == ["a0", "a1", "a3", "a4", "b0", "b1"]
    assert max(Counter(i["category"] for i in body["items"]).values()) == 2
    # a category filter lifts the cap: the visitor asked for that category
    kitchen = get(client, "/v1/recommendations?user_id=alice&country=DE&category=Home")
    assert ids_of(kitchen)[:5] == ["a0", "a1", "a2", "a3", "a4"]


def test_category_filter_includes_sub_categories_and_unknown_category_is_empty(client):
    body = get(client, "/v1/recommendations?user_id=bob&country=DE&category=Home%20%3E%20Kitchen")
    assert ids_of(body) == ["a0", "a1", "a2"]
    home = get(client, "/v1/popular?country=GB&category=Home&n=10")
    assert set(ids_of(home)) == {"a0", "a1", "a2", "a3", "a4"}  # a5 out of stock in GB
    assert get(client, "/v1/recommendations?country=DE&category=Toys")["items"] == []


def test_unknown_category_names_are_not_cached(app, client):
    get(client, "/v1/popular?country=GB&category=Home")
    snapshot = app.extensions["recsys"].snapshot
    cached = dict(snapshot._category_masks)
    for i in range(50):  # any visitor can send any name: none of them may stay in memory
        assert get(client, f"/v1/popular?country=GB&category=made-up-{i}")["items"] == []
    assert snapshot._category_masks.keys() == cached.keys() == {"Home"}


def test_exclude_parameter_and_purchases_are_never_listed(client, shop):
    body = get(client, "/v1/recommendations?user_id=alice&country=DE&n=4&exclude=a0,a2")
    assert ids_of(body) == ["a1", "a3", "a4", "a5"]
    post_events(client, {"type": "purchase", "user_id": "alice", "item_id": "a1"})
    after = get(client, "/v1/recommendations?user_id=alice&country=DE&n=4")
    assert "a1" not in ids_of(after) and ids_of(after)[0] == "a0"


def test_pinned_and_boosted_items_through_the_admin_endpoint(client):
    rules = {"pinned": ["b4", "b5"], "boost": {"a3": 10.0}}
    response = client.put("/v1/admin/rules/GB", json=rules, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["unknown_items"] == []
    body = get(client, "/v1/recommendations?user_id=alice&country=GB&n=4")
    # b4 pinned first; b5 is pinned but not sold in GB; a3 boosted above a0
    assert ids_of(body) == ["b4", "a3", "a0", "a1"]
    assert body["items"][0]["source"] == "pinned" and body["items"][0]["score"] is None
    assert body["source"] == "personalized"
    assert ids_of(get(client, "/v1/recommendations?user_id=alice&country=DE&n=2")) == ["a0", "a1"]
    listed = client.get("/v1/admin/rules", headers=AUTH).get_json()["rules"]
    assert listed["GB"]["pinned"] == ["b4", "b5"]
    assert client.delete("/v1/admin/rules/GB", headers=AUTH).status_code == 200
    assert ids_of(get(client, "/v1/recommendations?user_id=alice&country=GB&n=2")) == ["a0", "a1"]
    for factor in (0, -1, True, "2", 10**400):  # the last: too large for a float
        bad = client.put("/v1/admin/rules/GB", json={"boost": {"a3": factor}}, headers=AUTH)
        assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_rules", factor


def test_rules_file_applies_and_every_worker_sees_stored_rules(shop, tmp_path):
    url, _, keys, _ = shop
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"_": {"pinned": ["a4"]}, "DE": {"boost": {"b1": 0.01}}}))
    first = create_app(make_config(url, keys.prefix, rules_file=path)).test_client()
    body = get(first, "/v1/popular?country=DE&n=3")
    assert ids_of(body) == ["a4", "b0", "a0"]  # a4 pinned everywhere; b1 sunk below
    second = create_app(make_config(url, keys.prefix)).test_client()  # another worker
    assert ids_of(get(second, "/v1/popular?country=DE&n=2")) == ["b1", "b0"]
    first.put("/v1/admin/rules/DE", json={"pinned": ["b2"]}, headers=AUTH)
    assert ids_of(get(second, "/v1/popular?country=DE&n=2")) == ["b2", "b1"]
    # stored empty rules replace the file's for their market (b1 no longer sunk in
    # DE; the file's global pin stays); deleting them brings the file's back
    assert first.put("/v1/admin/rules/DE", json={}, headers=AUTH).status_code == 200
    assert ids_of(get(first, "/v1/popular?country=DE&n=3")) == ["a4", "b1", "b0"]
    assert first.delete("/v1/admin/rules/DE", headers=AUTH).status_code == 200
    assert ids_of(get(first, "/v1/popular?country=DE&n=3")) == ["a4", "b0", "a0"]


def test_rules_that_change_while_a_request_resolves_them_are_not_kept_stale(app, client, shop):
    url, redis_client, keys, _ = shop
    engine = app.extensions["recsys"]
    assert ids_of(get(client, "/v1/popular?country=DE&n=2")) == ["b1", "b0"]
    admin = create_app(make_config(url, keys.prefix)).test_client()  # another worker
    read_rules = engine.rules

    def rules_read_before_a_reload():
        # thread A reads the rules; then thread B stores and loads new ones
        old = read_rules()
        admin.put("/v1/admin/rules/DE", json={"pinned": ["b2"]}, headers=AUTH)
        engine._reload_rules(redis_client.get(keys.rules_generation))
        return old

    engine.rules = rules_read_before_a_reload
    try:
        engine._resolved = {}  # resolve again, through the interleaving above
        get(client, "/v1/popular?country=DE&n=2")  # the request in flight: either is fine
    finally:
        engine.rules = read_rules
    assert ids_of(get(client, "/v1/popular?country=DE&n=2")) == ["b2", "b1"]


def test_similar_items_are_market_eligible_and_fall_back_for_unknown_items(client):
    body = get(client, "/v1/items/b3/similar?country=GB&n=3")
    assert body["source"] == "similar" and body["item_known"] is True
    assert ids_of(body) == ["b2", "b4", "b1"]
    nothing_like = get(client, "/v1/items/brand-new/similar?country=GB&n=2")
    assert nothing_like["item_known"] is False and nothing_like["items"]
    assert nothing_like["source"] == "popular_country"


def test_popular_and_trending(client):
    assert ids_of(get(client, "/v1/popular?country=DE&n=3")) == ["b1", "b0", "a0"]
    assert ids_of(get(client, "/v1/popular?n=3")) == ["b0", "a0", "b1"]
    trending = get(client, "/v1/popular?kind=trending&country=GB&n=2")
    assert ids_of(trending) == ["a4", "a1"]  # a5, b5 not available in GB; then popular


# -- events ----------------------------------------------------------------------------
def test_session_views_feed_the_next_response_and_go_to_the_stream(client, shop):
    _, redis_client, keys, _ = shop
    events = [
        {"type": "view", "session_id": "s-1", "item_id": "b3", "country": "DE"},
        {"type": "add_to_cart", "session_id": "s-1", "item_id": "b3"},
    ]
    out = post_events(client, {"events": events})
    assert out["accepted"] == 2 and len(out["stream_ids"]) == 2
    body = get(client, "/v1/recommendations?session_id=s-1&country=DE&n=2")
    assert body["source"] == "session" and ids_of(body) == ["b2", "b4"]
    assert redis_client.zrange(keys.session_views("s-1"), 0, -1) == [b"b3"]  # no repeats
    entries = redis_client.xrange(keys.event_stream)
    assert [e[1][b"type"] for e in entries] == [b"view", b"add_to_cart"]
    assert entries[0][1][b"country"] == b"DE" and b"timestamp" in entries[0][1]


def test_guest_purchase_is_excluded_for_its_session(client):
    post_events(client, [{"type": "purchase", "session_id": "g-9", "item_id": "a1"}])
    body = get(client, "/v1/recommendations?session_id=g-9&country=GB&n=3")
    assert "a1" not in ids_of(body) and ids_of(body) == ["a0", "a2", "b0"]


def test_events_older_than_the_live_state_go_to_the_stream_only(client, shop):
    _, redis_client, keys, _ = shop
    now = datetime.now(UTC)

    def at(days: float) -> str:
        return (now - timedelta(days=days)).isoformat()

    old = [  # a replayed backlog: a view of 30 days ago is no recent view
        {"type": "view", "session_id": "s-old", "item_id": "b3", "timestamp": at(30)},
        {"type": "purchase", "session_id": "s-old", "item_id": "a1", "timestamp": at(60)},
    ]
    assert post_events(client, old)["accepted"] == 2
    assert redis_client.xlen(keys.event_stream) == 2  # training still gets them
    body = get(client, "/v1/recommendations?session_id=s-old&country=GB&n=3")
    assert body["source"] == "popular_country" and ids_of(body) == ["a1", "a0", "a2"]
    assert not redis_client.exists(keys.session_views("s-old"), keys.session_bought("s-old"))
    recent = [
        {"type": "view", "session_id": "s-old", "item_id": "b3", "timestamp": at(6)},
        {"type": "purchase", "session_id": "s-old", "item_id": "a1", "timestamp": at(29)},
    ]
    post_events(client, recent)
    body = get(client, "/v1/recommendations?session_id=s-old&country=DE&n=2")
    assert body["source"] == "session" and ids_of(body) == ["b2", "b4"]
    assert redis_client.smembers(keys.session_bought("s-old")) == {b"a1"}


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"type": "click", "user_id": "u", "item_id": "a1"}, "type must be"),
        ({"type": {}, "user_id": "u", "item_id": "a1"}, "type must be"),
        ({"type": "view", "user_id": "u:1", "item_id": "a1"}, "user_id"),
        ({"type": "view", "user_id": "u", "item_id": "a1\n"}, "item_id"),
        ({"type": "view", "item_id": "a1"}, "user_id or session_id"),
        ({"type": "view", "user_id": "u", "item_id": "a1", "price": 3}, "currency"),
        ({"type": "view", "user_id": "u", "item_id": "a1", "price": 10**400}, "price"),
        ({"type": "view", "user_id": "u", "item_id": "a1", "quantity": 0}, "quantity"),
        ({"type": "view", "user_id": "u", "item_id": "a1", "country": "XX"}, "country"),
        ({"type": "view", "user_id": "u", "item_id": "a1", "timestamp": "soon"}, "timestamp"),
        (  # moved to UTC it would fall before year 1
            {"type": "view", "user_id": "u", "item_id": "a1", "timestamp": "0001-01-01T00:00+14"},
            "timestamp",
        ),
        ({"type": "view", "user_id": "u", "item_id": "a1", "extra": 1}, "unknown field"),
        ({"events": [{"type": "view", "user_id": "u", "item_id": "a1"}, 7]}, "events[1]"),
        ({"events": []}, "no events"),
        ({"events": {"type": "view", "user_id": "u", "item_id": "a1"}}, '{"events": [...]}'),
    ],
)
def test_bad_events_are_refused_whole(client, shop, body, fragment):
    _, redis_client, keys, _ = shop
    out = post_events(client, body, status=400)
    assert out["error"]["code"] == "bad_event" and fragment in out["error"]["message"]
    assert redis_client.xlen(keys.event_stream) == 0  # nothing of the batch was written


def test_event_batch_and_body_size_limits(shop):
    url, _, keys, _ = shop
    client = create_app(make_config(url, keys.prefix, max_events=2)).test_client()
    three = [{"type": "view", "user_id": "u", "item_id": "a1"}] * 3
    assert "at most 2" in post_events(client, three, status=400)["error"]["message"]
    big = {"type": "view", "user_id": "u", "item_id": "a1", "pad": "x" * 300_000}
    response = client.post(
        "/v1/events", data=json.dumps(big), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "body_too_large"
    response = client.post(
        "/v1/events", data="not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "bad_json"
    nested = "[" * 100_000 + "]" * 100_000  # 200 kB, under the size limit: too deep to parse
    for method, path in (("post", "/v1/events"), ("put", "/v1/admin/rules/GB")):
        response = getattr(client, method)(
            path, data=nested, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert response.status_code == 400, path
        assert response.get_json()["error"]["code"] == "bad_json"


def test_write_and_admin_endpoints_need_the_api_key(client, shop):
    event = {"type": "view", "user_id": "u", "item_id": "a1"}
    for headers in ({}, {"X-API-Key": "wrong"}):
        out = post_events(client, event, status=401, headers=headers)
        assert out["error"]["code"] == "unauthorized"
        assert client.put("/v1/admin/rules/GB", json={}, headers=headers).status_code == 401
        assert client.get("/v1/admin/rules", headers=headers).status_code == 401
    url, _, keys, _ = shop
    keyless = create_app(make_config(url, keys.prefix, api_key=None)).test_client()
    out = post_events(keyless, event, status=403, headers=AUTH)
    assert out["error"]["code"] == "writes_disabled"


# -- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        "n=0",
        "n=101",
        "n=ten",
        "n=-1",
        "n=%C2%B2",  # superscript two: isdigit() but not int()
        "n=%D9%A3",  # Arabic-Indic three
        "n=" + "9" * 5000,  # more digits than int() converts
        "country=GBR",
        "country=D%C3%A9",
        "country=XX",
        "user_id=a:b",
        "user_id=" + "u" * 65,
        "user_id=a%20b",
        "user_id=alice%0A",  # a trailing newline: "$" would let it through
        "session_id=*",
        "session_items=a0,b:1",
        "exclude=" + ",".join(f"x{i}" for i in range(101)),
        "category=" + "c" * 301,
    ],
)
def test_invalid_parameters_are_400_with_a_stable_shape(client, query):
    body = get(client, f"/v1/recommendations?{query}", status=400)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == "bad_parameter"
    assert query.split("=")[0] in body["error"]["message"]


def test_country_in_any_case_and_counts_with_leading_zeros_are_accepted(client):
    plain = get(client, "/v1/recommendations?country=DE&n=7")
    assert len(plain["items"]) == 7 and plain["country"] == "DE"
    for query in ("country=de&n=007", "country=De&n=7", "country=dE&n=07"):
        assert get(client, f"/v1/recommendations?{query}")["items"] == plain["items"], query


def test_bad_ids_in_paths_and_unknown_routes_are_json(client):
    assert get(client, "/v1/items/a:b/similar", status=400)["error"]["code"] == "bad_parameter"
    assert get(client, "/v1/nothing", status=404)["error"]["code"] == "not_found"
    response = client.post("/v1/recommendations")
    assert response.status_code == 405 and response.get_json()["error"]["code"]
    assert get(client, "/v1/popular?kind=weird", status=400)["error"]["code"] == "bad_parameter"
    bad = client.put("/v1/admin/rules/GB", json={"pinned": ["a:1"]}, headers=AUTH)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_rules"
    bad = client.put("/v1/admin/rules/XX", json={}, headers=AUTH)
    assert bad.status_code == 400
    # a newline in a path id: no route matches it
    assert get(client, "/v1/items/a1%0A/similar", status=404)["error"]["code"] == "not_found"
    bad = client.put("/v1/admin/rules/GB%0A", json={}, headers=AUTH)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_rules"
    bad = client.put("/v1/admin/rules/GB", json={"pinned": ["a1\n"]}, headers=AUTH)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "bad_rules"


# -- snapshots, round trips, health ----------------------------------------------------
def test_one_redis_round_trip_per_request_and_new_versions_are_picked_up(app, client, shop):
    _, redis_client, keys, version = shop
    engine = app.extensions["recsys"]
    get(client, "/v1/recommendations?user_id=alice&country=GB")
    before = engine.gateway.round_trips
    for query in (
        "user_id=alice&country=GB",
        "user_id=bob&session_id=s&session_items=a1&country=DE&exclude=a2",
        "session_items=b1&country=NO",
    ):
        get(client, f"/v1/recommendations?{query}")
    get(client, "/v1/items/a1/similar?country=GB")
    get(client, "/v1/popular?country=GB")
    assert engine.gateway.round_trips - before == 5
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "recsys_redis_round_trips_total" in metrics

    swapped = {"alice": (idx("b0", "b1", "b2"), np.array([0.9, 0.8, 0.7], dtype=np.float32))}
    new_version = write_shop(redis_client, keys, users=swapped)
    body = get(client, "/v1/recommendations?user_id=alice&country=DE&n=2")
    assert body["version"] == new_version != version
    assert ids_of(body) == ["b0", "b1"]


def test_health_readiness_metrics_and_openapi(app, client, shop):
    assert get(client, "/healthz") == {"status": "ok"}
    ready = get(client, "/readyz")
    assert ready["status"] == "ready" and ready["version"] == shop[3]
    get(client, "/v1/recommendations?user_id=alice&country=GB")
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'recsys_lists_total{degraded="false",endpoint="recommendations",source="personalized"}'
        in text
    )
    assert 'recsys_http_requests_total{endpoint="/v1/recommendations",status="200"}' in text
    doc = get(client, "/v1/openapi.json")
    assert doc["openapi"].startswith("3.")
    routes = {
        rule.rule.replace("<path:item_id>", "{item_id}").replace("<market>", "{market}")
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    assert routes == set(doc["paths"])


def test_before_the_first_publish_lists_are_503_and_readyz_says_so(redis_url):
    client = create_app(make_config(redis_url, "nothing-here")).test_client()
    body = get(client, "/v1/recommendations?country=GB", status=503)
    assert body["error"]["code"] == "no_snapshot"
    assert get(client, "/readyz", status=503)["version"] is None


def test_keys_refuse_new_live_key_names_with_bad_ids():
    keys = Keys("p")
    assert keys.session_views("s1") == "p:live:session-views-v2:s1"
    for bad in ("a:b", "a b", "", "s1\n"):
        with pytest.raises(ValueError):
            keys.session_views(bad)
        with pytest.raises(ValueError):
            keys.session_bought(bad)


def test_a_default_country_that_is_no_country_code_is_refused_at_start(shop):
    url, _, keys, _ = shop
    for bad in ("UK", "GBR", "G1"):  # every list without ?country= would be empty
        with pytest.raises(ValueError, match="default_country"):
            make_config(url, keys.prefix, default_country=bad)
    client = create_app(make_config(url, keys.prefix, default_country="gb")).test_client()
    body = get(client, "/v1/recommendations?user_id=alice&n=2")
    assert body["country"] == "GB" and ids_of(body) == ["a0", "a1"]


@pytest.mark.parametrize("key", ["clé-secrète", " key", "key\n"])
def test_an_api_key_no_header_can_carry_is_refused_at_start(shop, key):
    """A non-ASCII key (a client sends it as UTF-8, which arrives as other characters)
    or one with spaces around it (stripped from the header) used to be accepted, then
    every write answered 401."""
    url, _, keys, _ = shop
    with pytest.raises(ValueError, match="API key"):
        make_config(url, keys.prefix, api_key=key)
    client = create_app(make_config(url, keys.prefix, api_key="s3cret-K3y")).test_client()
    event = {"type": "view", "user_id": "u", "item_id": "a1"}
    post_events(client, event, headers={"X-API-Key": "s3cret-K3y"})


def test_views_kept_zero_keeps_no_recent_views(shop):
    url, redis_client, keys, _ = shop
    client = create_app(make_config(url, keys.prefix, views_kept=0)).test_client()
    events = [
        {"type": "view", "session_id": "s-none", "item_id": "b3"},
        {"type": "purchase", "session_id": "s-none", "item_id": "a1"},
    ]
    assert post_events(client, events)["accepted"] == 2
    assert not redis_client.exists(keys.session_views("s-none"))  # not even one kept
    assert redis_client.smembers(keys.session_bought("s-none")) == {b"a1"}
    body = get(client, "/v1/recommendations?session_id=s-none&country=GB&n=3")
    assert body["source"] == "popular_country" and "a1" not in ids_of(body)


def test_a_streamed_body_over_the_size_limit_is_413_not_bad_json(client, shop):
    """A chunked body (no Content-Length; the server marks its end, as gunicorn does) over
    the limit was cut at the limit by werkzeug without an error, then refused as 400
    ``bad_json``; one of exactly the limit is read whole."""
    import io

    _, redis_client, keys, _ = shop
    limit = 256 * 1024

    def padded(obj, size: int) -> bytes:
        text = json.dumps(obj).encode()
        return text[:-1] + b" " * (size - len(text)) + b"}"

    event = {"type": "view", "user_id": "u", "item_id": "a1"}
    chunked = {"Transfer-Encoding": "chunked"}  # no Content-Length
    for size, status in ((limit, 200), (limit + 1, 413)):
        for path, method, obj in (("/v1/events", "post", event), ("/v1/admin/rules/GB", "put", {})):
            response = getattr(client, method)(
                path,
                input_stream=io.BytesIO(padded(obj, size)),
                headers={**AUTH, "Content-Type": "application/json", **chunked},
                environ_overrides={"wsgi.input_terminated": True},
            )
            assert response.status_code == status, (path, response.get_data(as_text=True))
            if status == 413:
                assert response.get_json()["error"]["code"] == "body_too_large"
    assert redis_client.xlen(keys.event_stream) == 1
