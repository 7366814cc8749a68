"""The official `anthropic` Python SDK against Keel, unchanged but for its
base URL, on a model served only by Anthropic targets: cache_control on a
system block and on a message block, extended thinking, and beta features
(the `anthropic-beta` header), streamed and not. Then reads what the
upstream received from the mock's request log: the same JSON body with
only `model` rewritten, and the SDK's `anthropic-version` and
`anthropic-beta` headers.

usage: anthropic_cache_thinking_check.py KEEL_URL API_KEY MOCK_ROOT MODEL UPSTREAM_MODEL
"""

import json
import sys

import anthropic
from checks import Checks

try:  # the HTTP client the SDK is built on: httpx2 in 2.x, httpx before
    import httpx2 as httpx
except ImportError:
    import httpx

base_url, api_key, mock_root, model, upstream_model = sys.argv[1:6]
BETAS = ["extended-cache-ttl-2025-04-11", "interleaved-thinking-2025-05-14"]
checks = Checks(mock_root)
check = checks.check
mock_requests = checks.requests
forget_requests = checks.forget_requests
sent = []


def capture(request):
    if request.content:
        sent.append((dict(request.headers), json.loads(request.content)))


def reached_verbatim(label):
    headers, body = sent[-1]
    received = mock_requests()
    check(f"{label}: one upstream call", len(received) == 1, received)
    upstream = json.loads(received[-1]["body"]) if received else {}
    check(
        f"{label}: the body as sent, model rewritten",
        upstream == dict(body, model=upstream_model),
        {"sent": body, "upstream": upstream},
    )
    upstream_headers = received[-1]["headers"] if received else {}
    for name in ["anthropic-version", "anthropic-beta"]:
        check(
            f"{label}: {name} as sent",
            upstream_headers.get(name) == headers.get(name) and headers.get(name),
            {"sent": headers.get(name), "upstream": upstream_headers.get(name)},
        )


client = anthropic.Anthropic(
    base_url=base_url,
    api_key=api_key,
    http_client=httpx.Client(event_hooks={"request": [capture]}),
)
request = dict(
    model=model,
    max_tokens=2048,
    betas=BETAS,
    thinking={"type": "enabled", "budget_tokens": 1024},
    system=[
        {"type": "text", "text": "You are terse. " * 40, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ],
    messages=[
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "A long document. " * 40, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Say hello."},
            ],
        }
    ],
    metadata={"user_id": "u-1"},
)

# 1. A whole message.
forget_requests()
message = client.beta.messages.create(**request)
check("message: text", message.content[0].text.startswith("Hello from the keel mock"), message)
check("message: the upstream model named", message.model == upstream_model, message.model)
check("message: usage", message.usage.input_tokens > 0 and message.usage.output_tokens > 0, message.usage)
reached_verbatim("message")

# 2. A stream.
forget_requests()
with client.beta.messages.stream(**request) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
check("stream: text", text.startswith("Hello from the keel mock"), text)
check("stream: final message", final.stop_reason == "end_turn" and final.usage.output_tokens > 0, final)
reached_verbatim("stream")

checks.finish()
