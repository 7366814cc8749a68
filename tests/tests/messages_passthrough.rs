//! `/v1/messages` to a model whose every target is Anthropic-kind: the body
//! reaches the upstream byte for byte with only `model` rewritten, with the
//! client's `anthropic-beta` and `anthropic-version`; the answer and its
//! event stream come back as the upstream sent them; failover between two
//! Anthropic targets before the first token is invisible; usage is priced;
//! a cached model's passthrough answers are `x-keel-cache: bypass`; a model
//! with an OpenAI target still translates, carrying what the chat format
//! can and refusing the rest by name.

use keel_testkit::{header, start_gateway, start_mock, FailNext, Faults, Gateway, Mock};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const KEY: &str = "sk-acme";

/// Fields a translation to the chat format cannot carry (thinking,
/// cache_control on a system block and on a message block, output_config)
/// beside ones it can (top_k, service_tier).
const BODY: &str = r#"{"model":"claude","max_tokens":2048,"thinking":{"type":"enabled","budget_tokens":1024},"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"Hi","cache_control":{"type":"ephemeral","ttl":"1h"}}]}],"top_k":5,"service_tier":"auto","output_config":{"effort":"low"}}"#;

const BETA: &str = "interleaved-thinking-2025-05-14,extended-cache-ttl-2025-04-11";

fn yaml(mock: &Mock) -> String {
    format!(
        "server: {{admin_key: sk-admin}}\n\
         tenants:\n  - {{name: acme, keys: [\"{KEY}\"]}}\n\
         providers:\n\
         \x20 first: {{kind: anthropic, base_url: \"http://{addr}\", api_key: sk-ant-1, retry: {{attempts: 1}}}}\n\
         \x20 second: {{kind: anthropic, base_url: \"http://{addr}\", api_key: sk-ant-2, retry: {{attempts: 1}}}}\n\
         \x20 gpt: {{kind: openai, base_url: \"http://{addr}/v1\", retry: {{attempts: 1}}}}\n\
         models:\n\
         \x20 claude:\n    targets:\n\
         \x20     - {{provider: first, model: claude-first, price: {{input: 3, output: 15}}}}\n\
         \x20     - {{provider: second, model: claude-second, price: {{input: 3, output: 15}}}}\n\
         \x20 claude-cached:\n    targets: [{{provider: first, model: claude-cached}}]\n    cache: {{ttl: 1h}}\n\
         \x20 claude-resort:\n    targets: [{{provider: first, model: claude-down}}]\n    on_failure: {{respond: {{content: \"Busy.\"}}}}\n\
         \x20 claude-then-mixed:\n    targets: [{{provider: second, model: claude-fallible}}]\n    fallback: [mixed]\n\
         \x20 mixed:\n    targets:\n\
         \x20     - {{provider: first, model: claude-mixed}}\n\
         \x20     - {{provider: gpt, model: gpt-mixed}}\n",
        addr = mock.addr
    )
}

async fn messages(gateway: &Gateway, body: &str) -> Result<reqwest::Response, reqwest::Error> {
    reqwest::Client::new()
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", BETA)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
}

/// The body the upstream must get: the client's, `model` rewritten.
fn upstream_body(body: &str, public: &str, upstream: &str) -> String {
    body.replacen(
        &format!(r#""model":"{public}""#),
        &format!(r#""model":"{upstream}""#),
        1,
    )
}

/// [`BODY`] asked as a stream.
fn stream_body() -> String {
    BODY.replacen(
        r#""max_tokens":2048"#,
        r#""max_tokens":2048,"stream":true"#,
        1,
    )
}

/// A gateway whose first target has `faults`, and its answer to [`BODY`]
/// asked as a stream (the mock stays up while the answer is read).
async fn stream_with_first_target(
    faults: Faults,
) -> Result<(Mock, Gateway, reqwest::Response), Box<dyn std::error::Error>> {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    mock.state.set_faults("claude-first", faults);
    let response = messages(&gateway, &stream_body()).await?;
    assert_eq!(response.status(), 200);
    Ok((mock, gateway, response))
}

fn overloaded_once() -> Faults {
    Faults {
        fail: Some(FailNext {
            status: 529,
            count: 1,
            retry_after: None,
            body: None,
        }),
        ..Faults::default()
    }
}

/// The `(event name, data)` pairs of an SSE body.
fn named_events(body: &str) -> Result<Vec<(String, Value)>, serde_json::Error> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let mut name = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(value) = line.strip_prefix("event: ") {
                    name = value.to_owned();
                } else if let Some(value) = line.strip_prefix("data: ") {
                    data.push_str(value);
                }
            }
            serde_json::from_str(&data).map(|data| (name, data))
        })
        .collect()
}

