use std::convert::Infallible;

use futures_util::stream;

use super::*;

fn events(body: &str) -> Vec<Result<StreamEvent, ProviderError>> {
    let bytes = stream::iter(vec![Ok::<_, Infallible>(Bytes::from(body.to_owned()))]);
    futures_executor::block_on(event_stream(Arc::from("p"), bytes, true).collect::<Vec<_>>())
}

const ROLE: &str = r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
const TOKEN: &str = r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#;
const FINISH: &str = r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#;

fn frame(data: &str) -> String {
    format!("data: {data}\n\n")
}

#[test]
fn a_complete_stream_classifies_tokens_and_ends_with_done() {
    let body = [
        frame(ROLE),
        String::from(": ping\n\n"),
        frame(TOKEN),
        frame(FINISH),
        frame("[DONE]"),
    ]
    .concat();
    let events = events(&body);
    assert_eq!(events.len(), 4);
    assert!(matches!(
        &events[0],
        Ok(StreamEvent::Chunk { token: false, .. })
    ));
    assert!(
        matches!(&events[1], Ok(StreamEvent::Chunk { token: true, data, .. }) if data == TOKEN)
    );
    assert!(matches!(&events[3], Ok(StreamEvent::Done)));
}

#[test]
fn a_stream_cut_before_its_finish_is_truncated() {
    let events = events(&[frame(ROLE), frame(TOKEN)].concat());
    assert!(matches!(
        events.last(),
        Some(Err(ProviderError::Truncated { .. }))
    ));
}

#[test]
fn a_stream_that_finished_without_done_is_complete() {
    let events = events(&[frame(TOKEN), frame(FINISH)].concat());
    assert!(matches!(events.last(), Some(Ok(StreamEvent::Done))));
}

#[test]
fn an_in_band_error_ends_the_stream_as_an_error() {
    let body = [
        frame(TOKEN),
        frame(r#"{"error":{"message":"overloaded","type":"server_error"}}"#),
        frame(TOKEN),
    ]
    .concat();
    let events = events(&body);
    assert_eq!(events.len(), 2);
    assert!(
        matches!(&events[1], Err(ProviderError::InBand { body, .. }) if body.error.message == "overloaded")
    );
}

#[test]
fn status_errors_keep_the_upstream_message_and_retry_after() {
    let error = error_from_status("p", 400, br#"{"error":{"message":"bad temperature","type":"invalid_request_error","param":"temperature","code":null}}"#, None);
    assert!(!error.is_retryable());
    assert!(
        matches!(&error, ProviderError::Status { body, .. } if body.error.param.as_deref() == Some("temperature"))
    );
    let error = error_from_status("p", 503, b"<html>down</html>", Some(Duration::from_secs(2)));
    assert!(error.is_retryable());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
    assert!(error
        .to_string()
        .contains("upstream status 503: <html>down</html>"));
}

#[test]
fn retry_after_reads_seconds_and_http_dates() -> Result<(), Box<dyn std::error::Error>> {
    let mut headers = HeaderMap::new();
    headers.insert(RETRY_AFTER, "7".parse()?);
    assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    let later = SystemTime::now() + Duration::from_secs(120);
    headers.insert(RETRY_AFTER, httpdate::fmt_http_date(later).parse()?);
    let parsed = retry_after(&headers).ok_or("date not parsed")?;
    assert!(
        parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120),
        "{parsed:?}"
    );
    headers.insert(RETRY_AFTER, "soon".parse()?);
    assert_eq!(retry_after(&headers), None);
    // Trust boundary 4: absurd values are clamped where they are read.
    for absurd in [
        "18446744073709551615",
        "10000000000",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        headers.insert(RETRY_AFTER, absurd.parse()?);
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER), "{absurd}");
    }
    Ok(())
}

#[test]
fn completion_usage_is_read_and_error_bodies_refused() -> Result<(), ProviderError> {
    let usage = completion_usage(
        "p",
        br#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
    )?;
    assert_eq!(usage.map(|u| u.completion_tokens), Some(2));
    assert!(completion_usage("p", br#"{"error":{"message":"x"}}"#).is_err());
    assert!(completion_usage("p", b"nope").is_err());
    Ok(())
}

#[test]
fn a_usage_chunk_the_client_did_not_ask_for_keeps_its_usage_but_no_data() {
    let usage =
        r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
    let body = [frame(TOKEN), frame(FINISH), frame(usage), frame("[DONE]")].concat();
    let bytes = stream::iter(vec![Ok::<_, Infallible>(Bytes::from(body))]);
    let events =
        futures_executor::block_on(event_stream(Arc::from("p"), bytes, false).collect::<Vec<_>>());
    assert!(matches!(
        &events[2],
        Ok(StreamEvent::Chunk { data, usage: Some(usage), token: false, text: None })
            if data.is_empty() && usage.total_tokens == 7
    ));
    assert!(
        matches!(&events[1], Ok(StreamEvent::Chunk { data, .. }) if data == FINISH),
        "other chunks are forwarded as they are"
    );
    assert!(matches!(&events[3], Ok(StreamEvent::Done)));
}

/// Trust boundary 11: `[DONE]` with no finish_reason before it is a
/// truncation, never a complete answer.
#[test]
fn tb11_done_without_a_finish_reason_is_a_truncation() {
    let events = events(&[frame(ROLE), frame(TOKEN), frame("[DONE]")].concat());
    assert!(matches!(
        events.last(),
        Some(Err(ProviderError::Truncated { .. }))
    ));
}
