"""A visitor's recent views are ordered by the views' own times, not by their arrival.

With ``session_seeds=1`` only the newest view seeds a session list, so the list
tells which view the engine takes for the newest: ``a0`` gives ``a1, a2``, ``a3``
gives ``a2, a4``, ``b0`` gives ``b1, b2`` and ``b3`` gives ``b2, b4`` (the tiny
shop's similar lists). ``u-new`` has no published candidates, so a customer's
list is session-based too.
"""

# ruff: noqa: F401, F811 (pytest fixtures are imported, then named as arguments)

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from serving_fixtures import API_KEY, ids_of, make_config, shop

from serving import create_app

VISITORS = [("session_id", "s-1"), ("user_id", "u-new")]


@pytest.fixture(params=VISITORS, ids=["session", "customer"])
def visitor(request):
    return request.param


def api(shop, **settings):
    url, _, keys, _ = shop
    return create_app(make_config(url, keys.prefix, session_seeds=1, **settings)).test_client()


def post(client, visitor, *views: tuple[str, float | None]) -> None:
    """One request of views ``(item, minutes ago)``; None: no timestamp (now)."""
    field, who = visitor
    events = []
    for item, minutes in views:
        event = {"type": "view", field: who, "item_id": item}
        if minutes is not None:
            event["timestamp"] = (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()
        events.append(event)
    response = client.post("/v1/events", json=events, headers={"X-API-Key": API_KEY})
    assert response.status_code == 200, response.get_data(as_text=True)


def recommend(client, visitor) -> dict:
    field, who = visitor
    response = client.get(f"/v1/recommendations?{field}={who}&country=DE&n=2")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def session_list(client, visitor) -> list[str]:
    body = recommend(client, visitor)
    assert body["source"] == "session" and not body["degraded"]
    return ids_of(body)


def newest_first(shop, visitor) -> list[str]:
    _, redis_client, keys, _ = shop
    field, who = visitor
    key = keys.session_views(who) if field == "session_id" else keys.recent_views(who)
    return [item.decode() for item in redis_client.zrange(key, 0, -1, desc=True)]


def test_an_older_view_sent_later_does_not_come_first(shop, visitor):
    client = api(shop)
    post(client, visitor, ("b3", 5))
    post(client, visitor, ("a0", 60))  # a backlog of an app that was offline
    assert session_list(client, visitor) == ["b2", "b4"]
    assert newest_first(shop, visitor) == ["b3", "a0"]


def test_a_replayed_old_view_of_an_item_viewed_since_does_not_move_it_back(shop, visitor):
    client = api(shop)
    post(client, visitor, ("b3", 5), ("a0", 30), ("a3", 45))
    post(client, visitor, ("a0", 90))  # replayed: a0 keeps its view of 30 minutes ago
    assert session_list(client, visitor) == ["b2", "b4"]
    assert newest_first(shop, visitor) == ["b3", "a0", "a3"]


def test_the_newest_views_kept_by_time_stay(shop, visitor):
    client = api(shop, views_kept=2)
    post(client, visitor, ("b0", 10), ("a0", 20))
    post(client, visitor, ("a3", 30))  # older than both: not kept
    assert session_list(client, visitor) == ["b1", "b2"]
    assert newest_first(shop, visitor) == ["b0", "a0"]
    post(client, visitor, ("b3", 1))
    assert newest_first(shop, visitor) == ["b3", "b0"]


def test_views_of_one_batch_at_the_same_time_keep_their_order(shop, visitor):
    client = api(shop)
    post(client, visitor, ("b3", None), ("a0", None))  # no timestamps: one time, now
    assert session_list(client, visitor) == ["a1", "a2"]
    post(client, visitor, ("a0", None), ("b3", None))
    assert session_list(client, visitor) == ["b2", "b4"]


def test_recent_views_lists_of_the_earlier_format_are_ignored(shop, visitor):
    """Before sorted sets, recent views were lists under ``live:views:<user>`` and
    ``live:session-views:<session>``; one left in Redis neither fails nor feeds a list."""
    _, redis_client, keys, _ = shop
    field, who = visitor
    kind = "session-views" if field == "session_id" else "views"
    old = f"{keys.prefix}:live:{kind}:{who}"
    redis_client.rpush(old, "a3", "b0")
    redis_client.expire(old, 3600)
    client = api(shop)
    assert recommend(client, visitor)["source"] == "popular_country"  # no recent views
    post(client, visitor, ("b3", 5))
    assert session_list(client, visitor) == ["b2", "b4"]
    assert newest_first(shop, visitor) == ["b3"]
    assert redis_client.lrange(old, 0, -1) == [b"a3", b"b0"] and redis_client.ttl(old) > 0


def test_views_older_than_their_time_to_live_leave_at_the_next_write(shop, visitor):
    """The key's TTL is renewed by every write, so a visitor who keeps browsing kept
    seeding lists with views far older than ``views_ttl_s``."""
    client = api(shop, views_ttl_s=3600)
    post(client, visitor, ("a0", 50))
    _, redis_client, keys, _ = shop
    field, who = visitor
    key = keys.session_views(who) if field == "session_id" else keys.recent_views(who)
    redis_client.zadd(key, {"a0": redis_client.zscore(key, "a0") - 20 * 60})  # now 70 min ago
    post(client, visitor, ("b3", 5))
    assert newest_first(shop, visitor) == ["b3"]