async fn cost(
    gateway: &Gateway,
    provider: &str,
    model: &str,
) -> Result<f64, Box<dyn std::error::Error>> {
    let metrics = reqwest::Client::new()
        .get(gateway.url("/metrics"))
        .bearer_auth("sk-admin")
        .send()
        .await?
        .text()
        .await?;
    let prefix =
        format!(r#"keel_cost_usd_total{{tenant="acme",model="{model}",provider="{provider}"}} "#);
    Ok(metrics
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap_or(0.0))
}

#[tokio::test]
async fn a_whole_answer_keeps_every_field_and_header_and_fails_over_invisibly() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    mock.state.set_faults("claude-first", overloaded_once());

    let response = messages(&gateway, BODY).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-keel-provider"), "second");
    assert_eq!(header(&response, "x-keel-model"), "claude-second");
    assert_eq!(header(&response, "x-keel-attempts"), "2");
    assert_eq!(header(&response, "x-keel-cache"), "");
    let message: Value = response.json().await?;
    // The upstream's own message: its model name, its usage object as sent.
    assert_eq!(message["type"], "message");
    assert_eq!(message["model"], "claude-second");
    assert_eq!(message["stop_reason"], "end_turn");
    let usage = message["usage"].as_object().ok_or("usage")?;
    let mut keys: Vec<&str> = usage.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "input_tokens",
            "output_tokens"
        ]
    );

    let requests = mock.state.requests();
    let paths: Vec<&str> = requests
        .iter()
        .map(|request| request.path.as_str())
        .collect();
    assert_eq!(paths, ["/v1/messages", "/v1/messages"]);
    let bodies: Vec<&str> = requests
        .iter()
        .map(|request| request.body.as_str())
        .collect();
    assert_eq!(
        bodies,
        [
            upstream_body(BODY, "claude", "claude-first"),
            upstream_body(BODY, "claude", "claude-second"),
        ]
    );
    for (request, key) in requests.iter().zip(["sk-ant-1", "sk-ant-2"]) {
        let get = |name: &str| request.headers.get(name).map(String::as_str);
        assert_eq!(get("anthropic-beta"), Some(BETA));
        assert_eq!(get("anthropic-version"), Some("2023-06-01"));
        assert_eq!(get("x-api-key"), Some(key));
    }

    let input = usage["input_tokens"].as_f64().ok_or("input_tokens")?;
    let output = usage["output_tokens"].as_f64().ok_or("output_tokens")?;
    let priced = cost(&gateway, "second", "claude-second").await?;
    assert!(
        (priced - (input * 3.0 + output * 15.0) / 1e6).abs() < 1e-12,
        "{priced}"
    );
    Ok(())
}

#[tokio::test]
async fn a_stream_is_the_upstreams_event_stream_and_fails_over_before_its_first_token() -> TestResult
{
    let (mock, gateway, response) = stream_with_first_target(overloaded_once()).await?;
    let body = stream_body();
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    assert_eq!(header(&response, "x-keel-provider"), "second");
    assert_eq!(header(&response, "x-keel-attempts"), "2");
    let text = response.text().await?;
    let events = named_events(&text)?;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    let deltas = names
        .iter()
        .filter(|name| **name == "content_block_delta")
        .count();
    assert_eq!(deltas, 20, "the mock's default reply: {names:?}");
    let mut expected = vec!["message_start", "content_block_start", "ping"];
    expected.extend(std::iter::repeat_n("content_block_delta", 20));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);
    assert!(!text.contains("[DONE]"));
    for (name, data) in &events {
        assert_eq!(data["type"].as_str(), Some(name.as_str()));
    }
    let start = &events.first().ok_or("no events")?.1;
    assert_eq!(start["message"]["model"], "claude-second");

    let requests = mock.state.requests();
    let bodies: Vec<&str> = requests
        .iter()
        .map(|request| request.body.as_str())
        .collect();
    assert_eq!(
        bodies,
        [
            upstream_body(&body, "claude", "claude-first"),
            upstream_body(&body, "claude", "claude-second"),
        ]
    );
    let beta: Vec<Option<&str>> = requests
        .iter()
        .map(|request| request.headers.get("anthropic-beta").map(String::as_str))
        .collect();
    assert_eq!(beta, [Some(BETA), Some(BETA)]);

    // The stream's usage is priced as a whole answer's is.
    let input = start["message"]["usage"]["input_tokens"]
        .as_f64()
        .ok_or("input_tokens")?;
    let delta = events
        .iter()
        .find(|(name, _)| name == "message_delta")
        .ok_or("message_delta")?;
    let output = delta.1["usage"]["output_tokens"]
        .as_f64()
        .ok_or("output_tokens")?;
    let priced = cost(&gateway, "second", "claude-second").await?;
    assert!(
        (priced - (input * 3.0 + output * 15.0) / 1e6).abs() < 1e-12,
        "{priced}"
    );
    Ok(())
}

