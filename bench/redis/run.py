#!/usr/bin/env python3
"""One instance with local limits vs two instances sharing Redis.

Against one `keel mock` upstream, at a fixed rate per instance (oha with
latency correction): the added p50/p99 latency over a direct call, Keel's
CPU per 1,000 requests, and Redis's commands (round trips) per request.
Every request passes four buckets: the tenant's rpm and tpm and the
provider's rpm and tpm, all shared through Redis in the second setup.
Only 127.0.0.1 is used; everything started here is stopped on exit,
including the run's own `redis-server` (the machine's Redis is not touched).

Usage: bench/redis/run.py [--keel target/release/keel] [--rate 1000] [--seconds 10]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keel", default=str(ROOT / "target/release/keel"))
    parser.add_argument("--rate", type=int, default=1000, help="requests per second per instance")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--conns", type=int, default=16)
    return parser.parse_args()


ARGS = parse_args()
os.environ.setdefault("KEEL_BIN", ARGS.keel)
sys.path.insert(0, str(ROOT / "bench/lib"))
import bench  # noqa: E402  (reads KEEL_BIN at import)

KEY = "sk-bench"
BODY = json.dumps({"model": "bench", "max_tokens": 16, "messages": [{"role": "user", "content": "Say hello."}]})
ALL_CPUS = "0-1"


def redis_command(port: int, *words: str) -> bytes:
    """One RESP command; the raw reply."""
    request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request.encode())
        reply = b""
        while not reply.endswith(b"\r\n") or (reply.startswith(b"$") and reply.count(b"\r\n") < 2):
            chunk = connection.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply


# Commands a client sends (the commands a script runs inside Redis are
# counted in INFO too, but cost no round trip).
ROUND_TRIP_COMMANDS = ("evalsha", "eval", "script", "ping", "get", "pttl", "set", "psetex")


def redis_commands(port: int) -> int:
    """Round trips so far: calls of the commands clients send."""
    info = redis_command(port, "INFO", "commandstats").decode(errors="replace")
    total = 0
    for line in info.splitlines():
        name, _, stats = line.partition(":")
        if name.removeprefix("cmdstat_") in ROUND_TRIP_COMMANDS:
            total += int(stats.split(",")[0].removeprefix("calls="))
    return total


def start_redis(work: Path) -> tuple:
    port = bench.free_port()
    proc = bench.Proc("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no"], ALL_CPUS, work / "redis.log")
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if redis_command(port, "PING").startswith(b"+PONG"):
                return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def start_keel(work: Path, name: str, mock_port: int, redis_port: int | None) -> tuple:
    port = bench.free_port()
    redis = f"redis: {{url: 'redis://127.0.0.1:{redis_port}', expected_instances: 2}}\n" if redis_port else ""
    config = work / f"{name}.yaml"
    config.write_text(
        "server: {listen: 127.0.0.1:%d, max_in_flight: 20000, shutdown_grace: 0s, admin_key: sk-admin}\n"
        "database: {url: 'sqlite::memory:'}\n"
        "tenants:\n  - {name: bench, keys: [%s], limits: {rpm: 100000000, tpm: 100000000000}}\n"
        "providers:\n  mock: {kind: openai, base_url: 'http://127.0.0.1:%d/v1', rpm: 100000000, tpm: 100000000000}\n"
        "models:\n  bench: {targets: [{provider: mock, model: bench-model}]}\n%s"
        % (port, KEY, mock_port, redis)
    )
    proc = bench.Proc(name, [ARGS.keel, "serve", "--config", str(config)], ALL_CPUS, work / f"{name}.log",
                      {"RUST_LOG": "warn"})
    bench.wait_ready(port, "/healthz", proc)
    return proc, port


def redis_up(port: int) -> str:
    """`keel_redis_up` of the instance on `port` (after a run: did it stay shared?)."""
    import http.client
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/metrics", headers={"authorization": "Bearer sk-admin"})
    text = connection.getresponse().read().decode(errors="replace")
    up = next((line.split()[-1] for line in text.splitlines() if line.startswith("keel_redis_up ")), "—")
    fallbacks = next((line.split()[-1] for line in text.splitlines() if line.startswith("keel_redis_fallbacks_total ")), "—")
    return f"{up} ({fallbacks} fallbacks)"


def oha(port: int, path: str = "/v1/chat/completions") -> subprocess.Popen:
    argv = [
        bench.OHA_BIN if bench.OHA_BIN != "oha" else os.environ.get("OHA_BIN", "oha"),
        "--no-tui", "--output-format", "json", "--worker-threads", "1",
        "-c", str(ARGS.conns), "-z", f"{int(ARGS.seconds * 1000)}ms", "-w", "-m", "POST",
        "-q", str(ARGS.rate), "--latency-correction",
        "-H", f"authorization: Bearer {KEY}", "-H", "content-type: application/json", "-d", BODY,
        f"http://127.0.0.1:{port}{path}",
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(run: subprocess.Popen) -> dict:
    out, err = run.communicate(timeout=ARGS.seconds + 60)
    if run.returncode != 0:
        raise RuntimeError(f"oha failed: {err[-300:]}")
    report = json.loads(out)
    codes = report.get("statusCodeDistribution", {})
    pct = report.get("latencyPercentiles", {})
    return {"ok": int(codes.get("200", 0)), "all": sum(int(v) for v in codes.values()),
            "p50_ms": (pct.get("p50") or 0) * 1e3, "p99_ms": (pct.get("p99") or 0) * 1e3}


def measure(targets: list, redis_port: int | None, redis_proc=None) -> list[dict]:
    """Loads every (proc, port) at once; a report per target."""
    cpu0 = [bench.cpu_ns([proc.pid]) for proc, _ in targets]
    commands0 = redis_commands(redis_port) if redis_port else 0
    redis_cpu0 = bench.cpu_ns([redis_proc.pid]) if redis_proc else 0
    runs = [oha(port) for _, port in targets]
    reports = [finish(run) for run in runs]
    total = sum(report["ok"] for report in reports)
    commands = (redis_commands(redis_port) - commands0) if redis_port else 0
    redis_cpu = (bench.cpu_ns([redis_proc.pid]) - redis_cpu0) / 1e9 if redis_proc else 0.0
    for (proc, _), report, before in zip(targets, reports, cpu0):
        cpu = (bench.cpu_ns([proc.pid]) - before) / 1e9
        report["cpu_s_per_1k"] = 1000 * cpu / report["ok"] if report["ok"] else None
        report["redis_commands_per_request"] = commands / total if redis_port and total else None
        report["redis_cpu_s_per_1k"] = 1000 * redis_cpu / total if redis_proc and total else None
    for (_, port), report in zip(targets, reports):
        report["redis_up"] = redis_up(port) if redis_port else "—"
    return reports


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="keel-bench-redis-"))
    started = []
    try:
        mock, mock_port = bench.start_mock(work)
        started.append(mock)
        redis, redis_port = start_redis(work)
        started.append(redis)
        print(f"load average at start: {bench.loadavg():.2f}", file=sys.stderr)

        direct = measure([(mock, mock_port)], None)[0]
        local, local_port = start_keel(work, "keel-local", mock_port, None)
        started.append(local)
        alone = measure([(local, local_port)], None)[0]
        local.stop()
        one, one_port = start_keel(work, "keel-a", mock_port, redis_port)
        two, two_port = start_keel(work, "keel-b", mock_port, redis_port)
        started += [one, two]
        shared = measure([(one, one_port), (two, two_port)], redis_port, redis)

        rows = [("direct to the mock", direct), ("one instance, local limits", alone),
                ("instance A of two, Redis", shared[0]), ("instance B of two, Redis", shared[1])]
        print(f"\n{ARGS.rate} req/s per instance for {ARGS.seconds:.0f} s, {ARGS.conns} connections each; "
              f"load average at end {bench.loadavg():.2f}\n")
        print("| setup | answered | p50 ms | p99 ms | added p50 ms | added p99 ms | Keel CPU s / 1k | Redis round trips / request | Redis CPU s / 1k | keel_redis_up after |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, row in rows:
            added = "" if row is direct else f"{row['p50_ms'] - direct['p50_ms']:+.3f} | {row['p99_ms'] - direct['p99_ms']:+.3f}"
            if row is direct:
                added = "— | —"
            cpu = "—" if row.get("cpu_s_per_1k") is None or row is direct else f"{row['cpu_s_per_1k']:.4f}"
            commands = row.get("redis_commands_per_request")
            redis_cpu = row.get("redis_cpu_s_per_1k")
            print(f"| {name} | {row['ok']}/{row['all']} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} | {added} | {cpu} | "
                  f"{'—' if commands is None else f'{commands:.2f}'} | {'—' if redis_cpu is None else f'{redis_cpu:.4f}'} | "
                  f"{row.get('redis_up', '—')} |")
        return 0
    finally:
        for proc in reversed(started):
            proc.stop()


if __name__ == "__main__":
    sys.exit(main())
