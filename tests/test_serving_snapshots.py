"""Versions the process cannot load: a malformed ``current`` pointer, a snapshot whose
keys were partly deleted (evicted, or cleaned up while a process loads it).

The tiny shop of ``serving_fixtures`` is published first; then ``current`` is moved
to something that cannot be served. A process that holds a loaded snapshot keeps
answering from it (degraded); one that holds none answers 503 ``no_snapshot``.
"""

# ruff: noqa: F401, F811 (pytest fixtures are imported, then named as arguments)

from __future__ import annotations

import threading

import pytest
from serving_fixtures import API_KEY, app, client, ids_of, make_config, shop, write_shop

from serving import create_app

QUERY = "/v1/recommendations?user_id=alice&country=GB&n=3"


def _degraded_from(client, version: str) -> None:
    response = client.get(QUERY)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert body["degraded"] is True and body["version"] == version
    # Redis answers: alice's candidates of the held version, read as usual
    assert ids_of(body) == ["a0", "a1", "a2"] and body["source"] == "personalized"


def _no_snapshot(shop) -> None:
    url, _, keys, _ = shop
    fresh = create_app(make_config(url, keys.prefix)).test_client()  # holds no snapshot
    response = fresh.get(QUERY)
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "no_snapshot"


@pytest.mark.parametrize("pointer", [b"not-a-version", b"\xff\xfe", b"20240601T020000-zzzzzz"])
def test_a_malformed_current_pointer_is_not_a_500(client, shop, pointer):
    _, redis_client, keys, version = shop
    assert client.get(QUERY).get_json()["version"] == version
    redis_client.set(keys.current, pointer)
    _degraded_from(client, version)
    _no_snapshot(shop)
    redis_client.set(keys.current, version)
    assert client.get(QUERY).get_json()["degraded"] is False


@pytest.mark.parametrize("deleted", ["item_ids", "item_categories", "categories", "market"])
def test_a_snapshot_with_deleted_keys_is_not_loaded(client, shop, deleted):
    """A market's offers too: read as an empty market, every visitor there got an
    empty list from a snapshot that looked loaded."""
    _, redis_client, keys, version = shop
    assert client.get(QUERY).get_json()["version"] == version
    broken = write_shop(redis_client, keys)
    key = keys.market(broken, "GB") if deleted == "market" else getattr(keys, deleted)(broken)
    assert redis_client.delete(key) == 1  # evicted, or deleted under us
    _degraded_from(client, version)
    for path in ("/v1/items/a0/similar?country=GB&n=2", "/v1/popular?country=GB&n=2"):
        response = client.get(path)
        assert response.status_code == 200 and response.get_json()["version"] == version
    _no_snapshot(shop)
    fixed = write_shop(redis_client, keys)
    body = client.get(QUERY).get_json()
    assert body["version"] == fixed and body["degraded"] is False
    assert ids_of(body) == ["a0", "a1", "a2"]


@pytest.mark.parametrize("pointer", ["unloadable", "deleted"])
def test_live_state_still_applies_while_current_cannot_be_served(client, shop, pointer):
    """Redis answers, but ``current`` names a version that cannot be loaded, or is gone:
    the held snapshot answers, and what the visitor bought is still never listed."""
    _, redis_client, keys, version = shop
    bought = {"type": "purchase", "user_id": "alice", "session_id": "s1", "item_id": "a0"}
    response = client.post("/v1/events", json=bought, headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    if pointer == "unloadable":
        broken = write_shop(redis_client, keys)
        redis_client.delete(keys.item_ids(broken))
    else:
        redis_client.delete(keys.current)
    for query in (QUERY, "/v1/recommendations?session_id=s1&country=GB&n=3"):
        body = client.get(query).get_json()
        assert body["degraded"] is True and body["version"] == version
        assert "a0" not in ids_of(body), (query, ids_of(body))
    assert ids_of(client.get(QUERY).get_json()) == ["a1", "a2", "a3"]  # alice's candidates


def test_a_truncated_item_table_is_not_loaded(client, shop):
    _, redis_client, keys, version = shop
    assert client.get(QUERY).get_json()["version"] == version
    broken = write_shop(redis_client, keys)
    redis_client.set(keys.item_ids(broken), "a0\na1")  # meta says 12 items
    _degraded_from(client, version)


def test_threads_answer_from_the_loaded_version_while_another_loads_the_new_one(app, shop):
    """A gthread worker: while one thread loads the version a publish flipped to (seconds
    for a large catalog), the others answer from the version they hold, whose keys
    the publish keeps as ``previous``, instead of queueing behind the load."""
    _, redis_client, keys, version = shop
    engine = app.extensions["recsys"]
    assert app.test_client().get(QUERY).get_json()["version"] == version
    new = write_shop(redis_client, keys)
    answers = []

    def request():
        answers.append(app.test_client().get(QUERY))

    thread = threading.Thread(target=request, daemon=True)
    with engine._load_lock:  # another thread is loading the new version
        thread.start()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the request waited for the other thread's load"
    body = answers[0].get_json()
    assert body["version"] == version and body["degraded"] is False
    assert ids_of(body) == ["a0", "a1", "a2"]  # alice's candidates: live state read as usual
    assert app.test_client().get(QUERY).get_json()["version"] == new


def test_a_version_that_cannot_be_loaded_is_tried_again_only_after_a_pause(shop):
    """Every request used to attempt the whole load of a broken ``current`` again (a
    heavy pipeline and an error line each); now once per ``snapshot_retry_s``."""
    import time

    url, redis_client, keys, version = shop
    app = create_app(make_config(url, keys.prefix, snapshot_retry_s=0.5))
    client, failures = app.test_client(), app.extensions["recsys"].metrics.snapshot_load_failures
    assert client.get(QUERY).get_json()["version"] == version
    broken = write_shop(redis_client, keys)
    redis_client.delete(keys.item_ids(broken))
    for _ in range(5):
        _degraded_from(client, version)
    assert failures._value.get() == 1
    time.sleep(0.6)
    _degraded_from(client, version)
    assert failures._value.get() == 2  # tried again after the pause, still broken
    fixed = write_shop(redis_client, keys)  # a new version is tried at once
    assert client.get(QUERY).get_json()["version"] == fixed
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "recsys_snapshot_load_failures_total 2.0" in metrics


@pytest.mark.parametrize("corrupt", ["packed-list", "meta-json"])
def test_a_snapshot_holding_a_value_that_cannot_be_read_is_not_loaded(client, shop, corrupt):
    """A corrupt value (a packed list cut short, meta that is not JSON) used to escape
    the load as a ValueError: a 500 on every request, each trying the whole load again."""
    _, redis_client, keys, version = shop
    assert client.get(QUERY).get_json()["version"] == version
    broken = write_shop(redis_client, keys)
    if corrupt == "packed-list":
        redis_client.set(keys.popular(broken, "GB"), b"1234567")  # 7 bytes: not 6 per entry
    else:
        redis_client.hset(keys.meta(broken), "markets", "{not json")
    for _ in range(3):
        _degraded_from(client, version)
    _no_snapshot(shop)
