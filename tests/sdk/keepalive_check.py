"""The official openai SDK reads a stream that Keel kept alive with SSE
comments (a slow first token) as it reads any stream: content, usage and
finish reason identical to the upstream's own stream.

Usage: keepalive_check.py KEEL_BASE_URL KEEL_KEY MOCK_BASE_URL UPSTREAM_MODEL
Exits non-zero with a message naming the difference.
"""

import sys

from openai import OpenAI

from openai_sdk_check import streamed


def main():
    keel_url, key, mock_url, upstream_model = sys.argv[1:5]
    keel = OpenAI(base_url=keel_url, api_key=key, max_retries=0)
    mock = OpenAI(base_url=mock_url, api_key="unused", max_retries=0)
    ours, theirs = streamed(keel, "chat"), streamed(mock, upstream_model)
    if ours != theirs:
        sys.exit(f"stream: keel gave {ours!r}, the upstream gave {theirs!r}")
    if not ours["content"] or ours["finish"] != "stop":
        sys.exit(f"stream: incomplete answer: {ours!r}")
    print("1 passed, 0 failed")


if __name__ == "__main__":
    main()
