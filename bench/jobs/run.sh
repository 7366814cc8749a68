#!/usr/bin/env bash
# Job queue benchmark: enqueue rate over HTTP (oha against POST /v1/jobs on an
# API-only instance), then end-to-end completion rate (a worker instance
# drains the queue against an instant `keel mock` upstream; rate = jobs /
# (last finished_at - first started_at) read from the store), on Postgres and
# SQLite; plus pgbench running Keel's claim + finish statements bare, as the
# physical limit of the store. See bench/jobs/README.md.
#
#   bench/jobs/run.sh                 # uses $KEEL_BIN or target-jobs/release/keel or target/release/keel
# Then pickup latency (JQ-5): jobs submitted at a steady LATENCY_RATE to an
# idle worker instance (and, on Postgres, to a separate API-only instance, so
# the wake-up crosses instances by LISTEN/NOTIFY); enqueue->start =
# started_at - created_at from the rows.
# Knobs: JOBS=20000 CONNS=64 WORKERS=64 BACKENDS="postgres sqlite" PGBENCH_CLIENTS=16
#        LATENCY_RATE=200 LATENCY_JOBS=2000
#        PG_POOL=64 (Keel's Postgres pool: database.url ...?max_connections=N)
#        DATABASE_URL=postgres://postgres@127.0.0.1:5432/test BENCH_OUT=bench/results
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
JOBS=${JOBS:-20000}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-64}
BACKENDS=${BACKENDS:-postgres sqlite}
PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-16}
PG_POOL=${PG_POOL:-64}
LATENCY_RATE=${LATENCY_RATE:-200}
LATENCY_JOBS=${LATENCY_JOBS:-2000}
ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_ROOT=${ADMIN_URL%/*}
OUT_DIR=${BENCH_OUT:-bench/results}
mkdir -p "$OUT_DIR"
STAMP=$(date +%Y%m%d-%H%M%S)
REPORT="$OUT_DIR/jobs-$STAMP.md"
WORK=$(mktemp -d /tmp/keel-jobs-bench.XXXXXX)
PIDS=()

log() { printf '[jobs-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.3
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS keel_jobs_bench WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT INT TERM

KEEL_BIN=${KEEL_BIN:-}
for candidate in "$ROOT/target-jobs/release/keel" "$ROOT/target/release/keel"; do
    if [ -z "$KEEL_BIN" ] && [ -x "$candidate" ]; then KEEL_BIN=$candidate; fi
done
if [ -z "$KEEL_BIN" ]; then
    log "building target/release/keel"
    cargo build --release -p keel >&2
    KEEL_BIN=$ROOT/target/release/keel
fi
OHA_BIN=${OHA_BIN:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}
[ -x "$OHA_BIN" ] || { log "installing oha"; cargo install oha --locked; OHA_BIN=$HOME/.cargo/bin/oha; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 1 200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done
    log "$1 did not come up"; cat "$WORK"/*.log >&2 || true; return 1
}

MOCK_PORT=$(free_port)
"$KEEL_BIN" mock --listen "127.0.0.1:$MOCK_PORT" >/dev/null 2>"$WORK/mock.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$MOCK_PORT/_mock/stats"

config() { # $1 = database url, $2 = workers, $3 = port
    cat <<YAML
server: {listen: "127.0.0.1:$3", shutdown_grace: 5s, max_in_flight: 100000}
tenants:
  - {name: bench, keys: ["sk-bench"]}
providers:
  mock: {kind: openai, base_url: "http://127.0.0.1:$MOCK_PORT/v1", max_concurrent: 10000}
models:
  chat: {targets: [{provider: mock, model: gpt-mock}]}
database: {url: "$1"}
jobs: {workers: $2, lease: 60s, max_attempts: 3}
YAML
}

start_keel() { # $1 = config file; sets KEEL_PID
    RUST_LOG=warn NO_COLOR=1 "$KEEL_BIN" serve --config "$1" >/dev/null 2>>"$WORK/keel.log" &
    KEEL_PID=$!
    PIDS+=("$KEEL_PID")
}

count_done() { # $1 = backend, $2 = url
    if [ "$1" = postgres ]; then
        psql "$2" -Atc "SELECT count(*) FROM keel_jobs WHERE status = 'succeeded'"
    else
        sqlite3 "${2#sqlite://}" "SELECT count(*) FROM keel_jobs WHERE status = 'succeeded'"
    fi
}

span_ms() { # $1 = backend, $2 = url: last finished_at - first started_at
    local sql="SELECT max(finished_at) - min(started_at) FROM keel_jobs WHERE status = 'succeeded'"
    if [ "$1" = postgres ]; then psql "$2" -Atc "$sql"; else sqlite3 "${2#sqlite://}" "$sql"; fi
}

BODY='{"request":{"model":"chat","messages":[{"role":"user","content":"benchmark job"}],"max_tokens":16}}'
LATENCY_ROWS=$WORK/latency.md

sql_rows() { # $1 = backend, $2 = url, $3 = query
    if [ "$1" = postgres ]; then psql "$2" -Atc "$3"; else sqlite3 "${2#sqlite://}" "$3"; fi
}

# Submits LATENCY_JOBS jobs tagged $4 at LATENCY_RATE/s to port $3, waits
# for them, and appends enqueue->start percentiles to the latency table.
latency_phase() { # $1 = backend, $2 = url, $3 = port, $4 = tag, $5 = label
    local body="{\"request\":{\"model\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"latency\"}]},\"metadata\":{\"phase\":\"$4\"}}"
    local where="metadata LIKE '%\"$4\"%'"
    log "$1: pickup latency, $LATENCY_JOBS jobs at $LATENCY_RATE/s ($5)"
    "$OHA_BIN" --no-tui --output-format json -n "$LATENCY_JOBS" -c 8 -q "$LATENCY_RATE" -m POST \
        -H 'authorization: Bearer sk-bench' -H 'content-type: application/json' -d "$body" \
        "http://127.0.0.1:$3/v1/jobs" >/dev/null
    for _ in $(seq 1 600); do
        [ "$(sql_rows "$1" "$2" "SELECT count(*) FROM keel_jobs WHERE status = 'succeeded' AND $where")" -ge "$LATENCY_JOBS" ] && break
        sleep 0.1
    done
    sql_rows "$1" "$2" "SELECT started_at - created_at FROM keel_jobs WHERE started_at IS NOT NULL AND $where" \
        | python3 -c '
import sys
label = sys.argv[1]
delays = sorted(int(line) for line in sys.stdin if line.strip())
pick = lambda q: delays[min(len(delays) - 1, int(q * len(delays)))]
print(f"| {label} | {len(delays)} | {pick(0.5)} | {pick(0.99)} | {delays[-1]} |")' "$1, $5" >>"$LATENCY_ROWS"
}
{
    echo "# Job queue benchmark $STAMP"
    echo
    echo "- machine: $(nproc) cores, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo "- keel: $KEEL_BIN ($(git -C "$ROOT" rev-parse --short HEAD)); jobs: $JOBS; oha connections: $CONNS; workers: $WORKERS; Postgres pool: $PG_POOL"
    echo "- $(psql "$ADMIN_URL" -Atc 'SELECT version()' | cut -d, -f1)"
    echo
    echo "| store | enqueue (jobs/s, HTTP 202) | non-202 | end-to-end completion (jobs/s) |"
    echo "|---|---|---|---|"
} >"$REPORT"

for backend in $BACKENDS; do
    if [ "$backend" = postgres ]; then
        psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS keel_jobs_bench WITH (FORCE)" >/dev/null
        psql "$ADMIN_URL" -qc "CREATE DATABASE keel_jobs_bench" >/dev/null
        URL="$PG_ROOT/keel_jobs_bench"
        KEEL_URL="$URL?max_connections=$PG_POOL"
    else
        URL="sqlite://$WORK/bench.db"
        KEEL_URL=$URL
    fi
    API_PORT=$(free_port)
    config "$KEEL_URL" 0 "$API_PORT" >"$WORK/api.yaml"
    start_keel "$WORK/api.yaml"; API_PID=$KEEL_PID
    wait_http "http://127.0.0.1:$API_PORT/readyz"
    log "$backend: enqueueing $JOBS jobs over $CONNS connections"
    "$OHA_BIN" --no-tui --output-format json -n "$JOBS" -c "$CONNS" -m POST \
        -H 'authorization: Bearer sk-bench' -H 'content-type: application/json' -d "$BODY" \
        "http://127.0.0.1:$API_PORT/v1/jobs" >"$WORK/oha-$backend.json"
    ENQUEUE=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(round(d['summary']['requestsPerSec']))" "$WORK/oha-$backend.json")
    NON202=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); c=d['statusCodeDistribution']; print(sum(v for k,v in c.items() if k!='202'))" "$WORK/oha-$backend.json")
    kill -TERM "$API_PID"; wait "$API_PID" 2>/dev/null || true
    QUEUED=$(count_done "$backend" "$URL" >/dev/null; if [ "$backend" = postgres ]; then psql "$URL" -Atc "SELECT count(*) FROM keel_jobs"; else sqlite3 "${URL#sqlite://}" "SELECT count(*) FROM keel_jobs"; fi)
    log "$backend: $ENQUEUE jobs/s enqueued ($QUEUED rows); draining with $WORKERS workers"
    WORKER_PORT=$(free_port)
    config "$KEEL_URL" "$WORKERS" "$WORKER_PORT" >"$WORK/worker.yaml"
    start_keel "$WORK/worker.yaml"; WORKER_PID=$KEEL_PID
    for _ in $(seq 1 1200); do
        [ "$(count_done "$backend" "$URL")" -ge "$QUEUED" ] && break
        sleep 0.25
    done
    DONE=$(count_done "$backend" "$URL")
    SPAN=$(span_ms "$backend" "$URL")
    COMPLETE=$(python3 -c "import sys; print(round(int(sys.argv[1]) / (max(int(sys.argv[2]), 1) / 1000)))" "$DONE" "$SPAN")
    latency_phase "$backend" "$URL" "$WORKER_PORT" "same-$backend" "submitted to the worker instance"
    if [ "$backend" = postgres ]; then
        API_PORT=$(free_port)
        config "$KEEL_URL" 0 "$API_PORT" >"$WORK/api.yaml"
        start_keel "$WORK/api.yaml"; API_PID=$KEEL_PID
        wait_http "http://127.0.0.1:$API_PORT/readyz"
        latency_phase "$backend" "$URL" "$API_PORT" "cross-$backend" "submitted to another instance (LISTEN/NOTIFY)"
        kill -TERM "$API_PID"; wait "$API_PID" 2>/dev/null || true
    fi
    kill -TERM "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true
    log "$backend: $DONE jobs completed in ${SPAN} ms: $COMPLETE jobs/s"
    echo "| $backend | $ENQUEUE | $NON202 | $COMPLETE ($DONE jobs in $SPAN ms) |" >>"$REPORT"
    if [ "$backend" = postgres ]; then KEEL_PG_COMPLETE=$COMPLETE; fi
done

if [[ " $BACKENDS " == *" postgres "* ]]; then
    log "pgbench: bare claim + finish over $PGBENCH_CLIENTS clients"
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS keel_jobs_bench WITH (FORCE)" >/dev/null
    psql "$ADMIN_URL" -qc "CREATE DATABASE keel_jobs_bench" >/dev/null
    URL="$PG_ROOT/keel_jobs_bench"
    config "$URL" 0 "$(free_port)" >"$WORK/migrate.yaml"
    "$KEEL_BIN" migrate --config "$WORK/migrate.yaml" 2>>"$WORK/keel.log"
    psql "$URL" -qc "INSERT INTO keel_jobs (id, tenant, status, model, request, created_at, run_at)
        SELECT 'job_' || lpad(to_hex(n), 28, '0'), 'bench', 'queued', 'chat', '$BODY', n, n FROM generate_series(1, $JOBS) AS n" >/dev/null
    PER_CLIENT=$(( JOBS / PGBENCH_CLIENTS ))
    pgbench -n -M prepared -c "$PGBENCH_CLIENTS" -j 2 -t "$PER_CLIENT" -f bench/jobs/claim.sql "$URL" >"$WORK/pgbench.txt" 2>&1 \
        || { cat "$WORK/pgbench.txt" >&2; exit 1; }
    TPS=$(grep -m1 '^tps' "$WORK/pgbench.txt" | sed -E 's/tps = ([0-9.]+).*/\1/')
    log "pgbench: batched claim (16) + batched finish"
    psql "$URL" -qc "UPDATE keel_jobs SET status = 'queued', lease_token = NULL, lease_expires_at = NULL" >/dev/null
    pgbench -n -M prepared -c "$PGBENCH_CLIENTS" -j 2 -t $(( PER_CLIENT / 16 )) -f bench/jobs/claim_batch.sql "$URL" >"$WORK/pgbench-batch.txt" 2>&1 \
        || { cat "$WORK/pgbench-batch.txt" >&2; exit 1; }
    BATCH_TPS=$(grep -m1 '^tps' "$WORK/pgbench-batch.txt" | sed -E 's/tps = ([0-9.]+).*/\1/')
    BATCH_JOBS=$(python3 -c "import sys; print(round(float(sys.argv[1]) * 16))" "$BATCH_TPS")
    RATIO=$(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "${KEEL_PG_COMPLETE:-0}" "$TPS")
    BATCH_RATIO=$(python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "${KEEL_PG_COMPLETE:-0}" "$BATCH_JOBS")
    {
        echo
        echo "| pgbench, $PGBENCH_CLIENTS clients, $JOBS jobs, no HTTP | jobs/s | Keel end-to-end ÷ this |"
        echo "|---|---|---|"
        echo "| claim 1 (FOR UPDATE SKIP LOCKED) + finish 1, Keel's statements (claim.sql) | $(printf '%.0f' "$TPS") | $RATIO |"
        echo "| claim 16 + finish 16 in one statement each (claim_batch.sql, upper bound) | $BATCH_JOBS | $BATCH_RATIO |"
    } >>"$REPORT"
fi
if [ -s "$LATENCY_ROWS" ]; then
    {
        echo
        echo "| pickup latency at $LATENCY_RATE jobs/s, idle workers | jobs | enqueue->start p50 (ms) | p99 (ms) | max (ms) |"
        echo "|---|---|---|---|---|"
        cat "$LATENCY_ROWS"
    } >>"$REPORT"
fi
log "report: $REPORT"
cat "$REPORT"
