#!/usr/bin/env bash
# Keel vs nginx `proxy_pass` vs a direct call, against one `keel mock` upstream,
# in one run: throughput, latency, CPU per 1k requests, added latency at a fixed
# rate, time to first token, RSS, correctness under load, memory per open stream.
# See bench/README.md. Only 127.0.0.1 is targeted; the run stops by itself.
#
#   bench/run.sh                          # builds target/release/keel, then runs
#   KEEL_BIN=/path/to/keel bench/run.sh   # uses a prebuilt binary
#   KEEL_REV=HEAD bench/run.sh            # builds a clean export of a commit
#                                         # (into target-bench/) and runs it
# Knobs (environment): ROUNDS=2 DURATION=6 WARMUP=1.5 CONNS=32 STREAM_CONNS=128
#   RATE=1000 TTFT_RATE=20 TTFT_SECONDS=5 MEM_STEPS=2000,10000 MEM_SYSTEMS=keel,nginx
#   SYSTEMS=direct,nginx,keel BENCH_NICE=-10 BENCH_TIMEOUT=600 BENCH_OUT=bench/results
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- processes we start are recorded here and stopped by id on exit ---------
PIDFILE=$(mktemp /tmp/keel-bench-pids.XXXXXX)
WORK_DIR=$(mktemp -d /tmp/keel-bench-work.XXXXXX)  # configs and logs; kept if the run fails
EXPORT_DIR=""
RUNNER_PID=""
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -n "$RUNNER_PID" ]; then kill -TERM "$RUNNER_PID" 2>/dev/null || true; fi
    # Each benchmarked process leads its own process group (nginx: master + worker).
    local pid
    while read -r pid; do [ -n "$pid" ] && kill -TERM -- "-$pid" 2>/dev/null || true; done < "$PIDFILE"
    sleep 0.3
    while read -r pid; do [ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true; done < "$PIDFILE"
    rm -f "$PIDFILE"
    if [ "$status" -eq 0 ] && [ -z "${BENCH_KEEP_WORK:-}" ]; then rm -rf "$WORK_DIR"; else log "logs and configs kept in $WORK_DIR"; fi
    if [ -n "$EXPORT_DIR" ]; then rm -rf "$EXPORT_DIR"; fi
    exit "$status"
}
trap cleanup EXIT INT TERM

# --- tools ---------------------------------------------------------------------
command -v taskset >/dev/null || { log "taskset (util-linux) is required"; exit 1; }
OHA_BIN=${OHA_BIN:-$(command -v oha || true)}
if [ -z "$OHA_BIN" ] && [ -x "$HOME/.cargo/bin/oha" ]; then OHA_BIN=$HOME/.cargo/bin/oha; fi
if [ -z "$OHA_BIN" ]; then
    log "installing oha: cargo install oha --locked"
    cargo install oha --locked
    OHA_BIN=$HOME/.cargo/bin/oha
fi
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || true)}
if [ -z "$NGINX_BIN" ] && [ -x /usr/sbin/nginx ]; then NGINX_BIN=/usr/sbin/nginx; fi
if [ -z "$NGINX_BIN" ]; then
    log "installing nginx-light from Debian's packages"
    apt-get install -y nginx-light >/dev/null || { apt-get update >/dev/null && apt-get install -y nginx-light >/dev/null; }
    NGINX_BIN=/usr/sbin/nginx
fi

# --- Keel ------------------------------------------------------------------------
BUILD_NOTE=${KEEL_BUILD_NOTE:-"prebuilt (KEEL_BIN)"}
if [ -z "${KEEL_BIN:-}" ]; then
    if [ -n "${KEEL_REV:-}" ]; then
        # A clean export of one commit: uncommitted edits in the tree don't leak in.
        EXPORT_DIR=$(mktemp -d /tmp/keel-bench-src.XXXXXX)
        git archive "$KEEL_REV" | tar -x -C "$EXPORT_DIR"
        # git archive stamps files with the commit time; cargo would then take
        # artifacts built later from other sources in the same target dir as fresh.
        find "$EXPORT_DIR" -type f -exec touch {} +
        TARGET=${CARGO_TARGET_DIR:-$ROOT/target-bench}
        log "building keel at $KEEL_REV ($(git rev-parse --short "$KEEL_REV")) into $TARGET (release: thin LTO, 1 codegen unit)"
        (cd "$EXPORT_DIR" && CARGO_TARGET_DIR=$TARGET cargo build --release -p keel)
        BUILD_NOTE="built from a clean export of $KEEL_REV ($(git rev-parse --short "$KEEL_REV"))"
    else
        TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
        log "building keel from the work tree into $TARGET (release: thin LTO, 1 codegen unit)"
        cargo build --release -p keel
        BUILD_NOTE="built from the work tree$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || echo ' (with uncommitted changes)')"
    fi
    KEEL_BIN=$TARGET/release/keel
fi
[ -x "$KEEL_BIN" ] || { log "no keel binary at $KEEL_BIN"; exit 1; }

# A proxy holds two sockets per open stream: use every file descriptor allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "keel: $KEEL_BIN; oha: $OHA_BIN; nginx: $NGINX_BIN; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
export KEEL_BIN OHA_BIN NGINX_BIN BENCH_PIDFILE=$PIDFILE BENCH_WORK=$WORK_DIR KEEL_BUILD_NOTE=$BUILD_NOTE
export BENCH_COMMAND=${BENCH_COMMAND:-"bench/run.sh${KEEL_REV:+ (KEEL_REV=$KEEL_REV)}"}
# The orchestrator and its clients share CPU 0 with the mock and oha; proxies get CPU 1.
# Everything the run starts inherits a raised priority (root only; otherwise a
# warning and normal priority), so builds running beside it distort less.
timeout --signal=TERM "${BENCH_TIMEOUT:-600}" nice -n "${BENCH_NICE:--10}" \
    taskset -c "${LOAD_CPU:-0}" python3 "$ROOT/bench/lib/bench.py" &
RUNNER_PID=$!
wait "$RUNNER_PID"
