//! Anthropic Messages: JSON, the exact event sequence, tool use, validation.

use serde_json::{json, Value};

use crate::support::{json, names, read_sse, Mock, RequestJson, ResponseJson};

fn messages(model: &str) -> Value {
    json!({"model": model, "max_tokens": 1024, "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello to the gateway"}]}]})
}

fn with_tools(mut body: Value) -> Value {
    body["tools"] = json!([{"name": "get_weather", "description": "Weather", "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"]
    }}]);
    body
}

fn streaming(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

#[tokio::test]
async fn json_reply_is_a_message_with_text_and_usage() {
    let mock = Mock::start().await;
    let response = mock.anthropic(messages("claude-test")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json_body().await;
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "claude-test");
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["stop_sequence"], Value::Null);
    assert_eq!(body["content"][0]["type"], "text");
    let text = body["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Hello from the keel mock (model claude-test). "));
    // "Be brief." + "Say hello to the gateway" = 33 chars: 8 input tokens.
    let usage = json!({"input_tokens": 8, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 20});
    assert_eq!(body["usage"], usage);
}

#[tokio::test]
async fn stream_follows_the_documented_event_sequence() {
    let mock = Mock::start().await;
    mock.state.set_faults(
        "c",
        keel_mock::Faults {
            chunks: Some(3),
            ..Default::default()
        },
    );
    let events = read_sse(mock.anthropic(streaming(messages("c"))).await).await;
    let expected = [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ];
    assert_eq!(names(&events), expected);
    for event in &events {
        assert_eq!(
            json(event)["type"],
            event.event.as_deref().unwrap(),
            "event name equals type"
        );
    }
    let start = json(&events[0]);
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(start["message"]["stop_reason"], Value::Null);
    assert_eq!(start["message"]["usage"]["input_tokens"], 8);
    assert_eq!(start["message"]["usage"]["output_tokens"], 1);
    assert_eq!(
        json(&events[1])["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = events[3..6]
        .iter()
        .map(|event| {
            let delta = json(event)["delta"].clone();
            assert_eq!(delta["type"], "text_delta");
            delta["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "Hello from the ");
    let message_delta = json(&events[7]);
    assert_eq!(
        message_delta["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );
    assert_eq!(message_delta["usage"], json!({"output_tokens": 3}));

    let body: Value = mock.anthropic(messages("c")).await.json_body().await;
    assert_eq!(body["content"][0]["text"], text);
}

#[tokio::test]
async fn tool_use_streams_input_json_deltas_that_join_to_the_json_input() {
    let mock = Mock::start().await;
    let body: Value = mock
        .anthropic(with_tools(messages("c")))
        .await
        .json_body()
        .await;
    assert_eq!(body["stop_reason"], "tool_use");
    let block = &body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(block["name"], "get_weather");
    assert_eq!(
        block["input"],
        json!({"location": "Paris", "unit": "celsius"})
    );

    let events = read_sse(mock.anthropic(streaming(with_tools(messages("c")))).await).await;
    let start = json(&events[1]);
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["name"], "get_weather");
    assert_eq!(start["content_block"]["input"], json!({}));
    let partial: Vec<String> = events
        .iter()
        .filter(|event| event.event.as_deref() == Some("content_block_delta"))
        .map(|event| {
            let delta = json(event)["delta"].clone();
            assert_eq!(delta["type"], "input_json_delta");
            delta["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(partial.len() > 5);
    let input: Value = serde_json::from_str(&partial.concat()).unwrap();
    assert_eq!(input, block["input"]);
    let message_delta = json(&events[events.len() - 2]);
    assert_eq!(message_delta["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn tool_result_last_or_tool_choice_none_gets_text() {
    let mock = Mock::start().await;
    let mut body = with_tools(messages("c"));
    body["tool_choice"] = json!({"type": "none"});
    let reply: Value = mock.anthropic(body.clone()).await.json_body().await;
    assert_eq!(reply["content"][0]["type"], "text");

    body["tool_choice"] = json!({"type": "auto"});
    body["messages"] = json!([
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}
    ]);
    let reply: Value = mock.anthropic(body).await.json_body().await;
    assert_eq!(reply["stop_reason"], "end_turn");
    assert_eq!(reply["content"][0]["type"], "text");
}

#[tokio::test]
async fn max_tokens_below_chunk_count_truncates_with_stop_reason_max_tokens() {
    let mock = Mock::start().await;
    let mut body = messages("c");
    body["max_tokens"] = json!(2);
    let reply: Value = mock.anthropic(body.clone()).await.json_body().await;
    assert_eq!(reply["stop_reason"], "max_tokens");
    assert_eq!(reply["content"][0]["text"], "Hello from ");
    assert_eq!(reply["usage"]["output_tokens"], 2);

    let events = read_sse(mock.anthropic(streaming(body)).await).await;
    let deltas = names(&events)
        .iter()
        .filter(|name| **name == "content_block_delta")
        .count();
    assert_eq!(deltas, 2);
    assert_eq!(
        json(&events[events.len() - 2])["delta"]["stop_reason"],
        "max_tokens"
    );
}

#[tokio::test]
async fn missing_version_header_or_fields_get_anthropic_shaped_400s() {
    let mock = Mock::start().await;
    let url = mock.url("/v1/messages");
    let response = mock
        .client
        .post(&url)
        .json_body(&messages("c"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json_body().await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("anthropic-version"));

    let mut without_max_tokens = messages("c");
    without_max_tokens
        .as_object_mut()
        .unwrap()
        .remove("max_tokens");
    let mut without_model = messages("c");
    without_model.as_object_mut().unwrap().remove("model");
    for (body, field) in [(without_max_tokens, "max_tokens"), (without_model, "model")] {
        let response = mock.anthropic(body).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json_body().await;
        assert!(error["error"]["message"].as_str().unwrap().contains(field));
    }
    let request = mock
        .client
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .body("{oops");
    let error: Value = request.send().await.unwrap().json_body().await;
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(mock.state.all_stats().is_empty());
}
