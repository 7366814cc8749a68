//! Golden tests of the `/v1/messages` conversions: each Anthropic request
//! fixture → the exact OpenAI request the router gets, each OpenAI
//! completion and stream fixture → the exact Anthropic JSON and SSE the
//! client gets. Run with `KEEL_BLESS=1` to rewrite the golden files after
//! an intended change, then review the diff.

use std::path::PathBuf;

use futures_util::{stream, StreamExt};
use http_body_util::BodyExt;
use keel_router::{ProviderError, StreamEvent};
use keel_testbase::golden::assert_golden;
use keel_types::canonical::openai::read_completion_borrowed;
use keel_types::RequestError;

use super::request::chat_request;
use super::response::message_json;
use super::stream::EventWriter;
use crate::translated::body;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/messages")
}

fn fixture_names(dir: &str, extension: &str) -> std::io::Result<Vec<String>> {
    keel_testbase::golden::fixture_names(fixtures().join(dir), extension)
}

#[test]
fn every_messages_request_becomes_the_golden_openai_request() -> TestResult {
    let names = fixture_names("requests", ".json")?;
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        let body = std::fs::read(fixtures().join(format!("requests/{name}.json")))?;
        let request = chat_request(&body).map_err(|error| format!("{name}: {error}"))?;
        let mut text = String::from_utf8(request.openai_body(request.model()))?;
        text.push('\n');
        assert_golden(
            fixtures().join(format!("requests/{name}.openai.json")),
            &text,
        )?;
    }
    Ok(())
}

#[test]
fn requests_openai_cannot_carry_are_refused_with_the_parameter() {
    let cases = [
        (
            r#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
            Some("model"),
        ),
        (
            r#"{"model":"m","max_tokens":1,"messages":[]}"#,
            Some("messages"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"x"}}]}]}"#,
            Some("messages"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"system","content":"x"}]}"#,
            Some("messages"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}"#,
            Some("messages"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
            Some("tools"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"tool"}}"#,
            Some("tool_choice"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"many"}"#,
            Some("max_tokens"),
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"x"}],"system":[{"type":"image"}]}"#,
            Some("system"),
        ),
        ("[1]", None),
        ("{", None),
    ];
    for (body, param) in cases {
        match chat_request(body.as_bytes()) {
            Ok(_) => panic!("{body} was accepted"),
            Err(error) => assert_eq!(error.param(), param, "{body}: {error}"),
        }
    }
}

