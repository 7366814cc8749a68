"""Keel vs nginx `proxy_pass` vs a direct call, against one `keel mock` upstream.

Started by bench/run.sh, which builds or finds the binaries and owns the
cleanup trap; every process started here is recorded in $BENCH_PIDFILE so
the trap can stop it by id. Settings come from the environment (see
bench/README.md). Only 127.0.0.1 is ever targeted.

For each round and each system, a fresh mock (CPU 0) and a fresh proxy
(CPU 1) are started, then:

1. one stream is parsed fully (correctness);
2. non-stream, CONNS connections, as fast as possible (req/s, p50/p99, CPU/1k);
3. non-stream at a fixed RATE with `--latency-correction` (added latency);
4. streams of 20 chunks sent at once, CONNS connections (CPU/1k streams),
   and the same streams with each chunk in its own write (the mock's
   `write_each_chunk`), so the proxy reads them one at a time;
5. streams of 20 chunks 2 ms apart, STREAM_CONNS connections (CPU/1k streams);
6. streams at TTFT_RATE/s: time to first token and to [DONE] (Python client);
7. Keel only, its other front ends on the same upstream, as fast as
   possible: the Responses API (translated to chat and back; JSON, then
   streams of 20 chunks sent at once) and embeddings, each set against the
   chat passthrough of steps 2 and 4;
8. Keel only, the prompt cache, on a cached model: misses (every request a
   prompt of its own, so each goes upstream through single flight and is
   stored), then hits of step 2's request, as fast as possible and at RATE
   (added latency against the direct call of step 3);
9. RSS after load, and the mock's request counters against the OK responses.

Then, once, N open slow streams through Keel (and nginx) and their RSS, and
Keel's resident memory with its prompt cache filled to CACHE_MEM_BYTES.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import json
import os
import platform
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import streams  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


KEEL_BIN = env("KEEL_BIN", str(ROOT / "target/release/keel"))
OHA_BIN = env("OHA_BIN", "oha")
NGINX_BIN = env("NGINX_BIN", "nginx")
DURATION = float(env("DURATION", "6"))
WARMUP = float(env("WARMUP", "1.5"))
ROUNDS = int(env("ROUNDS", "2"))
CONNS = int(env("CONNS", "32"))
STREAM_CONNS = int(env("STREAM_CONNS", "128"))
RATE = int(env("RATE", "1000"))
TTFT_RATE = float(env("TTFT_RATE", "20"))
TTFT_SECONDS = float(env("TTFT_SECONDS", "5"))
MEM_STEPS = env("MEM_STEPS", "2000,10000")
MEM_SYSTEMS = [s for s in env("MEM_SYSTEMS", "keel,nginx").split(",") if s]
SYSTEMS = [s for s in env("SYSTEMS", "direct,nginx,keel").split(",") if s]
IDLE_SECONDS = float(env("IDLE_SECONDS", "2"))
PROXY_CPU = env("PROXY_CPU", "1")
LOAD_CPU = env("LOAD_CPU", "0")
PIDFILE = Path(env("BENCH_PIDFILE", "/dev/null"))
OUT_DIR = Path(env("BENCH_OUT", str(ROOT / "bench/results")))
KEEL_BUILD = env("KEEL_BUILD_NOTE", "")
CACHE_MEM_BYTES = int(env("CACHE_MEM_BYTES", str(256 << 20)))

# Upstream models and their fault plans (the mock's defaults otherwise).
PLANS = {
    "bench-model": {"chunks": 20},
    # The same stream, each chunk handed to the socket in its own write, so
    # a proxy reads (and must forward) the chunks one at a time.
    "bench-model-split": {"chunks": 20, "write_each_chunk": True},
    "bench-model-trickle": {"chunks": 20, "chunk_delay_ms": 2},
    "bench-model-ttft": {"chunks": 5, "chunk_delay_ms": 5},
    "bench-model-slow": {"chunks": 600, "chunk_delay_ms": 1000},
    # About 50 KiB of text per answer, for filling the cache.
    "bench-model-big": {"chunks": 8000},
    # Embeddings (8 dimensions: an answer about the size of a completion).
    "bench-model-embed": {},
}
# Keel's public model -> upstream model.
PUBLIC = {
    "bench": "bench-model", "bench-split": "bench-model-split", "bench-trickle": "bench-model-trickle", "bench-ttft": "bench-model-ttft",
    "bench-slow": "bench-model-slow", "bench-cached": "bench-model", "bench-cached-big": "bench-model-big",
    "bench-embed": "bench-model-embed",
}
# Keel models with a prompt cache.
CACHED = {"bench-cached", "bench-cached-big"}
# Keel models that serve embeddings.
EMBEDDINGS = {"bench-embed"}
# Keel-only scenarios on its other front ends: (scenario, public model,
# stream, API), each compared with the chat scenario beside it. Off with
# API_SCENARIOS=0.
API_SCENARIOS = env("API_SCENARIOS", "1") != "0"
FRONT_ENDS = [
    ("responses", "bench", False, "responses", "nonstream"),
    ("responses_stream", "bench", True, "responses", "stream_burst"),
    ("embeddings", "bench-embed", False, "embeddings", "nonstream"),
]
# The path each API is sent to.
API_PATHS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "embeddings": "/v1/embeddings"}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# === processes ===


class Proc:
    """A process we started (in its own process group), stopped by its id."""

    def __init__(self, name: str, argv: list[str], cpu: str, logfile: Path, extra_env: dict | None = None):
        self.name = name
        environment = dict(os.environ)
        environment.update(extra_env or {})
        self.log = open(logfile, "ab")
        self.popen = subprocess.Popen(
            ["taskset", "-c", cpu, *argv], stdout=self.log, stderr=self.log, env=environment, start_new_session=True
        )
        with open(PIDFILE, "a") as pids:
            pids.write(f"{self.popen.pid}\n")

    @property
    def pid(self) -> int:
        return self.popen.pid

    def pids(self) -> list[int]:
        """The process and its children (nginx's workers)."""
        found = [self.pid]
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
            found += [int(child) for child in children]
        except (FileNotFoundError, ProcessLookupError):
            pass
        return found

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        self.log.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_call(port: int, method: str, path: str, body: dict | None = None, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if payload else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(port: int, path: str, proc: Proc, timeout: float = 15) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; see {proc.log.name}")
        try:
            status, _ = http_call(port, "GET", path, timeout=1)
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} not ready on port {port} after {timeout}s")


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def cpu_ns(pids: list[int]) -> int:
    """Run time of every thread of `pids`, in ns (/proc/<pid>/task/*/schedstat)."""
    total = 0
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                total += int(stat.read_text().split()[0])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    return total


def core_busy(cpu: str) -> int:
    """Busy ticks of one CPU (everything but idle and iowait)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:]]
            return sum(values) - values[3] - values[4]
    return 0


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


LOADS: list[float] = []


# === the systems under test ===


def start_mock(work: Path) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc("mock", [KEEL_BIN, "mock", "--listen", f"127.0.0.1:{port}"], LOAD_CPU, work / "mock.log", {"RUST_LOG": "warn"})
    wait_ready(port, "/_mock/stats", proc)
    for model, plan in PLANS.items():
        status, body = http_call(port, "PUT", f"/_mock/faults/{model}", plan)
        if status != 200:
            raise RuntimeError(f"mock refused the plan for {model}: {status} {body[:200]!r}")
    return proc, port


def keel_config(work: Path, port: int, mock_port: int, cache_bytes: int = 64 << 20) -> Path:
    models = "".join(
        f"  {public}:\n    targets:\n      - {{provider: mock, model: {upstream}}}\n"
        + ("    cache: {ttl: 1h}\n" if public in CACHED else "")
        + ("    endpoint: embeddings\n" if public in EMBEDDINGS else "")
        for public, upstream in PUBLIC.items()
    )
    text = (
        "# Generated by bench/lib/bench.py\n"
        "server:\n"
        f"  listen: 127.0.0.1:{port}\n"
        "  max_in_flight: 20000\n"
        "  shutdown_grace: 0s\n"
        "database:\n"
        "  url: 'sqlite::memory:'  # job workers keep their defaults; no file is written\n"
        "tenants:\n"
        "  - name: bench\n"
        f"    keys: [{KEY}]\n"
        "providers:\n"
        "  mock:\n"
        "    kind: openai\n"
        f"    base_url: http://127.0.0.1:{mock_port}/v1\n"
        f"cache: {{max_bytes: {cache_bytes}, max_entry_bytes: 1MiB}}\n"
        "models:\n" + models
    )
    path = work / "keel.yaml"
    path.write_text(text)
    return path


def nginx_config(work: Path, port: int, mock_port: int) -> Path:
    temp = work / "nginx-tmp"
    temp.mkdir(exist_ok=True)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    text = f"""# Generated by bench/lib/bench.py
user root;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
# Above the open-files limit on purpose: nginx starts closing fresh connections
# when fewer than 1/16 of worker_connections are free, which would cap the
# open-stream test below what the file limit allows.
events {{ worker_connections {nofile + nofile // 8}; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream mock {{
        server 127.0.0.1:{mock_port};
        keepalive 1024;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""
    path = work / "nginx.conf"
    path.write_text(text)
    return path


class System:
    """One system under test: where to send requests, and what to measure."""

    def __init__(self, name: str, work: Path, mock_port: int, cache_bytes: int = 64 << 20):
        self.name = name
        self.proc: Proc | None = None
        if name == "direct":
            self.port = mock_port
            return
        self.port = free_port()
        if name == "keel":
            config = keel_config(work, self.port, mock_port, cache_bytes)
            self.proc = Proc("keel", [KEEL_BIN, "serve", "--config", str(config)], PROXY_CPU, work / "keel.log", {"RUST_LOG": "warn"})
            wait_ready(self.port, "/healthz", self.proc)
        elif name == "nginx":
            config = nginx_config(work, self.port, mock_port)
            argv = [NGINX_BIN, "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(config), "-g", "daemon off;"]
            self.proc = Proc("nginx", argv, PROXY_CPU, work / "nginx.log")
            wait_ready(self.port, "/_mock/stats", self.proc)
        else:
            raise ValueError(f"unknown system {name}")

    def model(self, public: str) -> str:
        """Keel routes public names; nginx and direct see the upstream names."""
        return public if self.name == "keel" else PUBLIC[public]

    def pids(self) -> list[int]:
        return self.proc.pids() if self.proc else []

    def rss_kib(self) -> int:
        return streams.rss_kib(self.pids()) if self.proc else 0

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()


# === load ===


def api_body(api: str, model: str, stream: bool) -> str:
    """The standard request of each API: the same prompt everywhere."""
    if api == "responses":
        return json.dumps({"model": model, "input": "Say hello.", "stream": stream}, separators=(",", ":"))
    if api == "embeddings":
        return json.dumps({"model": model, "input": "Say hello.", "dimensions": 8}, separators=(",", ":"))
    return streams.chat_body(model, stream).decode()


def oha(system: System, public_model: str, stream: bool, conns: int, seconds: float, rate: int | None = None,
        headers: tuple[str, ...] = (), body_lines: Path | None = None, api: str = "chat") -> dict:
    """`body_lines`: a file of request bodies, one per line, sent in turn
    (distinct prompts) instead of the one standard body. `api`: chat,
    responses or embeddings (Keel's front ends; nginx and direct only chat)."""
    body = api_body(api, system.model(public_model), stream)
    argv = [
        "taskset", "-c", LOAD_CPU, OHA_BIN, "--no-tui", "--output-format", "json", "--worker-threads", "1",
        "-c", str(conns), "-z", f"{int(seconds * 1000)}ms", "-w", "-m", "POST",
        "-H", f"authorization: Bearer {KEY}", "-H", "content-type: application/json",
    ]
    argv += ["-Z", str(body_lines)] if body_lines else ["-d", body]
    for header in headers:
        argv += ["-H", header]
    if rate:
        argv += ["-q", str(rate), "--latency-correction"]
    argv.append(f"http://127.0.0.1:{system.port}{API_PATHS[api]}")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(f"oha failed ({result.returncode}): {result.stderr[-500:]}")
    return json.loads(result.stdout)


def distinct_bodies(work: Path, model: str, tag: str, count: int) -> Path:
    """A file of `count` request bodies, each with a prompt of its own (oha
    sends them in turn; more lines than requests, so none repeats)."""
    path = work / f"bodies-{model}-{tag}-{count}.txt"
    if not path.exists():
        with path.open("w") as out:
            for n in range(count):
                out.write(json.dumps({"model": model, "messages": [{"role": "user", "content": f"Say hello. #{tag}{n}"}], "stream": False},
                                     separators=(",", ":")) + "\n")
    return path


def measured(system: System, mock: Proc, run) -> tuple[object, dict]:
    """Runs `run()` and returns its result with the CPU used meanwhile."""
    pids = system.pids()
    proxy0, mock0, core0 = cpu_ticks(pids), cpu_ticks([mock.pid]), core_busy(PROXY_CPU)
    started = time.perf_counter()
    result = run()
    wall = time.perf_counter() - started
    proxy1, mock1, core1 = cpu_ticks(pids), cpu_ticks([mock.pid]), core_busy(PROXY_CPU)
    LOADS.append(loadavg())
    proxy_s = (proxy1 - proxy0) / CLK_TCK
    other = max(0.0, (core1 - core0) / CLK_TCK - proxy_s)
    return result, {"proxy_cpu_s": proxy_s, "mock_cpu_s": (mock1 - mock0) / CLK_TCK, "wall_s": wall, "cpu1_other_pct": 100 * other / wall}


def summarize_oha(report: dict, cpu: dict) -> dict:
    codes = report.get("statusCodeDistribution", {})
    ok = int(codes.get("200", 0))
    total = sum(int(v) for v in codes.values())
    pct = report.get("latencyPercentiles", {})
    elapsed = report["summary"]["total"]
    return {
        "ok": ok,
        "non_ok": total - ok,
        "errors": sum(int(v) for v in report.get("errorDistribution", {}).values()),
        "error_kinds": list(report.get("errorDistribution", {}).keys())[:3],
        "rps": ok / elapsed if elapsed else 0.0,
        "p50_ms": (pct.get("p50") or 0) * 1e3,
        "p99_ms": (pct.get("p99") or 0) * 1e3,
        "cpu_s": cpu["proxy_cpu_s"],
        "cpu_s_per_1k": 1000 * cpu["proxy_cpu_s"] / ok if ok else None,
        "mock_cpu_s_per_1k": 1000 * cpu["mock_cpu_s"] / ok if ok else None,
        "cpu1_other_pct": cpu["cpu1_other_pct"],
    }


def run_system(name: str, round_no: int, work: Path) -> dict:
    mock, mock_port = start_mock(work)
    system = None
    try:
        system = System(name, work, mock_port)
        record: dict = {"system": name, "round": round_no, "idle_rss_kib": system.rss_kib()}
        # Idle CPU: what the process burns with no traffic (timers, pollers),
        # from the per-thread schedstat run time (ns; ticks are too coarse here).
        before, started = cpu_ns(system.pids()), time.perf_counter()
        time.sleep(IDLE_SECONDS)
        record["idle_cpu_ms_per_s"] = (cpu_ns(system.pids()) - before) / 1e6 / (time.perf_counter() - started)
        ok_by_model: dict[str, int] = {}

        def count(public: str, ok: int) -> None:
            upstream = PUBLIC[public]
            ok_by_model[upstream] = ok_by_model.get(upstream, 0) + ok

        verdict = asyncio.run(streams.validate("127.0.0.1", system.port, system.model("bench"), KEY))
        record["stream_check"] = verdict
        count("bench", 1 if verdict["ok"] else 0)

        scenarios = [
            ("nonstream", "bench", False, CONNS, None, None),
            ("nonstream_rate", "bench", False, CONNS, RATE, None),
            ("stream_burst", "bench", True, CONNS, None, None),
            ("stream_split", "bench-split", True, CONNS, None, None),
            ("stream_trickle", "bench-trickle", True, STREAM_CONNS, None, None),
        ]
        apis = {}
        if name == "keel" and API_SCENARIOS:
            for scenario, public, stream, api, _ in FRONT_ENDS:
                scenarios.append((scenario, public, stream, CONNS, None, None))
                apis[scenario] = api
        if name == "keel":
            # Misses: every request a prompt of its own (so single flight
            # merges nothing and each is stored); then hits of the standard body.
            distinct = (distinct_bodies(work, "bench-cached", "warm", int(WARMUP * 60_000)),
                        distinct_bodies(work, "bench-cached", "run", int(DURATION * 60_000)))
            scenarios += [
                ("cache_miss", "bench-cached", False, CONNS, None, distinct),
                ("cache_hit", "bench-cached", False, CONNS, None, None),
                ("cache_hit_rate", "bench-cached", False, CONNS, RATE, None),
            ]
        for scenario, public, stream, conns, rate, lines in scenarios:
            # A hit makes no upstream call: only misses count against the mock's counters.
            upstream_calls = not scenario.startswith("cache_hit")
            warm_lines, run_lines = lines or (None, None)
            api = apis.get(scenario, "chat")
            if rate is None:
                warm = oha(system, public, stream, conns, WARMUP, body_lines=warm_lines, api=api)
                if upstream_calls:
                    count(public, int(warm.get("statusCodeDistribution", {}).get("200", 0)))
            report, cpu = measured(system, mock, lambda: oha(system, public, stream, conns, DURATION, rate, body_lines=run_lines, api=api))
            summary = summarize_oha(report, cpu)
            if upstream_calls:
                count(public, summary["ok"])
            record[scenario] = summary
            log(f"round {round_no} {name:6} {scenario:15} {summary['rps']:9.0f} req/s  p50 {summary['p50_ms']:.3f} ms"
                f"  p99 {summary['p99_ms']:.3f} ms  cpu/1k {summary['cpu_s_per_1k'] or 0:.4f} s  non-ok {summary['non_ok']}"
                f"  errors {summary['errors']}  other cpu1 {summary['cpu1_other_pct']:.0f}%")

        ttft, cpu = measured(system, mock, lambda: asyncio.run(streams.ttft("127.0.0.1", system.port, system.model("bench-ttft"), KEY, TTFT_RATE, TTFT_SECONDS, 10)))
        ttft["cpu1_other_pct"] = cpu["cpu1_other_pct"]
        record["ttft"] = ttft
        count("bench-ttft", ttft["ok"])
        log(f"round {round_no} {name:6} ttft            p50 {ttft['ttft_ms']['p50']:.3f} ms  p99 {ttft['ttft_ms']['p99']:.3f} ms  errors {ttft['error_count']}")

        record["rss_after_load_kib"] = system.rss_kib()
        status, body = http_call(mock_port, "GET", "/_mock/stats")
        stats = json.loads(body) if status == 200 else {}
        upstream = sum(stats.get(model, {}).get("requests", 0) for model in PLANS)
        ok_total = sum(ok_by_model.values())
        bench_stats = stats.get("bench-model", {})
        record["correctness"] = {
            "ok_responses": ok_total,
            "upstream_requests": upstream,
            "calls_per_ok": upstream / ok_total if ok_total else None,
            "bench_model_requests": bench_stats.get("requests"),
            "bench_model_ok": ok_by_model.get("bench-model", 0),
            "cancelled": sum(stats.get(model, {}).get("cancelled", 0) for model in PLANS),
            "by_model": {model: {"ok": ok_by_model.get(model, 0), **stats.get(model, {})} for model in PLANS},
        }
        log(f"round {round_no} {name:6} correctness: {upstream} upstream requests for {ok_total} OK responses; stream check {'ok' if verdict['ok'] else verdict['problems']}")
        return record
    finally:
        if system:
            system.stop()
        mock.stop()


def cache_memory(work: Path, max_bytes: int) -> dict:
    """Fills Keel's prompt cache with distinct ~50 KiB answers until the
    accounted bytes reach `max_bytes` (and past it, by a quarter, so eviction
    runs too), then reads the cache's own figures and the process's RSS."""
    mock, mock_port = start_mock(work)
    system = None
    try:
        system = System("keel", work, mock_port, cache_bytes=max_bytes)
        idle = system.rss_kib()
        asked = 0
        metrics: dict[str, float] = {}

        def fill(worker: int, count: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", system.port, timeout=30)
            ok = 0
            for n in range(count):
                body = json.dumps({"model": "bench-cached-big", "messages": [{"role": "user", "content": f"fill {worker} {n}"}]})
                conn.request("POST", "/v1/chat/completions", body, {"authorization": f"Bearer {KEY}", "content-type": "application/json"})
                response = conn.getresponse()
                response.read()
                ok += response.status == 200
            conn.close()
            return ok

        from concurrent.futures import ThreadPoolExecutor

        ok = 0
        target = max_bytes * 5 // 4
        with ThreadPoolExecutor(max_workers=4) as pool:
            batch = 0
            while True:
                status, text = http_call(system.port, "GET", "/metrics")
                metrics = {line.split()[0]: float(line.split()[1]) for line in text.decode().splitlines()
                           if line.startswith("keel_cache_") and len(line.split()) == 2}
                inserted = asked * 50 * 1024
                if inserted >= target:
                    break
                ok += sum(pool.map(lambda w: fill(w + 4 * batch, 250), range(4)))
                asked += 1000
                batch += 1
        rss = system.rss_kib()
        accounted = metrics.get("keel_cache_bytes", 0.0)
        return {
            "max_bytes": max_bytes, "requests": asked, "ok": ok, "idle_rss_kib": idle, "rss_kib": rss,
            "cache_bytes": accounted, "cache_entries": metrics.get("keel_cache_entries", 0.0),
            "evictions": metrics.get("keel_cache_evictions_total", 0.0),
            "rss_over_idle_per_accounted": ((rss - idle) * 1024 / accounted) if accounted else None,
        }
    finally:
        if system:
            system.stop()
        mock.stop()


def memory(name: str, work: Path, steps: list[int]) -> dict:
    mock, mock_port = start_mock(work)
    system = None
    try:
        system = System(name, work, mock_port)
        time.sleep(0.5)
        log(f"memory {name}: opening {steps} slow streams (1 chunk/s)")
        result = asyncio.run(streams.hold("127.0.0.1", system.port, system.model("bench-slow"), KEY, steps, system.pids(), 3.0, 256))
        status, body = http_call(mock_port, "GET", "/_mock/stats/bench-model-slow")
        result["upstream"] = json.loads(body) if status == 200 else {}
        result["system"] = name
        for step in result["steps"]:
            log(f"memory {name}: {step['open']} open streams, RSS {step['rss_kib'] / 1024:.1f} MiB ({step['per_stream_kib']} KiB per stream over idle)")
        return result
    finally:
        if system:
            system.stop()
        mock.stop()


# === report ===


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and abs(value) >= 1000:
        return f"{value:,.0f}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def ratio(a, b, digits: int = 2) -> str:
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.{digits}f}×"


def added(records: list[dict], system: str, getter, direct_getter=None) -> float | None:
    """Median over rounds of (system − direct) in the same round; the direct
    figure is read with `direct_getter` when the scenarios differ (a cache
    hit against the direct call of the same request)."""
    diffs = []
    for round_no in sorted({r["round"] for r in records}):
        mine = [r for r in records if r["round"] == round_no and r["system"] == system]
        base = [r for r in records if r["round"] == round_no and r["system"] == "direct"]
        if mine and base:
            a, b = getter(mine[0]), (direct_getter or getter)(base[0])
            if a is not None and b is not None:
                diffs.append(a - b)
    return median(diffs)


def render(meta: dict, records: list[dict], mem: list[dict], cache_mem: dict | None = None) -> str:
    systems = [s for s in ["direct", "nginx", "keel"] if any(r["system"] == s for r in records)]

    def med(system: str, getter) -> float | None:
        return median([getter(r) for r in records if r["system"] == system])

    def g(scenario: str, field: str):
        return lambda r: r.get(scenario, {}).get(field)

    lines = [
        f"# Keel benchmark: {meta['date']}",
        "",
        f"- Keel: `{meta['keel_bin']}` ({meta['keel_version']}){(', ' + KEEL_BUILD) if KEEL_BUILD else ''}; repository HEAD `{meta['commit']}`",
        f"- {meta['oha_version']}, {meta['nginx_version']}, Python {platform.python_version()}",
        f"- Machine: {meta['cpu_model']}, {meta['nproc']} CPUs, {meta['mem_gib']:.0f} GiB, kernel {platform.release()}",
        f"- Pinning: proxy on CPU {PROXY_CPU}; mock, oha and the Python client on CPU {LOAD_CPU}; all at nice {os.nice(0)}",
        f"- Rounds: {ROUNDS} (medians; each system restarted with a fresh mock every round, order alternated); "
        f"{DURATION:g} s per measurement after {WARMUP:g} s warm-up; {CONNS} connections; streams that trickle use {STREAM_CONNS}",
        f"- Load average: {meta['load_start']:.2f} at start, {meta['load_max']:.2f} max and {meta['load_mean']:.2f} mean during measurements, "
        f"{meta['load_end']:.2f} at the end; other processes' use of CPU {PROXY_CPU} during measurements: "
        f"median {meta['cpu1_other_median']:.0f} %, max {meta['cpu1_other_max']:.0f} %",
        f"- Run time {meta['elapsed_s']:.0f} s. Command: `{meta['command']}`",
    ]
    if meta["busy"]:
        lines.append(f"- **Caveat: the machine was busy** ({meta['busy']}); absolute figures are distorted, ratios within a round less so.")
    lines += ["", "## Non-stream (zero-delay upstream, 20-word completion)", ""]
    lines.append(f"| system | req/s, {CONNS} conns | p50 ms | p99 ms | CPU s / 1k req | p50 ms at {RATE}/s | p99 ms at {RATE}/s | added p50 at {RATE}/s | added p99 at {RATE}/s | CPU s / 1k at {RATE}/s | RSS idle → after load | idle CPU ms/s |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    row = {}
    for system in systems:
        row[system] = {
            "rps": med(system, g("nonstream", "rps")),
            "p50": med(system, g("nonstream", "p50_ms")),
            "p99": med(system, g("nonstream", "p99_ms")),
            "cpu": med(system, g("nonstream", "cpu_s_per_1k")),
            "rp50": med(system, g("nonstream_rate", "p50_ms")),
            "rp99": med(system, g("nonstream_rate", "p99_ms")),
            "ap50": added(records, system, g("nonstream_rate", "p50_ms")) if system != "direct" else None,
            "ap99": added(records, system, g("nonstream_rate", "p99_ms")) if system != "direct" else None,
            "rcpu": med(system, g("nonstream_rate", "cpu_s_per_1k")),
            "rss0": med(system, lambda r: r["idle_rss_kib"] / 1024 if r["idle_rss_kib"] else None),
            "rss": med(system, lambda r: r["rss_after_load_kib"] / 1024 if r["rss_after_load_kib"] else None),
            "idle_cpu": med(system, lambda r: r.get("idle_cpu_ms_per_s")),
        }
        x = row[system]
        cpu = "—" if system == "direct" else fmt(x["cpu"], 4)
        rcpu = "—" if system == "direct" else fmt(x["rcpu"], 4)
        ap50 = "—" if system == "direct" else f"+{fmt(x['ap50'], 3)} ms"
        ap99 = "—" if system == "direct" else f"+{fmt(x['ap99'], 3)} ms"
        rss = "—" if system == "direct" else f"{fmt(x['rss0'], 1)} → {fmt(x['rss'], 1)} MiB"
        idle_cpu = "—" if system == "direct" else fmt(x["idle_cpu"], 2)
        lines.append(f"| {system} | {fmt(x['rps'], 0)} | {fmt(x['p50'], 3)} | {fmt(x['p99'], 3)} | {cpu} | {fmt(x['rp50'], 3)} | {fmt(x['rp99'], 3)} | {ap50} | {ap99} | {rcpu} | {rss} | {idle_cpu} |")
    if "keel" in row and "nginx" in row:
        k, n = row["keel"], row["nginx"]
        lines.append(f"| Keel / nginx | {ratio(k['rps'], n['rps'])} | {ratio(k['p50'], n['p50'])} | {ratio(k['p99'], n['p99'])} | {ratio(k['cpu'], n['cpu'])} | {ratio(k['rp50'], n['rp50'])} | {ratio(k['rp99'], n['rp99'])} | {ratio(k['ap50'], n['ap50'])} | {ratio(k['ap99'], n['ap99'])} | {ratio(k['rcpu'], n['rcpu'])} | {ratio(k['rss'], n['rss'])} | — |")
    if "keel" in row and "direct" in row:
        k, d = row["keel"], row["direct"]
        lines.append(f"| Keel / direct | {ratio(k['rps'], d['rps'])} | {ratio(k['p50'], d['p50'])} | {ratio(k['p99'], d['p99'])} | — | {ratio(k['rp50'], d['rp50'])} | {ratio(k['rp99'], d['rp99'])} | — | — | — | — | — |")

    stream_rows = {}
    for scenario, title, conns in [
        ("stream_burst", "Streams, 20 chunks sent at once", CONNS),
        ("stream_split", "Streams, 20 chunks sent back to back, each in its own write", CONNS),
        ("stream_trickle", "Streams, 20 chunks 2 ms apart", STREAM_CONNS),
    ]:
        lines += ["", f"## {title} ({conns} conns; latency = whole stream)", ""]
        lines.append("| system | streams/s | p50 ms | p99 ms | CPU s / 1k streams | RSS after load |")
        lines.append("|---|---|---|---|---|---|")
        rows = {}
        for system in systems:
            rows[system] = {
                "rps": med(system, g(scenario, "rps")),
                "p50": med(system, g(scenario, "p50_ms")),
                "p99": med(system, g(scenario, "p99_ms")),
                "cpu": med(system, g(scenario, "cpu_s_per_1k")),
                "rss": row[system]["rss"],
            }
            x = rows[system]
            cpu = "—" if system == "direct" else fmt(x["cpu"], 4)
            rss = "—" if system == "direct" else f"{fmt(x['rss'], 1)} MiB"
            lines.append(f"| {system} | {fmt(x['rps'], 0)} | {fmt(x['p50'], 3)} | {fmt(x['p99'], 3)} | {cpu} | {rss} |")
        if "keel" in rows and "nginx" in rows:
            k, n = rows["keel"], rows["nginx"]
            lines.append(f"| Keel / nginx | {ratio(k['rps'], n['rps'])} | {ratio(k['p50'], n['p50'])} | {ratio(k['p99'], n['p99'])} | {ratio(k['cpu'], n['cpu'])} | {ratio(k['rss'], n['rss'])} |")
        if "keel" in rows and "direct" in rows:
            k, d = rows["keel"], rows["direct"]
            lines.append(f"| Keel / direct | {ratio(k['rps'], d['rps'])} | {ratio(k['p50'], d['p50'])} | {ratio(k['p99'], d['p99'])} | — | — |")
        stream_rows[scenario] = rows

    lines += ["", f"## Time to first token, streams at {TTFT_RATE:g}/s (5 chunks 5 ms apart; Python client, keep-alive)", ""]
    lines.append("| system | TTFT p50 ms | TTFT p99 ms | added p50 | added p99 | to [DONE] p50 ms | added to [DONE] p50 | samples |")
    lines.append("|---|---|---|---|---|---|---|---|")
    t = lambda field, p: (lambda r: r.get("ttft", {}).get(field, {}).get(p))  # noqa: E731
    ttft_rows = {}
    for system in systems:
        x = {
            "p50": med(system, t("ttft_ms", "p50")),
            "p99": med(system, t("ttft_ms", "p99")),
            "a50": added(records, system, t("ttft_ms", "p50")) if system != "direct" else None,
            "a99": added(records, system, t("ttft_ms", "p99")) if system != "direct" else None,
            "d50": med(system, t("done_ms", "p50")),
            "ad50": added(records, system, t("done_ms", "p50")) if system != "direct" else None,
            "n": med(system, lambda r: r.get("ttft", {}).get("samples")),
        }
        ttft_rows[system] = x
        a = lambda v: "—" if system == "direct" else f"{'+' if (v or 0) >= 0 else ''}{fmt(v, 3)} ms"  # noqa: E731
        lines.append(f"| {system} | {fmt(x['p50'], 3)} | {fmt(x['p99'], 3)} | {a(x['a50'])} | {a(x['a99'])} | {fmt(x['d50'], 3)} | {a(x['ad50'])} | {fmt(x['n'], 0)} |")

    lines += ["", "## Correctness under load (all rounds)", ""]
    lines.append("| system | OK responses | non-OK | transport errors | upstream requests | upstream calls per OK | mock `cancelled` | one stream parsed fully |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for system in systems:
        mine = [r for r in records if r["system"] == system]
        ok = sum(r["correctness"]["ok_responses"] for r in mine)
        up = sum(r["correctness"]["upstream_requests"] for r in mine)
        cancelled = sum(r["correctness"]["cancelled"] for r in mine)
        measured_scenarios = ("nonstream", "nonstream_rate", "stream_burst", "stream_split", "stream_trickle", *(f[0] for f in FRONT_ENDS))
        non_ok = sum(r[s]["non_ok"] for r in mine for s in measured_scenarios if s in r)
        errors = sum(r[s]["errors"] for r in mine for s in measured_scenarios if s in r)
        errors += sum(r["ttft"]["error_count"] for r in mine)
        checks = [r["stream_check"] for r in mine]
        parsed = "ok" if all(c["ok"] for c in checks) else "; ".join(p for c in checks for p in c["problems"])
        events = checks[0]["events"] if checks else 0
        lines.append(f"| {system} | {ok:,} | {non_ok} | {errors} | {up:,} | {fmt(up / ok if ok else None, 4)} | {cancelled} | {parsed} ({events} events, finish_reason {checks[0]['finish_reason'] if checks else '—'}) |")

    if mem:
        lines += ["", "## Open slow streams (1 chunk/s) and resident memory", ""]
        lines.append("| system | idle RSS | open streams | RSS | KiB per stream over idle | KiB per stream, marginal | RSS after close | projected at 10,000 |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for result in mem:
            steps = result["steps"]
            previous = None
            for step in steps:
                marginal = None
                if previous and step["open"] > previous["open"]:
                    marginal = (step["rss_kib"] - previous["rss_kib"]) / (step["open"] - previous["open"])
                projected = None
                if step["open"]:
                    per = (step["rss_kib"] - result["idle_rss_kib"]) / step["open"]
                    projected = (result["idle_rss_kib"] + per * 10000) / 1024
                lines.append(
                    f"| {result['system']} | {result['idle_rss_kib'] / 1024:.1f} MiB | {step['open']:,} (asked {step['target']:,}) | {step['rss_kib'] / 1024:.1f} MiB | "
                    f"{fmt(step['per_stream_kib'], 1)} | {fmt(marginal, 1)} | {result['after_close_rss_kib'] / 1024:.1f} MiB | {fmt(projected, 0)} MiB |"
                )
                previous = step
            if result.get("failure_count"):
                lines.append(f"| {result['system']} | failures: {result['failure_count']} | {'; '.join(result['failures'][:2])} | | | | | |")

    if any(r["system"] == "keel" and "responses" in r for r in records):
        lines += ["", f"## Keel's front ends on the same upstream ({CONNS} conns, as fast as possible)", ""]
        lines.append("| request | req/s | p50 ms | p99 ms | CPU s / 1k req | CPU / chat | p50 / chat | req/s / chat |")
        lines.append("|---|---|---|---|---|---|---|---|")
        titles = {
            "nonstream": "`/v1/chat/completions` (passthrough)",
            "stream_burst": "`/v1/chat/completions` stream (passthrough, 20 chunks at once)",
            "responses": "`/v1/responses` (translated)",
            "responses_stream": "`/v1/responses` stream (translated, 20 chunks at once)",
            "embeddings": "`/v1/embeddings` (8 dimensions)",
        }
        for scenario, base in [("nonstream", None), ("responses", "nonstream"), ("embeddings", "nonstream"),
                               ("stream_burst", None), ("responses_stream", "stream_burst")]:
            x = {field: med("keel", g(scenario, field)) for field in ("rps", "p50_ms", "p99_ms", "cpu_s_per_1k")}
            b = {field: med("keel", g(base, field)) for field in ("rps", "p50_ms", "cpu_s_per_1k")} if base else None
            lines.append(
                f"| {titles[scenario]} | {fmt(x['rps'], 0)} | {fmt(x['p50_ms'], 3)} | {fmt(x['p99_ms'], 3)} | {fmt(x['cpu_s_per_1k'], 4)} | "
                + (f"{ratio(x['cpu_s_per_1k'], b['cpu_s_per_1k'])} | {ratio(x['p50_ms'], b['p50_ms'])} | {ratio(x['rps'], b['rps'])} |" if b else "1.00× | 1.00× | 1.00× |")
            )

    cache_row = {}
    if any(r["system"] == "keel" and "cache_hit" in r for r in records):
        lines += ["", "## Prompt cache (Keel, the non-stream request above on a cached model)", ""]
        lines.append(f"| system, path | req/s, {CONNS} conns | p50 ms | p99 ms | CPU s / 1k req | added p50 at {RATE}/s | added p99 at {RATE}/s |")
        lines.append("|---|---|---|---|---|---|---|")
        hit = {
            "rps": med("keel", g("cache_hit", "rps")), "p50": med("keel", g("cache_hit", "p50_ms")),
            "p99": med("keel", g("cache_hit", "p99_ms")), "cpu": med("keel", g("cache_hit", "cpu_s_per_1k")),
            "ap50": added(records, "keel", g("cache_hit_rate", "p50_ms"), g("nonstream_rate", "p50_ms")) if "direct" in row else None,
            "ap99": added(records, "keel", g("cache_hit_rate", "p99_ms"), g("nonstream_rate", "p99_ms")) if "direct" in row else None,
        }
        miss = {
            "rps": med("keel", g("cache_miss", "rps")), "p50": med("keel", g("cache_miss", "p50_ms")),
            "p99": med("keel", g("cache_miss", "p99_ms")), "cpu": med("keel", g("cache_miss", "cpu_s_per_1k")),
        }
        cache_row = {"hit": hit, "miss": miss}
        if "nginx" in row:
            n = row["nginx"]
            lines.append(f"| nginx `proxy_pass` (upstream call) | {fmt(n['rps'], 0)} | {fmt(n['p50'], 3)} | {fmt(n['p99'], 3)} | {fmt(n['cpu'], 4)} | +{fmt(n['ap50'], 3)} ms | +{fmt(n['ap99'], 3)} ms |")
        k = row.get("keel", {})
        lines.append(f"| Keel, model without cache | {fmt(k.get('rps'), 0)} | {fmt(k.get('p50'), 3)} | {fmt(k.get('p99'), 3)} | {fmt(k.get('cpu'), 4)} | +{fmt(k.get('ap50'), 3)} ms | +{fmt(k.get('ap99'), 3)} ms |")
        lines.append(f"| Keel, cache miss (a prompt of its own each: key, lookup, upstream call through single flight, store) | {fmt(miss['rps'], 0)} | {fmt(miss['p50'], 3)} | {fmt(miss['p99'], 3)} | {fmt(miss['cpu'], 4)} | — | — |")
        lines.append(f"| Keel, cache hit (no upstream call) | {fmt(hit['rps'], 0)} | {fmt(hit['p50'], 3)} | {fmt(hit['p99'], 3)} | {fmt(hit['cpu'], 4)} | +{fmt(hit['ap50'], 3)} ms | +{fmt(hit['ap99'], 3)} ms |")
        if "nginx" in row:
            n = row["nginx"]
            lines.append(f"| hit / nginx | {ratio(hit['rps'], n['rps'])} | {ratio(hit['p50'], n['p50'])} | {ratio(hit['p99'], n['p99'])} | {ratio(hit['cpu'], n['cpu'])} | — | — |")
        lines.append(f"| hit / miss | {ratio(hit['rps'], miss['rps'])} | {ratio(hit['p50'], miss['p50'])} | {ratio(hit['p99'], miss['p99'])} | {ratio(hit['cpu'], miss['cpu'])} | — | — |")
    if cache_mem:
        c = cache_mem
        lines += ["", "## Prompt cache full: resident memory", ""]
        lines.append("| cache.max_bytes | answers asked (~50 KiB each) | entries | accounted bytes | evictions | RSS idle → full | (RSS − idle) / accounted |")
        lines.append("|---|---|---|---|---|---|---|")
        lines.append(f"| {c['max_bytes'] / 2**20:.0f} MiB | {c['requests']:,} ({c['ok']:,} OK) | {c['cache_entries']:,.0f} | {c['cache_bytes'] / 2**20:.1f} MiB | {c['evictions']:,.0f} | "
                     f"{c['idle_rss_kib'] / 1024:.1f} → {c['rss_kib'] / 1024:.1f} MiB | {fmt(c['rss_over_idle_per_accounted'], 3)} |")

    lines += ["", "## Performance targets", ""]
    lines.append("| target | measured | verdict |")
    lines.append("|---|---|---|")

    def verdict(ok) -> str:
        return "—" if ok is None else ("pass" if ok else "**FAIL**")

    if "keel" in row and "nginx" in row:
        k, n = row["keel"], row["nginx"]
        ap50, ap99 = k["ap50"], k["ap99"]
        lines.append(f"| added p50 < 0.2 ms at {RATE} req/s (non-stream) | +{fmt(ap50, 3)} ms | {verdict(None if ap50 is None else ap50 < 0.2)} |")
        lines.append(f"| added p99 < 1 ms at {RATE} req/s (non-stream) | +{fmt(ap99, 3)} ms | {verdict(None if ap99 is None else ap99 < 1)} |")
        c = None if not (k["cpu"] and n["cpu"]) else k["cpu"] / n["cpu"]
        lines.append(f"| CPU / 1k plain requests ≤ 1.5 × nginx | {fmt(c, 3)}× | {verdict(None if c is None else c <= 1.5)} |")
        for scenario, limit, label in [("stream_trickle", 1.5, "streams that trickle"), ("stream_burst", 2.0, "streams whose chunks arrive together"),
                                       ("stream_split", 2.0, "streams whose chunks arrive one read each")]:
            ks, ns = stream_rows[scenario].get("keel", {}), stream_rows[scenario].get("nginx", {})
            c = None if not (ks.get("cpu") and ns.get("cpu")) else ks["cpu"] / ns["cpu"]
            lines.append(f"| CPU / 1k {label} ≤ {limit:g} × nginx | {fmt(c, 3)}× | {verdict(None if c is None else c <= limit)} |")
        t_ = None if not (k["rps"] and n["rps"]) else k["rps"] / n["rps"]
        lines.append(f"| throughput ≥ 0.8 × nginx (non-stream, {CONNS} conns) | {fmt(t_, 3)}× | {verdict(None if t_ is None else t_ >= 0.8)} |")
    if "keel" in ttft_rows:
        a99 = ttft_rows["keel"]["a99"]
        lines.append(f"| first-token overhead p99 < 1 ms | +{fmt(a99, 3)} ms (p99 of {fmt(ttft_rows['keel']['n'], 0)} samples) | {verdict(None if a99 is None else a99 < 1)} |")
    if cache_row and "nginx" in row:
        hit, n = cache_row["hit"], row["nginx"]
        c = None if not (hit["cpu"] and n["cpu"]) else hit["cpu"] / n["cpu"]
        lines.append(f"| cache hit CPU ≤ nginx `proxy_pass` | {fmt(c, 3)}× | {verdict(None if c is None else c <= 1.0)} |")
        lines.append(f"| cache hit added p99 < 1 ms at {RATE} req/s | +{fmt(hit['ap99'], 3)} ms | {verdict(None if hit['ap99'] is None else hit['ap99'] < 1)} |")
    if cache_mem and cache_mem["cache_bytes"]:
        over = (cache_mem["rss_kib"] - cache_mem["idle_rss_kib"]) * 1024 - cache_mem["cache_bytes"]
        share = over / cache_mem["cache_bytes"]
        lines.append(f"| a full cache's RSS ≤ accounted bytes + 10 % | RSS over idle = accounted {'+' if share >= 0 else '−'} {abs(share) * 100:.1f} % | {verdict(share <= 0.10)} |")
    for result in mem:
        if result["system"] == "keel" and result["steps"]:
            step = result["steps"][-1]
            per = (step["rss_kib"] - result["idle_rss_kib"]) / step["open"] if step["open"] else None
            projected = None if per is None else (result["idle_rss_kib"] + per * 10000) * 1024 / 1e6
            measured_mb = step["rss_kib"] * 1024 / 1e6
            lines.append(f"| 10,000 open streams < 300 MB | {step['open']:,} streams: {measured_mb:.0f} MB; projected at 10,000: {fmt(projected, 0)} MB | {verdict(None if projected is None else projected < 300)} |")

    lines += ["", "## Per round", ""]
    lines.append("| round | system | non-stream req/s | CPU/1k | p50/p99 at rate ms | burst CPU/1k | split CPU/1k | trickle CPU/1k | TTFT p50 ms | other CPU-1 use max |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        other = max(r[s]["cpu1_other_pct"] for s in ("nonstream", "nonstream_rate", "stream_burst", "stream_split", "stream_trickle"))
        lines.append(
            f"| {r['round']} | {r['system']} | {fmt(r['nonstream']['rps'], 0)} | {fmt(r['nonstream']['cpu_s_per_1k'], 4)} | "
            f"{fmt(r['nonstream_rate']['p50_ms'], 3)} / {fmt(r['nonstream_rate']['p99_ms'], 3)} | {fmt(r['stream_burst']['cpu_s_per_1k'], 4)} | "
            f"{fmt(r['stream_split']['cpu_s_per_1k'], 4)} | {fmt(r['stream_trickle']['cpu_s_per_1k'], 4)} | {fmt(r['ttft']['ttft_ms']['p50'], 3)} | {other:.0f} % |"
        )
    lines += [
        "",
        "CPU is utime + stime of the proxy's processes from /proc/<pid>/stat over the measured window (nginx: master + worker). "
        "RSS is VmRSS (nginx: master + worker). \"Added\" is the system's figure minus the direct call's in the same round, median over rounds. "
        "\"Other CPU-1 use\" is CPU 1's busy time from /proc/stat minus the proxy's own: other engineers' builds, kernel softirq work.",
        "",
    ]
    return "\n".join(lines)


def command_output(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (result.stdout + result.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def main() -> int:
    started = time.time()
    work = Path(os.environ.get("BENCH_WORK") or tempfile.mkdtemp(prefix="keel-bench-work."))
    log(f"work dir {work}; systems {SYSTEMS}; {ROUNDS} rounds")
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "unknown")
    meta = {
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M %Z").strip(),
        "commit": command_output(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "keel_bin": KEEL_BIN,
        "keel_version": command_output([KEEL_BIN, "--version"]),
        "oha_version": command_output([OHA_BIN, "--version"]),
        "nginx_version": command_output([NGINX_BIN, "-v"]),
        "cpu_model": cpu_model,
        "nproc": os.cpu_count(),
        "mem_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "load_start": loadavg(),
        "command": env("BENCH_COMMAND", "bench/run.sh"),
    }
    records = []
    for round_no in range(1, ROUNDS + 1):
        order = SYSTEMS if round_no % 2 else list(reversed(SYSTEMS))
        for name in order:
            records.append(run_system(name, round_no, work))
    mem = []
    if MEM_STEPS and MEM_SYSTEMS:
        fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        ceiling = (fd_limit - 500) // 2  # a proxy holds two sockets per stream
        steps = sorted({min(int(step), ceiling) for step in MEM_STEPS.split(",") if step})
        if ceiling < max(int(step) for step in MEM_STEPS.split(",")):
            log(f"memory: open-files limit {fd_limit} caps the streams at {ceiling} (a proxy needs two sockets per stream)")
        for name in MEM_SYSTEMS:
            mem.append(memory(name, work, steps))
    cache_mem = None
    if "keel" in SYSTEMS and CACHE_MEM_BYTES > 0:
        cache_mem = cache_memory(work, CACHE_MEM_BYTES)
        log(f"cache memory: {cache_mem['cache_bytes'] / 2**20:.1f} MiB accounted, RSS {cache_mem['idle_rss_kib'] / 1024:.1f} → {cache_mem['rss_kib'] / 1024:.1f} MiB")
    meta["load_end"] = loadavg()
    meta["load_max"] = max(LOADS, default=meta["load_end"])
    meta["load_mean"] = statistics.mean(LOADS) if LOADS else meta["load_end"]
    others = [r[s]["cpu1_other_pct"] for r in records for s in ("nonstream", "nonstream_rate", "stream_burst", "stream_split", "stream_trickle")]
    meta["cpu1_other_median"] = median(others) or 0.0
    meta["cpu1_other_max"] = max(others, default=0.0)
    meta["elapsed_s"] = time.time() - started
    busy = []
    if meta["load_max"] > 3.0:
        busy.append(f"load average up to {meta['load_max']:.1f} on {meta['nproc']} CPUs")
    if meta["cpu1_other_max"] > 15:
        busy.append(f"other processes used up to {meta['cpu1_other_max']:.0f} % of CPU {PROXY_CPU}")
    meta["busy"] = "; ".join(busy)
    text = render(meta, records, mem, cache_mem)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    (OUT_DIR / f"{stamp}.md").write_text(text)
    (OUT_DIR / f"{stamp}.json").write_text(json.dumps({"meta": meta, "records": records, "memory": mem, "cache_memory": cache_mem}, indent=1))
    print(text)
    log(f"results: {OUT_DIR / (stamp + '.md')} (raw: {stamp}.json); {meta['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
