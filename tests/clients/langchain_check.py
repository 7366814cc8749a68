"""LangChain's ChatOpenAI against Keel, unchanged but for its base URL: a
plain call, bind_tools with a tool call coming back, and
with_structured_output (JSON schema and function calling). Then reads what
the upstream received from the mock's request log and checks every field
the client sent reached it.

usage: langchain_check.py KEEL_V1_URL API_KEY MOCK_ROOT MODEL UPSTREAM_MODEL
"""

import json
import sys

from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from checks import Checks

base_url, api_key, mock_root, model, upstream_model = sys.argv[1:6]
checks = Checks(mock_root)
check = checks.check
mock_requests = checks.bodies
forget_requests = checks.forget_requests


def last_upstream_body():
    bodies = [body for body in mock_requests() if body.get("model") == upstream_model]
    return bodies[-1] if bodies else {}


def same_but_model(sent, received):
    """Every field the client sent reached the upstream, `model` rewritten
    (Keel also asks a stream for its usage chunk)."""
    for key, value in sent.items():
        if key == "model":
            continue
        if key == "stream_options":
            continue
        if received.get(key) != value:
            return f"{key}: sent {value!r}, upstream got {received.get(key)!r}"
    return ""


class Weather(BaseModel):
    """The weather in a city."""

    city: str = Field(description="The city")
    celsius: int = Field(description="Temperature in Celsius")


def get_weather(city: str) -> str:
    """Look up the weather in a city."""
    return "sunny"


sent_bodies = []


def capture(request):
    if request.content:
        sent_bodies.append(json.loads(request.content))


import httpx  # noqa: E402  (the client LangChain's OpenAI SDK uses)

http_client = httpx.Client(event_hooks={"request": [capture]})
llm = ChatOpenAI(
    model=model,
    base_url=base_url,
    api_key=api_key,
    temperature=0.2,
    max_tokens=64,
    http_client=http_client,
)

# 1. A plain call.
forget_requests()
answer = llm.invoke("Say hello")
check("plain: text", isinstance(answer.content, str) and "Hello from the keel mock" in answer.content, answer)
check("plain: usage", (answer.usage_metadata or {}).get("total_tokens", 0) > 0, answer.usage_metadata)
problem = same_but_model(sent_bodies[-1], last_upstream_body())
check("plain: every field reached the upstream", not problem, problem)

# 1b. Streamed.
forget_requests()
chunks = list(llm.stream("Say hello"))
text = "".join(chunk.content for chunk in chunks)
check("stream: text", "Hello from the keel mock" in text, text)
problem = same_but_model(sent_bodies[-1], last_upstream_body())
check("stream: every field reached the upstream", not problem, problem)

# 2. bind_tools: a tool call comes back.
forget_requests()
answer = llm.bind_tools([get_weather]).invoke("What is the weather in Paris?")
calls = answer.tool_calls
check("tools: one call", len(calls) == 1 and calls[0]["name"] == "get_weather", calls)
check("tools: arguments parsed", bool(calls) and isinstance(calls[0]["args"], dict), calls)
problem = same_but_model(sent_bodies[-1], last_upstream_body())
check("tools: every field reached the upstream", not problem, problem)

# 3. with_structured_output: JSON schema (the default) and function calling.
for method in ["json_schema", "function_calling"]:
    forget_requests()
    result = llm.with_structured_output(Weather, method=method).invoke("Weather in Paris")
    check(
        f"structured ({method}): a Weather came back",
        result == Weather(city="Paris", celsius=42),
        result,
    )
    received = last_upstream_body()
    problem = same_but_model(sent_bodies[-1], received)
    check(f"structured ({method}): every field reached the upstream", not problem, problem)
    if method == "json_schema":
        check(
            "structured (json_schema): response_format reached the upstream",
            received.get("response_format", {}).get("type") == "json_schema",
            received.get("response_format"),
        )

checks.finish()
