"""Serving benchmark: throughput, latency and Redis round trips of /v1/recommendations.

Runs on loopback: a private ``redis-server`` on a free port, ``recsys publish``
of the data directory's champion into it, then ``recsys serve`` (gunicorn,
the same settings for every endpoint) and

1. max throughput (wrk, closed loop) of ``/v1/recommendations`` for known
   customers (each in their own country) against ``/healthz`` (a trivial
   JSON endpoint of the same app), interleaved in the same run, medians of
   the repeats. wrk makes both endpoints' requests with the same Lua
   ``request()`` rotation (wrk shares the machine's cores with the server, so
   its own cost per request must be the same for both); ``/healthz`` as a
   static wrk request (cheaper for wrk) is reported beside it;
2. Redis round trips per request: MGET calls (exactly one per request
   pipeline: the pointer check) and all commands, from Redis' INFO
   commandstats, divided by the requests wrk completed; and the app's own
   counter of pipelines sent (``recsys_redis_round_trips_total``);
3. the round trip alone: ``benchmarks/round_trip_server.py`` serves, with the
   same settings, an endpoint that parses the same query and sends the same
   Redis pipeline as a recommendation, then answers a static list; its
   throughput beside ``/healthz`` shows what is left for building and
   rendering the list (``--no-round-trip-reference`` skips it);
4. latency at a fixed rate (half the measured max throughput by default),
   open loop (requests are sent on schedule, whatever the answers do, and
   each latency counts from its scheduled time), p50/p90/p99/max.

Prepare a data directory with a trained champion first, e.g.::

    recsys --data /tmp/shop data generate --users 20000 --items 2000 --days 90
    recsys --data /tmp/shop train --model itemknn --promote
    python benchmarks/bench_serving.py --data /tmp/shop --json

wrk comes from Debian (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import redis

from recsys.data.store import DataStore

PREFIX = "bench"
ENDPOINT = "/v1/recommendations"
RT_ENDPOINT = "/bench/round-trip"  # benchmarks/round_trip_server.py


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir: Path, unix: bool) -> tuple[subprocess.Popen, str]:
    """A private redis-server on a free loopback port (and a unix socket); its URL."""
    port = free_port()
    sock = workdir / "redis.sock"
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"unix://{sock}" if unix else f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU time of processes (0 for those gone)."""
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def recsys(*args: str, env: dict) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "recsys", *args], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"recsys {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def known_customers(url: str, data: Path, limit: int) -> list[tuple[str, str]]:
    """(user id, country) of customers with candidates in the published snapshot."""
    client = redis.Redis.from_url(url)
    version = client.get(f"{PREFIX}:current").decode()
    users = []
    for key in client.scan_iter(match=f"{PREFIX}:v:{version}:u:*", count=5_000):
        users.append(key.decode().rsplit(":", 1)[1])
        if len(users) >= limit:
            break
    customers = DataStore(data).read("customers", columns=["user_id", "country"])
    country = dict(zip(customers["user_id"], customers["country"], strict=True))
    return [(u, country.get(u) or "GB") for u in users]


def wrk_script(paths: list[str], workdir: Path) -> Path:
    listing = workdir / "paths.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = workdir / "paths.lua"
    script.write_text(
        "local paths = {}\n"
        f'for line in io.lines("{listing}") do paths[#paths + 1] = line end\n'
        "local i = 0\n"
        "request = function()\n"
        "  i = i + 1\n"
        '  return wrk.format("GET", paths[(i % #paths) + 1])\n'
        "end\n"
    )
    return script


def run_wrk(base: str, path: str, script: Path | None, connections: int, seconds: float) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, base + path], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rate,
        "requests": total,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else None,
    }


def paced_wrk(base: str, paths: list[str], rate: float, seconds: float, workdir: Path) -> dict:
    """Latency from wrk with a fixed pause between a connection's requests (closed loop
    with think time: C cheap on the client, but a stall delays requests instead of
    piling them up, so tails come out optimistic). A 2-s calibration run with a
    pause of ``connections / rate`` measures the answer time, which the measured
    run's pause then leaves out, so that the achieved rate (reported) comes near
    ``rate``."""
    connections = 8
    pause_ms = connections / rate * 1000
    calibration = _paced_run(base, paths, connections, pause_ms, 2, workdir)
    cycle_ms = connections / calibration["achieved_rps"] * 1000  # pause + answer time
    pause_ms = max(0.0, pause_ms - (cycle_ms - pause_ms))
    return _paced_run(base, paths, connections, pause_ms, seconds, workdir)


