#!/usr/bin/env python3
"""Runtime shape at two cores: one process with a two-worker runtime against
one process per core, with nginx's two workers beside them.

Every layout runs on both cores of the machine, with the load generators and
the mock on the same two cores, so req/s is shared with the load; CPU seconds
per 1,000 requests of the proxy's processes is the figure to compare.

- nginx: `worker_processes 2`.
- keel: one process, tokio's multi-thread runtime with a worker per core (the
  default).
- keel workers=2: one process with `server.workers: 2`, two threads each
  running a single-threaded runtime, accepting from one listening socket,
  sharing the process's state, each with its own upstream connections.
- keel x2: two processes, each pinned to one core, so each runs a one-worker
  runtime with its own listener and its own upstream connections: the most a
  thread-per-core layout could gain, since nothing (limits, breakers, cache)
  is shared between them.
- keel 1-core: one process pinned to one core, for reference.

Each layout is measured on plain requests and on streams of 20 chunks sent at
once, by two oha processes of CONNS/2 connections each (for keel x2, one per
process). Only 127.0.0.1 is used; everything started here is stopped on exit.

Usage: bench/cores/run.py [--keel target/release/keel] [--rounds 2] [--seconds 6]
"""

import argparse
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]


LAYOUTS = ["nginx", "keel", "keel workers=2", "keel x2", "keel 1-core"]


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--keel", default=str(ROOT / "target/release/keel"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="which layouts, comma-separated (nginx always runs)")
    return parser.parse_args()


ARGS = parse_args()
os.environ.setdefault("KEEL_BIN", ARGS.keel)
os.environ.setdefault("LOAD_CPU", "0,1")  # the mock runs on both cores too
sys.path.insert(0, str(ROOT / "bench/lib"))
import bench  # noqa: E402  (reads KEEL_BIN and LOAD_CPU at import)

BOTH = "0,1"
SCENARIOS = [("plain", False), ("burst streams", True)]


class Layout:
    """The proxy processes of one layout and the ports the load goes to."""

    def __init__(self, name: str, work: Path, mock_port: int):
        self.name, self.procs, self.ports = name, [], []
        if name == "nginx":
            port = bench.free_port()
            config = bench.nginx_config(work, port, mock_port)
            config.write_text(config.read_text().replace("worker_processes 1;", "worker_processes 2;"))
            argv = [bench.NGINX_BIN, "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(config), "-g", "daemon off;"]
            self.start(bench.Proc("nginx", argv, BOTH, work / "nginx.log"), port, "/_mock/stats")
            return
        cores = {"keel": [BOTH], "keel workers=2": [BOTH], "keel x2": ["0", "1"], "keel 1-core": ["1"]}[name]
        for index, cpu in enumerate(cores):
            port = bench.free_port()
            instance = work / f"keel-{index}"
            instance.mkdir(exist_ok=True)
            config = bench.keel_config(instance, port, mock_port)
            if name == "keel workers=2":
                config.write_text(config.read_text().replace("server:\n", "server:\n  workers: 2\n", 1))
            argv = [bench.KEEL_BIN, "serve", "--config", str(config)]
            self.start(bench.Proc("keel", argv, cpu, instance / "keel.log", {"RUST_LOG": "warn"}), port, "/healthz")

    def start(self, proc, port: int, ready_path: str) -> None:
        self.procs.append(proc)
        self.ports.append(port)
        bench.wait_ready(port, ready_path, proc)

    def model(self, public: str) -> str:
        """Keel routes public names; nginx sees the upstream names."""
        return public if self.name.startswith("keel") else bench.PUBLIC[public]

    def pids(self) -> list[int]:
        return [pid for proc in self.procs for pid in proc.pids()]

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


def load(layout: Layout, stream: bool, seconds: float) -> dict:
    """Two oha processes at once (one per port when there are two), each as
    `bench.oha` runs it, here on both cores."""
    ports = layout.ports * (2 // len(layout.ports))
    targets = [SimpleNamespace(port=port, model=layout.model) for port in ports]
    with ThreadPoolExecutor(len(targets)) as pool:
        reports = list(pool.map(lambda target: bench.oha(target, "bench", stream, ARGS.conns // 2, seconds), targets))
    ok = failed = 0
    for report in reports:
        codes = report.get("statusCodeDistribution", {})
        ok += int(codes.get("200", 0))
        failed += sum(int(v) for k, v in codes.items() if k != "200")
        failed += sum(int(v) for v in report.get("errorDistribution", {}).values())
    return {"ok": ok, "failed": failed, "elapsed": max(report["summary"]["total"] for report in reports)}


def measure(layout: Layout, stream: bool) -> dict:
    load(layout, stream, 1.5)  # warm-up: connections, pools, caches
    pids = layout.pids()
    before = bench.cpu_ticks(pids)
    result = load(layout, stream, ARGS.seconds)
    cpu_s = (bench.cpu_ticks(pids) - before) / bench.CLK_TCK
    result["rps"] = result["ok"] / result["elapsed"] if result["elapsed"] else 0.0
    result["cpu_s_per_1k"] = 1000 * cpu_s / result["ok"] if result["ok"] else None
    return result


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="keel-cores."))
    try:
        report(measure_all(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_all(work: Path) -> dict:
    """Every chosen layout and scenario, rounds alternating in order."""
    results: dict = {}
    chosen = ["nginx"] + [name for name in LAYOUTS[1:] if name in ARGS.layouts.split(",")]
    for round_no in range(ARGS.rounds):
        order = chosen if round_no % 2 == 0 else list(reversed(chosen))
        for name in order:
            mock, mock_port = bench.start_mock(work)
            layout = None
            try:
                layout = Layout(name, work, mock_port)
                for scenario, stream in SCENARIOS:
                    figures = measure(layout, stream)
                    results.setdefault((name, scenario), []).append(figures)
                    bench.log(f"round {round_no + 1} {name:13} {scenario:14} {figures['rps']:8.0f} req/s  "
                              f"cpu/1k {figures['cpu_s_per_1k']:.4f} s  failed {figures['failed']}  load {bench.loadavg():.2f}")
            finally:
                if layout:
                    layout.stop()
                mock.stop()
    return results


def report(results: dict) -> None:
    chosen = list(dict.fromkeys(name for name, _ in results))
    print("| layout | scenario | req/s | CPU s / 1k | CPU / nginx | failed |")
    print("|---|---|---|---|---|---|")
    for scenario, _ in SCENARIOS:
        nginx_cpu = bench.median([r["cpu_s_per_1k"] for r in results[("nginx", scenario)]])
        for name in chosen:
            rows = results[(name, scenario)]
            cpu = bench.median([r["cpu_s_per_1k"] for r in rows])
            print(f"| {name} | {scenario} | {bench.median([r['rps'] for r in rows]):,.0f} | {cpu:.4f} | "
                  f"{cpu / nginx_cpu:.2f}× | {sum(r['failed'] for r in rows)} |")


if __name__ == "__main__":
    main()
