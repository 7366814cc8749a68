//! Streams after the commit point: chunks flow as they arrive, a client that
//! leaves cancels the upstream at once, and a failure is reported in-band.

use std::time::Duration;

use futures_util::StreamExt;
use keel_testkit::{
    sse_data, start_gateway, start_mock, yaml_with_targets, Faults, Gateway, Mock, TEST_KEY,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const STREAM: &str =
    r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}"#;

/// A stream request on a connection of its own (a client each).
async fn open_stream(url: &str) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(TEST_KEY)
        .body(STREAM)
        .send()
        .await
}

/// A mock whose streams send `chunks` chunks `delay_ms` apart, and a
/// gateway in front of it with `server` settings (a YAML flow mapping).
async fn slow_streams(
    delay_ms: u64,
    chunks: u32,
    server: &str,
) -> Result<(Mock, Gateway), Box<dyn std::error::Error>> {
    let mock = start_mock().await?;
    mock.state.set_faults(
        "gpt-mock",
        Faults {
            chunk_delay_ms: delay_ms,
            chunks: Some(chunks),
            ..Faults::default()
        },
    );
    let yaml = format!(
        "server: {server}\n{}",
        yaml_with_targets(&[("first", &mock.base_url())])
    );
    let gateway = start_gateway(&yaml, &[]).await?;
    Ok((mock, gateway))
}

#[tokio::test]
async fn a_client_that_drops_a_stream_cancels_the_upstream() -> TestResult {
    let (mock, gateway) = slow_streams(40, 100, "{}").await?;
    let response = open_stream(&gateway.url("/v1/chat/completions")).await?;
    let mut body = response.bytes_stream();
    let first = body.next().await.ok_or("no first chunk")??;
    assert!(first.starts_with(b"data: "));
    drop(body);
    let dropped_at = tokio::time::Instant::now();
    let deadline = dropped_at + Duration::from_secs(2);
    while mock.state.stats("gpt-mock").cancelled == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream never saw the cancellation"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(mock.state.stats("gpt-mock").completed, 0);
    Ok(())
}

#[tokio::test]
async fn chunks_are_forwarded_as_they_arrive() -> TestResult {
    let (_mock, gateway) = slow_streams(150, 3, "{}").await?;
    let started = tokio::time::Instant::now();
    let response = open_stream(&gateway.url("/v1/chat/completions")).await?;
    let mut body = response.bytes_stream();
    let mut arrivals = Vec::new();
    while let Some(bytes) = body.next().await {
        let bytes = bytes?;
        arrivals.push((
            started.elapsed(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    // The time each frame carrying content text arrived.
    let content_arrivals: Vec<Duration> = arrivals
        .iter()
        .flat_map(|(at, text)| sse_data(text).into_iter().map(move |frame| (*at, frame)))
        .filter(|(_, frame)| {
            frame.contains("\"content\":\"") && !frame.contains("\"content\":\"\"")
        })
        .map(|(at, _)| at)
        .collect();
    assert!(
        content_arrivals.len() >= 3,
        "content chunks were merged: {arrivals:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_failure_after_the_first_token_ends_with_an_error_event_and_done() -> TestResult {
    let cases = [
        Faults {
            drop_after_chunk: Some(3),
            ..Faults::default()
        },
        Faults {
            error_event_after_chunk: Some(3),
            ..Faults::default()
        },
    ];
    for faults in cases {
        let (first, second) = (start_mock().await?, start_mock().await?);
        first.state.set_faults("gpt-mock", faults.clone());
        let gateway = start_gateway(
            &yaml_with_targets(&[("first", &first.base_url()), ("second", &second.base_url())]),
            &[],
        )
        .await?;
        let response = open_stream(&gateway.url("/v1/chat/completions")).await?;
        assert_eq!(response.headers()["x-keel-provider"], "first");
        let events = sse_data(&response.text().await?);
        let (last, error) = (&events[events.len() - 1], &events[events.len() - 2]);
        assert_eq!(last, "[DONE]");
        let error: serde_json::Value = serde_json::from_str(error)?;
        assert_eq!(
            error["error"]["code"], "upstream_stream_error",
            "{faults:?}: {error}"
        );
        assert_eq!(
            second.state.stats("gpt-mock").requests,
            0,
            "a committed stream is never retried"
        );
    }
    Ok(())
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_stream_finish_and_refuses_new_connections() -> TestResult {
    let (_mock, mut gateway) = slow_streams(30, 10, "{}").await?;
    let url = gateway.url("/v1/chat/completions");
    let response = open_stream(&url).await?;
    gateway.begin_shutdown();
    let text = response.text().await?;
    assert_eq!(
        sse_data(&text).last().map(String::as_str),
        Some("[DONE]"),
        "the stream was cut: {text}"
    );
    gateway.finished().await?;
    let refused = open_stream(&url).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted after shutdown"
    );
    Ok(())
}

/// Trust boundary 11: a stream still open when the shutdown grace runs out
/// ends with an error event and `[DONE]`, never a silent cut.
#[tokio::test]
async fn tb11_a_stream_cut_by_the_shutdown_grace_ends_with_an_error_event() -> TestResult {
    let (_mock, mut gateway) = slow_streams(200, 50, "{shutdown_grace: 300ms}").await?;
    let response = open_stream(&gateway.url("/v1/chat/completions")).await?;
    gateway.begin_shutdown();
    let text = response.text().await?;
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{text}");
    let error: serde_json::Value = serde_json::from_str(&data[data.len() - 2])?;
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("shut down")),
        "{error}"
    );
    gateway.finished().await?;
    Ok(())
}

/// `server.workers`: on shutdown every HTTP worker stops accepting and lets
/// the streams it holds finish, whichever worker accepted them.
#[tokio::test]
async fn shutdown_with_http_workers_lets_every_stream_finish() -> TestResult {
    let (mock, mut gateway) = slow_streams(30, 10, "{workers: 2}").await?;
    let url = gateway.url("/v1/chat/completions");
    let mut responses = Vec::new();
    for _ in 0..6 {
        let response = open_stream(&url).await?;
        assert_eq!(response.status(), 200);
        responses.push(response);
    }
    gateway.begin_shutdown();
    for response in responses {
        let text = response.text().await?;
        let events = sse_data(&text);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
        assert!(!text.contains("\"error\""), "a stream was cut: {text}");
    }
    gateway.finished().await?;
    let refused = open_stream(&url).await;
    assert!(
        refused.is_err(),
        "a new connection was accepted after shutdown"
    );
    assert_eq!(mock.state.stats("gpt-mock").requests, 6);
    Ok(())
}
