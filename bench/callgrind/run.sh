#!/usr/bin/env bash
# Instructions per plain (non-stream) request under callgrind, for one or
# more Keel binaries, against the same `keel mock` upstream. Instruction
# counts do not depend on what else the machine runs, so two builds (say,
# before and after a change) compare exactly. See bench/README.md.
#
#   bench/callgrind/run.sh BIN [BIN...]     (each a built `keel`)
# Knobs (environment): WARMUP=200 REQUESTS=2000 CALLGRIND_CONFIG=<extra yaml>
#   REQUEST_PATH=/v1/chat/completions REQUEST_BODY=<json>  (the request measured;
#   e.g. REQUEST_PATH=/v1/responses REQUEST_BODY='{"model":"chat","input":"Hello"}')
# Only 127.0.0.1 is used; everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

export REQUEST_PATH=${REQUEST_PATH:-/v1/chat/completions}
export REQUEST_BODY=${REQUEST_BODY:-'{"model":"chat","messages":[{"role":"user","content":"Hello"}]}'}
WARMUP=${WARMUP:-200}
REQUESTS=${REQUESTS:-2000}
work=$(mktemp -d /tmp/keel-callgrind.XXXXXX)
pids=()
cleanup() {
  for pid in ${pids[@]+"${pids[@]}"}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
command -v valgrind >/dev/null || { echo "valgrind is required (apt-get install valgrind)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Sends N chat completions over one keep-alive connection; fails on a non-200.
load() {
  python3 - "$1" "$2" <<'PY'
import http.client, os, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
path, body = os.environ["REQUEST_PATH"], os.environ["REQUEST_BODY"]
headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(count):
    connection.request("POST", path, body, headers)
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"status {response.status}")
PY
}

wait_ready() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "keel on :$1 did not become ready" >&2
  return 1
}

for bin in "$@"; do
  mock_port=$(free_port)
  "$bin" mock --listen "127.0.0.1:$mock_port" >"$work/mock.log" 2>&1 &
  pids+=($!)
  port=$(free_port)
  cat >"$work/keel.yaml" <<YAML
server: {listen: 127.0.0.1:$port}
database: {url: "sqlite::memory:"}
tenants: [{name: bench, keys: [sk-bench]}]
providers:
  up: {kind: openai, base_url: "http://127.0.0.1:$mock_port/v1", retry: {attempts: 1}}
models:
  chat: {targets: [{provider: up, model: gpt-mock}]}
${CALLGRIND_CONFIG:-}
YAML
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$bin" serve --config "$work/keel.yaml" >"$work/keel.log" 2>&1 &
  keel_pid=$!
  pids+=("$keel_pid")
  wait_ready "$port"
  load "$port" "$WARMUP"
  callgrind_control -z "$keel_pid" >/dev/null
  load "$port" "$REQUESTS"
  callgrind_control -d "$keel_pid" >/dev/null
  sleep 1
  total=$(cat "$work"/cg.out.* 2>/dev/null | awk '/^totals:/ {s += $2} END {print s + 0}')
  kill "$keel_pid" 2>/dev/null || true
  wait "$keel_pid" 2>/dev/null || true
  rm -f "$work"/cg.out*
  echo "$bin: $((total / REQUESTS)) instructions per request ($REQUESTS x POST $REQUEST_PATH)"
done
