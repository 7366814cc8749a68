//! `server.sse_keepalive`: a stream still waiting for its first token gets
//! its 200 and SSE headers, then `: keep-alive` comments, then the stream
//! (or, when routing then fails, the error event in band); a fast answer
//! and `sse_keepalive: 0` behave as without it.

use std::time::Duration;

use keel_testkit::{
    sse_data, start_gateway, start_mock, yaml_with_targets, FailNext, Faults, Gateway, Mock,
    TEST_KEY,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const STREAM: &str =
    r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

const KEEP_ALIVE: &str = ": keep-alive\n\n";

/// A hang guard only: every stream here ends within a few seconds, the
/// 30 s first token's within about 31.
const HANG_GUARD: Duration = Duration::from_secs(90);

/// A gateway with `server.sse_keepalive: <keepalive>` in front of `targets`
/// providers, all served by one mock under `faults`.
async fn gateway(
    keepalive: &str,
    targets: usize,
    faults: Faults,
) -> Result<(Mock, Gateway), Box<dyn std::error::Error>> {
    let mock = start_mock().await?;
    mock.state.set_faults("gpt-mock", faults);
    let base_url = mock.base_url();
    let names: Vec<String> = (0..targets).map(|index| format!("p{index}")).collect();
    let providers: Vec<(&str, &str)> = names
        .iter()
        .map(|name| (name.as_str(), base_url.as_str()))
        .collect();
    let yaml = format!(
        "server: {{sse_keepalive: {keepalive}}}\n{}",
        yaml_with_targets(&providers)
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    Ok((mock, gateway))
}

/// What a stream request got: its status, headers and whole body.
struct Streamed {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn stream(gateway: &Gateway) -> Result<Streamed, Box<dyn std::error::Error>> {
    stream_from(gateway, "/v1/chat/completions", STREAM).await
}

async fn stream_from(
    gateway: &Gateway,
    path: &str,
    body: &'static str,
) -> Result<Streamed, Box<dyn std::error::Error>> {
    let response = reqwest::Client::new()
        .post(gateway.url(path))
        .bearer_auth(TEST_KEY)
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(HANG_GUARD, response.text()).await??;
    Ok(Streamed {
        status,
        headers,
        body,
    })
}

const MESSAGES_STREAM: &str =
    r#"{"model":"chat","max_tokens":64,"messages":[{"role":"user","content":"hi"}],"stream":true}"#;

const RESPONSES_STREAM: &str = r#"{"model":"chat","input":"hi","stream":true}"#;

/// Every request fails with a 500 after 2.25 s: two targets take 4.5 s,
/// past the comments due at 1, 2, 3 and 4 s.
fn failing_slowly() -> Faults {
    Faults {
        headers_delay_ms: 2_250,
        fail: Some(FailNext {
            status: 500,
            count: 2,
            retry_after: None,
            body: None,
        }),
        ..Faults::default()
    }
}

/// A first token 4.5 s late: with a 1 s interval, comments are due at
/// 1, 2, 3 and 4 s, so at least two arrive before it even on a loaded
/// machine (the assertions ask for two).
fn slow_first_token() -> Faults {
    Faults {
        first_token_delay_ms: 4_500,
        chunks: Some(3),
        ..Faults::default()
    }
}

/// A first token 30 s late, as a long reasoning model's can be: behind a
/// load balancer with a 60 s idle timeout the stream must keep talking.
fn thirty_second_first_token() -> Faults {
    Faults {
        first_token_delay_ms: 30_000,
        chunks: Some(3),
        ..Faults::default()
    }
}

/// The comments before the first `data:` frame.
fn comments_before_data(body: &str) -> usize {
    let before = body.split("data:").next().unwrap_or_default();
    before.matches(KEEP_ALIVE).count()
}

#[tokio::test]
async fn a_slow_first_token_gets_comments_then_the_normal_stream() -> TestResult {
    let (_mock, gateway) = gateway("1s", 1, slow_first_token()).await?;
    let Streamed {
        status,
        headers,
        body,
    } = stream(&gateway).await?;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    assert!(
        headers.get("x-keel-provider").is_none(),
        "sent before anyone answered: {headers:?}"
    );
    let comments = comments_before_data(&body);
    assert!(comments >= 2, "{comments} comments in {body:?}");
    assert_eq!(
        body.matches(KEEP_ALIVE).count(),
        comments,
        "a comment after the first data frame: {body:?}"
    );
    let frames = sse_data(&body);
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"), "{body}");
    let content: String = frames
        .iter()
        .filter_map(|frame| serde_json::from_str::<serde_json::Value>(frame).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(!content.is_empty(), "no content in {body}");
    assert!(!body.contains("\"error\""), "{body}");
    Ok(())
}

/// A 30 s first token behind `sse_keepalive: 1s`: a comment about every
/// second until it comes (at least 20 even on a loaded machine, at most
/// one per second), then the answer as usual.
#[tokio::test]
async fn a_thirty_second_first_token_gets_a_comment_every_second() -> TestResult {
    let (_mock, gateway) = gateway("1s", 1, thirty_second_first_token()).await?;
    let started = tokio::time::Instant::now();
    let Streamed { status, body, .. } = stream(&gateway).await?;
    let waited = started.elapsed().as_secs();
    assert_eq!(status, 200);
    let comments = comments_before_data(&body);
    assert!(
        (20..=waited as usize).contains(&comments),
        "{comments} comments in {waited} s: {body:?}"
    );
    assert_eq!(body.matches(KEEP_ALIVE).count(), comments, "{body:?}");
    let frames = sse_data(&body);
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"), "{body}");
    assert!(!body.contains("\"error\""), "{body}");
    Ok(())
}

/// The official SDK reads a stream kept alive for 30 s like the
/// upstream's own (which it also reads, with the same 30 s wait).
#[tokio::test]
async fn the_official_openai_sdk_reads_a_kept_alive_stream_as_a_normal_one() -> TestResult {
    let (mock, gateway) = gateway("1s", 1, thirty_second_first_token()).await?;
    let args = vec![
        gateway.url("/v1"),
        TEST_KEY.to_owned(),
        mock.base_url(),
        String::from("gpt-mock"),
    ];
    let stdout = keel_testkit::sdk_check("keepalive_check.py", args).await?;
    assert!(stdout.contains("1 passed, 0 failed"), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn every_target_failing_after_the_comments_ends_with_the_error_event_and_done() -> TestResult
{
    let (mock, gateway) = gateway("1s", 2, failing_slowly()).await?;
    let Streamed {
        status,
        headers,
        body,
    } = stream(&gateway).await?;
    assert_eq!(status, 200);
    assert!(headers.get("x-keel-provider").is_none(), "{headers:?}");
    assert!(comments_before_data(&body) >= 2, "{body:?}");
    let frames = sse_data(&body);
    assert_eq!(frames.len(), 2, "{body}");
    let error: serde_json::Value = serde_json::from_str(&frames[0])?;
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("every target of the model 'chat' failed"),
        "{body}"
    );
    assert_eq!(frames[1], "[DONE]");
    assert_eq!(mock.state.stats("gpt-mock").failed_injected, 2);
    Ok(())
}

#[tokio::test]
async fn a_fast_answer_is_sent_as_before_with_the_provider_headers() -> TestResult {
    let (_mock, gateway) = gateway("1s", 1, Faults::default()).await?;
    let Streamed {
        status,
        headers,
        body,
    } = stream(&gateway).await?;
    assert_eq!(status, 200);
    let provider = headers
        .get("x-keel-provider")
        .map(|v| v.as_bytes().to_vec());
    assert_eq!(provider.as_deref(), Some(&b"p0"[..]));
    assert!(!body.contains(KEEP_ALIVE), "{body:?}");
    assert_eq!(sse_data(&body).last().map(String::as_str), Some("[DONE]"));
    Ok(())
}

#[tokio::test]
async fn zero_never_sends_comments_and_waits_for_the_first_token() -> TestResult {
    let faults = Faults {
        first_token_delay_ms: 1_500,
        chunks: Some(3),
        ..Faults::default()
    };
    let (_mock, gateway) = gateway("0", 1, faults).await?;
    let Streamed {
        status,
        headers,
        body,
    } = stream(&gateway).await?;
    assert_eq!(status, 200);
    assert!(headers.get("x-keel-provider").is_some(), "{headers:?}");
    assert!(!body.contains(KEEP_ALIVE), "{body:?}");
    assert_eq!(sse_data(&body).last().map(String::as_str), Some("[DONE]"));
    Ok(())
}

#[tokio::test]
async fn a_messages_stream_gets_comments_then_anthropics_events() -> TestResult {
    let (_mock, gateway) = gateway("1s", 1, slow_first_token()).await?;
    let Streamed { status, body, .. } =
        stream_from(&gateway, "/v1/messages", MESSAGES_STREAM).await?;
    assert_eq!(status, 200);
    let before_events = body.split("event:").next().unwrap_or_default();
    assert!(before_events.matches(KEEP_ALIVE).count() >= 2, "{body:?}");
    assert!(body.contains("event: message_start\n"), "{body}");
    assert!(
        body.trim_end()
            .ends_with(r#"data: {"type":"message_stop"}"#),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn a_messages_stream_failing_after_the_comments_ends_with_anthropics_error_event(
) -> TestResult {
    let (_mock, gateway) = gateway("1s", 2, failing_slowly()).await?;
    let Streamed { status, body, .. } =
        stream_from(&gateway, "/v1/messages", MESSAGES_STREAM).await?;
    assert_eq!(status, 200);
    let (comments, events) = body.split_once("event:").ok_or("no event")?;
    assert!(comments.matches(KEEP_ALIVE).count() >= 2, "{body:?}");
    let (name, data) = events.split_once("\ndata: ").ok_or("no data")?;
    assert_eq!(name.trim(), "error", "{body}");
    let error: serde_json::Value = serde_json::from_str(data.trim_end())?;
    assert_eq!(error["type"], "error", "{body}");
    assert_eq!(error["error"]["type"], "api_error", "{body}");
    Ok(())
}

#[tokio::test]
async fn a_responses_stream_failing_after_the_comments_ends_with_response_failed() -> TestResult {
    let (_mock, gateway) = gateway("1s", 2, failing_slowly()).await?;
    let Streamed { status, body, .. } =
        stream_from(&gateway, "/v1/responses", RESPONSES_STREAM).await?;
    assert_eq!(status, 200);
    let (comments, events) = body.split_once("event:").ok_or("no event")?;
    assert!(comments.matches(KEEP_ALIVE).count() >= 2, "{body:?}");
    let (name, data) = events.split_once("\ndata: ").ok_or("no data")?;
    assert_eq!(name.trim(), "response.failed", "{body}");
    let failed: serde_json::Value = serde_json::from_str(data.trim_end())?;
    assert_eq!(failed["response"]["status"], "failed", "{body}");
    let message = failed["response"]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("every target of the model 'chat' failed"),
        "{body}"
    );
    Ok(())
}
