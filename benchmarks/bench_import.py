"""Benchmark the importer: rows per second and peak memory, beside a bare read.

Each case runs in a fresh child process, so its peak RSS is its own. The
reference is the bare read of the same file in the same run (pandas'
``read_csv`` of every column as text, or pyarrow reading the Parquet file):
the importer's time over it is the price of validation, event ids, merging
and writing.

    python benchmarks/bench_import.py \
        --online-retail ../shared/data/online_retail/online_retail.csv.gz
    python benchmarks/bench_import.py --shop /tmp/shop1m  # made by `recsys data generate`
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recsys.memory import peak_rss_mb


def _child_import(fmt: str, src: str, out: str) -> dict:
    from recsys.data.importing import import_source
    from recsys.data.store import DataStore

    started = time.perf_counter()
    summary = import_source(DataStore(out), fmt, src, progress=False).as_dict()
    seconds = time.perf_counter() - started
    return {
        "rows_read": summary["rows_read"],
        "accepted": summary["accepted"],
        "seconds": seconds,
        "rows_per_second": summary["rows_read"] / seconds,
    }


def _child_read(fmt: str, src: str, out: str) -> dict:
    import pandas as pd
    import pyarrow.parquet as pq

    started = time.perf_counter()
    if src.endswith(".parquet"):
        rows = pq.read_table(src).num_rows
    else:
        rows = len(pd.read_csv(src, dtype=str, keep_default_na=False, na_filter=False))
    seconds = time.perf_counter() - started
    return {"rows_read": rows, "seconds": seconds, "rows_per_second": rows / seconds}


def _child(kind: str, fmt: str, src: str, out: str) -> None:
    result = (_child_import if kind == "import" else _child_read)(fmt, src, out)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def _run(kind: str, fmt: str, src: Path, out: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, fmt, str(src), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _export_events(shop: Path, target: Path) -> int:
    """The shop's events as one Parquet file, in the canonical import format."""
    import pyarrow.parquet as pq

    from recsys.data.store import DataStore

    dataset = DataStore(shop).dataset("events")
    columns = [n for n in dataset.schema.names if n != "event_id"]
    rows = 0
    with pq.ParquetWriter(target, dataset.schema.remove(0)) as writer:
        for batch in dataset.to_batches(columns=columns, batch_size=1_000_000):
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows


def _case(name: str, fmt: str, src: Path, work: Path, repeats: int) -> dict:
    imports = [_run("import", fmt, src, work / f"{name}-{i}") for i in range(repeats)]
    reads = [_run("read", fmt, src, work / "unused") for _ in range(repeats)]
    med = sorted(imports, key=lambda r: r["seconds"])[len(imports) // 2]
    ref = sorted(reads, key=lambda r: r["seconds"])[len(reads) // 2]
    return {
        "case": name,
        "rows_read": med["rows_read"],
        "accepted": med["accepted"],
        "import_seconds_median": round(med["seconds"], 2),
        "import_rows_per_second": round(med["rows_per_second"]),
        "import_peak_rss_mb": round(max(r["peak_rss_mb"] for r in imports)),
        "bare_read_seconds_median": round(ref["seconds"], 2),
        "bare_read_peak_rss_mb": round(max(r["peak_rss_mb"] for r in reads)),
        "import_over_bare_read": round(med["seconds"] / ref["seconds"], 2),
        "repeats": repeats,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--online-retail", type=Path, help="online_retail.csv.gz to import")
    parser.add_argument("--shop", type=Path, help="data directory of a generated shop")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (median quoted)")
    args = parser.parse_args()
    if not (args.online_retail or args.shop):
        parser.error("give --online-retail FILE and/or --shop DIR")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.online_retail:
            results.append(
                _case("online-retail", "online-retail", args.online_retail, work, args.repeats)
            )
        if args.shop:
            events = work / "events.parquet"
            _export_events(args.shop, events)
            results.append(_case(f"shop:{args.shop.name}", "events", events, work, args.repeats))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
