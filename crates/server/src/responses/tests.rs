//! Responses request bodies → the exact chat request the router takes, and
//! the refusals that name their field.

use super::request::translate;

fn chat_body(body: &str) -> String {
    match translate(body.as_bytes()) {
        Ok(translated) => String::from_utf8_lossy(&translated.chat.openai_body("up")).into_owned(),
        Err(error) => format!("error: {error}"),
    }
}

#[test]
fn requests_translate_field_by_field() {
    let rows = [
        (
            r#"{"model":"m","input":"hi"}"#,
            r#"{"model":"up","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        (
            r#"{"model":"m","instructions":"Be brief.","input":[{"role":"developer","content":"Formal."},{"type":"message","role":"user","content":[{"type":"input_text","text":"a"},{"type":"input_image","image_url":"https://x/y.png"}]}],"max_output_tokens":50,"temperature":0.2,"top_p":0.9,"user":"u1"}"#,
            r#"{"model":"up","messages":[{"role":"system","content":"Be brief."},{"role":"system","content":"Formal."},{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}],"max_tokens":50,"temperature":0.2,"top_p":0.9,"user":"u1"}"#,
        ),
        (
            r#"{"model":"m","input":[{"role":"user","content":"w?"},{"type":"function_call","call_id":"c1","name":"f","arguments":"{\"a\":1}"},{"type":"function_call","call_id":"c2","name":"g","arguments":"{}"},{"type":"function_call_output","call_id":"c1","output":"one"},{"type":"function_call_output","call_id":"c2","output":"two"}],"tools":[{"type":"function","name":"f","description":"F","parameters":{"type":"object"}}],"tool_choice":{"type":"function","name":"f"},"parallel_tool_calls":false}"#,
            r#"{"model":"up","messages":[{"role":"user","content":"w?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]},{"role":"tool","content":"one","tool_call_id":"c1"},{"role":"tool","content":"two","tool_call_id":"c2"}],"tools":[{"type":"function","function":{"name":"f","description":"F","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false}"#,
        ),
        (
            r#"{"model":"m","input":"hi","stream":true,"text":{"format":{"type":"json_schema","name":"x","schema":{"type":"object"},"strict":true}},"reasoning":{"effort":"low","summary":"auto"},"store":true,"metadata":{"k":"v"},"include":[]}"#,
            r#"{"model":"up","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"},"strict":true}},"reasoning_effort":"low"}"#,
        ),
        (
            // The schema goes as written: structured outputs follow the
            // order of its properties.
            r#"{"model":"m","input":"hi","text":{"format":{"type":"json_schema","strict":true,"name":"w","schema":{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"integer"}},"required":["z","a"]}}}}"#,
            r#"{"model":"up","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"w","schema":{"type":"object","properties":{"z":{"type":"string"},"a":{"type":"integer"}},"required":["z","a"]},"strict":true}}}"#,
        ),
        (
            // A function tool's `strict` is kept, whichever way it was set.
            r#"{"model":"m","input":"w?","tools":[{"type":"function","name":"f","parameters":{"type":"object"},"strict":false},{"type":"function","name":"g","strict":true}]}"#,
            r#"{"model":"up","messages":[{"role":"user","content":"w?"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"},"strict":false}},{"type":"function","function":{"name":"g","strict":true}}]}"#,
        ),
        (
            r#"{"model":"m","input":[{"type":"reasoning","id":"rs_1","summary":[]},{"role":"user","content":"hi"}]}"#,
            r#"{"model":"up","messages":[{"role":"user","content":"hi"}]}"#,
        ),
        (
            r#"{"model":"m","input":"hi","service_tier":"flex"}"#,
            r#"{"model":"up","messages":[{"role":"user","content":"hi"}],"service_tier":"flex"}"#,
        ),
    ];
    for (body, expected) in rows {
        assert_eq!(chat_body(body), expected, "{body}");
    }
}

