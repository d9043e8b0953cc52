"""Benchmark the snapshot writer against redis-benchmark on the same server.

Writes N customers' packed candidate lists (100 candidates = 600 bytes each)
through ``SnapshotWriter`` exactly as ``recsys publish`` does (key names,
packing, pipelines without transactions, lock renewal), and measures in the
same run ``redis-benchmark``'s pipelined SET rate with the same value size.
Quotes medians of the repeats, the ratio of the two, and the Redis memory
per customer (``MEMORY USAGE``).

    python benchmarks/bench_redis.py --url redis://127.0.0.1:6379/0 --users 200000
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import time
import uuid
from urllib.parse import urlparse

import numpy as np
import redis

from recsys.snapshots.keys import Keys
from recsys.snapshots.writer import SnapshotWriter, delete_version


def redis_benchmark_set_rate(url: str, n: int, value_bytes: int, pipeline: int) -> float:
    """Requests per second of ``redis-benchmark -t set`` (pipelined, random keys)."""
    parsed = urlparse(url)
    cmd = [
        "redis-benchmark",
        "-t",
        "set",
        "-n",
        str(n),
        "-P",
        str(pipeline),
        "-d",
        str(value_bytes),
        "-r",
        str(n),
        "-q",
        "-c",
        "1",
    ]
    if parsed.scheme == "unix":
        cmd += ["-s", parsed.path]
    else:
        cmd += ["-h", parsed.hostname or "127.0.0.1", "-p", str(parsed.port or 6379)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    _delete_benchmark_keys(redis.Redis.from_url(url))
    match = re.search(r"SET: ([0-9.]+) requests per second", out.replace("\r", "\n"))
    if not match:
        raise RuntimeError(f"could not read redis-benchmark output: {out!r}")
    return float(match.group(1))


def _delete_benchmark_keys(client: redis.Redis) -> None:
    """Remove what ``redis-benchmark -r`` wrote (``key:`` + 12 digits)."""
    doomed = list(client.scan_iter(match="key:" + "[0-9]" * 12, count=10_000))
    for start in range(0, len(doomed), 10_000):
        client.unlink(*doomed[start : start + 10_000])


def writer_rate(client: redis.Redis, keys: Keys, users: int, n: int, batch: int) -> tuple:
    """Keys per second of the snapshot writer, and the memory of a sample of its keys."""
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 100_000, size=(users, n))
    scores = np.sort(rng.random((users, n), dtype=np.float32), axis=1)[:, ::-1]
    user_ids = np.array([f"u{i:07d}" for i in range(users)], dtype=object)
    with SnapshotWriter(client, keys, batch=batch) as writer:
        version = writer.version
        started = time.perf_counter()
        for start in range(0, users, 10_000):
            stop = start + 10_000
            writer.set_lists(
                keys.users(version, user_ids[start:stop]), ids[start:stop], scores[start:stop]
            )
        writer.flush()
        seconds = time.perf_counter() - started
        pipe = client.pipeline(transaction=False)
        for u in user_ids[:: max(1, users // 500)]:
            pipe.memory_usage(keys.user(version, u), samples=0)
        memory = float(np.mean([m for m in pipe.execute() if m]))
    delete_version(client, keys, version)
    return users / seconds, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0", help="Redis server URL")
    parser.add_argument("--users", type=int, default=200_000, help="customers written per run")
    parser.add_argument("--n", type=int, default=100, help="candidates per customer")
    parser.add_argument("--batch", type=int, default=2_000, help="commands per pipeline")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    client = redis.Redis.from_url(args.url)
    keys = Keys(f"bench{uuid.uuid4().hex[:8]}")
    value_bytes = 6 * args.n
    ours, theirs, memory = [], [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        rate, mem = writer_rate(client, keys, args.users, args.n, args.batch)
        ours.append(rate)
        memory.append(mem)
        theirs.append(redis_benchmark_set_rate(args.url, args.users, value_bytes, args.batch))
    client.delete(keys.versions, keys.current, keys.previous)
    result = {
        "users": args.users,
        "candidates": args.n,
        "value_bytes": value_bytes,
        "pipeline": args.batch,
        "repeats": args.repeats,
        "writer_keys_per_second_median": round(statistics.median(ours)),
        "redis_benchmark_set_per_second_median": round(statistics.median(theirs)),
        "ratio_writer_over_redis_benchmark": round(
            statistics.median(ours) / statistics.median(theirs), 3
        ),
        "redis_bytes_per_customer_median": round(statistics.median(memory), 1),
        "server": client.info("server").get("redis_version"),
    }
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
