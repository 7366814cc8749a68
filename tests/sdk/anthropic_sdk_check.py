"""The official SDKs across formats, used as applications would, against Keel
and directly against the keel mock upstream:

- the `openai` SDK served by an Anthropic target (Keel model claude-chat)
  must get what the `anthropic` SDK gets from the mock directly;
- the `anthropic` SDK on /v1/messages served by an OpenAI target (gpt-chat)
  must get what the `openai` SDK gets from the mock directly;
- the `anthropic` SDK served by an Anthropic target through Keel must get
  what it gets from the mock directly;
each streaming and not, with and without tools, plus a tool-result turn.

Usage: anthropic_sdk_check.py KEEL_ROOT KEEL_KEY MOCK_ROOT CLAUDE_MODEL GPT_MODEL
Exits non-zero with a message naming the first difference.
"""

import json
import sys

import anthropic
from openai import OpenAI

PROMPT = "Say hello, and mention Zürich ✓"
SCHEMA = {"type": "object", "properties": {"location": {"type": "string"}, "note": {"type": "string"}}, "required": ["location"]}
OPENAI_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": SCHEMA}}]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather for a city", "input_schema": SCHEMA}]
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


def openai_view(client, model, stream, tools):
    """What an OpenAI application sees: text, finish, usage, tool calls."""
    extra = {"tools": OPENAI_TOOLS} if tools else {}
    messages = [{"role": "user", "content": PROMPT}]
    if not stream:
        answer = client.chat.completions.create(model=model, messages=messages, **extra)
        message, choice = answer.choices[0].message, answer.choices[0]
        calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in (message.tool_calls or [])]
        usage = (answer.usage.prompt_tokens, answer.usage.completion_tokens)
        return {"text": message.content or "", "finish": choice.finish_reason, "usage": usage, "calls": calls}
    chunks = client.chat.completions.create(model=model, messages=messages, stream=True,
                                            stream_options={"include_usage": True}, **extra)
    text, finish, usage, calls, ids = "", None, None, {}, set()
    for chunk in chunks:
        ids.add(chunk.id)
        if chunk.usage is not None:
            usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
    if len(ids) != 1:
        raise AssertionError(f"a stream must keep one id, saw {ids}")
    calls = [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    return {"text": text, "finish": finish, "usage": usage, "calls": calls}


def anthropic_view(client, model, stream, tools):
    """What an Anthropic application sees: text, stop reason, usage, tool uses."""
    extra = {"tools": ANTHROPIC_TOOLS} if tools else {}
    args = dict(model=model, max_tokens=1024, messages=[{"role": "user", "content": PROMPT}], **extra)
    if stream:
        with client.messages.stream(**args) as events:
            streamed = "".join(events.text_stream)
            message = events.get_final_message()
        if streamed != "".join(b.text for b in message.content if b.type == "text"):
            raise AssertionError("text_stream and the final message differ")
    else:
        message = client.messages.create(**args)
    text = "".join(b.text for b in message.content if b.type == "text")
    uses = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    usage = (message.usage.input_tokens, message.usage.output_tokens)
    return {"text": text, "stop": message.stop_reason, "usage": usage, "uses": uses}


PASSED = []


def same(label, ours, theirs):
    if ours != theirs:
        sys.exit(f"{label}: keel gave {ours!r}, the upstream gave {theirs!r}")
    if label not in PASSED:
        PASSED.append(label)


def without_ids(calls):
    return [(name, args) for _, name, args in calls]


def check_openai_sdk_on_anthropic_target(keel_v1, mock_anthropic, claude):
    for stream in (False, True):
        for tools in (False, True):
            label = f"openai SDK -> anthropic target, stream={stream}, tools={tools}"
            ours = openai_view(keel_v1, "claude-chat", stream, tools)
            theirs = anthropic_view(mock_anthropic, claude, False, tools)
            same(label, ours["text"], theirs["text"])
            same(label, ours["finish"], FINISH[theirs["stop"]])
            same(label, ours["usage"], theirs["usage"])
            same(label, without_ids(ours["calls"]), without_ids(theirs["uses"]))
            if tools and not all(call_id.startswith("toolu_") for call_id, _, _ in ours["calls"]):
                sys.exit(f"{label}: tool call ids were not kept: {ours['calls']}")
            if tools != bool(ours["calls"]):
                sys.exit(f"{label}: tool calls {ours['calls']!r}")


def check_anthropic_sdk(keel, mock_openai, mock_anthropic, claude, gpt):
    for stream in (False, True):
        for tools in (False, True):
            label = f"anthropic SDK -> openai target, stream={stream}, tools={tools}"
            ours = anthropic_view(keel, "gpt-chat", stream, tools)
            theirs = openai_view(mock_openai, gpt, False, tools)
            same(label, ours["text"], theirs["text"])
            same(label, FINISH[ours["stop"]], theirs["finish"])
            same(label, ours["usage"], theirs["usage"])
            same(label, without_ids(ours["uses"]), without_ids(theirs["calls"]))
            label = f"anthropic SDK -> anthropic target, stream={stream}, tools={tools}"
            ours = anthropic_view(keel, "claude-chat", stream, tools)
            theirs = anthropic_view(mock_anthropic, claude, stream, tools)
            same(label, {**ours, "uses": without_ids(ours["uses"])}, {**theirs, "uses": without_ids(theirs["uses"])})


def check_tool_result_turns(keel, keel_v1):
    first = keel.messages.create(model="gpt-chat", max_tokens=256, tools=ANTHROPIC_TOOLS,
                                 messages=[{"role": "user", "content": "Weather in Paris?"}])
    use = next(b for b in first.content if b.type == "tool_use")
    second = keel.messages.create(model="gpt-chat", max_tokens=256, tools=ANTHROPIC_TOOLS, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18°C"}]}])
    if second.stop_reason != "end_turn" or not second.content or second.content[0].type != "text":
        sys.exit(f"anthropic SDK tool_result turn: {second!r}")
    first = keel_v1.chat.completions.create(model="claude-chat", tools=OPENAI_TOOLS,
                                            messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = first.choices[0].message.tool_calls[0]
    second = keel_v1.chat.completions.create(model="claude-chat", tools=OPENAI_TOOLS, messages=[
        {"role": "user", "content": "Weather in Paris?"}, first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "18°C"}])
    if second.choices[0].finish_reason != "stop" or not second.choices[0].message.content:
        sys.exit(f"openai SDK tool turn on an anthropic target: {second!r}")
    PASSED.extend(["anthropic SDK tool_result turn", "openai SDK tool turn"])


def main():
    keel_root, key, mock_root, claude, gpt = sys.argv[1:6]
    keel = anthropic.Anthropic(base_url=keel_root, api_key=key, max_retries=0)
    keel_v1 = OpenAI(base_url=f"{keel_root}/v1", api_key=key, max_retries=0)
    mock_anthropic = anthropic.Anthropic(base_url=mock_root, api_key="unused", max_retries=0)
    mock_openai = OpenAI(base_url=f"{mock_root}/v1", api_key="unused", max_retries=0)
    check_openai_sdk_on_anthropic_target(keel_v1, mock_anthropic, claude)
    check_anthropic_sdk(keel, mock_openai, mock_anthropic, claude, gpt)
    check_tool_result_turns(keel, keel_v1)
    print(f"{len(PASSED)} passed, 0 failed")


if __name__ == "__main__":
    main()
