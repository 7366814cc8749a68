//! `models.<name>.on_failure.respond`: when every target fails, a model with
//! a last resort answers its text (200, `x-keel-degraded: true`) on both
//! front ends, as a whole answer and as a stream; an upstream 400 and a
//! model without one keep their errors.

use keel_testkit::{sse_data, start_gateway, start_mock, FailNext, Faults, Gateway, Mock};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEY: &str = "sk-acme";
const SORRY: &str = "The assistant is unavailable right now; please try again later.";

fn yaml(mock: &Mock) -> String {
    let root = mock.base_url();
    format!(
        "tenants:\n  - {{name: acme, keys: [\"{KEY}\"]}}\n\
         providers:\n\
         \x20 openai: {{kind: openai, base_url: {root}, retry: {{attempts: 1}}}}\n\
         models:\n\
         \x20 chat:\n\
         \x20   targets: [{{provider: openai, model: gpt-a}}, {{provider: openai, model: gpt-b}}]\n\
         \x20   on_failure: {{respond: {{content: \"{SORRY}\"}}}}\n\
         \x20 plain: {{targets: [{{provider: openai, model: gpt-c}}]}}\n\
         \x20 cached:\n\
         \x20   targets: [{{provider: openai, model: gpt-d}}]\n\
         \x20   cache: {{ttl: 10m, stale_if_error: 1h}}\n\
         \x20   on_failure: {{respond: {{content: \"{SORRY}\"}}}}\n"
    )
}

fn fail(mock: &Mock, model: &str, status: u16) {
    let fail = FailNext {
        status,
        count: 1000,
        retry_after: None,
        body: None,
    };
    mock.state.set_faults(
        model,
        Faults {
            fail: Some(fail),
            ..Faults::default()
        },
    );
}

async fn setup() -> Result<(Mock, Gateway), Box<dyn std::error::Error>> {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    Ok((mock, gateway))
}

async fn post(
    gateway: &Gateway,
    path: &str,
    model: &str,
    stream: bool,
) -> reqwest::Result<reqwest::Response> {
    ask(gateway, path, model, stream, "hi").send().await
}

fn ask(
    gateway: &Gateway,
    path: &str,
    model: &str,
    stream: bool,
    prompt: &str,
) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(gateway.url(path))
        .header("x-api-key", KEY)
        .json(&json!({
            "model": model,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": prompt}],
            "stream": stream,
        }))
}

fn assert_degraded(response: &reqwest::Response) {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-keel-degraded"], "true");
    assert!(response.headers().get("x-keel-provider").is_none());
}

#[tokio::test]
async fn every_target_failing_answers_the_configured_text() -> TestResult {
    let (mock, gateway) = setup().await?;
    fail(&mock, "gpt-a", 503);
    fail(&mock, "gpt-b", 500);
    let response = post(&gateway, "/v1/chat/completions", "chat", false).await?;
    assert_degraded(&response);
    assert_eq!(response.headers()["x-keel-attempts"], "2");
    let answer: Value = response.json().await?;
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "chat");
    assert_eq!(answer["choices"][0]["message"]["content"], SORRY);
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["total_tokens"], 0);
    assert_eq!(mock.state.stats("gpt-b").requests, 1, "the walk came first");
    Ok(())
}

#[tokio::test]
async fn a_stream_gets_the_text_in_chunks_ending_with_done() -> TestResult {
    let (mock, gateway) = setup().await?;
    fail(&mock, "gpt-a", 503);
    fail(&mock, "gpt-b", 503);
    let response = post(&gateway, "/v1/chat/completions", "chat", true).await?;
    assert_degraded(&response);
    let events = sse_data(&response.text().await?);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = events[..events.len() - 1]
        .iter()
        .map(|event| serde_json::from_str::<Value>(event))
        .collect::<Result<Vec<_>, _>>()?;
    let text: String = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, SORRY);
    let last = chunks.last().ok_or("no chunks")?;
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["model"], "chat");
    Ok(())
}

#[tokio::test]
async fn the_messages_front_end_answers_it_in_anthropic_shape() -> TestResult {
    let (mock, gateway) = setup().await?;
    fail(&mock, "gpt-a", 503);
    fail(&mock, "gpt-b", 503);
    let response = post(&gateway, "/v1/messages", "chat", false).await?;
    assert_degraded(&response);
    let message: Value = response.json().await?;
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], SORRY);
    assert_eq!(message["stop_reason"], "end_turn");
    Ok(())
}

#[tokio::test]
async fn an_upstream_400_is_still_the_400() -> TestResult {
    let (mock, gateway) = setup().await?;
    fail(&mock, "gpt-a", 400);
    let response = post(&gateway, "/v1/chat/completions", "chat", false).await?;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("x-keel-degraded").is_none());
    Ok(())
}

#[tokio::test]
async fn a_model_without_on_failure_still_gets_the_502() -> TestResult {
    let (mock, gateway) = setup().await?;
    fail(&mock, "gpt-c", 503);
    let response = post(&gateway, "/v1/chat/completions", "plain", false).await?;
    assert_eq!(response.status(), 502);
    assert!(response.headers().get("x-keel-degraded").is_none());
    Ok(())
}

