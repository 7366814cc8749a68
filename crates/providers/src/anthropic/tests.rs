//! Golden tests of the pure conversions: each Anthropic response and stream
//! fixture → the exact OpenAI JSON and chunks the client sees, plus error
//! classification. Run with `KEEL_BLESS=1` to rewrite the golden files after
//! an intended change, then review the diff.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use keel_testbase::golden::assert_golden;
use keel_types::canonical::openai::completion_json;

use super::response::{error_from_status, read_message};
use super::stream::{event_stream, StreamConverter};
use crate::{ErrorKind, ProviderError, StreamEvent};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The `created` stamp every golden output carries.
const CREATED: u64 = 1_700_000_000;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/anthropic")
}

fn fixture_names(dir: &str, extension: &str) -> std::io::Result<Vec<String>> {
    keel_testbase::golden::fixture_names(fixtures().join(dir), extension)
}

/// The client-visible result of a stream, one line per event: `token` or
/// `chunk` and the chunk JSON, `done`, or the error that ended it.
fn render(events: &[Result<StreamEvent, ProviderError>]) -> String {
    let mut out = String::new();
    for event in events {
        match event {
            Ok(StreamEvent::Chunk { data, token, .. }) => {
                out.push_str(if *token { "token " } else { "chunk " });
                out.push_str(&String::from_utf8_lossy(data));
            }
            Ok(StreamEvent::Done) => out.push_str("done"),
            Err(error) => out.push_str(&format!("error {:?}: {error}", error.kind())),
        }
        out.push('\n');
    }
    out
}

fn convert(pieces: Vec<Vec<u8>>, include_usage: bool) -> Vec<Result<StreamEvent, ProviderError>> {
    let bytes = stream::iter(
        pieces
            .into_iter()
            .map(|piece| Ok::<_, Infallible>(Bytes::from(piece))),
    );
    let events = event_stream(
        Arc::from("claude"),
        bytes,
        StreamConverter::new(CREATED, include_usage),
    );
    futures_executor::block_on(events.collect())
}

#[test]
fn every_response_fixture_becomes_the_golden_openai_completion() -> TestResult {
    let names = fixture_names("responses", ".json")?;
    assert!(names.len() >= 7, "{names:?}");
    for name in names {
        let body = std::fs::read(fixtures().join(format!("responses/{name}.json")))?;
        let completion = completion_json(&read_message(&body)?, CREATED);
        let mut text = String::from_utf8(completion)?;
        text.push('\n');
        assert_golden(
            fixtures().join(format!("responses/{name}.openai.json")),
            &text,
        )?;
    }
    Ok(())
}

#[test]
fn every_stream_fixture_becomes_the_golden_openai_chunks() -> TestResult {
    let names = fixture_names("streams", ".sse")?;
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        let body = std::fs::read(fixtures().join(format!("streams/{name}.sse")))?;
        let events = convert(vec![body], true);
        assert_golden(
            fixtures().join(format!("streams/{name}.openai.txt")),
            &render(&events),
        )?;
    }
    Ok(())
}

