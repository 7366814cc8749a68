#!/usr/bin/env python3
"""Routing strategies against a target that turns slow halfway through.

Three targets on one `keel mock` (upstream models m-a, m-b, m-c, each with a
20 ms first token). For each strategy a fresh gateway serves one model over
the three targets; streamed requests go through it from a few client
threads, and halfway through, the mock makes m-a's first token 20 x slower
(400 ms). Reported per strategy: p50/p99 time to first token over the second
half, and the share of second-half requests that still went to the slow
target. Only 127.0.0.1 is used; everything started is stopped on exit.

Usage: bench/strategies/run.py [--keel target/release/keel] [--requests 600] [--threads 6]
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

STRATEGIES = ["ordered", "weighted", "least_busy", "latency"]
FAST_MS, SLOW_MS = 20, 400


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(port, path):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", path)
            if connection.getresponse().status < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"127.0.0.1:{port} did not become ready")


def set_faults(mock_port, model, faults):
    connection = http.client.HTTPConnection("127.0.0.1", mock_port, timeout=5)
    connection.request("PUT", f"/_mock/faults/{model}", json.dumps(faults), {"Content-Type": "application/json"})
    connection.getresponse().read()


def one_request(port):
    """A streamed completion: (seconds to the first content chunk, provider)."""
    body = json.dumps({"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    connection.request("POST", "/v1/chat/completions", body,
                       {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"})
    response = connection.getresponse()
    provider = response.getheader("x-keel-provider", "?")
    first = None
    for line in response:
        if first is None and line.startswith(b"data:") and b'"content":"' in line and b'"content":""' not in line:
            first = time.perf_counter() - started
    return (first if first is not None else time.perf_counter() - started), provider


def run_strategy(keel, mock_port, strategy, requests, threads, work):
    port = free_port()
    config = os.path.join(work, f"{strategy}.yaml")
    base = f"http://127.0.0.1:{mock_port}/v1"
    with open(config, "w") as file:
        file.write(f"""server: {{listen: 127.0.0.1:{port}}}
database: {{url: "sqlite::memory:"}}
tenants: [{{name: bench, keys: [sk-bench]}}]
providers:
  a: {{kind: openai, base_url: "{base}", retry: {{attempts: 1}}}}
  b: {{kind: openai, base_url: "{base}", retry: {{attempts: 1}}}}
  c: {{kind: openai, base_url: "{base}", retry: {{attempts: 1}}}}
models:
  chat:
    strategy: {strategy}
    targets: [{{provider: a, model: m-a}}, {{provider: b, model: m-b}}, {{provider: c, model: m-c}}]
""")
    for model in ("m-a", "m-b", "m-c"):
        set_faults(mock_port, model, {"first_token_delay_ms": FAST_MS, "chunks": 3})
    gateway = subprocess.Popen([keel, "serve", "--config", config], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, "/readyz")
        results = [None] * requests
        counter = iter(range(requests))
        lock = threading.Lock()

        def worker():
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                if index == requests // 2:
                    set_faults(mock_port, "m-a", {"first_token_delay_ms": SLOW_MS, "chunks": 3})
                results[index] = one_request(port)

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)
    second = [result for result in results[requests // 2 + threads:] if result]
    times = sorted(seconds for seconds, _ in second)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    slow_share = sum(1 for _, provider in second if provider == "a") / len(second)
    return statistics.median(times) * 1000, p99 * 1000, slow_share


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keel", default="target/release/keel")
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--threads", type=int, default=6)
    args = parser.parse_args()
    mock_port = free_port()
    mock = subprocess.Popen([args.keel, "mock", "--listen", f"127.0.0.1:{mock_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(mock_port, "/_mock/stats")
        with tempfile.TemporaryDirectory() as work:
            print(f"| strategy | p50 TTFT (ms) | p99 TTFT (ms) | share to the slow target |")
            print("|---|---|---|---|")
            for strategy in STRATEGIES:
                p50, p99, share = run_strategy(args.keel, mock_port, strategy, args.requests, args.threads, work)
                print(f"| {strategy} | {p50:.0f} | {p99:.0f} | {share:.1%} |", flush=True)
    finally:
        mock.terminate()
        mock.wait(timeout=10)


main()