/// The prompt cache's stale entry wins over the last resort; a prompt with
/// no entry gets the text.
#[tokio::test]
async fn a_stale_cache_entry_comes_before_the_last_resort() -> TestResult {
    let (mock, gateway) = setup().await?;
    let path = "/v1/chat/completions";
    let original: Value = ask(&gateway, path, "cached", false, "remembered")
        .send()
        .await?
        .json()
        .await?;
    fail(&mock, "gpt-d", 503);
    let stale = ask(&gateway, path, "cached", false, "remembered")
        .header("cache-control", "no-cache")
        .send()
        .await?;
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["x-keel-cache"], "stale");
    assert!(stale.headers().get("x-keel-degraded").is_none());
    let stale: Value = stale.json().await?;
    assert_eq!(
        stale["choices"][0]["message"]["content"],
        original["choices"][0]["message"]["content"]
    );
    let unknown = ask(&gateway, path, "cached", false, "never seen")
        .send()
        .await?;
    assert_degraded(&unknown);
    let answer: Value = unknown.json().await?;
    assert_eq!(answer["choices"][0]["message"]["content"], SORRY);
    Ok(())
}

#[tokio::test]
async fn a_messages_stream_gets_anthropic_events() -> TestResult {
    let (mock, gateway) = setup().await?;
    fail(&mock, "gpt-a", 503);
    fail(&mock, "gpt-b", 503);
    let response = post(&gateway, "/v1/messages", "chat", true).await?;
    assert_degraded(&response);
    let events = sse_data(&response.text().await?)
        .iter()
        .map(|event| serde_json::from_str::<Value>(event))
        .collect::<Result<Vec<_>, _>>()?;
    let text: String = events
        .iter()
        .filter(|event| event["type"] == "content_block_delta")
        .filter_map(|event| event["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, SORRY);
    assert_eq!(
        events.last().map(|event| event["type"].clone()),
        Some(json!("message_stop"))
    );
    Ok(())
}

/// A stream whose headers went out with keep-alive comments before routing
/// failed gets the text in band (too late for `x-keel-degraded`).
#[tokio::test]
async fn a_kept_alive_stream_gets_the_text_after_its_comments() -> TestResult {
    let mock = start_mock().await?;
    let yaml = format!("server: {{sse_keepalive: 200ms}}\n{}", yaml(&mock));
    let gateway = start_gateway(&yaml, &[]).await?;
    for model in ["gpt-a", "gpt-b"] {
        let slow_failure = Faults {
            headers_delay_ms: 400,
            fail: Some(FailNext {
                status: 503,
                count: 1000,
                retry_after: None,
                body: None,
            }),
            ..Faults::default()
        };
        mock.state.set_faults(model, slow_failure);
    }
    let response = post(&gateway, "/v1/chat/completions", "chat", true).await?;
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("x-keel-degraded").is_none());
    let body = response.text().await?;
    assert!(body.starts_with(": keep-alive"), "{body}");
    let events = sse_data(&body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(body.contains(SORRY), "{body}");
    Ok(())
}

/// `/v1/responses` (translated for the chat route) answers it as a response.
#[tokio::test]
async fn the_responses_front_end_answers_it_as_a_response() -> TestResult {
    let (mock, gateway) = setup().await?;
    fail(&mock, "gpt-a", 503);
    fail(&mock, "gpt-b", 503);
    let response = reqwest::Client::new()
        .post(gateway.url("/v1/responses"))
        .bearer_auth(KEY)
        .json(&json!({"model": "chat", "input": "hi"}))
        .send()
        .await?;
    assert_degraded(&response);
    let answer: Value = response.json().await?;
    assert_eq!(answer["object"], "response");
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["output"][0]["content"][0]["text"], SORRY);
    Ok(())
}

/// A last resort stands in for a failure: an `Idempotency-Key` is released,
/// not stored, so the retry is tried again upstream.
#[tokio::test]
async fn an_idempotency_key_is_not_spent_on_the_last_resort() -> TestResult {
    let (mock, gateway) = setup().await?;
    fail(&mock, "gpt-a", 503);
    fail(&mock, "gpt-b", 503);
    let with_key = || {
        ask(&gateway, "/v1/chat/completions", "chat", false, "hi")
            .header("idempotency-key", "retry-me")
            .send()
    };
    let degraded = with_key().await?;
    assert_degraded(&degraded);
    degraded.text().await?;
    mock.state.set_faults("gpt-a", Faults::default());
    let retried = with_key().await?;
    assert_eq!(retried.status(), 200);
    assert!(retried.headers().get("x-keel-degraded").is_none());
    assert!(retried.headers().get("idempotent-replayed").is_none());
    let answer: Value = retried.json().await?;
    assert_ne!(answer["choices"][0]["message"]["content"], SORRY);
    Ok(())
}