def _paced_run(base, paths, connections: int, pause_ms: float, seconds: float, workdir) -> dict:
    listing = workdir / "paced.txt"
    listing.write_text("\n".join(paths) + "\n")
    script = workdir / "paced.lua"
    script.write_text(
        "local paths = {}\n"
        f'for line in io.lines("{listing}") do paths[#paths + 1] = line end\n'
        "local i = 0\n"
        f"function delay() return {pause_ms:.3f} end\n"
        "request = function()\n"
        "  i = i + 1\n"
        '  return wrk.format("GET", paths[(i % #paths) + 1])\n'
        "end\n"
    )
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency"]
    out = subprocess.run(
        [*cmd, "-s", str(script), base + "/"], capture_output=True, text=True, check=True
    ).stdout
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    distribution = re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)", out, re.M)
    found = {q: float(v) * units[u] for q, v, u in distribution}
    return {
        "achieved_rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": round(found["50"], 2),
        "p90_ms": round(found["90"], 2),
        "p99_ms": round(found["99"], 2),
    }


def start_server(args: list[str], env: dict, base: str) -> subprocess.Popen:
    """``python *args`` (a gunicorn server), once its ``/readyz`` answers 200."""
    process = subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(300):
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{' '.join(args[:3])} did not become ready")


def scrape(base: str) -> dict[str, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    out = {"round_trips": 0.0, "reco_requests": 0.0}
    for line in text.splitlines():
        if line.startswith("recsys_redis_round_trips_total "):
            out["round_trips"] += float(line.split()[-1])
        elif line.startswith('recsys_http_requests_total{endpoint="/v1/recommendations"'):
            out["reco_requests"] += float(line.split()[-1])
    return out


def histogram(base: str, endpoint: str) -> dict[float, float]:
    """Cumulative counts per bucket bound (s) of the app's request-time histogram."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[float, float] = {}
    prefix = "recsys_http_request_seconds_bucket{"
    for line in text.splitlines():
        if line.startswith(prefix) and f'endpoint="{endpoint}"' in line:
            bound = re.search(r'le="([^"]+)"', line).group(1)
            out[float(bound)] = out.get(float(bound), 0.0) + float(line.split()[-1])
    return out


def in_app_percentiles(before: dict, after: dict) -> dict[str, str]:
    """Upper bucket bounds of the p50 and p99 of the time spent in the app."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    out = {}
    for name, q in (("in_app_p50_ms", 0.5), ("in_app_p99_ms", 0.99)):
        bound = next((b for b, c in zip(bounds, counts, strict=True) if c >= q * total), None)
        out[name] = "n/a" if bound is None else f"<= {bound * 1000:g}"
    return out


def redis_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    total = sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")
    return {"mget": stats.get("cmdstat_mget", {}).get("calls", 0), "all": total}


_CONTENT_LENGTH = re.compile(rb"(?i)content-length:\s*(\d+)")


def open_loop(host: str, port: int, paths: list[str], rate: float, seconds: float) -> np.ndarray:
    """Latencies (s) of requests sent on a fixed schedule, each from its scheduled time.

    One non-blocking connection per request (gunicorn's sync workers close
    every connection anyway), driven by one ``selectors`` loop: about half the
    client CPU per request of an asyncio client, which matters because the
    client shares the machine's two cores with the server it measures.
    """
    total = int(rate * seconds)
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        for path in paths[: max(1, min(total, len(paths)))]
    ]
    latencies = np.full(total, np.nan)
    clock = time.perf_counter
    start = clock() + 0.05
    sent = in_flight = 0
    with selectors.DefaultSelector() as selector:
        while sent < total or in_flight:
            now = clock()
            while sent < total and start + sent / rate <= now:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect_ex((host, port))
                state = [sent, requests[sent % len(requests)], b""]
                selector.register(sock, selectors.EVENT_WRITE, state)
                sent += 1
                in_flight += 1
            wait = start + sent / rate - clock() if sent < total else 1.0
            for key, mask in selector.select(max(wait, 0.0)):
                sock, state = key.fileobj, key.data
                if mask & selectors.EVENT_WRITE:
                    sock.sendall(state[1])
                    selector.modify(sock, selectors.EVENT_READ, state)
                    continue
                chunk = sock.recv(65_536)
                data = state[2] = state[2] + chunk
                head_end = data.find(b"\r\n\r\n")
                done = not chunk
                if head_end >= 0 and not done:
                    length = _CONTENT_LENGTH.search(data, 0, head_end)
                    done = length is not None and len(data) - head_end - 4 >= int(length.group(1))
                if not done:
                    continue
                latencies[state[0]] = clock() - (start + state[0] / rate)
                selector.unregister(sock)
                sock.close()
                in_flight -= 1
                if not data.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(data[:200].decode(errors="replace"))
    return latencies


