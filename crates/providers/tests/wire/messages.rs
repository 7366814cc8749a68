//! A Messages body passed through (`Endpoint::Messages`): the exact
//! upstream request (path, headers, body) and the answer as it came.

use std::sync::Arc;
use std::time::Duration;

use keel_providers::{AnthropicProvider, AnthropicSettings, Provider, Reply, UpstreamModel};
use keel_types::ChatRequest;

use crate::capture;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What the upstream answers: a message with thinking and cache counts.
const MESSAGE: &str = r#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"thinking","thinking":"Hm.","signature":"sig"},{"type":"text","text":"Hi."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":100,"cache_read_input_tokens":30,"output_tokens":5,"service_tier":"standard"}}"#;

/// A client body with fields the canonical request has no place for.
const BODY: &str = r#"{"model":"public","max_tokens":2048,"thinking":{"type":"enabled","budget_tokens":1024},"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"Hi","cache_control":{"type":"ephemeral","ttl":"1h"}}]}],"top_k":5,"service_tier":"auto","output_config":{"effort":"low"},"container":"c_1","mcp_servers":[{"type":"url","url":"https://mcp.example","name":"x"}]}"#;

fn provider(base: &str, headers: Vec<(String, String)>) -> Result<AnthropicProvider, String> {
    AnthropicProvider::new(AnthropicSettings {
        name: "anthropic".into(),
        base_url: base.to_owned(),
        api_key: Some(keel_types::SecretString::new("sk-ant")),
        headers,
        default_max_tokens: 4096,
        connect_timeout: Duration::from_secs(2),
        max_body: 1 << 20,
        pools: 1,
        drop_unsupported: false,
    })
}

fn forwarded(beta: &str, version: &str) -> Vec<(String, String)> {
    vec![
        (String::from("anthropic-beta"), beta.to_owned()),
        (String::from("anthropic-version"), version.to_owned()),
    ]
}

#[tokio::test]
async fn a_messages_body_goes_verbatim_with_the_clients_anthropic_headers() -> TestResult {
    let mut capture = capture::start(200, MESSAGE).await?;
    let provider = provider(&format!("http://{}", capture.addr), Vec::new())?;
    let request = ChatRequest::parse_native_messages(BODY.as_bytes())?
        .with_forwarded_headers(forwarded("interleaved-thinking-2025-05-14", "2023-06-01"));
    let reply = provider
        .chat(Arc::new(request), UpstreamModel::from("claude-sonnet-4-5"))
        .await?;
    let captured = capture.requests.try_recv()?;
    assert_eq!(captured.request_line, "POST /v1/messages HTTP/1.1");
    assert_eq!(
        captured.headers,
        [
            ("accept", "*/*"),
            ("anthropic-beta", "interleaved-thinking-2025-05-14"),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
            ("x-api-key", "sk-ant"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
    );
    let expected = BODY.replacen(r#""model":"public""#, r#""model":"claude-sonnet-4-5""#, 1);
    assert_eq!(String::from_utf8(captured.body)?, expected);
    let Reply::Complete(completion) = reply else {
        return Err("a non-stream request got a stream".into());
    };
    assert_eq!(completion.body, MESSAGE.as_bytes());
    let usage = completion.usage.ok_or("no usage")?;
    // Cache reads and writes are prompt tokens, as the translated path counts them.
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.completion_tokens,
            usage.total_tokens
        ),
        (142, 5, 147)
    );
    Ok(())
}

#[tokio::test]
async fn without_the_clients_headers_the_providers_stand_and_max_tokens_is_added() -> TestResult {
    let mut capture = capture::start(200, MESSAGE).await?;
    let configured = vec![(String::from("anthropic-beta"), String::from("configured"))];
    let provider = provider(&format!("http://{}", capture.addr), configured)?;
    let bare = ChatRequest::parse_native_messages(br#"{"model":"public","messages":[]}"#)?;
    provider
        .chat(Arc::new(bare), UpstreamModel::from("claude-x"))
        .await?;
    let captured = capture.requests.try_recv()?;
    let header = |name: &str| {
        captured
            .headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(header("anthropic-version").as_deref(), Some("2023-06-01"));
    assert_eq!(header("anthropic-beta").as_deref(), Some("configured"));
    assert_eq!(
        String::from_utf8(captured.body)?,
        r#"{"model":"claude-x","messages":[],"max_tokens":4096}"#
    );

    let with_beta = ChatRequest::parse_native_messages(br#"{"model":"public","messages":[]}"#)?
        .with_forwarded_headers(vec![(String::from("anthropic-beta"), String::from("mine"))]);
    provider
        .chat(
            Arc::new(with_beta),
            UpstreamModel {
                name: Arc::from("claude-x"),
                max_tokens: Some(77),
            },
        )
        .await?;
    let captured = capture.requests.try_recv()?;
    let beta = captured
        .headers
        .iter()
        .find(|(key, _)| key == "anthropic-beta")
        .map(|(_, value)| value.as_str());
    assert_eq!(beta, Some("configured,mine"));
    assert_eq!(
        String::from_utf8(captured.body)?,
        r#"{"model":"claude-x","messages":[],"max_tokens":77}"#
    );
    Ok(())
}