#[test]
fn what_cannot_be_honoured_is_refused_by_name() {
    let rows = [
        (
            r#"{"model":"m","input":"hi","previous_response_id":"resp_1"}"#,
            "previous_response_id",
        ),
        (
            r#"{"model":"m","input":"hi","conversation":{"id":"c"}}"#,
            "conversation",
        ),
        (
            r#"{"model":"m","input":"hi","tools":[{"type":"file_search"}]}"#,
            "tools",
        ),
        (
            r#"{"model":"m","input":"hi","tool_choice":{"type":"web_search_preview"}}"#,
            "tool_choice",
        ),
        (
            r#"{"model":"m","input":"hi","background":true,"stream":true}"#,
            "background",
        ),
        (
            r#"{"model":"m","input":"hi","webhook":{"url":"https://x"}}"#,
            "webhook",
        ),
        (
            r#"{"model":"m","input":"hi","top_logprobs":3}"#,
            "top_logprobs",
        ),
        (
            r#"{"model":"m","input":"hi","prompt":{"id":"p"}}"#,
            "prompt",
        ),
        (r#"{"model":"m","input":"hi","n":2}"#, "n"),
        (
            r#"{"model":"m","input":[{"type":"computer_call","id":"x"}]}"#,
            "input",
        ),
        (
            r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}"#,
            "input",
        ),
        (
            r#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"f"}]}]}"#,
            "input",
        ),
        (r#"{"model":"m"}"#, "input"),
        (
            r#"{"model":"m","input":"hi","text":{"format":{"type":"json_schema"}}}"#,
            "text.format",
        ),
        (r#"{"input":"hi"}"#, "model"),
    ];
    for (body, param) in rows {
        let error = translate(body.as_bytes()).err();
        assert_eq!(
            error.as_ref().and_then(|error| error.param()),
            Some(param),
            "{body}: {error:?}"
        );
    }
    // Explicit nulls and `false` are no request for the feature.
    assert!(translate(
        br#"{"model":"m","input":"hi","background":false,"previous_response_id":null}"#
    )
    .is_ok());
}

mod stream {
    use bytes::BytesMut;
    use keel_router::ProviderError;

    use super::super::response::Echo;
    use super::super::stream::EventWriter;
    use crate::translated::EventEncoder as _;

    /// Feeds OpenAI chunks through the writer (then the end, or a failure)
    /// and returns each event's type and data. Each chunk goes in as the
    /// OpenAI adapter hands it over (its text, when that is all it carries,
    /// already read); the events are the same, ids aside, as when every
    /// chunk is read whole.
    fn events(chunks: &[&str], end: Result<(), ProviderError>) -> Vec<(String, serde_json::Value)> {
        let read = parse(&feed(chunks, end.clone(), true));
        let whole = parse(&feed(chunks, end, false));
        assert_eq!(without_ids(&read), without_ids(&whole));
        read
    }

    fn feed(chunks: &[&str], end: Result<(), ProviderError>, read: bool) -> String {
        let raw = keel_types::parse_object(br#"{"model":"m","input":"hi"}"#).unwrap_or_default();
        let mut writer = EventWriter::new(Echo::new(&raw), "up");
        let mut out = BytesMut::new();
        for chunk in chunks {
            let text = read
                .then(|| keel_types::inspect_chunk(chunk).text)
                .flatten();
            let text = text.as_ref().and_then(|text| text.as_str(chunk.as_bytes()));
            if text.is_some_and(|text| writer.text_only(text, &mut out)) {
                continue;
            }
            assert!(writer.chunk(chunk.as_bytes(), &mut out).is_ok(), "{chunk}");
        }
        match end {
            Ok(()) => writer.done(&mut out),
            Err(error) => writer.error(&error, &mut out),
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn parse(out: &str) -> Vec<(String, serde_json::Value)> {
        out.split("\n\n")
            .filter(|frame| !frame.is_empty())
            .map(|frame| {
                let mut lines = frame.lines();
                let name = lines
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("event: ")
                    .to_owned();
                let data = lines.next().unwrap_or("").trim_start_matches("data: ");
                (name, serde_json::from_str(data).unwrap_or_default())
            })
            .collect()
    }

    /// The events with the ids and times Keel makes up left out.
    fn without_ids(events: &[(String, serde_json::Value)]) -> Vec<(String, serde_json::Value)> {
        fn strip(value: &mut serde_json::Value) {
            match value {
                serde_json::Value::Object(map) => {
                    for key in ["id", "item_id", "created_at"] {
                        map.remove(key);
                    }
                    map.values_mut().for_each(strip);
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
                _ => {}
            }
        }
        let mut events = events.to_vec();
        events.iter_mut().for_each(|(_, data)| strip(data));
        events
    }

    fn types(events: &[(String, serde_json::Value)]) -> Vec<&str> {
        events.iter().map(|(name, _)| name.as_str()).collect()
    }

    const ROLE: &str = r#"{"id":"c","model":"up-1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;

    #[test]
    fn text_split_mid_character_usage_and_the_order_of_events() {
        let chunks = [
            ROLE,
            r#"{"id":"c","model":"up-1","choices":[{"index":0,"delta":{"content":"Zür"}}]}"#,
            r#"{"id":"c","model":"up-1","choices":[{"index":0,"delta":{"content":"ich ✓"}}]}"#,
            r#"{"id":"c","model":"up-1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"id":"c","model":"up-1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}"#,
        ];
        let events = events(&chunks, Ok(()));
        assert_eq!(
            types(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        for (number, (name, data)) in events.iter().enumerate() {
            assert_eq!(data["type"], name.as_str());
            assert_eq!(data["sequence_number"], number);
        }
        assert_eq!(events[6].1["text"], "Zürich ✓");
        let completed = &events[9].1["response"];
        assert_eq!(completed["status"], "completed");
        assert_eq!(completed["model"], "up-1", "the model that answered");
        assert_eq!(completed["output"][0]["content"][0]["text"], "Zürich ✓");
        assert_eq!(completed["usage"]["input_tokens"], 5);
        assert_eq!(completed["usage"]["output_tokens"], 3);
        assert_eq!(completed["usage"]["total_tokens"], 8);
    }

    #[test]
    fn function_calls_with_split_arguments_close_the_message_and_end_in_order() {
        let chunks = [
            ROLE,
            r#"{"choices":[{"index":0,"delta":{"content":"Let me check."}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"loc"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ation\":\"Paris\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ];
        let events = events(&chunks, Ok(()));
        assert_eq!(
            types(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let done: Vec<&serde_json::Value> = events
            .iter()
            .filter(|(name, _)| name == "response.function_call_arguments.done")
            .map(|(_, data)| data)
            .collect();
        assert_eq!(
            done[0]["arguments"], r#"{"location":"Paris"}"#,
            "late arguments reach their call"
        );
        assert_eq!(done[0]["output_index"], 1);
        assert_eq!(done[1]["arguments"], "{}");
        let output = &events[17].1["response"]["output"];
        assert_eq!(output[1]["call_id"], "call_1");
        assert_eq!(output[2]["name"], "get_time");
    }

    #[test]
    fn a_length_cut_is_incomplete_and_a_failure_is_response_failed() {
        let cut = [
            ROLE,
            r#"{"choices":[{"index":0,"delta":{"content":"Once upon"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
        ];
        let cut_events = events(&cut, Ok(()));
        let (name, last) = cut_events.last().cloned().unwrap_or_default();
        assert_eq!(name, "response.incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );

        let broken = [
            ROLE,
            r#"{"choices":[{"index":0,"delta":{"content":"Once"}}]}"#,
        ];
        let error = ProviderError::Truncated {
            provider: String::from("up"),
        };
        let events = events(&broken, Err(error));
        let terminal: Vec<&str> = types(&events)
            .into_iter()
            .filter(|name| {
                name.starts_with("response.")
                    && matches!(
                        *name,
                        "response.completed" | "response.incomplete" | "response.failed"
                    )
            })
            .collect();
        assert_eq!(terminal, ["response.failed"]);
        let (_, failed) = events.last().cloned().unwrap_or_default();
        assert_eq!(failed["response"]["status"], "failed");
        assert!(failed["response"]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'up'")));
    }
}

/// The settings echoed for a body that sends none are the ones written
/// field by field for a body whose settings are all null.
#[test]
fn default_settings_are_the_written_defaults() -> Result<(), keel_types::RequestError> {
    use super::response::{settings, DEFAULT_SETTINGS};
    let none = keel_types::parse_object(br#"{"model":"m","input":"hi"}"#)?;
    assert_eq!(&*settings(&none), DEFAULT_SETTINGS);
    let nulls = keel_types::parse_object(
        br#"{"model":"m","input":"hi","instructions":null,"reasoning":null}"#,
    )?;
    assert!(matches!(settings(&nulls), std::borrow::Cow::Owned(_)));
    assert_eq!(&*settings(&nulls), DEFAULT_SETTINGS);
    Ok(())
}
