"""The official openai SDK, used as an application would, against Keel and
directly against the keel mock upstream: content, usage and tool calls must
be identical, streaming and not.

Usage: openai_sdk_check.py KEEL_BASE_URL KEEL_KEY MOCK_BASE_URL UPSTREAM_MODEL
Exits non-zero with a message naming the first difference.
"""

import json
import sys

from openai import OpenAI

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}]
MESSAGES = [{"role": "user", "content": "Say hello, and mention Zürich ✓"}]


def whole(client, model, **extra):
    answer = client.chat.completions.create(model=model, messages=MESSAGES, **extra)
    message = answer.choices[0].message
    calls = [(c.function.name, json.loads(c.function.arguments)) for c in (message.tool_calls or [])]
    return {"content": message.content, "finish": answer.choices[0].finish_reason,
            "usage": answer.usage.model_dump(exclude_none=True), "tool_calls": calls}


def streamed(client, model, **extra):
    stream = client.chat.completions.create(model=model, messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True}, **extra)
    content, finish, usage, calls = "", None, None, {}
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump(exclude_none=True)
        for choice in chunk.choices:
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
    tool_calls = [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    return {"content": content or None, "finish": finish, "usage": usage, "tool_calls": tool_calls}


def main():
    keel_url, key, mock_url, upstream_model = sys.argv[1:5]
    keel = OpenAI(base_url=keel_url, api_key=key, max_retries=0)
    mock = OpenAI(base_url=mock_url, api_key="unused", max_retries=0)
    checks = 0
    for name, call in [("non-stream", whole), ("stream", streamed)]:
        for label, extra in [("text", {}), ("tools", {"tools": TOOLS})]:
            ours, theirs = call(keel, "chat", **extra), call(mock, upstream_model, **extra)
            if ours != theirs:
                sys.exit(f"{name} {label}: keel gave {ours!r}, the upstream gave {theirs!r}")
            if label == "tools" and not ours["tool_calls"]:
                sys.exit(f"{name} tools: no tool call came back: {ours!r}")
            if label == "text" and not ours["content"]:
                sys.exit(f"{name} text: empty content: {ours!r}")
            checks += 1
    print(f"{checks} passed, 0 failed")


if __name__ == "__main__":
    main()
