"""Benchmark the synthetic shop generator: time, rows per second and peak memory.

Prints one JSON object: the generator's summary plus ``peak_rss_mb`` (the
process's maximum resident set size), ``rss_mb_samples`` (resident set size
sampled through the run, to show memory does not grow with the number of
customers) and ``disk_mb`` (size of the written tables).

    python benchmarks/bench_generate.py --users 100000 --items 20000 --days 365 --out /tmp/shop
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import psutil

from recsys.data.store import DataStore
from recsys.data.synthetic import ShopConfig, generate_shop
from recsys.memory import peak_rss_mb


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="customers (default 100000)")
    parser.add_argument("--items", type=int, default=20_000, help="catalog size (default 20000)")
    parser.add_argument("--days", type=int, default=365, help="days of events (default 365)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--start", default="2024-01-01", help="first day (default 2024-01-01)")
    parser.add_argument(
        "--chunk-users", type=int, default=ShopConfig().chunk_users, help="customers per chunk"
    )
    parser.add_argument(
        "--out", help="data directory to write (default: a temporary one, deleted afterwards)"
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    return parser.parse_args()


class RssSampler(threading.Thread):
    """Sample this process's resident set size every ``interval`` seconds."""

    def __init__(self, interval: float = 1.0):
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()
        self._process = psutil.Process()
        self._began = time.perf_counter()

    def run(self) -> None:
        while not self._stop_event.is_set():
            rss_mb = self._process.memory_info().rss / 2**20
            self.samples.append((time.perf_counter() - self._began, rss_mb))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def at_fractions(self, fractions=(0.1, 0.25, 0.5, 0.75, 1.0)) -> dict[str, float]:
        """Resident set size (MB) at these fractions of the run."""
        if not self.samples:
            return {}
        last = len(self.samples) - 1
        return {
            f"{int(f * 100)}%": round(self.samples[min(last, int(f * last))][1], 1)
            for f in fractions
        }


def main() -> None:
    args = _parse()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-generate-"))
    sampler = RssSampler()
    sampler.start()
    try:
        summary = generate_shop(
            DataStore(out),
            users=args.users,
            items=args.items,
            days=args.days,
            seed=args.seed,
            start=args.start,
            progress=args.progress,
            config=ShopConfig(chunk_users=args.chunk_users),
        )
    finally:
        sampler.stop()
    disk = sum(p.stat().st_size for p in (out / "tables").rglob("*.parquet"))
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    summary.update(
        events_per_user=round(summary["events"] / args.users, 2),
        peak_rss_mb=round(peak_rss_mb(), 1),
        rss_mb_samples=sampler.at_fractions(),
        disk_mb=round(disk / 2**20, 1),
        chunk_users=args.chunk_users,
        cpu_count=psutil.cpu_count(),
    )
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
