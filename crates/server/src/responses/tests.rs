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
            r#"{"model":"up","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"response_format":{"json_schema":{"name":"x","schema":{"type":"object"},"strict":true},"type":"json_schema"},"reasoning_effort":"low"}"#,
        ),
        (
            r#"{"model":"m","input":[{"type":"reasoning","id":"rs_1","summary":[]},{"role":"user","content":"hi"}]}"#,
            r#"{"model":"up","messages":[{"role":"user","content":"hi"}]}"#,
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