/// Every field the chat format cannot carry is refused by name, with why
/// and that it is the target's format that cannot take it — never dropped.
#[test]
fn fields_a_chat_target_cannot_carry_are_refused_by_name() {
    let user = r#"[{"role":"user","content":"x"}]"#;
    let cases = [
        (
            format!(r#"{{"model":"m","messages":{user},"thinking":{{"type":"enabled","budget_tokens":1024}}}}"#),
            "thinking",
            "signed thinking blocks",
        ),
        (
            format!(r#"{{"model":"m","messages":{user},"cache_control":{{"type":"ephemeral"}}}}"#),
            "cache_control",
            "no cache breakpoints",
        ),
        (
            format!(r#"{{"model":"m","system":[{{"type":"text","text":"s","cache_control":{{"type":"ephemeral"}}}}],"messages":{user}}}"#),
            "cache_control",
            "(in system)",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]}"#.to_owned(),
            "cache_control",
            "(in messages)",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"r","cache_control":{"type":"ephemeral"}}]}]}]}"#.to_owned(),
            "cache_control",
            "(in messages)",
        ),
        (
            format!(r#"{{"model":"m","messages":{user},"tools":[{{"name":"t","input_schema":{{"type":"object"}},"cache_control":{{"type":"ephemeral"}}}}]}}"#),
            "cache_control",
            "(in tools)",
        ),
        (
            format!(r#"{{"model":"m","messages":{user},"output_config":{{"effort":"low"}}}}"#),
            "output_config",
            "does not know this field",
        ),
        (
            format!(r#"{{"model":"m","messages":{user},"service_tier":"priority"}}"#),
            "service_tier",
            "auto or standard_only",
        ),
    ];
    for (body, param, why) in cases {
        match chat_request(body.as_bytes()) {
            Ok(request) => panic!("{body} was accepted as {:?}", request.raw()),
            Err(error) => {
                assert_eq!(error.param(), Some(param), "{body}: {error}");
                assert!(error.to_string().contains(why), "{body}: {error}");
            }
        }
    }
}

/// What the chat format can carry is carried exactly: `top_k` as the chat
/// body's own, `standard_only` as OpenAI's `default` tier; thinking turned
/// off and `auto` are the defaults, so they change nothing.
#[test]
fn fields_a_chat_target_can_carry_are_carried() -> Result<(), RequestError> {
    let request = chat_request(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_k":5,"service_tier":"standard_only","thinking":{"type":"disabled"},"cache_control":null}"#)?;
    assert_eq!(
        String::from_utf8_lossy(&request.openai_body("m")),
        r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_k":5,"service_tier":"default"}"#
    );
    Ok(())
}

#[test]
fn every_completion_becomes_the_golden_anthropic_message() -> TestResult {
    let names = fixture_names("responses", ".json")?;
    assert!(names.len() >= 6, "{names:?}");
    for name in names {
        let body = std::fs::read(fixtures().join(format!("responses/{name}.json")))?;
        let mut text = String::from_utf8(message_json(&read_completion_borrowed(&body)?))?;
        text.push('\n');
        assert_golden(
            fixtures().join(format!("responses/{name}.anthropic.json")),
            &text,
        )?;
    }
    Ok(())
}

/// The events of an OpenAI SSE fixture; without `[DONE]` it ends truncated.
/// `read`: each chunk says what the OpenAI adapter reads of it (its text
/// among that); otherwise the chunk is all there is.
fn events(text: &str, read: bool) -> Vec<Result<StreamEvent, ProviderError>> {
    let chunks = text.lines().filter_map(|line| line.strip_prefix("data: "));
    let plain = chunks.map(|data| match data {
        "[DONE]" => StreamEvent::Done,
        chunk => {
            let info = read.then(|| keel_types::inspect_chunk(chunk));
            StreamEvent::Chunk {
                data: bytes::Bytes::from(chunk.to_owned()),
                token: true,
                usage: info.as_ref().and_then(|info| info.usage),
                text: info.and_then(|info| info.text),
            }
        }
    });
    let mut events: Vec<Result<StreamEvent, ProviderError>> = plain.map(Ok).collect();
    if !matches!(events.last(), Some(Ok(StreamEvent::Done))) {
        let provider = String::from("openai");
        events.push(Err(ProviderError::Truncated { provider }));
    }
    events
}

async fn encode(
    events: Vec<Result<StreamEvent, ProviderError>>,
) -> Result<String, Box<dyn std::error::Error>> {
    let rest = stream::iter(events).boxed();
    let bytes = body(Vec::new(), rest, EventWriter::new("fallback-model"), None)
        .collect()
        .await?
        .to_bytes();
    Ok(String::from_utf8(bytes.to_vec())?)
}

/// The Anthropic events of a fixture; the text the adapter read of a chunk
/// encodes exactly as the chunk read whole.
async fn convert(text: &str) -> Result<String, Box<dyn std::error::Error>> {
    let with_text = encode(events(text, true)).await?;
    assert_eq!(with_text, encode(events(text, false)).await?);
    Ok(with_text)
}

#[tokio::test]
async fn every_chunk_stream_becomes_the_golden_anthropic_event_sequence() -> TestResult {
    let names = fixture_names("streams", ".sse")?;
    assert!(names.len() >= 5, "{names:?}");
    for name in names {
        let text = std::fs::read_to_string(fixtures().join(format!("streams/{name}.sse")))?;
        assert_golden(
            fixtures().join(format!("streams/{name}.anthropic.sse")),
            &convert(&text).await?,
        )?;
    }
    Ok(())
}

#[tokio::test]
async fn the_event_sequence_is_the_one_anthropic_documents() -> TestResult {
    for name in [
        "text",
        "parallel_tool_calls",
        "reasoning_text_tool_length",
        "empty",
    ] {
        let text = std::fs::read_to_string(fixtures().join(format!("streams/{name}.sse")))?;
        let output = convert(&text).await?;
        let names: Vec<&str> = output
            .lines()
            .filter_map(|line| line.strip_prefix("event: "))
            .collect();
        assert_eq!(names.first(), Some(&"message_start"), "{name}");
        assert_eq!(
            &names[names.len() - 2..],
            ["message_delta", "message_stop"],
            "{name}"
        );
        // Every block opens, gets deltas, and closes before the next opens.
        let mut open = false;
        for event in &names[1..names.len() - 2] {
            match *event {
                "content_block_start" => {
                    assert!(!std::mem::replace(&mut open, true), "{name}: {names:?}")
                }
                "content_block_stop" => {
                    assert!(std::mem::replace(&mut open, false), "{name}: {names:?}")
                }
                "content_block_delta" => {}
                other => panic!("{name}: unexpected {other}"),
            }
        }
        assert!(!open, "{name}: a block was left open");
    }
    Ok(())
}

#[test]
fn nulls_and_default_values_are_left_out() -> Result<(), RequestError> {
    let request = chat_request(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"service_tier":"auto","temperature":null,"top_k":null}"#)?;
    assert_eq!(
        String::from_utf8_lossy(&request.openai_body("m")),
        r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#
    );
    Ok(())
}

/// The Anthropic front end under hostile input, in the normal suite:
/// thousands of mutations of every request fixture. Parsing never panics;
/// what it accepts forwards as one JSON object with the model. `fuzz/` runs
/// the same entry point (`keel_server::messages_request`) under `cargo fuzz`.
#[test]
fn messages_requests_survive_hostile_bytes() -> TestResult {
    let mut bodies = Vec::new();
    for name in fixture_names("requests", ".json")? {
        bodies.push(std::fs::read(
            fixtures().join(format!("requests/{name}.json")),
        )?);
    }
    let mut accepted = 0;
    for seed in 0..3_000u64 {
        let body = keel_types::hostile::mutation(&bodies[(seed as usize) % bodies.len()], seed);
        match crate::messages_request(&body) {
            Ok(request) => {
                accepted += 1;
                let forwarded = request.openai_body("upstream");
                let value: serde_json::Value = serde_json::from_slice(&forwarded)
                    .map_err(|error| format!("seed {seed}: {error}"))?;
                assert_eq!(value["model"], "upstream", "seed {seed}");
            }
            Err(error) => assert!(!error.to_string().is_empty(), "seed {seed}"),
        }
    }
    assert!(
        accepted > 100,
        "only {accepted} mutations were still requests"
    );
    Ok(())
}
