"""Events posted to the API reach the data directory: ``recsys data import --format stream``."""

# ruff: noqa: F401, F811 (pytest fixtures are imported, then named as arguments)

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from serving_fixtures import API_KEY, make_config, shop

from recsys.cli import cli
from recsys.data.formats.stream import CURSOR_FILE
from recsys.data.importing import import_source
from recsys.data.store import DataError, DataStore
from serving import create_app

AUTH = {"X-API-Key": API_KEY}


@pytest.fixture
def env(shop, tmp_path, monkeypatch):
    """The API and a data directory on the same Redis and key prefix."""
    url, redis_client, keys, _ = shop
    monkeypatch.setenv("REDIS_URL", url)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", keys.prefix)
    client = create_app(make_config(url, keys.prefix)).test_client()
    return client, redis_client, keys, DataStore(tmp_path / "data")


def post(client, events):
    response = client.post("/v1/events", json={"events": events}, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)


def test_posted_events_are_imported_then_trimmed_from_the_stream(env):
    client, redis_client, keys, store = env
    post(
        client,
        [
            {"type": "view", "user_id": "u1", "session_id": "s1", "item_id": "a1"},
            {"type": "cart", "user_id": "u1", "item_id": "a1", "country": "GB"},
            {
                "type": "purchase",
                "user_id": "u1",
                "item_id": "a1",
                "quantity": 2,
                "price": 9.5,
                "currency": "GBP",
                "country": "GB",
                "timestamp": "2024-03-01T10:00:00+01:00",
            },
        ],
    )
    summary = import_source(store, "stream", "redis", progress=False).as_dict()
    assert summary["rows_read"] == 3 and summary["accepted"] == 3
    events = store.read("events").sort_values("timestamp")
    assert events["type"].tolist() == ["purchase", "view", "add_to_cart"]
    bought = events.iloc[0]
    assert bought["timestamp"] == pd.Timestamp("2024-03-01T09:00:00Z")
    assert (bought["quantity"], bought["price"], bought["currency"]) == (2, 9.5, "GBP")
    assert events["session_id"].tolist()[1] == "s1"
    assert redis_client.xlen(keys.event_stream) == 0  # trimmed once committed
    assert json.loads((store.root / CURSOR_FILE).read_text())

    again = import_source(store, "stream", "redis", progress=False).as_dict()
    assert again["rows_read"] == 0 and len(store.read("events")) == 3
    post(client, [{"type": "view", "session_id": "s2", "item_id": "b1"}])
    more = import_source(store, "stream", "redis", progress=False).as_dict()
    assert more["accepted"] == 1 and len(store.read("events")) == 4


def test_stream_entries_are_validated_like_the_events_format(env):
    _, redis_client, keys, store = env
    good = {"timestamp": "2024-03-01T10:00:00Z", "item_id": "a1", "type": "view", "user_id": "u"}
    for entry in (
        good,
        good,  # the same event twice
        {**good, "type": "click"},
        {**good, "item_id": "a:1"},
        {**good, "item_id": ""},
        {**good, "timestamp": "yesterday"},
        {**good, "country": "Atlantis"},
    ):
        redis_client.xadd(keys.event_stream, {k: v for k, v in entry.items() if v != ""})
    summary = import_source(store, "stream", "redis", progress=False).as_dict()
    assert summary["accepted"] == 1
    assert summary["rejected"] == {
        "bad_country": 1,
        "bad_id": 1,
        "bad_timestamp": 1,
        "duplicate_row": 1,
        "missing_item_id": 1,
        "unknown_type": 1,
    }
    rejects = pd.read_parquet(store.root / summary["rejects_file"])
    assert all('"stream_id"' in raw for raw in rejects["raw"])
    assert redis_client.xlen(keys.event_stream) == 0


def test_a_failed_import_leaves_the_stream_and_the_data_untouched(env):
    _, redis_client, keys, store = env
    for _ in range(4):  # a column of the wrong type fails the whole import
        redis_client.xadd(
            keys.event_stream,
            {"timestamp": "2024-03-01T10:00:00Z", "item_id": "a1", "type": "view", "quantity": "x"},
        )
    with pytest.raises(DataError, match="quantity"):
        import_source(store, "stream", "redis", progress=False)
    assert redis_client.xlen(keys.event_stream) == 4
    assert not store.has("events") and not (store.root / CURSOR_FILE).exists()


