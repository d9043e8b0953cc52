"""Jobs read every table from one manifest, whatever imports commit meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads
import pytest
from click.testing import CliRunner

from recsys.cli import cli
from recsys.data.store import DataStore
from recsys.data.synthetic import generate_shop
from training.promote import promote
from training.publish import publish
from training.tracking import open_tracking
from training.train import train
from training.tune import tune

TABLES = ("events", "items", "item_markets", "customers")
#: The version a job starts on has this many items; the imports that commit meanwhile more.
ITEMS, MORE_ITEMS = 60, 90


def _generate(root: Path, seed: int, items: int = ITEMS) -> dict:
    """A small shop replacing every table of ``root`` (new part files for each)."""
    store = DataStore(root)
    return generate_shop(store, users=300, items=items, days=60, seed=seed, progress=False)


def _generate_in_a_process(root: Path, seed: int) -> None:
    args = ["--users", "300", "--items", str(MORE_ITEMS), "--days", "60", "--seed", str(seed)]
    command = [sys.executable, "-m", "recsys", "--data", str(root), "data", "generate", *args]
    # a writer that waited for the pinned reader would time out here
    subprocess.run([*command, "-q", "--json"], check=True, capture_output=True, timeout=120)


def _part_files(root: Path) -> set[tuple[str, str]]:
    return {(p.parent.name, p.name) for p in (root / "tables").glob("*/part-*.parquet")}


def _named(manifest: dict) -> set[tuple[str, str]]:
    return {(table, p["file"]) for table, parts in manifest["tables"].items() for p in parts}


def _tables(view) -> dict[str, pd.DataFrame]:
    return {table: view.read(table) for table in TABLES}


# ---- the store ---------------------------------------------------------------------------
def test_a_pinned_view_keeps_its_version_while_other_processes_commit_twice(tmp_path):
    root = tmp_path / "shop"
    _generate(root, seed=1)
    with DataStore(root).pinned() as view:
        before = _tables(view)
        old_parts = _named(view.manifest())
        _generate_in_a_process(root, seed=2)
        _generate_in_a_process(root, seed=3)  # would delete the parts the first one replaced
        assert DataStore(root).counts()["items"] == MORE_ITEMS  # both committed
        assert view.counts()["items"] == ITEMS and view.has("events")
        for table, frame in _tables(view).items():
            pd.testing.assert_frame_equal(frame, before[table])
        assert old_parts <= _part_files(root)
    # the last pin released deletes what no manifest names any more, with no write after
    assert _part_files(root) == _named(DataStore(root).manifest())
    assert not old_parts & _part_files(root)
    _generate(root, seed=4)
    assert _part_files(root) == _named(DataStore(root).manifest())


READER = """
import sys, time
from recsys.data.store import DataStore
with DataStore(sys.argv[1]).pinned() as view:
    view.read("items")
    print("pinned", flush=True)
    time.sleep(600)
