"""The official openai SDK's Responses API calls, as an application makes
them, against a server that speaks the Responses API (the keel mock, or Keel
in front of it): whole answers, function calls, follow-up turns, truncation
by max_output_tokens, and streams read through the SDK's stream helper, which
rebuilds the response from the events and raises on an event out of place.

Usage: responses_mock_check.py BASE_URL MODEL [API_KEY]
  e.g. responses_mock_check.py http://127.0.0.1:8090/v1 mock-gpt-4o-mini
Exits non-zero with a message naming the first problem.
"""

import json
import sys

from openai import OpenAI

PROMPT = "Say hello, and mention Zürich ✓"
TOOLS = [{
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
        "additionalProperties": False,
    },
    "strict": True,
}]
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


class Problem(Exception):
    """A check that failed, with what was expected and what came."""


def check(condition, message):
    if not condition:
        raise Problem(message)


def check_usage(label, usage):
    check(usage is not None, f"{label}: no usage")
    check(usage.input_tokens > 0 and usage.output_tokens > 0,
          f"{label}: empty usage {usage}")
    check(usage.total_tokens == usage.input_tokens + usage.output_tokens,
          f"{label}: total_tokens is not input + output: {usage}")


def function_calls(response):
    return [item for item in response.output if item.type == "function_call"]


def check_whole_text(client, model):
    answer = client.responses.create(model=model, input=PROMPT)
    check(answer.object == "response", f"text: object is {answer.object!r}")
    check(answer.status == "completed", f"text: status is {answer.status!r}")
    check(answer.id.startswith("resp_"), f"text: id {answer.id!r}")
    check(answer.output_text, "text: empty output_text")
    check([item.type for item in answer.output] == ["message"],
          f"text: output items {[item.type for item in answer.output]}")
    check_usage("text", answer.usage)
    return answer


def check_whole_tool_call(client, model):
    answer = client.responses.create(model=model, input="Weather in Paris?", tools=TOOLS)
    calls = function_calls(answer)
    check(len(calls) == 1, f"tools: {len(calls)} function_call items in {answer.output}")
    call = calls[0]
    check(call.name == "get_weather", f"tools: called {call.name!r}")
    check(call.call_id and call.status == "completed", f"tools: call {call}")
    arguments = json.loads(call.arguments)
    check(isinstance(arguments.get("location"), str), f"tools: arguments {arguments}")
    check_usage("tools", answer.usage)
    return call


def check_follow_up(client, model, call):
    answer = client.responses.create(model=model, tools=TOOLS, input=[
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
    ])
    check(answer.output_text and not function_calls(answer),
          f"follow-up: expected a text answer, got {answer.output}")


def check_whole_incomplete(client, model):
    answer = client.responses.create(model=model, input=PROMPT, max_output_tokens=16)
    check(answer.status == "incomplete", f"max_output_tokens: status is {answer.status!r}")
    reason = answer.incomplete_details.reason if answer.incomplete_details else None
    check(reason == "max_output_tokens", f"max_output_tokens: incomplete_details {answer.incomplete_details}")
    check(answer.usage.output_tokens <= 16, f"max_output_tokens: {answer.usage.output_tokens} output tokens")
    return answer


def check_sequence(label, events):
    numbers = [event.sequence_number for event in events]
    check(numbers == list(range(len(numbers))), f"{label}: sequence numbers {numbers}")
    types = [event.type for event in events]
    check(types[:2] == ["response.created", "response.in_progress"], f"{label}: stream starts {types[:2]}")
    terminals = [kind for kind in types if kind in TERMINAL]
    check(len(terminals) == 1 and terminals[0] == types[-1], f"{label}: terminal events {terminals}, last {types[-1]}")
    return types


def check_streamed_text(client, model, whole_text):
    with client.responses.stream(model=model, input=PROMPT) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = check_sequence("stream", events)
    check(types[-1] == "response.completed", f"stream: ends with {types[-1]}")
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    done = [event.text for event in events if event.type == "response.output_text.done"]
    check(done == [deltas], f"stream: deltas {deltas!r} but done {done!r}")
    check(final.output_text == deltas, f"stream: final {final.output_text!r}, deltas {deltas!r}")
    check(final.output_text == whole_text, f"stream: {final.output_text!r}, whole answer {whole_text!r}")
    check_usage("stream", final.usage)


def check_streamed_tool_call(client, model):
    with client.responses.stream(model=model, input="Weather in Paris?", tools=TOOLS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    check_sequence("stream tools", events)
    deltas = "".join(event.delta for event in events
                     if event.type == "response.function_call_arguments.delta")
    done = [event.arguments for event in events if event.type == "response.function_call_arguments.done"]
    calls = function_calls(final)
    check(done == [deltas], f"stream tools: deltas {deltas!r} but done {done!r}")
    check(len(calls) == 1 and calls[0].arguments == deltas,
          f"stream tools: final calls {calls}, deltas {deltas!r}")
    check(calls[0].parsed_arguments is not None, "stream tools: the SDK could not parse the strict tool's arguments")


def check_streamed_incomplete(client, model, whole):
    # The stream helper only finishes on response.completed, so this reads the raw events.
    events = list(client.responses.create(model=model, input=PROMPT, max_output_tokens=16, stream=True))
    types = check_sequence("stream max_output_tokens", events)
    check(types[-1] == "response.incomplete", f"stream max_output_tokens: ends with {types[-1]}")
    final = events[-1].response
    check(final.output_text == whole.output_text,
          f"stream max_output_tokens: {final.output_text!r}, whole answer {whole.output_text!r}")


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    base_url, model = sys.argv[1:3]
    key = sys.argv[3] if len(sys.argv) == 4 else "unused"
    client = OpenAI(base_url=base_url, api_key=key, max_retries=0)
    seen = {}
    steps = [
        ("non-stream text", lambda: seen.update(whole=check_whole_text(client, model))),
        ("non-stream function call", lambda: seen.update(call=check_whole_tool_call(client, model))),
        ("function output follow-up", lambda: check_follow_up(client, model, seen["call"])),
        ("non-stream max_output_tokens", lambda: seen.update(cut=check_whole_incomplete(client, model))),
        ("stream text", lambda: check_streamed_text(client, model, seen["whole"].output_text)),
        ("stream function call", lambda: check_streamed_tool_call(client, model)),
        ("stream max_output_tokens", lambda: check_streamed_incomplete(client, model, seen["cut"])),
    ]
    for name, step in steps:
        try:
            step()
        except Problem as problem:
            sys.exit(f"FAIL {name}: {problem}")
        except Exception as error:  # the SDK's own complaints: events out of place, bad JSON, HTTP errors
            sys.exit(f"FAIL {name}: the SDK raised {type(error).__name__}: {error}")
    print(f"ok {len(steps)} checks: {seen['whole'].output_text!r}")


main()
