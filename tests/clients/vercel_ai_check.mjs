// The Vercel AI SDK against Keel, unchanged but for its base URL: the
// default `createOpenAI({baseURL, apiKey})(model)`, which speaks the
// Responses API, with generateText and streamText, each also with a tool.
// Then reads what the upstream received from the mock's request log and
// checks every field the SDK sent reached it.
//
// usage: node vercel_ai_check.mjs KEEL_V1_URL API_KEY MOCK_ROOT MODEL UPSTREAM_MODEL

import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, Output, stepCountIs, streamText, tool } from "ai";

const [baseURL, apiKey, mockRoot, model, upstreamModel] = process.argv.slice(2);
const failures = [];
const sent = [];

function check(name, condition, detail) {
  console.log((condition ? "ok   " : "FAIL ") + name + (condition ? "" : `: ${JSON.stringify(detail)}`));
  if (!condition) failures.push(name);
}

// The SDK's own fetch, recording each body it sends.
async function recordingFetch(url, init) {
  if (init && typeof init.body === "string") sent.push({ url: String(url), body: JSON.parse(init.body) });
  return fetch(url, init);
}

async function upstreamRequests() {
  const response = await fetch(`${mockRoot}/_mock/requests`);
  const { requests } = await response.json();
  return requests.map((request) => ({ path: request.path, body: JSON.parse(request.body) }));
}

async function forgetRequests() {
  await fetch(`${mockRoot}/_mock/requests`, { method: "DELETE" });
}

const openai = createOpenAI({ baseURL, apiKey, fetch: recordingFetch });

const weather = tool({
  description: "Look up the weather in a city",
  inputSchema: jsonSchema({
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
    additionalProperties: false,
  }),
  execute: async ({ city }) => ({ city, sky: "sunny" }),
});

// What the SDK sent to Keel and what the upstream got, field by field: a
// Responses body is translated for a chat upstream, so each field is
// checked against its chat counterpart; a field with none fails the check.
const SAME_NAME = ["temperature", "top_p", "user", "parallel_tool_calls", "stream"];

async function reachedUpstream(label) {
  const request = sent.at(-1);
  check(`${label}: the SDK spoke the Responses API`, request?.url.endsWith("/responses"), request?.url);
  const upstream = (await upstreamRequests()).filter((entry) => entry.body.model === upstreamModel);
  const last = upstream.at(-1)?.body ?? {};
  for (const [field, value] of Object.entries(request?.body ?? {})) {
    let reached;
    if (field === "model") continue;
    if (field === "input") {
      const said = JSON.stringify(value);
      reached = said.includes("Paris") && JSON.stringify(last.messages).includes("Paris");
    } else if (field === "max_output_tokens") {
      reached = last.max_tokens === value;
    } else if (SAME_NAME.includes(field)) {
      reached = JSON.stringify(last[field]) === JSON.stringify(value);
    } else if (field === "tool_choice") {
      reached = last.tool_choice === value;
    } else if (field === "tools") {
      const want = value.map((entry) => ({
        name: entry.name,
        description: entry.description,
        parameters: entry.parameters,
        strict: entry.strict,
      }));
      const got = (last.tools ?? []).map((entry) => entry.function);
      reached = JSON.stringify(got) === JSON.stringify(want);
    } else if (field === "text") {
      // Compared as text: the schema's property order is the output's.
      const format = last.response_format ?? {};
      reached =
        format.type === value.format.type &&
        JSON.stringify(format.json_schema) ===
          JSON.stringify({ name: value.format.name, schema: value.format.schema, strict: value.format.strict });
    } else {
      reached = false;
    }
    check(`${label}: ${field} reached the upstream`, reached, { sent: value, upstream: last });
  }
}

// 1. generateText.
await forgetRequests();
const plain = await generateText({
  model: openai(model),
  prompt: "Say hello to Paris",
  maxOutputTokens: 64,
  temperature: 0.3,
});
check("generateText: text", plain.text.startsWith("Hello from the keel mock"), plain.text);
check("generateText: usage", plain.usage.totalTokens > 0, plain.usage);
await reachedUpstream("generateText");

// 2. streamText.
await forgetRequests();
const streamed = streamText({ model: openai(model), prompt: "Say hello to Paris", temperature: 0.3 });
let text = "";
for await (const delta of streamed.textStream) text += delta;
check("streamText: text", text.startsWith("Hello from the keel mock"), text);
check("streamText: finish", (await streamed.finishReason) === "stop", await streamed.finishReason);
await reachedUpstream("streamText");

// 3. generateText with a tool: the call, its result, and the answer after it.
await forgetRequests();
const withTool = await generateText({
  model: openai(model),
  prompt: "What is the weather in Paris?",
  tools: { weather },
  stopWhen: stepCountIs(2),
});
const calls = withTool.steps.flatMap((step) => step.toolCalls);
check("generateText+tool: one call", calls.length === 1 && calls[0].toolName === "weather", calls);
check("generateText+tool: its input", calls[0]?.input?.city === "Paris", calls[0]?.input);
check("generateText+tool: an answer after the result", withTool.text.startsWith("Hello from the keel mock"), withTool.text);
await reachedUpstream("generateText+tool");

// 4. streamText with a tool.
await forgetRequests();
const streamedTool = streamText({
  model: openai(model),
  prompt: "What is the weather in Paris?",
  tools: { weather },
  stopWhen: stepCountIs(2),
});
let streamedText = "";
for await (const delta of streamedTool.textStream) streamedText += delta;
const streamedCalls = (await streamedTool.steps).flatMap((step) => step.toolCalls);
check("streamText+tool: one call", streamedCalls.length === 1 && streamedCalls[0].toolName === "weather", streamedCalls);
check("streamText+tool: an answer after the result", streamedText.startsWith("Hello from the keel mock"), streamedText);
await reachedUpstream("streamText+tool");

// 5. Structured output (text.format json_schema): the object; the schema
// reached the upstream as written (checked as text, key order included).
await forgetRequests();
const structured = await generateText({
  model: openai(model),
  prompt: "The weather in Paris as an object",
  output: Output.object({
    schema: jsonSchema({
      type: "object",
      properties: { city: { type: "string" }, celsius: { type: "integer" } },
      required: ["city", "celsius"],
      additionalProperties: false,
    }),
  }),
});
check(
  "structured: the object",
  structured.output?.city === "Paris" && structured.output?.celsius === 42,
  structured.output,
);
await reachedUpstream("structured");

console.log(`${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