"""


def test_a_reader_killed_while_pinned_leaves_no_lock_behind(tmp_path):
    root = tmp_path / "shop"
    _generate(root, seed=1)
    old_parts = _named(DataStore(root).manifest())
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline() == "pinned\n"
        _generate(root, seed=2)  # commits at once; the reader's parts stay
        assert old_parts <= _part_files(root)
    finally:
        reader.kill()
        reader.wait()
    _generate(root, seed=3)  # the kernel dropped the dead reader's lock
    assert _part_files(root) == _named(DataStore(root).manifest())


def test_a_view_refuses_reads_after_its_pin_and_an_empty_directory_stays_empty(tmp_path):
    root = tmp_path / "shop"
    _generate(root, seed=1)
    with DataStore(root).pinned() as view:
        assert view.counts()["items"] == ITEMS
    with pytest.raises(RuntimeError, match="after its pin was released"):
        view.read("items")
    with DataStore(tmp_path / "nothing").pinned() as empty:
        assert not empty.has("events") and empty.counts()["events"] == 0
    assert not (tmp_path / "nothing").exists()


# ---- the jobs ----------------------------------------------------------------------------
class CommitsMeanwhile:
    """Records the part files of every read of the job's thread and, after its first
    read (``on="read"``) or first look at the manifest (``on="manifest"``), has
    another thread commit two generated shops that replace every table. It waits
    for them: a writer held up by the job's reads fails the test."""

    def __init__(self, root: Path, monkeypatch, on: str = "read", armed: bool = True):
        self.root, self.on, self.armed = root, on, armed
        self.job = threading.get_ident()
        self.reads: list[set[tuple[str, str]]] = []
        self.before: dict | None = None
        self.commits = 0
        dataset, manifest = pads.dataset, DataStore.manifest

        def reading(source, *args, **kwargs):
            out = dataset(source, *args, **kwargs)
            if self._watched() and isinstance(source, list) and source:
                self.reads.append({(Path(f).parent.name, Path(f).name) for f in source})
                if self.on == "read":
                    self._commit_twice()
            return out

        def looking(store):
            out = manifest(store)
            if self._watched() and self.on == "manifest":
                self._commit_twice()
            return out

        monkeypatch.setattr(pads, "dataset", reading)
        monkeypatch.setattr(DataStore, "manifest", looking)
        self._manifest = manifest

    def _watched(self) -> bool:
        return self.armed and threading.get_ident() == self.job

    def _commit_twice(self) -> None:
        if self.before is not None:
            return
        self.before = self._manifest(DataStore(self.root))

        def write() -> None:
            for seed in (11, 12):
                _generate(self.root, seed, items=MORE_ITEMS)
                self.commits += 1

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer.join(timeout=120)
        assert not writer.is_alive(), "an import waited for the job's reads"

    def assert_one_version(self) -> None:
        """Both imports committed, and every read was a whole table of the version
        the job started on."""
        assert self.commits == 2 and self.reads
        assert self._manifest(DataStore(self.root))["committed_at"] != self.before["committed_at"]
        before = _named(self.before)
        for files in self.reads:
            table = next(iter(files))[0]
            assert files == {f for f in before if f[0] == table}, f"{table} of another version"


