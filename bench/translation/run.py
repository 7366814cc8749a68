#!/usr/bin/env python3
"""Translation overhead: the same Keel, the same `keel mock`, one public model
served through the OpenAI passthrough and one through the Anthropic adapter
(OpenAI request -> Anthropic Messages -> OpenAI answer, streams included).
Prints req/s, p50/p99 and Keel CPU per 1,000 requests for each, and the ratio.

Usage: bench/translation/run.py [KEEL_BIN]   (default target/release/keel)
Targets only 127.0.0.1, runs about a minute, stops by itself.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEEL = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target/release/keel")
OHA = shutil.which("oha") or str(Path.home() / ".cargo/bin/oha")
KEY = "sk-bench"
SECONDS = float(os.environ.get("SECONDS_PER_RUN", "5"))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(argv, cpu, log, env=None):
    environment = dict(os.environ, RUST_LOG="warn", **(env or {}))
    return subprocess.Popen(["taskset", "-c", cpu, *argv], stdout=log, stderr=log, env=environment, start_new_session=True)


def wait_ready(url: str) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def oha(port: int, model: str, stream: bool) -> dict:
    body = json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Say hello"}]})
    argv = ["taskset", "-c", "0", OHA, "--no-tui", "--output-format", "json", "--worker-threads", "1", "-c", "32",
            "-z", f"{int(SECONDS * 1000)}ms", "-w", "-m", "POST", "-H", f"authorization: Bearer {KEY}",
            "-H", "content-type: application/json", "-d", body, f"http://127.0.0.1:{port}/v1/chat/completions"]
    return json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=SECONDS + 60).stdout)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="keel-translation-"))
    log = open(work / "log", "ab")
    mock_port, keel_port = free_port(), free_port()
    procs = []
    try:
        procs.append(start([KEEL, "mock", "--listen", f"127.0.0.1:{mock_port}"], "0", log))
        wait_ready(f"http://127.0.0.1:{mock_port}/_mock/stats")
        config = work / "keel.yaml"
        config.write_text(
            f"server: {{listen: '127.0.0.1:{keel_port}', max_in_flight: 20000, shutdown_grace: 0s}}\n"
            "database: {url: 'sqlite::memory:'}\n"
            f"tenants: [{{name: bench, keys: [{KEY}]}}]\n"
            "providers:\n"
            f"  oa: {{kind: openai, base_url: 'http://127.0.0.1:{mock_port}/v1'}}\n"
            f"  an: {{kind: anthropic, base_url: 'http://127.0.0.1:{mock_port}', api_key: x}}\n"
            "models:\n"
            "  via-openai: {targets: [{provider: oa, model: bench-model}]}\n"
            "  via-anthropic: {targets: [{provider: an, model: bench-model}]}\n"
        )
        keel = start([KEEL, "serve", "--config", str(config)], "1", log)
        procs.append(keel)
        wait_ready(f"http://127.0.0.1:{keel_port}/healthz")
        rows = {}
        for stream in (False, True):
            for model in ("via-openai", "via-anthropic"):
                oha(keel_port, model, stream)  # warm-up
                before = cpu_seconds(keel.pid)
                report = oha(keel_port, model, stream)
                used = cpu_seconds(keel.pid) - before
                ok = report.get("statusCodeDistribution", {}).get("200", 0)
                latency = report.get("latencyPercentiles", {})
                rows[(stream, model)] = {
                    "rps": report["summary"]["requestsPerSec"], "ok": ok,
                    "errors": sum(v for k, v in report.get("statusCodeDistribution", {}).items() if k != "200"),
                    "p50": latency.get("p50", 0) * 1000, "p99": latency.get("p99", 0) * 1000,
                    "cpu_per_1k": 1000 * used / max(ok, 1),
                }
        print("| scenario | path | req/s | p50 ms | p99 ms | Keel CPU s / 1k | non-200 |")
        print("|---|---|---|---|---|---|---|")
        for (stream, model), row in rows.items():
            scenario = "stream, 20 chunks at once" if stream else "non-stream"
            print(f"| {scenario} | {model} | {row['rps']:.0f} | {row['p50']:.2f} | {row['p99']:.2f} | {row['cpu_per_1k']:.3f} | {row['errors']} |")
        for stream in (False, True):
            a, o = rows[(stream, "via-anthropic")], rows[(stream, "via-openai")]
            scenario = "stream" if stream else "non-stream"
            print(f"\n{scenario}: anthropic/openai throughput {a['rps'] / o['rps']:.2f}x, p99 {a['p99'] / o['p99']:.2f}x, CPU {a['cpu_per_1k'] / o['cpu_per_1k']:.2f}x")
        print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")
        return 0
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
