"""Redis stopped and restarted while requests keep coming: no 5xx, degraded answers, recovery."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis
from serving_fixtures import API_KEY, RedisProcess, ids_of, make_config, write_shop

from recsys.snapshots.keys import Keys
from serving import create_app

QUERIES = (
    "/v1/recommendations?user_id=alice&country=GB&n=4",
    "/v1/recommendations?session_items=b3&country=DE&n=3",
    "/v1/items/a0/similar?country=GB&n=3",
    "/v1/popular?country=NO",
)


@pytest.fixture
def server():
    proc = RedisProcess()
    proc.start()
    yield proc
    proc.close()


def _wait(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _full_run(answers: list, length: int) -> bool:
    """True if ``answers`` hold ``length`` answers in a row that are not degraded."""
    run = 0
    for _, status, body in list(answers):
        run = run + 1 if status == 200 and not body.get("degraded") else 0
        if run >= length:
            return True
    return False


@pytest.mark.parametrize(
    "similar_cached", [True, False], ids=["similar-cached", "similar-in-redis"]
)
def test_redis_stopped_and_restarted_during_requests(server, similar_cached):
    keys = Keys("outage")
    write_shop(redis.Redis.from_url(server.url), keys)
    # not cached: a session's similar lists take a second round trip, which fails too
    cache = 500_000 if similar_cached else 0
    app = create_app(
        make_config(server.url, keys.prefix, redis_timeout_s=0.2, cache_similar_max_items=cache)
    )
    client = app.test_client()
    assert client.get("/readyz").status_code == 200

    answers: list[tuple[str, int, dict]] = []
    stop = threading.Event()

    def storefront():
        hammer = app.test_client()
        while not stop.is_set():
            for query in QUERIES:
                response = hammer.get(query)
                answers.append((query, response.status_code, response.get_json()))
            time.sleep(0.005)

    thread = threading.Thread(target=storefront)
    thread.start()
    try:
        time.sleep(0.3)
        server.stop()
        assert _wait(lambda: any(a[2].get("degraded") for a in answers[-4:]))
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["redis"] is False
        down = client.get(QUERIES[0])
        body = down.get_json()
        assert down.status_code == 200 and body["degraded"] is True
        # no live state: alice gets GB's popular list, still only items sold in GB
        assert ids_of(body) == ["a1", "a0", "a2", "b0"] and body["source"] == "popular_country"
        session = client.get(QUERIES[1])
        assert session.status_code == 200 and session.get_json()["degraded"]
        if similar_cached:
            assert ids_of(session.get_json()) == ["b2", "b4", "b1"]
        else:  # no similar lists without Redis: DE's popular list, as for a new visitor
            popular = client.get("/v1/popular?country=DE&n=3").get_json()
            assert session.get_json()["source"] == "popular_country"
            assert ids_of(session.get_json()) == ids_of(popular)
        event = {"type": "view", "user_id": "alice", "item_id": "a1"}
        refused = client.post("/v1/events", json=event, headers={"X-API-Key": API_KEY})
        assert refused.status_code == 503 and refused.get_json()["error"]["code"] == "unavailable"
        time.sleep(0.5)

        server.start()  # the same data comes back from its RDB file
        assert redis.Redis.from_url(server.url).get(keys.current), "RDB did not keep the data"
        restarted = len(answers)
        assert _wait(lambda: client.get("/readyz").status_code == 200)
        # Recovery: a run of 8 full answers in a row after the restart (a stray
        # timeout under CI load may still degrade one answer here and there).
        assert _wait(lambda: _full_run(answers[restarted:], 8), seconds=20), (
            thread.is_alive(),
            [(q, status, body.get("degraded")) for q, status, body in answers[-12:]],
        )
    finally:
        stop.set()
        thread.join()

    statuses = {status for _, status, _ in answers}
    assert statuses == {200}, statuses  # never a 5xx
    degraded = [body for _, _, body in answers if body["degraded"]]
    assert degraded and all(body["items"] for body in degraded)
    after = client.get(QUERIES[0]).get_json()
    assert after["degraded"] is False and after["source"] == "personalized"
    assert ids_of(after) == ["a0", "a1", "a2", "a3"]


def test_a_process_that_never_reached_redis_answers_503_json(server):
    server.stop()
    app = create_app(make_config(server.url, "never"))
    client = app.test_client()
    response = client.get("/v1/recommendations?country=GB")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_a_frozen_redis_times_out_into_degraded_answers_then_recovers(server):
    """SIGSTOP: the socket stays open but nothing answers (a hung server, a long
    fork); each request must give up after the read timeout, not wait for ever."""
    keys = Keys("frozen")
    write_shop(redis.Redis.from_url(server.url), keys)
    app = create_app(make_config(server.url, keys.prefix, redis_timeout_s=0.2))
    client = app.test_client()
    assert client.get(QUERIES[0]).get_json()["source"] == "personalized"
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answers = [client.get(query) for query in QUERIES]
        # a few timeouts of 0.2 s at most (then the breaker answers at once);
        # the bound only tells "gave up" from "hung"
        assert time.monotonic() - started < 5
        assert [a.status_code for a in answers] == [200] * len(QUERIES)
        assert all(a.get_json()["degraded"] is True for a in answers)
        assert ids_of(answers[0].get_json()) == ["a1", "a0", "a2", "b0"]  # GB's popular list
        assert client.get("/readyz").status_code == 503
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert _wait(lambda: not client.get(QUERIES[0]).get_json()["degraded"])
    body = client.get(QUERIES[0]).get_json()
    assert body["source"] == "personalized" and ids_of(body) == ["a0", "a1", "a2", "a3"]
