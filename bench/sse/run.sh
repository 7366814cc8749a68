#!/usr/bin/env bash
# SSE decoding cost against the length of one line arriving in 4 KiB pieces:
# eventsource-stream fed the pieces as they come, against keel_sse::decode,
# which regroups them into whole lines and reads each line once. Prints a Markdown table. See bench/sse/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release --quiet -p keel-sse --example decode_cost