#[tokio::test]
async fn an_error_event_before_the_first_token_fails_over_invisibly() -> TestResult {
    let (_mock, _gateway, response) = stream_with_first_target(Faults {
        error_event_after_chunk: Some(0),
        ..Faults::default()
    })
    .await?;
    assert_eq!(header(&response, "x-keel-provider"), "second");
    assert_eq!(header(&response, "x-keel-attempts"), "2");
    let events = named_events(&response.text().await?)?;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    // One message: the first target's frames before its error never left.
    assert_eq!(
        names
            .iter()
            .filter(|name| **name == "message_start")
            .count(),
        1
    );
    assert_eq!(names.iter().filter(|name| **name == "error").count(), 0);
    assert_eq!(names.last(), Some(&"message_stop"));
    let start = &events.first().ok_or("no events")?.1;
    assert_eq!(start["message"]["model"], "claude-second");
    Ok(())
}

#[tokio::test]
async fn an_error_after_the_first_token_ends_the_stream_in_band() -> TestResult {
    let (mock, _gateway, response) = stream_with_first_target(Faults {
        drop_after_chunk: Some(3),
        ..Faults::default()
    })
    .await?;
    assert_eq!(header(&response, "x-keel-provider"), "first");
    let events = named_events(&response.text().await?)?;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "error"
        ]
    );
    let error = &events.last().ok_or("no events")?.1;
    assert_eq!(error["error"]["type"], "api_error");
    assert_eq!(
        mock.state.requests().len(),
        1,
        "never retried after a token"
    );
    Ok(())
}

#[tokio::test]
async fn a_cached_model_bypasses_the_cache_and_a_mixed_model_still_translates() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    let cached = BODY.replacen(r#""model":"claude""#, r#""model":"claude-cached""#, 1);
    for _ in 0..2 {
        let response = messages(&gateway, &cached).await?;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-keel-cache"), "bypass");
        assert_eq!(header(&response, "x-keel-attempts"), "1");
    }
    assert_eq!(mock.state.requests().len(), 2);
    let metrics = reqwest::Client::new()
        .get(gateway.url("/metrics"))
        .bearer_auth("sk-admin")
        .send()
        .await?
        .text()
        .await?;
    let counted: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("keel_cache_requests_total{"))
        .collect();
    assert_eq!(
        counted,
        [r#"keel_cache_requests_total{model="claude-cached",result="bypass"} 2"#]
    );

    // A model that may reach an OpenAI target, among its own targets or
    // its fallbacks', translates: what the chat format can carry reaches
    // the upstream (top_k, back to Anthropic's own field here), and what
    // it cannot is refused by name before anything is sent.
    for (model, upstream) in [
        ("mixed", "claude-mixed"),
        ("claude-then-mixed", "claude-fallible"),
    ] {
        mock.state.forget_requests();
        let body = format!(
            r#"{{"model":"{model}","max_tokens":64,"top_k":5,"messages":[{{"role":"user","content":"Hi"}}]}}"#
        );
        let response = messages(&gateway, &body).await?;
        assert_eq!(response.status(), 200);
        let requests = mock.state.requests();
        assert_eq!(requests.len(), 1, "{model}");
        let sent: Value = serde_json::from_str(&requests.first().ok_or("no request")?.body)?;
        assert_eq!(sent["model"], upstream);
        assert_eq!(sent["top_k"], 5, "{model}");
        assert_eq!(
            requests
                .first()
                .and_then(|request| request.headers.get("anthropic-beta")),
            None
        );

        mock.state.forget_requests();
        let refused = messages(
            &gateway,
            &BODY.replace("\"claude\"", &format!("\"{model}\"")),
        )
        .await?;
        assert_eq!(refused.status(), 400, "{model}");
        let error: Value = refused.json().await?;
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("'thinking' cannot be sent to an OpenAI-format target"),
            "{message}"
        );
        assert!(mock.state.requests().is_empty(), "nothing refused is sent");
    }
    Ok(())
}

#[tokio::test]
async fn the_last_resort_of_a_passthrough_model_is_an_anthropic_message() -> TestResult {
    let mock = start_mock().await?;
    let gateway = start_gateway(&yaml(&mock), &[]).await?;
    mock.state.set_faults(
        "claude-down",
        Faults {
            fail: Some(FailNext {
                status: 503,
                count: 100,
                retry_after: None,
                body: None,
            }),
            ..Faults::default()
        },
    );
    let body = BODY.replacen(r#""model":"claude""#, r#""model":"claude-resort""#, 1);
    let response = messages(&gateway, &body).await?;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-keel-degraded"), "true");
    let message: Value = response.json().await?;
    assert_eq!(message["type"], "message");
    assert_eq!(message["content"][0]["text"], "Busy.");
    assert_eq!(message["stop_reason"], "end_turn");
    Ok(())
}
