//! A prompt longer than a target's `context_window`, refused in OpenAI's or
//! Anthropic's published format by `keel mock`, moves on to a target with a
//! larger window; with none, the upstream's 400 reaches the client.

use keel_testkit::{start_gateway, start_mock, FailNext, Faults, Gateway, Mock};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEY: &str = "sk-acme";

fn yaml(mock: &Mock) -> String {
    let root = mock.base_url();
    let anthropic_root = root.trim_end_matches("/v1");
    format!(
        "tenants:\n  - {{name: acme, keys: [\"{KEY}\"]}}\n\
         providers:\n\
         \x20 openai: {{kind: openai, base_url: {root}, retry: {{attempts: 1}}}}\n\
         \x20 claude: {{kind: anthropic, base_url: {anthropic_root}, api_key: k, retry: {{attempts: 1}}}}\n\
         models:\n\
         \x20 chat:\n\
         \x20   targets:\n\
         \x20     - {{provider: openai, model: gpt-8k, context_window: 8192}}\n\
         \x20     - {{provider: openai, model: gpt-4k, context_window: 4096}}\n\
         \x20     - {{provider: openai, model: gpt-128k, context_window: 128000}}\n\
         \x20 claude:\n\
         \x20   targets: [{{provider: claude, model: claude-200k, context_window: 200000}}]\n\
         \x20   fallback: [long]\n\
         \x20 long: {{targets: [{{provider: openai, model: gpt-1m, context_window: 1000000}}]}}\n\
         \x20 solo: {{targets: [{{provider: openai, model: gpt-solo, context_window: 8192}}]}}\n"
    )
}

/// The mock refuses every request for `model` with a 400 carrying `body`.
fn refuse(mock: &Mock, model: &str, body: Value) {
    let fail = FailNext {
        status: 400,
        count: 1000,
        retry_after: None,
        body: Some(body),
    };
    mock.state.set_faults(
        model,
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
}

fn openai_too_long() -> Value {
    json!({"error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }})
}

fn anthropic_too_long() -> Value {
    json!({"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "prompt is too long: 210000 tokens > 200000 maximum",
    }})
}

async fn setup() -> Result<(Mock, Gateway), Box<dyn std::error::Error>> {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    Ok((mock, gateway))
}

async fn chat(gateway: &Gateway, model: &str, stream: bool) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({
            "model": model,
            "messages": [{"role": "user", "content": "a very long prompt"}],
            "stream": stream,
        }))
        .send()
        .await
}

#[tokio::test]
async fn openai_context_length_exceeded_moves_on_to_a_larger_window() -> TestResult {
    let (mock, gateway) = setup().await?;
    refuse(&mock, "gpt-8k", openai_too_long());
    for stream in [false, true] {
        let response = chat(&gateway, "chat", stream).await?;
        assert_eq!(response.status(), 200, "stream {stream}");
        assert_eq!(response.headers()["x-keel-attempts"], "2");
        response.text().await?;
    }
    assert_eq!(mock.state.stats("gpt-8k").requests, 2);
    assert_eq!(
        mock.state.stats("gpt-4k").requests,
        0,
        "a smaller window is skipped"
    );
    assert_eq!(mock.state.stats("gpt-128k").requests, 2);
    Ok(())
}

#[tokio::test]
async fn anthropic_prompt_is_too_long_moves_on_to_a_fallback_with_a_larger_window() -> TestResult {
    let (mock, gateway) = setup().await?;
    refuse(&mock, "claude-200k", anthropic_too_long());
    let response = chat(&gateway, "claude", false).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-keel-provider"], "openai");
    let answer: Value = response.json().await?;
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(mock.state.stats("gpt-1m").requests, 1);
    Ok(())
}

#[tokio::test]
async fn with_no_larger_window_the_upstream_400_reaches_the_client() -> TestResult {
    let (mock, gateway) = setup().await?;
    refuse(&mock, "gpt-solo", openai_too_long());
    let response = chat(&gateway, "solo", false).await?;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await?;
    assert_eq!(error["error"]["code"], "context_length_exceeded");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("maximum context length is 8192")),
        "{error}"
    );
    assert_eq!(mock.state.stats("gpt-solo").requests, 1, "never retried");
    Ok(())
}
