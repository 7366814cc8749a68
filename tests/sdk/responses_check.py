"""The official openai SDK's Responses API, as an application uses it,
against Keel: `responses.create` (text, and a function call), and the
`responses.stream` helper, which checks the event grammar as it goes. The
text must equal what the same prompt gets through Chat Completions.

Usage: responses_check.py KEEL_BASE_URL KEEL_KEY MODEL
Prints one line of facts; exits non-zero naming the first problem.
"""

import json
import sys
import time

from openai import OpenAI

PROMPT = "Say hello, and mention Zürich ✓"
TOOLS = [{
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}]


def fail(message):
    sys.exit(message)


def main():
    base, key, model = sys.argv[1:4]
    client = OpenAI(base_url=base, api_key=key, max_retries=0)

    chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}])
    expected = chat.choices[0].message.content

    created = client.responses.create(model=model, input=PROMPT, instructions="Be brief.")
    if created.status != "completed" or created.object != "response":
        fail(f"create: status {created.status}")
    if created.output_text != expected:
        fail(f"create: text {created.output_text!r} != chat {expected!r}")
    if created.usage is None or created.usage.output_tokens <= 0 or created.usage.input_tokens <= 0:
        fail(f"create: usage {created.usage}")
    if created.instructions != "Be brief.":
        fail(f"create: instructions not echoed: {created.instructions!r}")

    called = client.responses.create(model=model, input="What is the weather in Paris?", tools=TOOLS,
                                     tool_choice={"type": "function", "name": "get_weather"})
    calls = [item for item in called.output if item.type == "function_call"]
    if len(calls) != 1 or calls[0].name != "get_weather":
        fail(f"tools: output {called.output}")
    arguments = json.loads(calls[0].arguments)

    # The tool's result, sent back the way the SDK's docs show.
    followed = client.responses.create(model=model, tools=TOOLS, input=[
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 °C"},
    ], tool_choice="none")
    if not followed.output_text:
        fail("follow-up: no text")

    types = []
    text = ""
    with client.responses.stream(model=model, input=PROMPT) as stream:
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
        final = stream.get_final_response()
    if types[:2] != ["response.created", "response.in_progress"] or types[-1] != "response.completed":
        fail(f"stream: events {types}")
    terminal = [t for t in types if t in ("response.completed", "response.incomplete", "response.failed")]
    if len(terminal) != 1:
        fail(f"stream: terminal events {terminal}")
    if text != expected or final.output_text != expected:
        fail(f"stream: text {text!r} / final {final.output_text!r} != chat {expected!r}")
    if final.usage is None or final.usage.output_tokens <= 0:
        fail(f"stream: usage {final.usage}")

    tool_types = []
    with client.responses.stream(model=model, input="Weather in Rome?", tools=TOOLS, tool_choice="required") as stream:
        for event in stream:
            tool_types.append(event.type)
        streamed_call = [item for item in stream.get_final_response().output if item.type == "function_call"]
    if len(streamed_call) != 1 or "response.function_call_arguments.done" not in tool_types:
        fail(f"stream tools: events {tool_types}")
    json.loads(streamed_call[0].arguments)

    background = client.responses.create(model=model, input=PROMPT, background=True)
    if background.status != "queued":
        fail(f"background: created as {background.status}")
    for _ in range(400):
        polled = client.responses.retrieve(background.id)
        if polled.status not in ("queued", "in_progress"):
            break
        time.sleep(0.025)
    if polled.status != "completed" or polled.output_text != expected:
        fail(f"background: {polled.status} {polled.output_text!r}")

    print("ok", len(types), sorted(arguments))


main()
