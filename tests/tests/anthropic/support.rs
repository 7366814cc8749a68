//! Shared setup of the Anthropic translation tests: one `keel mock` (it
//! speaks both APIs) behind a gateway with an Anthropic-kind provider, an
//! OpenAI-kind provider, and a model that fails over from the first to the
//! second.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the support module"
)]

use keel_testkit::{start_gateway, start_mock, Gateway, Mock, TEST_KEY};
use serde_json::Value;

/// The result of a test.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The upstream model of the Anthropic-kind target.
pub const CLAUDE: &str = "mock-claude-sonnet";

/// The upstream model of the OpenAI-kind targets.
pub const GPT: &str = "gpt-mock";

/// The upstream model of the fallback target of `claude-then-gpt`.
pub const BACKUP: &str = "gpt-backup";

/// A mock and a gateway in front of it.
pub struct Setup {
    /// The upstream.
    pub mock: Mock,
    /// Keel.
    pub gateway: Gateway,
    client: reqwest::Client,
}

/// One named SSE event: its `event:` name and its JSON data.
pub type NamedEvent = (String, Value);

// === impl Setup ===

impl Setup {
    /// Starts the mock and the gateway. Models: `claude-chat` (Anthropic
    /// kind), `gpt-chat` (OpenAI kind), `claude-then-gpt` (the Anthropic
    /// target, then an OpenAI one).
    pub async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let mock = start_mock().await?;
        let yaml = format!(
            r#"tenants:
  - name: test
    keys: ["{TEST_KEY}"]
providers:
  claude:
    kind: anthropic
    base_url: http://{addr}
    api_key: sk-ant-test
    headers: {{anthropic-beta: keel-test}}
    max_tokens: 1000
    timeouts: {{connect: 1s}}
    retry: {{attempts: 1}}
  gpt:
    kind: openai
    base_url: http://{addr}/v1
    timeouts: {{connect: 1s}}
    retry: {{attempts: 1}}
models:
  claude-chat:
    targets:
      - {{provider: claude, model: {CLAUDE}}}
  gpt-chat:
    targets:
      - {{provider: gpt, model: {GPT}}}
  claude-then-gpt:
    targets:
      - {{provider: claude, model: {CLAUDE}}}
      - {{provider: gpt, model: {BACKUP}}}
"#,
            addr = mock.addr
        );
        let gateway = start_gateway(&yaml, &[]).await?;
        Ok(Self {
            mock,
            gateway,
            client: reqwest::Client::new(),
        })
    }

    /// `POST /v1/chat/completions` with the tenant's bearer key.
    pub async fn chat(&self, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(self.gateway.url("/v1/chat/completions"))
            .bearer_auth(TEST_KEY)
            .json(body)
            .send()
            .await
    }

    /// `POST /v1/messages` with the tenant's key as `x-api-key`, as the
    /// Anthropic SDK sends it.
    pub async fn messages(&self, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(self.gateway.url("/v1/messages"))
            .header("x-api-key", TEST_KEY)
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
    }

    /// The mock's own Anthropic answer to `body`, bypassing Keel.
    pub async fn direct_messages(&self, body: &Value) -> reqwest::Result<reqwest::Response> {
        let url = format!("http://{}/v1/messages", self.mock.addr);
        self.client
            .post(url)
            .header("anthropic-version", "2023-06-01")
            .json(body)
            .send()
            .await
    }

    /// The mock's own OpenAI answer to `body`, bypassing Keel.
    pub async fn direct_chat(&self, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(format!("{}/chat/completions", self.mock.base_url()))
            .json(body)
            .send()
            .await
    }
}

/// The named events of an Anthropic SSE body, in order.
pub fn named_events(body: &str) -> Result<Vec<NamedEvent>, serde_json::Error> {
    let mut events = Vec::new();
    for frame in body.split("\n\n").filter(|frame| !frame.trim().is_empty()) {
        let mut name = String::new();
        let mut data = String::new();
        for line in frame.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                name = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.trim_start());
            }
        }
        events.push((name, serde_json::from_str(&data)?));
    }
    Ok(events)
}

/// The JSON chunks of an OpenAI SSE body and whether it ended with `[DONE]`.
pub fn chunks(body: &str) -> Result<(Vec<Value>, bool), serde_json::Error> {
    let data = keel_testkit::sse_data(body);
    let done = data.last().is_some_and(|last| last == "[DONE]");
    let chunks = data
        .iter()
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str(data))
        .collect::<Result<_, _>>()?;
    Ok((chunks, done))
}

/// The text of every `text_delta` of an Anthropic stream, joined.
pub fn streamed_text(events: &[NamedEvent]) -> String {
    events
        .iter()
        .filter_map(|(_, data)| data["delta"]["text"].as_str())
        .collect()
}

/// The `partial_json` of every `input_json_delta`, joined.
pub fn streamed_input(events: &[NamedEvent]) -> String {
    events
        .iter()
        .filter_map(|(_, data)| data["delta"]["partial_json"].as_str())
        .collect()
}

/// A weather tool in OpenAI's shape.
pub fn openai_weather_tool() -> Value {
    serde_json::json!({"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}, "note": {"type": "string"}}, "required": ["location"]}}})
}

/// The same tool in Anthropic's shape.
pub fn anthropic_weather_tool() -> Value {
    serde_json::json!({"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"location": {"type": "string"}, "note": {"type": "string"}}, "required": ["location"]}})
}
