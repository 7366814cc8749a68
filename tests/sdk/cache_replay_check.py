"""The official SDKs read a replayed (cached) answer exactly as they read
the original: the first request of each pair is a miss answered by the
upstream, the second a hit served from Keel's prompt cache.

- `openai` SDK, streams with include_usage, with and without tools, then the
  same request without `stream`;
- `anthropic` SDK on /v1/messages, streams with and without tools, then the
  same request without `stream`.

Usage: cache_replay_check.py KEEL_ROOT KEEL_KEY MODEL
Exits non-zero with a message naming the first difference.
"""

import json
import sys

import anthropic
from openai import OpenAI

SCHEMA = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": SCHEMA}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather for a city", "input_schema": SCHEMA}]


def openai_stream(client, model, prompt, tools):
    extra = {"tools": OPENAI_TOOLS} if tools else {}
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], stream=True,
        stream_options={"include_usage": True}, **extra)
    text, finish, usage, calls, ids = "", None, None, {}, set()
    for chunk in raw.parse():
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens, chunk.usage.total_tokens)
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
    if len(ids) != 1:
        sys.exit(f"openai stream: {len(ids)} ids in one stream")
    tool_calls = [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    view = {"text": text, "finish": finish, "usage": usage, "tool_calls": tool_calls}
    return raw.headers.get("x-keel-cache"), view


def openai_whole(client, model, prompt, tools):
    extra = {"tools": OPENAI_TOOLS} if tools else {}
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], **extra)
    answer = raw.parse()
    message = answer.choices[0].message
    calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in (message.tool_calls or [])]
    usage = (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens)
    view = {"text": message.content or "", "finish": answer.choices[0].finish_reason, "usage": usage,
            "tool_calls": calls}
    return raw.headers.get("x-keel-cache"), view


def anthropic_view(message):
    blocks = []
    for block in message.content:
        if block.type == "text":
            blocks.append(("text", block.text))
        elif block.type == "tool_use":
            blocks.append(("tool_use", block.id, block.name, block.input))
    usage = (message.usage.input_tokens, message.usage.output_tokens)
    return {"blocks": blocks, "stop": message.stop_reason, "usage": usage}


def anthropic_messages(client, model, prompt, tools, stream):
    """The final message as the SDK assembles it, and the x-keel-cache header."""
    extra = {"tools": ANTHROPIC_TOOLS} if tools else {}
    messages = [{"role": "user", "content": prompt}]
    if stream:
        with client.messages.stream(model=model, max_tokens=256, messages=messages, **extra) as events:
            names = [event.type for event in events]
            final = events.get_final_message()
            status = events.response.headers.get("x-keel-cache")
        if names[0] != "message_start" or names[-1] != "message_stop":
            sys.exit(f"anthropic stream: events out of order: {names}")
        return status, anthropic_view(final)
    raw = client.messages.with_raw_response.create(model=model, max_tokens=256, messages=messages, **extra)
    return raw.headers.get("x-keel-cache"), anthropic_view(raw.parse())


def expect(label, got, want):
    if got != want:
        sys.exit(f"{label}: got {got!r}, expected {want!r}")


def main():
    root, key, model = sys.argv[1:4]
    openai_client = OpenAI(base_url=f"{root}/v1", api_key=key, max_retries=0)
    anthropic_client = anthropic.Anthropic(base_url=root, api_key=key, max_retries=0)
    checks = 0
    for tools in (False, True):
        prompt = f"openai replay, tools={tools}"
        first_status, original = openai_stream(openai_client, model, prompt, tools)
        second_status, replayed = openai_stream(openai_client, model, prompt, tools)
        expect(f"openai stream tools={tools}: cache statuses", (first_status, second_status), ("miss", "hit"))
        expect(f"openai stream tools={tools}: replayed view", replayed, original)
        if tools and not original["tool_calls"]:
            sys.exit(f"openai stream tools: no tool call came back: {original!r}")
        whole_status, whole = openai_whole(openai_client, model, prompt, tools)
        expect(f"openai whole tools={tools}: cache status", whole_status, "hit")
        expect(f"openai whole tools={tools}: view", whole, original)
        checks += 3

        prompt = f"anthropic replay, tools={tools}"
        first_status, original = anthropic_messages(anthropic_client, model, prompt, tools, True)
        second_status, replayed = anthropic_messages(anthropic_client, model, prompt, tools, True)
        expect(f"anthropic stream tools={tools}: first status", first_status, "miss")
        expect(f"anthropic stream tools={tools}: second status", second_status, "hit")
        expect(f"anthropic stream tools={tools}: replayed view", replayed, original)
        whole_status, whole = anthropic_messages(anthropic_client, model, prompt, tools, False)
        expect(f"anthropic whole tools={tools}: cache status", whole_status, "hit")
        expect(f"anthropic whole tools={tools}: view", whole, original)
        checks += 3
    print(f"{checks} passed, 0 failed")


if __name__ == "__main__":
    main()
