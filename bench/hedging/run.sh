#!/usr/bin/env bash
# First-token hedging against a heavy-tailed upstream (the hedging target: 1 request in
# 50 is 20x slower; p99 time to first token cut by at least 5x for under 10 %
# extra upstream requests). One `keel mock` (first token after BASE_MS, every
# 50th request 20x that), one Keel with the same target under three models:
# `plain` (no hedge), `fixed` (hedge after AFTER) and `p95` (hedge at the
# model's observed p95). The main bench's stream client
# (bench/lib/streams.py, `ttft`) runs COUNT streams at RATE/s against each;
# upstream calls come from the mock's counters, hedged answers from Keel's
# keel_hedge_wins_total. Only 127.0.0.1 is used; the run stops by itself.
#
#   bench/hedging/run.sh      # KEEL_BIN=… to use a prebuilt binary
# Knobs: COUNT=1000 RATE=50 BASE_MS=50 AFTER=100ms BENCH_OUT=bench/results
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
COUNT=${COUNT:-1000}
RATE=${RATE:-50}
BASE_MS=${BASE_MS:-50}
AFTER=${AFTER:-100ms}
OUT_DIR=${BENCH_OUT:-bench/results}
mkdir -p "$OUT_DIR"
REPORT="$OUT_DIR/hedging-$(date +%Y%m%d-%H%M%S).md"
WORK=$(mktemp -d /tmp/keel-hedging-bench.XXXXXX)
PIDS=()
log() { printf '[hedging %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.2
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

KEEL_BIN=${KEEL_BIN:-$ROOT/target/release/keel}
if [ ! -x "$KEEL_BIN" ]; then
    log "building target/release/keel"
    cargo build --release -p keel >&2
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 1 200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done
    log "$1 did not come up"; return 1
}

MOCK_PORT=$(free_port)
"$KEEL_BIN" mock --listen "127.0.0.1:$MOCK_PORT" >/dev/null 2>"$WORK/mock.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$MOCK_PORT/_mock/stats"
curl -fsS -X PUT "http://127.0.0.1:$MOCK_PORT/_mock/faults/gpt-mock" -H 'content-type: application/json' \
    -d "{\"first_token_delay_ms\": $BASE_MS, \"heavy_tail\": {\"one_in\": 50, \"factor\": 20}}" >/dev/null

KEEL_PORT=$(free_port)
cat >"$WORK/keel.yaml" <<YAML
server: {listen: "127.0.0.1:$KEEL_PORT", max_in_flight: 100000}
tenants:
  - {name: bench, keys: ["sk-bench"]}
providers:
  mock: {kind: openai, base_url: "http://127.0.0.1:$MOCK_PORT/v1", max_concurrent: 10000, retry: {attempts: 1}}
models:
  plain: {targets: [{provider: mock, model: gpt-mock}]}
  fixed: {targets: [{provider: mock, model: gpt-mock}], hedge: {after: $AFTER, budget: 10%}}
  p95: {targets: [{provider: mock, model: gpt-mock}], hedge: {after: p95, budget: 10%}}
jobs: {workers: 0}
YAML
RUST_LOG=warn NO_COLOR=1 "$KEEL_BIN" serve --config "$WORK/keel.yaml" >/dev/null 2>"$WORK/keel.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$KEEL_PORT/healthz"

upstream_requests() {
    curl -fsS "http://127.0.0.1:$MOCK_PORT/_mock/stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(m.get("requests",0) for m in (d.values() if isinstance(d,dict) else d)))'
}

{
    echo "# Hedging benchmark $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- machine: $(nproc) cores, $(uname -sr); keel $(git -C "$ROOT" rev-parse --short HEAD) ($KEEL_BIN)"
    echo "- upstream: first token after $BASE_MS ms, every 50th request 20x slower; $COUNT streams at $RATE/s per model (bench/lib/streams.py)"
    echo
    echo "| model | hedge | TTFT p50 ms | p90 ms | p99 ms | max ms | upstream calls | extra calls | hedged answers | failed |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
} >"$REPORT"
for model in plain fixed p95; do
    case $model in plain) hedge="off" ;; fixed) hedge="after $AFTER, budget 10%" ;; p95) hedge="after p95, budget 10%" ;; esac
    before=$(upstream_requests)
    log "$model: $COUNT streams at $RATE/s"
    result=$(python3 - "$KEEL_PORT" "$model" "$COUNT" "$RATE" <<'PY'
import asyncio, json, sys
sys.path.insert(0, "bench/lib")
import streams
port, model, count, rate = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
print(json.dumps(asyncio.run(streams.ttft("127.0.0.1", port, model, "sk-bench", rate, count / rate, 0))))
PY
)
    sleep 1.2  # slow losers still count once they arrive at the mock
    calls=$(( $(upstream_requests) - before ))
    hedged=$(curl -fsS "http://127.0.0.1:$KEEL_PORT/metrics" | awk -v m="$model" '$1 == "keel_hedge_wins_total{model=\""m"\"}" {print $2}')
    python3 - "$model" "$hedge" "$calls" "${hedged:-0}" "$result" >>"$REPORT" <<'PY'
import json, sys
model, hedge, calls, hedged, result = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5])
t = result["ttft_ms"]
ok = result["ok"] + result["error_count"]
extra = calls - ok
print(f"| {model} | {hedge} | {t['p50']:.1f} | {t['p90']:.1f} | {t['p99']:.1f} | {t['max']:.1f} | {calls} | {extra} ({100 * extra / ok:.1f} %) | {hedged} | {result['error_count']} |")
PY
done
log "report: $REPORT"
cat "$REPORT"
