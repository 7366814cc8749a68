#!/usr/bin/env python3
"""Two Keel builds side by side, with nginx and a direct call beside them:
plain requests on one pinned core, in rounds whose order alternates, so that
a machine whose speed drifts from one minute to the next (a shared virtual
machine) moves every system alike and the builds' ratio keeps its meaning.

Each round measures, for each system, as `bench/run.sh` does:
- plain requests as fast as 32 connections go: req/s and the proxy's CPU
  seconds per 1,000 requests;
- plain requests at a fixed rate (1,000 a second): p50 and p99, and the
  added latency over the direct call of the same round.

The report gives every round, the medians, and each build against nginx and
B against A. Only 127.0.0.1 is used; everything started is stopped on exit.

Usage: bench/ab/run.py A B [--rounds 5] [--seconds 5] [--rate 1000]
  (A and B are built `keel` binaries; the mock is A's `keel mock`)
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("a", help="the first keel binary (the base)")
    parser.add_argument("b", help="the second keel binary (the change)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--conns", type=int, default=32)
    return parser.parse_args()


ARGS = parse_args()
os.environ.setdefault("KEEL_BIN", ARGS.a)
sys.path.insert(0, str(ROOT / "bench/lib"))
import bench  # noqa: E402  (reads KEEL_BIN at import)

SYSTEMS = ["direct", "nginx", "A", "B"]


def start(name: str, work: Path, mock_port: int) -> "bench.System":
    """`bench.System` for direct and nginx; for A and B, its `keel` with
    that build's binary."""
    if name in ("direct", "nginx"):
        return bench.System(name, work, mock_port)
    bench.KEEL_BIN = ARGS.a if name == "A" else ARGS.b
    instance = work / name
    instance.mkdir(exist_ok=True)
    system = bench.System("keel", instance, mock_port)
    return system


def measure(system, mock) -> dict:
    """Full load, then the fixed rate, each after a warm-up."""
    figures = {}
    for scenario, rate in (("full", None), ("rate", ARGS.rate)):
        bench.oha(system, "bench", False, ARGS.conns, 1.5, rate)
        report, cpu = bench.measured(system, mock, lambda: bench.oha(system, "bench", False, ARGS.conns, ARGS.seconds, rate))
        figures[scenario] = bench.summarize_oha(report, cpu)
    return figures


def run(work: Path) -> list[dict]:
    mock, mock_port = bench.start_mock(work)
    records = []
    try:
        for round_no in range(1, ARGS.rounds + 1):
            order = SYSTEMS if round_no % 2 else list(reversed(SYSTEMS))
            for name in order:
                system = start(name, work, mock_port)
                try:
                    figures = measure(system, mock)
                finally:
                    system.stop()
                records.append({"round": round_no, "system": name, **figures})
                full, rate = figures["full"], figures["rate"]
                cpu = f"{full['cpu_s_per_1k']:.4f}" if full["cpu_s_per_1k"] is not None else "—"
                bench.log(f"round {round_no} {name:6} {full['rps']:8.0f} req/s  cpu/1k {cpu}  "
                          f"at {ARGS.rate}/s p50 {rate['p50_ms']:.3f} p99 {rate['p99_ms']:.3f} ms  "
                          f"non-ok {full['non_ok'] + rate['non_ok']}  errors {full['errors'] + rate['errors']}  "
                          f"other cpu1 {max(full['cpu1_other_pct'], rate['cpu1_other_pct']):.0f}%")
    finally:
        mock.stop()
    return records


def report(records: list[dict]) -> None:
    def values(system: str, scenario: str, key: str) -> list:
        return [r[scenario][key] for r in records if r["system"] == system and r[scenario][key] is not None]

    def added(system: str, key: str) -> float | None:
        direct = {r["round"]: r["rate"][key] for r in records if r["system"] == "direct"}
        return bench.median([r["rate"][key] - direct[r["round"]] for r in records if r["system"] == system])

    print(f"| system | req/s | CPU s / 1k | p50 at {ARGS.rate}/s | p99 at {ARGS.rate}/s | added p50 | added p99 |")
    print("|---|---|---|---|---|---|---|")
    medians = {}
    for name in SYSTEMS:
        cpu = bench.median(values(name, "full", "cpu_s_per_1k")) if name != "direct" else None
        rps = bench.median(values(name, "full", "rps"))
        medians[name] = (cpu, rps)
        p50, p99 = bench.median(values(name, "rate", "p50_ms")), bench.median(values(name, "rate", "p99_ms"))
        extra = "| — | — |" if name == "direct" else f"| +{added(name, 'p50_ms'):.3f} ms | +{added(name, 'p99_ms'):.3f} ms |"
        print(f"| {name} | {rps:,.0f} | {'—' if cpu is None else f'{cpu:.4f}'} | {p50:.3f} ms | {p99:.3f} ms {extra}")
    print()
    nginx_cpu, nginx_rps = medians["nginx"]
    for name in ("A", "B"):
        cpu, rps = medians[name]
        print(f"- {name} / nginx: CPU {cpu / nginx_cpu:.2f}×, throughput {rps / nginx_rps:.2f}×")
    # B against A round by round: both ran within minutes of each other.
    ratios = []
    for round_no in range(1, ARGS.rounds + 1):
        cpu = {r["system"]: r["full"]["cpu_s_per_1k"] for r in records if r["round"] == round_no}
        ratios.append(cpu["B"] / cpu["A"])
    print(f"- B / A, CPU per request, by round: {', '.join(f'{ratio:.3f}' for ratio in ratios)} "
          f"(median {bench.median(ratios):.3f})")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="keel-ab."))
    try:
        report(run(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