def percentiles(latencies: np.ndarray) -> dict[str, float]:
    ms = latencies * 1000
    return {
        "requests": int(len(ms)),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Data directory with a champion model.")
    parser.add_argument(
        "--workers", type=int, default=None, help="[recsys serve's default: 2 x CPUs + 1]"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16, help="wrk connections.")
    parser.add_argument("--seconds", type=float, default=5.0, help="Per wrk run.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--rate-fractions",
        default="0.5",
        help="Comma-separated fractions of the max throughput to measure latency at.",
    )
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="Per endpoint.")
    parser.add_argument("--latency-chunks", type=int, default=4)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument(
        "--redis-tcp",
        action="store_true",
        help="Serve over Redis' TCP port (default: unix socket).",
    )
    parser.add_argument(
        "--no-round-trip-reference",
        dest="round_trip_reference",
        action="store_false",
        help="Skip the reference server whose endpoint only does the Redis round trip.",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.workers is None:
        from serving.cli import default_workers

        args.workers = default_workers()
    if not shutil.which("wrk") or not shutil.which("redis-server"):
        sys.exit("needs wrk and redis-server on PATH (apt-get install -y wrk redis-server)")

    data = Path(args.data)
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    redis_proc, url = start_redis(work, unix=not args.redis_tcp)
    server = rt_server = None
    try:
        env = {**os.environ, "REDIS_URL": url, "RECSYS_REDIS_PREFIX": PREFIX}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        published = json.loads(recsys("--data", str(data), "publish", "--quiet", "--json", env=env))
        customers = known_customers(url, data, args.customers)
        paths = [f"{ENDPOINT}?user_id={u}&country={c}&n=10" for u, c in customers]
        script = wrk_script(paths, work)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        serve = ["-m", "recsys", "--data", str(data), "serve", "--port", str(port)]
        serve += ["--workers", str(args.workers), "--threads", str(args.threads)]
        server = start_server(serve, env, base)
        if args.round_trip_reference:
            rt_port = free_port()
            rt_base = f"http://127.0.0.1:{rt_port}"
            reference = [str(Path(__file__).with_name("round_trip_server.py")), "--data", str(data)]
            reference += ["--port", str(rt_port), "--workers", str(args.workers)]
            rt_server = start_server(reference, env, rt_base)
            rt_dir = work / "round-trip"
            rt_dir.mkdir()
            rt_script = wrk_script([p.replace(ENDPOINT, RT_ENDPOINT) for p in paths], rt_dir)
        rclient = redis.Redis.from_url(url)
        workers = psutil.Process(server.pid).children(recursive=True)
        for _ in range(100):  # /readyz answers once the first worker is up: wait for all
            if len(workers) >= args.workers:
                break
            time.sleep(0.1)
            workers = psutil.Process(server.pid).children(recursive=True)
        redis_ps = psutil.Process(redis_proc.pid)

        health_dir = work / "healthz"
        health_dir.mkdir()
        health_script = wrk_script(["/healthz"], health_dir)
        run_wrk(base, "/", script, args.connections, 2)  # warm-up
        run_wrk(base, "/", health_script, args.connections, 2)
        reco_runs, health_runs, static_runs, trips, mgets, commands = [], [], [], [], [], []
        rt_runs = []
        cpu = {"reco_worker_us": [], "health_worker_us": [], "reco_redis_us": []}
        for repeat in range(args.repeats):
            order = ["reco", "health", "static"] + (["rt"] if args.round_trip_reference else [])
            if repeat % 2:
                order.reverse()
            for which in order:
                if which == "rt":
                    rt_runs.append(run_wrk(rt_base, "/", rt_script, args.connections, args.seconds))
                    continue
                if which == "static":
                    static_runs.append(
                        run_wrk(base, "/healthz", None, args.connections, args.seconds)
                    )
                    continue
                if which == "health":
                    before = cpu_seconds(workers)
                    run = run_wrk(base, "/", health_script, args.connections, args.seconds)
                    spent = cpu_seconds(workers) - before
                    cpu["health_worker_us"].append(spent / run["requests"] * 1e6)
                    health_runs.append(run)
                    continue
                app_before, redis_before = scrape(base), redis_calls(rclient)
                before, redis_cpu = cpu_seconds(workers), cpu_seconds([redis_ps])
                run = run_wrk(base, "/", script, args.connections, args.seconds)
                spent, redis_spent = (
                    cpu_seconds(workers) - before,
                    cpu_seconds([redis_ps]) - redis_cpu,
                )
                app_after, redis_after = scrape(base), redis_calls(rclient)
                served = app_after["reco_requests"] - app_before["reco_requests"]
                trips.append((app_after["round_trips"] - app_before["round_trips"]) / served)
                mgets.append((redis_after["mget"] - redis_before["mget"]) / served)
                commands.append((redis_after["all"] - redis_before["all"]) / served)
                cpu["reco_worker_us"].append(spent / served * 1e6)
                cpu["reco_redis_us"].append(redis_spent / served * 1e6)
                reco_runs.append(run)
        reco_rps = statistics.median(r["rps"] for r in reco_runs)
        health_rps = statistics.median(r["rps"] for r in health_runs)
        static_rps = statistics.median(r["rps"] for r in static_runs)
        cpu_us = {k: round(statistics.median(v)) for k, v in cpu.items()}
        latency = []
        targets = (
            ("recommendations", paths, "/v1/recommendations"),
            ("healthz", ["/healthz"], "/healthz"),
        )
        chunk = args.latency_seconds / args.latency_chunks
        for fraction in (float(f) for f in args.rate_fractions.split(",")):
            rate = max(1.0, fraction * reco_rps)
            pooled = {name: [] for name, _, _ in targets}
            chunk_p99 = {name: [] for name, _, _ in targets}
            spent = {name: ({}, {}) for name, _, _ in targets}
            for _ in range(args.latency_chunks):  # endpoints interleaved: same conditions
                for name, target, rule in targets:
                    before = histogram(base, rule)
                    lat = open_loop("127.0.0.1", port, target, rate, chunk)
                    after = histogram(base, rule)
                    start_counts, end_counts = spent[name]
                    for bound, count in before.items():
                        start_counts[bound] = start_counts.get(bound, 0.0) + count
                    for bound, count in after.items():
                        end_counts[bound] = end_counts.get(bound, 0.0) + count
                    pooled[name].append(lat)
                    chunk_p99[name].append(round(float(np.percentile(lat, 99)) * 1000, 1))
            for name, _, _ in targets:
                latency.append(
                    {"endpoint": name, "fraction": fraction, "rate_rps": round(rate, 1)}
                    | percentiles(np.concatenate(pooled[name]))
                    | {"p99_ms_per_chunk": chunk_p99[name]}
                    | in_app_percentiles(*spent[name])
                )
        paced = []
        for fraction in (float(f) for f in args.rate_fractions.split(",")):
            rate = max(1.0, fraction * reco_rps)
            for name, target, _ in targets:
                paced.append(
                    {"endpoint": name, "fraction": fraction, "target_rps": round(rate, 1)}
                    | paced_wrk(base, target, rate, args.latency_seconds, work)
                )
        result = {
            "data": str(data),
            "users_published": published["users"],
            "items": published["items"],
            "customers_in_rotation": len(customers),
            "workers": args.workers,
            "threads": args.threads,
            "wrk_connections": args.connections,
            "seconds_per_run": args.seconds,
            "repeats": args.repeats,
            "recommendations_rps": [r["rps"] for r in reco_runs],
            "healthz_rps": [r["rps"] for r in health_runs],
            "recommendations_rps_median": reco_rps,
            "healthz_rps_median": health_rps,
            "throughput_ratio": round(reco_rps / health_rps, 3),
            # each repeat's two runs back to back: how much the ratio itself moves
            "throughput_ratio_per_repeat": [
                round(r["rps"] / h["rps"], 3) for r, h in zip(reco_runs, health_runs, strict=True)
            ],
            "healthz_static_rps": [r["rps"] for r in static_runs],
            "healthz_static_rps_median": static_rps,
            "throughput_ratio_vs_static": round(reco_rps / static_rps, 3),
            "cpu_ratio": round(cpu_us["health_worker_us"] / cpu_us["reco_worker_us"], 3),
            "non_2xx": sum(r["non_2xx"] for r in reco_runs + health_runs + static_runs),
            "round_trips_per_request_app": round(statistics.median(trips), 4),
            "mget_per_request_redis": round(statistics.median(mgets), 4),
            "redis_commands_per_request": round(statistics.median(commands), 3),
            "cpu_per_request_us": cpu_us,
            "redis": "unix socket" if not args.redis_tcp else "tcp loopback",
            "latency_seconds": args.latency_seconds,
            "latency": latency,
            "latency_wrk_paced": paced,
            "load_average": os.getloadavg(),
        }
        if rt_runs:
            rt_rps = statistics.median(r["rps"] for r in rt_runs)
            result |= {
                "round_trip_only_rps": [r["rps"] for r in rt_runs],
                "round_trip_only_rps_median": rt_rps,
                "round_trip_only_ratio": round(rt_rps / health_rps, 3),
                "non_2xx_round_trip_only": sum(r["non_2xx"] for r in rt_runs),
            }
        if args.json:
            print(json.dumps(result))
        else:
            print(json.dumps(result, indent=2))
    finally:
        for process in (server, rt_server):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