@pytest.fixture
def shop(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "shop"
    _generate(root, seed=1)
    return root


def test_a_training_reads_every_table_of_one_version(shop, monkeypatch):
    from recsys.protocols import load_protocol

    expected = load_protocol(DataStore(shop), "temporal").fingerprint
    meanwhile = CommitsMeanwhile(shop, monkeypatch)
    # lightfm reads items, markets and customers for its features after the events
    out = train(shop, "lightfm", {"epochs": 2, "no_components": 8}, progress=False)
    meanwhile.assert_one_version()
    assert {next(iter(files))[0] for files in meanwhile.reads} == set(TABLES)
    assert out["data_fingerprint"] == expected


def test_a_tune_reads_every_table_of_one_version(shop, monkeypatch):
    meanwhile = CommitsMeanwhile(shop, monkeypatch)
    out = tune(shop, "lightfm", trials=2, progress=False)
    meanwhile.assert_one_version()
    assert {next(iter(files))[0] for files in meanwhile.reads} == set(TABLES)
    assert out["trials"] == 2


@pytest.mark.parametrize("refit", [False, True])
def test_a_publish_reads_every_table_of_one_version(shop, redis_env, monkeypatch, refit):
    tracking = open_tracking(shop)
    promote(
        tracking, train(shop, "popular", {}, progress=False, tracking=tracking)["model_version"]
    )
    meanwhile = CommitsMeanwhile(shop, monkeypatch)
    out = publish(shop, n=10, k_similar=5, progress=False, refit=refit)
    meanwhile.assert_one_version()
    assert {next(iter(files))[0] for files in meanwhile.reads} == {
        "events",
        "items",
        "item_markets",
    }
    assert out["items"] == ITEMS  # none of the catalog that arrived after its events


def test_a_data_summary_reads_one_version(shop, monkeypatch):
    counts = DataStore(shop).counts()
    meanwhile = CommitsMeanwhile(shop, monkeypatch, on="manifest")
    done = CliRunner().invoke(cli, ["--data", str(shop), "data", "summary", "--json"])
    assert done.exit_code == 0, done.output
    meanwhile.assert_one_version()
    info = json.loads(done.stdout)
    assert info["rows"] == counts
    assert sum(info["events"]["by_type"].values()) == counts["events"]


def test_recsys_run_validates_trains_and_publishes_one_version(tmp_path, redis_env, monkeypatch):
    from recsys.data import checks

    root = tmp_path / "run"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    meanwhile = CommitsMeanwhile(root, monkeypatch, armed=False)
    check_store = checks.check_store

    def validating(store):  # the run's own data is in: the next read commits two imports
        meanwhile.armed = True
        return check_store(store)

    monkeypatch.setattr(checks, "check_store", validating)
    args = ["--users", "300", "--items", str(ITEMS), "--days", "60", "--models", "popular"]
    done = CliRunner().invoke(cli, ["--data", str(root), "run", *args, "--json", "-q"])
    assert done.exit_code == 0, done.output
    meanwhile.assert_one_version()
    steps = json.loads(done.stdout)["steps"]
    assert steps["validation"]["events_checked"] == steps["data"]["events"]
    assert steps["publish"]["items"] == ITEMS


def test_a_directory_where_the_readers_lock_cannot_be_created_is_still_read(tmp_path, monkeypatch):
    """A data directory on a read-only mount (or another user's) was readable before
    pinned views; its lock file cannot be created there, and the view goes without it.
    (The tests run as root, whom permissions do not stop: the refusal is simulated.)"""
    import errno
    import os

    import recsys.data.store as store_module

    data = DataStore(tmp_path / "data")
    generate_shop(data, users=60, items=20, days=20, seed=1, progress=False)
    (data.tables_dir / store_module.READERS_LOCK).unlink(missing_ok=True)
    real_open = os.open

    def read_only_open(path, flags, *args):
        if str(path).endswith(store_module.READERS_LOCK) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(store_module.os, "open", read_only_open)
    with data.pinned() as view:
        assert len(view.read("events")) == len(data.read("events")) > 0

    def failing_open(path, flags, *args):  # any other failure is not waved through
        raise OSError(errno.EIO, "I/O error", str(path))

    monkeypatch.setattr(store_module.os, "open", failing_open)
    with pytest.raises(OSError, match="I/O error"), data.pinned():
        pass


def test_writes_work_where_flock_is_emulated_by_fcntl_locks(tmp_path, monkeypatch):
    """On NFS the kernel emulates flock with fcntl locks: an exclusive lock needs a
    file opened for writing (EBADF otherwise), so every import failed there once the
    writer locked the readers' lock file opened read-only. (Simulated: no NFS here.)"""
    import errno
    import fcntl
    import os

    real_flock = fcntl.flock

    def nfs_flock(fd, operation):
        fileno = fd if isinstance(fd, int) else fd.fileno()
        writable = fcntl.fcntl(fileno, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
        if operation & fcntl.LOCK_EX and not writable:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", nfs_flock)
    root = tmp_path / "shop"
    _generate(root, seed=1)
    with DataStore(root).pinned() as view:
        old_parts = _named(view.manifest())
        _generate(root, seed=2)
        assert old_parts <= _part_files(root) and view.counts()["items"] == ITEMS
    _generate(root, seed=3)
    assert _part_files(root) == _named(DataStore(root).manifest())


def test_a_directory_whose_file_system_refuses_locks_is_still_read(tmp_path, monkeypatch):
    """An NFS mount whose lock service cannot be reached refuses every lock (ENOLCK):
    jobs read its tables before pinned views, and a pinned view goes without the lock
    as on a read-only mount. (Simulated: no such mount here.)"""
    import errno
    import fcntl

    data = DataStore(tmp_path / "data")
    generate_shop(data, users=60, items=20, days=20, seed=1, progress=False)

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with data.pinned() as view:
        assert len(view.read("events")) == len(data.read("events")) > 0


def test_replaced_parts_stay_until_the_last_pinned_reader_leaves(tmp_path):
    """A writer keeps the parts it replaced while a job is pinned; they used to stay on
    disk until some later write. Now the last reader to leave deletes them, not one
    that leaves while another still reads."""
    root = tmp_path / "shop"
    _generate(root, seed=1)
    store = DataStore(root)
    with store.pinned() as first:
        old_parts = _named(first.manifest())
        _generate_in_a_process(root, seed=2)
        with store.pinned() as second:
            assert second.counts()["items"] == MORE_ITEMS
        assert old_parts <= _part_files(root)  # the first still reads them
        assert first.counts()["items"] == ITEMS and len(first.read("items")) == ITEMS
    assert not old_parts & _part_files(root)
    assert _part_files(root) == _named(store.manifest())