#[test]
fn unicode_split_at_every_byte_converts_the_same() -> TestResult {
    let body = std::fs::read(fixtures().join("streams/unicode.sse"))?;
    let whole = render(&convert(vec![body.clone()], true));
    assert!(
        whole.contains("Zürich café ☕ 😀 ") && whole.contains(r#"naïve 😀 \"quoted\"\n"#),
        "{whole}"
    );
    for split in 0..=body.len() {
        let pieces = vec![body[..split].to_vec(), body[split..].to_vec()];
        assert_eq!(
            render(&convert(pieces, true)),
            whole,
            "split at byte {split}"
        );
    }
    Ok(())
}

#[test]
fn the_same_id_is_on_every_chunk_and_usage_rides_the_finish_chunk_without_include_usage(
) -> TestResult {
    let body = std::fs::read(fixtures().join("streams/text.sse"))?;
    let events = convert(vec![body], false);
    let chunks: Vec<&StreamEvent> = events
        .iter()
        .filter_map(|event| event.as_ref().ok())
        .collect();
    assert!(matches!(chunks.last(), Some(StreamEvent::Done)));
    for chunk in &chunks[..chunks.len() - 1] {
        let StreamEvent::Chunk { data, .. } = chunk else {
            return Err("not a chunk".into());
        };
        let text = String::from_utf8_lossy(data);
        assert!(
            text.contains(r#""id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY""#)
                && !text.contains("usage"),
            "{text}"
        );
    }
    let finish = chunks.iter().find_map(|chunk| match chunk {
        StreamEvent::Chunk { data, usage, .. }
            if data.ends_with(br#""finish_reason":"stop"}]}"#) =>
        {
            *usage
        }
        _ => None,
    });
    assert_eq!(
        finish.map(|usage| (usage.prompt_tokens, usage.completion_tokens)),
        Some((2073, 15))
    );
    Ok(())
}

#[test]
fn very_long_tool_arguments_stream_through_in_order() -> TestResult {
    let argument = "é🚀x".repeat(40_000);
    let json = serde_json::to_string(&serde_json::json!({"text": argument}))?;
    let fragments: Vec<String> = json
        .chars()
        .collect::<Vec<_>>()
        .chunks(97)
        .map(|piece| piece.iter().collect())
        .collect();
    let mut body = String::from("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\",\"usage\":{\"input_tokens\":1,\"output_tokens\":1}}}\n\n");
    body.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"save\",\"input\":{}}}\n\n");
    for fragment in &fragments {
        let event = serde_json::json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": fragment}});
        body.push_str(&format!("event: content_block_delta\ndata: {event}\n\n"));
    }
    body.push_str("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    // The body arrives in 1000-byte pieces, cutting events and characters anywhere.
    let pieces = body.as_bytes().chunks(1000).map(<[u8]>::to_vec).collect();
    let events = convert(pieces, false);
    let mut arguments = String::new();
    for event in &events {
        let Ok(StreamEvent::Chunk { data, .. }) = event else {
            continue;
        };
        let chunk: serde_json::Value = serde_json::from_slice(data)?;
        if let Some(fragment) =
            chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        {
            assert_eq!(chunk["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
            arguments.push_str(fragment);
        }
    }
    assert_eq!(arguments, json);
    assert!(matches!(events.last(), Some(Ok(StreamEvent::Done))));
    Ok(())
}

#[test]
fn an_event_before_message_start_is_a_protocol_error() {
    let mut converter = StreamConverter::new(0, false);
    let data =
        r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#;
    let result = converter.on_event("p", "content_block_delta", data, &mut VecDeque::new());
    assert!(matches!(result, Err(ProviderError::Protocol { .. })));
}

#[test]
fn upstream_errors_keep_their_class_and_become_openai_shaped() {
    let body = |kind: &str| {
        format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"m {kind}"}}}}"#)
    };
    let cases = [
        (
            400,
            "invalid_request_error",
            ErrorKind::Client,
            "invalid_request_error",
        ),
        (
            401,
            "authentication_error",
            ErrorKind::Misconfigured,
            "invalid_request_error",
        ),
        (
            403,
            "permission_error",
            ErrorKind::Misconfigured,
            "invalid_request_error",
        ),
        (
            404,
            "not_found_error",
            ErrorKind::Misconfigured,
            "invalid_request_error",
        ),
        (
            429,
            "rate_limit_error",
            ErrorKind::RateLimited,
            "rate_limit_error",
        ),
        (500, "api_error", ErrorKind::Server, "server_error"),
        (529, "overloaded_error", ErrorKind::Server, "server_error"),
    ];
    for (status, kind, class, openai_kind) in cases {
        let error = error_from_status("p", status, body(kind).as_bytes(), None);
        assert_eq!(error.kind(), class, "{status}");
        assert_eq!(error.is_retryable(), class != ErrorKind::Client, "{status}");
        let ProviderError::Status { body, .. } = &error else {
            panic!("{error:?}")
        };
        assert_eq!(
            (body.error.kind.as_str(), body.error.code.as_deref()),
            (openai_kind, Some(kind))
        );
        assert_eq!(body.error.message, format!("m {kind}"));
    }
    let html = error_from_status("p", 502, b"<html>bad gateway</html>", None);
    assert!(
        html.is_retryable() && html.to_string().contains("upstream status 502"),
        "{html}"
    );
}

/// Trust boundary 4: block indices come from the upstream. Huge ones once
/// sized a vector (4,000,000,000 asked for 32 GB and aborted the process;
/// `u64::MAX` wrapped and panicked); now an index beyond 1,024 ends the
/// attempt as an invalid response, and indices up to it are looked up.
#[test]
fn tb4_huge_content_block_indices_end_the_attempt() {
    let start =
        r#"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":1}}}"#;
    let block = |index: &str| {
        format!(
            r#"{{"type":"content_block_start","index":{index},"content_block":{{"type":"text","text":""}}}}"#
        )
    };
    for index in ["1025", "4000000000", "18446744073709551615"] {
        let mut converter = StreamConverter::new(0, false);
        let mut out = VecDeque::new();
        assert!(converter
            .on_event("p", "message_start", start, &mut out)
            .is_ok());
        let result = converter.on_event("p", "content_block_start", &block(index), &mut out);
        assert!(
            matches!(result, Err(ProviderError::Protocol { .. })),
            "{index}"
        );
        assert!(
            result.is_err_and(|error| error.is_retryable()),
            "a failure of the target"
        );
    }
    let mut converter = StreamConverter::new(0, false);
    let mut out = VecDeque::new();
    assert!(converter
        .on_event("p", "message_start", start, &mut out)
        .is_ok());
    assert!(converter
        .on_event("p", "content_block_start", &block("1024"), &mut out)
        .is_ok());
    let delta =
        r#"{"type":"content_block_delta","index":1024,"delta":{"type":"text_delta","text":"x"}}"#;
    assert!(converter
        .on_event("p", "content_block_delta", delta, &mut out)
        .is_ok());
    assert!(out
        .iter()
        .any(|event| matches!(event, StreamEvent::Chunk { token: true, .. })));
}
