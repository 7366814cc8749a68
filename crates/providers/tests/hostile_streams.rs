//! The stream decoders under hostile input, in the normal suite: thousands
//! of mutations of real OpenAI and Anthropic streams, each cut into pieces
//! at random points. Whatever the bytes, decoding never panics, ends with
//! exactly one terminal item (`Done` or an error) and yields nothing after
//! it. `fuzz/` runs the same entry points under `cargo fuzz`.

use keel_providers::replay;
use keel_providers::{ProviderError, StreamEvent};
use keel_types::hostile::{mutation, pieces, split_points};

const CASES: u64 = 3_000;

fn openai_fixture() -> String {
    let chunk = |delta: &str, finish: &str| {
        format!(
            r#"data: {{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
        )
    };
    [
        chunk(r#"{"role":"assistant","content":""}"#, "null"),
        chunk(r#"{"content":"Hé"}"#, "null"),
        chunk(r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":"}}]}"#, "null"),
        chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}"#, "null"),
        chunk("{}", r#""stop""#),
        String::from(r#"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#),
        String::from(": keep-alive"),
        String::from("data: [DONE]"),
    ]
    .join("\n\n")
        + "\n\n"
}

fn anthropic_fixtures() -> Result<Vec<Vec<u8>>, std::io::Error> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic/streams"
    );
    let mut fixtures = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "sse") {
            fixtures.push(std::fs::read(path)?);
        }
    }
    Ok(fixtures)
}

/// One terminal item, last; every chunk before it.
fn check_shape(events: &[Result<StreamEvent, ProviderError>], case: &str) {
    let terminal = events
        .iter()
        .position(|event| !matches!(event, Ok(StreamEvent::Chunk { .. })));
    match terminal {
        Some(at) => assert_eq!(at, events.len() - 1, "{case}: items after the end"),
        None => panic!("{case}: the stream ended without Done or an error"),
    }
}

#[test]
fn openai_streams_survive_hostile_bytes() {
    let fixture = openai_fixture();
    for seed in 0..CASES {
        let input = mutation(fixture.as_bytes(), seed);
        let cut = pieces(&input, &split_points(input.len(), seed));
        check_shape(&replay::openai_stream(&cut), &format!("openai seed {seed}"));
    }
}

#[test]
fn anthropic_streams_survive_hostile_bytes() -> Result<(), std::io::Error> {
    let fixtures = anthropic_fixtures()?;
    assert!(!fixtures.is_empty());
    for seed in 0..CASES {
        let fixture = &fixtures[(seed as usize) % fixtures.len()];
        let input = mutation(fixture, seed);
        let cut = pieces(&input, &split_points(input.len(), seed));
        check_shape(
            &replay::anthropic_stream(&cut),
            &format!("anthropic seed {seed}"),
        );
    }
    Ok(())
}

#[test]
fn anthropic_messages_survive_hostile_bytes() -> Result<(), std::io::Error> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/anthropic/responses"
    );
    let mut fixtures = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.to_string_lossy();
        if name.ends_with(".json") && !name.ends_with(".openai.json") {
            fixtures.push(std::fs::read(&path)?);
        }
    }
    let mut converted = 0;
    for seed in 0..CASES {
        let fixture = &fixtures[(seed as usize) % fixtures.len()];
        // A classified error, or a completion that is JSON; never a panic.
        if let Ok(completion) = replay::anthropic_message(&mutation(fixture, seed)) {
            let parsed = serde_json::from_slice::<serde_json::Value>(&completion.body);
            assert!(parsed.is_ok_and(|value| value.is_object()), "seed {seed}");
            converted += 1;
        }
    }
    assert!(converted > 0, "some mutations are still messages");
    Ok(())
}