def test_command_line_drains_the_stream(env):
    client, redis_client, keys, store = env
    post(client, [{"type": "view", "user_id": "u9", "item_id": "b2"}])
    result = CliRunner().invoke(
        cli, ["--data", str(store.root), "data", "import", "--format", "stream", "redis", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accepted"] == 1
    bad = CliRunner().invoke(
        cli, ["--data", str(store.root), "data", "import", "--format", "stream", "nowhere"]
    )
    assert bad.exit_code == 2 and "redis" in bad.output


def _counts_entries(redis_client) -> bool:
    """Redis 7 keeps ``entries-added`` per stream (the embedded Redis 6 does not)."""
    return int(redis_client.info("server")["redis_version"].split(".")[0]) >= 7


def _views(redis_client, keys, n: int, first: int = 0, cap: int | None = None) -> None:
    for i in range(first, first + n):
        entry = {"timestamp": f"2024-03-01T10:00:{i:02d}Z", "item_id": f"i{i}", "type": "view"}
        redis_client.xadd(keys.event_stream, entry, maxlen=cap, approximate=False)


def test_entries_the_capped_stream_dropped_before_the_import_are_counted(env):
    _, redis_client, keys, store = env
    counts = _counts_entries(redis_client)
    _views(redis_client, keys, 5, cap=3)  # the cap drops the two oldest
    first = import_source(store, "stream", "redis", progress=False).as_dict()
    assert first["rows_read"] == 3 and len(store.read("events")) == 3
    assert first["stream"]["entries_read"] == 3
    assert first["stream"]["entries_lost"] == (2 if counts else None)

    _views(redis_client, keys, 4, first=5, cap=3)  # one more dropped since the import
    second = import_source(store, "stream", "redis", progress=False).as_dict()
    assert second["rows_read"] == 3 and len(store.read("events")) == 6
    assert second["stream"]["entries_lost"] == (1 if counts else None)
    assert second["stream"]["from_id"] == first["stream"]["to_id"]

    _views(redis_client, keys, 2, first=9)  # nothing dropped
    third = import_source(store, "stream", "redis", progress=False).as_dict()
    assert third["rows_read"] == 2
    assert third["stream"]["entries_lost"] == (0 if counts else None)
    assert "stream" not in import_source(store, "stream", "redis", progress=False).as_dict()


def test_entries_dropped_while_nothing_was_left_to_read_are_counted_once(env):
    _, redis_client, keys, store = env
    _views(redis_client, keys, 2)
    import_source(store, "stream", "redis", progress=False)
    _views(redis_client, keys, 3, first=2)
    redis_client.xtrim(keys.event_stream, maxlen=0, approximate=False)  # all of them dropped
    summary = import_source(store, "stream", "redis", progress=False).as_dict()
    assert summary["rows_read"] == 0
    assert summary["stream"]["entries_lost"] == (3 if _counts_entries(redis_client) else None)
    again = import_source(store, "stream", "redis", progress=False).as_dict()
    assert "stream" not in again  # the cursor moved past them: not reported twice


def test_a_cursor_of_the_earlier_format_still_resumes_where_it_was(env):
    _, redis_client, keys, store = env
    _views(redis_client, keys, 4)
    entries = redis_client.xrange(keys.event_stream)
    name = f"{env_target(store)}#{keys.event_stream}"
    store.root.mkdir(parents=True, exist_ok=True)
    (store.root / CURSOR_FILE).write_text(json.dumps({name: entries[1][0].decode()}))
    summary = import_source(store, "stream", "redis", progress=False).as_dict()
    assert summary["rows_read"] == 2
    assert sorted(store.read("events")["item_id"]) == ["i2", "i3"]
    assert summary["stream"]["entries_lost"] is None  # no count was kept with that cursor
    saved = json.loads((store.root / CURSOR_FILE).read_text())[name]
    assert saved["id"] == entries[-1][0].decode()


def test_command_line_warns_of_dropped_entries(env):
    _, redis_client, keys, store = env
    if not _counts_entries(redis_client):
        pytest.skip("Redis 6 keeps no entries-added count: the loss cannot be counted")
    _views(redis_client, keys, 4, cap=1)
    result = CliRunner().invoke(
        cli, ["--data", str(store.root), "data", "import", "--format", "stream", "redis", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stream"]["entries_lost"] == 3
    assert "3 stream entries were dropped" in result.stderr


def env_target(store) -> str:
    from recsys.snapshots.connection import redis_target

    return redis_target(store.root)


def test_events_of_a_new_customer_do_not_fail_the_checks_of_the_next_run(env, tmp_path):
    """A customer who signed up on the storefront, posting a purchase in a new market:
    `recsys run` refused every later run ("the stored tables break integrity rules")."""
    from recsys.data.checks import check_store

    client, _, _, store = env
    retail = tmp_path / "retail.csv"
    retail.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
    )
    import_source(store, "online-retail", retail, progress=False)
    post(
        client,
        [
            {"type": "purchase", "user_id": "new-1", "item_id": "85123A", "country": "DE"},
            {"type": "view", "user_id": "17850", "item_id": "not-in-catalog"},
        ],
    )
    import_source(store, "stream", "redis", progress=False)
    checked = check_store(store)
    assert checked["problems"] == {} and checked["ok"]
    assert checked["unmatched"] == {
        "event_unknown_item": 1,
        "event_unknown_customer": 1,
        "purchase_outside_item_markets": 1,
    }


def test_of_two_drains_at_once_the_one_that_read_less_does_not_move_the_cursor_back(env):
    from recsys.data.formats.stream import import_stream

    client, redis_client, keys, store = env
    store.root.mkdir(parents=True)  # as import_source does
    post(client, [{"type": "view", "session_id": "s1", "item_id": "a1"}])
    first = import_stream("redis", store, progress=False)
    list(first)  # reads one entry, then is slow to commit
    post(client, [{"type": "view", "session_id": "s2", "item_id": "a2"}])
    second = import_stream("redis", store, progress=False)
    list(second)  # reads both
    second.after_commit()
    first.after_commit()
    assert redis_client.xlen(keys.event_stream) == 0
    after = import_source(store, "stream", "redis", progress=False).as_dict()
    assert "stream" not in after  # nothing new: not both entries again, or counted as lost


def test_redis_going_away_during_a_drain_is_a_one_line_error_not_a_traceback(tmp_path, monkeypatch):
    import redis
    from serving_fixtures import RedisProcess

    from recsys.data.formats import stream
    from recsys.snapshots.keys import Keys

    monkeypatch.setattr(stream, "READ_COUNT", 2)
    monkeypatch.setattr(stream, "BATCH_ROWS", 2)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", "test-drain")
    store = DataStore(tmp_path / "data")
    store.root.mkdir()
    server = RedisProcess()
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        for i in range(5):
            entry = {"timestamp": "2024-03-01T10:00:00Z", "item_id": f"i{i}", "type": "view"}
            client.xadd(Keys.from_env().event_stream, {**entry, "session_id": "s1"})
        reading = stream.import_stream(server.url, store, progress=False)
        assert next(reading).rows_read == 2
        server.stop()  # while it reads
        with pytest.raises(DataError, match="nothing was imported"):
            next(reading)

        server.start()
        drained = stream.import_stream(server.url, store, progress=False)
        assert sum(batch.rows_read for batch in drained) == 5
        server.stop()  # after the commit, before the trim
        drained.after_commit()
        assert drained.summary_extra["stream"]["trimmed"] is False
        assert json.loads((store.root / CURSOR_FILE).read_text())  # the cursor moved on
    finally:
        server.close()


def test_drained_live_events_are_other_data_for_a_real_dataset_and_for_a_new_shop(env):
    """`run --source online-retail` on a directory of drained live events named them "a
    generated shop"; a synthetic `run` would have replaced them."""
    from recsys.cli.run import data_a_shop_would_replace, other_data

    client, _, _, store = env
    post(client, [{"type": "purchase", "user_id": "u1", "item_id": "a1", "country": "GB"}])
    assert import_source(store, "stream", "redis", progress=False).accepted == 1
    assert other_data(store, "online-retail") == "live events drained from the event stream"
    assert data_a_shop_would_replace(store) == "imports of format stream"


def test_draining_the_embedded_redis_of_a_mistyped_data_dir_is_refused(tmp_path, monkeypatch):
    """A mistyped --data read 0 rows, exited 0 and left an embedded Redis there."""
    from click.testing import CliRunner

    from recsys.cli import cli

    monkeypatch.delenv("REDIS_URL", raising=False)
    wrong = tmp_path / "typo"
    args = ["--data", str(wrong), "data", "import", "--format", "stream", "redis"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "holds no embedded Redis" in result.output and "check --data" in result.output
    assert not (wrong / "redis").exists()
